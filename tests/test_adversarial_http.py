"""Hostile HTTP against the real server (gunicorn, the README's command): every answer
is JSON with a message, never HTML, a traceback, a redirect or a killed worker.

Raw sockets send what ``requests`` cannot: malformed chunked bodies, made-up methods,
URLs with invalid escapes. Issue #10, items b, d, e, f and g.
"""
from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time

import pytest
import requests

from bench.harness import LiveServer, gunicorn_command

from conftest import make_app, need

BUDGET = 0.25  # seconds: lowered here so that a request inside the limits can run past it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need(gunicorn_command(), "gunicorn is not installed")
    folder = tmp_path_factory.mktemp("adversarial")
    live = LiveServer(folder / "server.log", env={
        "SENTIMENT_CLF_DATA_DIR": str(folder), "SENTIMENT_CLF_REQUEST_TIME_BUDGET": str(BUDGET),
        "SENTIMENT_CLF_READY_PROBE_INTERVAL": "0.5"})
    live.database = folder / "feedback.sqlite"
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()
    # No answer was a 500, no worker was killed (tracebacks of logged 503s are the operator's).
    assert '"status": 500' not in live.log() and "WORKER TIMEOUT" not in live.log()


def raw(server, head: str, body: bytes = b"", half_close: bool = False) -> tuple[int, dict, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` as
    they are; the answer's status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        def send() -> None:
            try:
                sock.sendall(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server answered (a 413) and closed before reading it all
                pass

        sender = threading.Thread(target=send)
        sender.start()
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        sender.join()
    head_bytes, _, content = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in headers.items()}
    if headers.get("transfer-encoding") == "chunked":
        content = dechunk(content)
    return int(lines[0].split()[1]), headers, content


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        if not int(size, 16):
            break
        out, data = out + data[:int(size, 16)], data[int(size, 16) + 2:]
    return out


def assert_json_error(status: int, headers: dict, body: bytes, expected: int | tuple, fragment: str = "") -> str:
    assert status in (expected if isinstance(expected, tuple) else (expected,)), (status, body[:300])
    assert headers["content-type"] == "application/json", headers
    assert "location" not in headers
    text = body.decode()
    assert "<html" not in text.lower() and "Traceback" not in text
    message = json.loads(text)["message"]
    assert fragment in message, message
    return message


def chunked(payload: bytes, size: int = 65536) -> bytes:
    pieces = [payload[i:i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


JSON_POST = "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"


# -- b. a time budget per request -------------------------------------------------

def test_the_issues_batch_is_refused_quickly_with_json(server):
    texts = ["a dull , plodding film " * 435] * 800  # 800 texts of 10,000 characters
    started = time.monotonic()
    response = requests.post(f"{server.url}/batch", json={"queries": [t[:10_000] for t in texts], "explain": True},
                             timeout=60)
    assert response.status_code in (413, 503) and time.monotonic() - started < 5
    assert response.headers["Content-Type"] == "application/json"
    assert "the limit is 1,000,000" in response.json()["message"]


def test_work_past_the_budget_is_cut_with_a_json_503(server):
    # Inside every limit (1,000 texts, 1,000,000 characters), and seconds of work for two models.
    texts = ["!?" * 500] * 1000
    started = time.monotonic()
    response = requests.post(f"{server.url}/questions/batch", json={"queries": texts}, timeout=60)
    assert time.monotonic() - started < 2
    status, headers, body = response.status_code, {k.lower(): v for k, v in response.headers.items()}, \
        response.content
    assert_json_error(status, headers, body, 503, f"time budget of {BUDGET:g} seconds")
    assert int(headers["retry-after"]) >= 1
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_explain_and_batch_characters_are_bounded_up_front(sqlite_url):
    client = make_app(sqlite_url, MAX_BATCH_CHARS=100, MAX_EXPLAIN_CHARS=20).test_client()
    assert client.post("/batch", json={"queries": ["x" * 50, "y" * 50]}).status_code == 200
    over = client.post("/batch", json={"queries": ["x" * 50, "y" * 51]})
    assert over.status_code == 413 and over.json["message"] == (
        "the texts hold 101 characters in all, the limit is 100 per request: send fewer or shorter texts")
    explained = client.post("/ratings/batch", json={"queries": ["a fine film", "a dull film"], "explain": True})
    assert explained.status_code == 413 and "explain is limited to 20 characters" in explained.json["message"]
    single = client.get("/questions", query_string={"query": "why is the sky blue today ?", "explain": 1})
    assert single.status_code == 413 and "explain is limited to 20 characters" in single.json["message"]
    assert client.get("/questions", query_string={"query": "why is the sky blue today ?"}).status_code == 200


def test_a_lowered_budget_in_the_config_gives_the_json_503(sqlite_url):
    client = make_app(sqlite_url, REQUEST_TIME_BUDGET=1e-9).test_client()
    response = client.post("/batch", json={"queries": ["a dull film"] * 600})
    assert response.status_code == 503 and "time budget" in response.json["message"]
    assert response.headers["Retry-After"] == "1"


# -- d. cross-site ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/feedback", "/batch", "/questions/batch"])
def test_json_endpoints_refuse_other_content_types(server, path):
    body = json.dumps({"model": "sentiment", "query": "a fine film", "label": "Positive", "queries": ["x"]})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = requests.post(f"{server.url}{path}", data=body, headers={"Content-Type": content_type}, timeout=10)
        assert response.status_code == 415 and "application/json" in response.json()["message"]


def test_predictions_take_json_forms_and_the_url_and_refuse_other_bodies(server):
    expected = requests.get(f"{server.url}/", params={"query": "a dull film"}, timeout=10).json()
    assert requests.request("GET", f"{server.url}/", data={"query": "a dull film"}, timeout=10).json() == expected
    assert requests.post(f"{server.url}/", json={"query": "a dull film"}, timeout=10).json() == expected
    refused = requests.post(f"{server.url}/", data='{"query": "a dull film"}', headers={"Content-Type": "text/plain"},
                            timeout=10)
    assert refused.status_code == 415 and "application/json" in refused.json()["message"]


def page_token(session: requests.Session, url: str) -> str:
    page = session.get(f"{url}/ui", timeout=10)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_the_pages_forms_need_their_csrf_token(server, request):
    session, other = requests.Session(), requests.Session()
    request.addfinalizer(session.close)
    request.addfinalizer(other.close)
    token = page_token(session, server.url)
    form = {"review": "a dull , plodding film"}
    assert "result-sentiment" in session.post(f"{server.url}/ui", data={**form, "csrf_token": token}, timeout=10).text
    answer = {"model": "sentiment", "review": "a dull , plodding film", "prediction": "Negative", "verdict": "correct"}
    for attempt in (other, session):  # another site's form: no token, or one of another visitor's
        for path, data in (("/ui", form), ("/ui/feedback", answer)):
            data = {**data, "csrf_token": "forged"} if attempt is session else data
            response = attempt.post(f"{server.url}{path}", data=data, timeout=10)
            assert response.status_code == 400 and response.headers["Content-Type"].startswith("text/html")
            assert "please reload the page" in response.text
            assert "Content-Security-Policy" in response.headers
    assert not sqlite3.connect(server.database).execute(
        "SELECT count(*) FROM feedback WHERE text = 'a dull , plodding film'").fetchone()[0]


# -- e. bounded metrics ----------------------------------------------------------

def test_made_up_methods_and_paths_leave_the_metrics_small(server):
    requests.get(f"{server.url}/nope", timeout=10)
    requests.request("FOO0", f"{server.url}/", timeout=10)
    for _ in range(6):  # both workers have answered /metrics and a 405 once: their series exist
        requests.request("FOO0", f"{server.url}/", timeout=10)
        before = len(requests.get(f"{server.url}/metrics", timeout=10).content)
    for i in range(2000):
        method, path = (f"M{i}X", "/") if i % 2 else ("GET", f"/made/up/{i}")
        status, _, _ = raw(server, f"{method} {path}?query=x HTTP/1.1\r\nHost: 127.0.0.1")
        assert status in (404, 405)
    after = requests.get(f"{server.url}/metrics", timeout=10).text
    # The counts grow by a few digits, nothing more.
    assert len(after) < before + 2000 and "M1X" not in after and "/made/up" not in after
    assert 'method="other"' in after


# -- f. /ready tells whether feedback can be stored --------------------------------

def test_ready_turns_503_when_the_database_refuses_writes(server):
    assert requests.get(f"{server.url}/ready", timeout=10).status_code == 200
    answer = {"model": "sentiment", "query": "a probe of the disk", "label": "Positive"}
    triggers = {"probe_update": "BEFORE UPDATE ON health_probe", "probe_insert": "BEFORE INSERT ON health_probe",
                "feedback_insert": "BEFORE INSERT ON feedback"}
    db = sqlite3.connect(server.database, isolation_level=None)
    try:
        for name, when in triggers.items():
            db.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
        assert requests.post(f"{server.url}/feedback", json=answer, timeout=10).status_code == 503
        deadline = time.monotonic() + 5
        while (ready := requests.get(f"{server.url}/ready", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ready.status_code == 503 and "cannot be stored" in ready.json()["message"]
    finally:
        for name in triggers:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.close()
    deadline = time.monotonic() + 5
    while requests.get(f"{server.url}/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# -- g. JSON at every layer the app controls ------------------------------------------

@pytest.mark.parametrize("path", ["/", "/batch", "/feedback"])
def test_json_nested_too_deeply_is_a_400(server, path):
    body = b"[" * 1024 + b"]" * 1024  # 2 KB
    status, headers, content = raw(server, f"{JSON_POST.format(path)}\r\nContent-Length: {len(body)}", body)
    assert_json_error(status, headers, content, 400, "nested too deeply")


@pytest.mark.parametrize("path", ["/", "/batch", "/feedback"])
@pytest.mark.parametrize("body", [b"ZZ\r\n{}\r\n0\r\n\r\n", b'5\r\n{"que+garbage\r\n0\r\n\r\n', b'4\r\n{"qu'],
                         ids=["bad-size", "no-terminator", "cut-short"])
def test_a_malformed_chunked_body_is_a_400(server, path, body):
    status, headers, content = raw(server, f"{JSON_POST.format(path)}\r\nTransfer-Encoding: chunked", body,
                                   half_close=True)
    assert_json_error(status, headers, content, 400, "malformed or incomplete")


def test_a_body_shorter_than_announced_is_a_400(server):
    status, headers, content = raw(server, f"{JSON_POST.format('/batch')}\r\nContent-Length: 100", b'{"queries"',
                                   half_close=True)
    assert_json_error(status, headers, content, 400, "malformed or incomplete")


@pytest.mark.parametrize("path, size, limit", [("/", 200_000, "161,024"), ("/batch", 9_000_000, "8,388,608")])
def test_a_chunked_body_over_the_limit_is_a_413(server, path, size, limit):
    body = json.dumps({"queries": ["x" * 1000] * (size // 1000), "query": "x"}).encode()
    status, headers, content = raw(server, f"{JSON_POST.format(path)}\r\nTransfer-Encoding: chunked", chunked(body))
    assert_json_error(status, headers, content, 413, f"over {limit} bytes")


@pytest.mark.parametrize("target", ["/?query=%ED%A0%80", "/?query=%FF", "/ratings?query=ok&explain=%C3",
                                    "/%FF?query=x", "/ratings/%ED%A0%80"])
def test_invalid_utf8_in_the_url_is_a_400(server, target):
    status, headers, content = raw(server, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1")
    assert_json_error(status, headers, content, 400, "not UTF-8")


def test_valid_escapes_in_the_url_are_read_as_text(server):
    body = requests.get(f"{server.url}/?query=100%25%20%C3%A9mouvant%20%F0%9F%98%80", timeout=10)
    assert body.status_code == 200


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/ratings//batch", 404), ("POST", "/ratings//batch", 404), ("GET", "//health", 404),
    ("GET", "//", 404), ("POST", "/ui/", 404), ("GET", "/ratings/", 404), ("PUT", "//feedback", 404)])
def test_paths_with_empty_segments_are_json_never_a_redirect(server, method, path, status):
    head = f"{method} {path}?query=x HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json"
    status_got, headers, content = raw(server, f"{head}\r\nContent-Length: 2", b"{}")
    assert_json_error(status_got, headers, content, (404, 405))
    # The same target in absolute form (as a proxy sends it) is answered the same way.
    head = head.replace(f"{method} {path}", f"{method} http://evil.example{path}", 1)
    status_got, headers, content = raw(server, f"{head}\r\nContent-Length: 2", b"{}")
    assert_json_error(status_got, headers, content, (404, 405))


@pytest.mark.parametrize("target", ["http://evil.example", "http://evil.example/", "/"])
def test_an_absolute_form_target_is_read_as_its_path(server, target):
    """``GET http://host HTTP/1.1`` asks for ``/`` (it was an HTML redirect to the Host)."""
    status, headers, content = raw(server, f"GET {target}?query=a+fine+film HTTP/1.1\r\nHost: evil.example")
    assert status == 200 and headers["content-type"] == "application/json" and "location" not in headers
    status, headers, content = raw(server, f"GET {target} HTTP/1.1\r\nHost: evil.example")
    assert_json_error(status, headers, content, 400, "missing 'query'")
