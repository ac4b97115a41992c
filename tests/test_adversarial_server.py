"""Hostile clients against the real gunicorn server: slow and idle connections, malformed HTTP.

Timings here are generous on purpose (a shared, noisy machine): they check that the
server answers and closes what it should, not how fast; bench/slow_clients.py
measures the speed.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bench.harness import AnswerCounter, LiveServer, gunicorn_command, seconds_until_closed

from conftest import need

SLOW_HEAD = b"GET /?query=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 10_000


def start(folder, workers: int = 2, **env) -> LiveServer:
    need(gunicorn_command(), "gunicorn is not installed")
    server = LiveServer(folder / "server.log", workers=workers, env={"SENTIMENT_CLF_DATA_DIR": str(folder), **env})
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """The server at its defaults but for a keep-alive of 1 s."""
    started = start(tmp_path_factory.mktemp("adversarial"), SENTIMENT_CLF_KEEPALIVE="1")
    yield started
    started.stop()
    assert "Traceback" not in started.log()


class SlowClients:
    """``idle`` connections that send nothing and ``slowloris`` ones that send a request
    head a byte every ``interval`` seconds, from a thread, until stopped."""

    def __init__(self, port: int, idle: int, slowloris: int, interval: float = 0.2):
        self.idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(idle)]
        self.slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(slowloris)]
        self.sent = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._dribble)
        self._thread.start()

    def _dribble(self) -> None:
        while not self._stop.wait(self._interval):
            for sock in self.slow:
                try:
                    sock.send(SLOW_HEAD[self.sent:self.sent + 1])
                except OSError:
                    self.closed_by_server += 1
            self.sent += 1

    def still_open(self) -> int:
        """Connections the server has not closed (no end of stream waiting on them)."""
        count = 0
        for sock in self.idle + self.slow:
            sock.setblocking(False)
            try:
                count += sock.recv(1) != b""
            except BlockingIOError:
                count += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.idle + self.slow:
            sock.close()


def test_health_and_predictions_answer_while_128_slow_connections_are_open(tmp_path):
    # The default keep-alive (5 s), so the slow connections stay open throughout.
    server = start(tmp_path)
    slow = SlowClients(server.port, idle=64, slowloris=64)
    try:
        time.sleep(0.5)  # every connection accepted, the slowloris ones mid-head
        with requests.Session() as session:
            for _ in range(5):
                assert session.get(f"{server.url}/health", timeout=5).status_code == 200
                answer = session.get(f"{server.url}/", params={"query": "a gorgeous , witty , seductive movie"},
                                     timeout=5)
                assert answer.status_code == 200
                assert answer.json()["prediction"] == "Positive"
        # The server held them all while it answered: none had been closed.
        assert slow.still_open() == 128
        assert slow.closed_by_server == 0
    finally:
        slow.close()
        server.stop()
    assert "Traceback" not in server.log()


def test_a_client_pipelining_requests_does_not_hold_up_the_other_connections(tmp_path):
    # One worker, so both connections are its. A sends 2,000 predictions in one go; a
    # gevent greenlet whose next request is already buffered does not yield on its own,
    # so without gunicorn.conf.py's post_request the health check waited for all 2,000.
    pipelined = 2000
    server = start(tmp_path, workers=1)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as a:
            answers = AnswerCounter(a, pipelined)
            request = b"GET /?query=fine HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            sender = threading.Thread(target=a.sendall, args=(request * pipelined,))
            sender.start()
            answers.wait_for_first()  # the worker is in A's requests
            health = requests.get(f"{server.url}/health", timeout=60)
            answered_before_health = answers.answered
            sender.join(60)
            answered = answers.join(60)
        assert health.status_code == 200
        assert answered == pipelined  # every pipelined request was answered, in the end
        assert 0 < answered_before_health < pipelined // 2, answered_before_health
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_connection_that_sends_nothing_is_closed_after_the_keepalive(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert 0.5 < seconds_until_closed(sock) < 5


def test_a_request_head_dribbled_byte_by_byte_is_cut_after_the_keepalive(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert 0.5 < seconds_until_closed(sock, dribble=SLOW_HEAD) < 5


def test_a_kept_alive_connection_serves_several_requests_then_is_closed_when_idle(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.connect()
        first = conn.sock
        for query in ("that movie was boring", "a gorgeous , witty , seductive movie", "a dull film"):
            conn.request("GET", "/?query=" + query.replace(" ", "%20"))
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type") == "application/json"
            response.read()
            assert not response.will_close
        assert conn.sock is first  # one connection served all three
        assert 0.5 < seconds_until_closed(first) < 5
    finally:
        conn.close()


# gunicorn.conf.py's cap on a request line at the default MAX_QUERY_CHARS (10,000).
REQUEST_LINE_CAP = 12 * 10_000 + 8192


# What gunicorn itself answers before the app sees the request: (raw request, status).
MALFORMED = {
    "garbage request line": (b"\x16\x03\x01garbage\r\n\r\n", 400),
    "request line without a version": (b"GET /\r\n\r\n", 400),
    "invalid method": (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "unknown HTTP version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "NUL in the request line": (b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "header line without a colon": (b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400),
    "space in a header name": (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    "control character in a header value": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "obsolete line folding": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "header over 8190 bytes": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "101 headers": (b"GET /health HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431),
    # exactly one byte over the cap, so the server has read all of it when it answers
    # (unread bytes would make its close a reset, which can swallow the answer)
    "request line over the cap": (b"GET /?query=" + b"a" * (REQUEST_LINE_CAP - 9), 414),
    "Content-Length not a number": (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    "two Content-Lengths": (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                            b"Content-Length: 4\r\n\r\nabcd", 400),
    "Content-Length and chunked": (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "unknown Transfer-Encoding": (b"POST /feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
}


def exchange(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, bool]:
    """Send ``request``; return what came back and whether the server then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:  # the server answered and closed before reading it all
            pass
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_http_gets_gunicorns_error_page_at_once_and_the_connection_closed(server, case):
    request, status = MALFORMED[case]
    started = time.monotonic()
    received, closed = exchange(server.port, request)
    assert closed and time.monotonic() - started < 5  # never waits for the keep-alive to run out
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status), received[:300]
    assert b"Content-Type: text/html" in lines and b"Connection: close" in lines
    assert body.startswith(b"<html>") and b"Traceback" not in body and b'File "' not in body
    # and the server is none the worse for it
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_a_long_query_under_the_cap_reaches_the_app_and_gets_its_json_413(server):
    received, _ = exchange(server.port, b"GET /?query=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Content-Type: application/json" in head.split(b"\r\n")
    assert b"the limit is 10000" in body


def test_a_huge_request_line_is_refused_without_holding_the_worker(server):
    # Without the cap, gunicorn's parser rescans the buffer after every 8 KiB: 64 MiB
    # held a worker's CPU until the worker timeout killed it.
    def flood():
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /?query=" + b"a" * 64 * 2**20)
            except OSError:  # refused and closed: what should happen
                pass

    flooders = [threading.Thread(target=flood) for _ in range(2)]
    for thread in flooders:
        thread.start()
    try:
        for _ in range(5):
            assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        for thread in flooders:
            thread.join(30)
    assert not any(thread.is_alive() for thread in flooders)
