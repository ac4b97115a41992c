"""The database misbehaving under a real server (gunicorn, 2 gevent workers): a hung or
stopped PostgreSQL, a SQLite file read-only for a moment, another process holding
SQLite's write lock. No prediction or health check waits on the database; feedback,
/ready and /models answer a JSON 503 within the database timeout; within 5 s of the
fault ending the service stores again, and nothing acknowledged is lost."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.harness import Forwarder, LiveServer, gunicorn_command

from conftest import need

TIMEOUT = 2.0  # DATABASE_TIMEOUT for these servers: the bound on a call to a silent database
SLACK = 1.5  # what a 503 may take beyond it (the request's own work, two workers on 2 cores)


def start(tmp_path, database_url: str, **env) -> LiveServer:
    need(gunicorn_command(), "gunicorn is not installed")
    server = LiveServer(tmp_path / "server.log", env={
        "SENTIMENT_CLF_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url,
        "SENTIMENT_CLF_DATABASE_TIMEOUT": str(TIMEOUT), "SENTIMENT_CLF_READY_PROBE_INTERVAL": "0",
        "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "1000 per second", **{k: str(v) for k, v in env.items()}})
    server.wait_ready()
    return server


def timed(method: str, url: str, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def answer(i: int) -> dict:
    return {"model": "sentiment", "query": f"a fault test answer number {i}", "label": "Positive"}


def assert_json_503(response: requests.Response, fragment: str = "") -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["message"]


def wait_until_stored(server: LiveServer, i: int, limit: float = 5.0) -> float:
    """Seconds until feedback is stored again (a 201), at most ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if requests.post(f"{server.url}/feedback", json=answer(i), timeout=30).status_code == 201:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"feedback was not stored again within {limit} s of the fault ending")


@pytest.fixture()
def behind_forwarder(tmp_path, postgresql_url):
    """A server on PostgreSQL reached through a forwarder the test can hang or cut."""
    forwarder = Forwarder(make_url(postgresql_url).port or 5432)
    server = start(tmp_path, make_url(postgresql_url).set(port=forwarder.port).render_as_string(hide_password=False))
    engine = create_engine(postgresql_url)
    try:
        yield server, forwarder, engine
    finally:
        forwarder.close()
        server.stop()
        engine.dispose()
    assert '"status": 500' not in server.log() and "WORKER TIMEOUT" not in server.log()


def stored_ids(engine) -> set[int]:
    with engine.connect() as conn:
        return {row.id for row in conn.execute(text("SELECT id FROM feedback"))}


@pytest.mark.parametrize("fault", ["hang", "cut"])
def test_a_hung_or_stopped_postgresql_stalls_no_prediction_and_503s_in_bounded_time(behind_forwarder, fault):
    server, forwarder, engine = behind_forwarder
    acknowledged = [requests.post(f"{server.url}/feedback", json=answer(i), timeout=30).json()["id"]
                    for i in range(3)]
    # A text PostgreSQL cannot store is the client's 400, not a 503 to retry for ever.
    nul = requests.post(f"{server.url}/feedback", json={**answer(4), "query": "a\x00b"}, timeout=30)
    assert nul.status_code == 400 and "NUL character" in nul.json()["message"]
    getattr(forwarder, fault)()
    time.sleep(0.3)  # the workers' background syncs now wait on it
    for _ in range(10):
        response, seconds = timed("GET", f"{server.url}/", params={"query": "a good film"})
        assert response.status_code == 200 and seconds < 0.5, seconds
    response, seconds = timed("GET", f"{server.url}/health")
    assert response.status_code == 200 and seconds < 0.5, seconds
    for method, path, body, fragment in (("POST", "/feedback", answer(99), "could not be stored"),
                                         ("GET", "/ready", None, "not ready"),
                                         ("GET", "/models", None, "database")):
        response, seconds = timed(method, f"{server.url}{path}", json=body)
        assert_json_503(response, fragment)
        assert seconds < TIMEOUT + SLACK, (path, seconds)
    forwarder.resume()
    assert wait_until_stored(server, 100) < 5
    assert requests.get(f"{server.url}/ready", timeout=30).status_code == 200
    assert requests.get(f"{server.url}/models", timeout=30).status_code == 200
    assert set(acknowledged) <= stored_ids(engine)


def test_a_sqlite_file_read_only_for_a_moment_is_written_again_without_a_restart(tmp_path):
    need(shutil.which("chattr"), "chattr is not installed")
    database = tmp_path / "feedback.sqlite"
    server = start(tmp_path, f"sqlite:///{database}")
    try:
        acknowledged = [requests.post(f"{server.url}/feedback", json=answer(i), timeout=30).json()["id"]
                        for i in range(3)]
        # The database and its write-ahead log (not the shared-memory index, which SQLite
        # maps into memory: a write to an immutable mapped file is a SIGBUS, not an error).
        files = [str(database), f"{database}-wal"]
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            # Several at once: the workers open new connections meanwhile, which SQLite opens
            # read-only (it says so only when one writes).
            refused: list[requests.Response] = []
            burst = [threading.Thread(target=lambda i=i: refused.append(
                requests.post(f"{server.url}/feedback", json=answer(10 + i), timeout=30))) for i in range(12)]
            for thread in burst:
                thread.start()
            for thread in burst:
                thread.join()
            for response in refused:
                assert_json_503(response, "could not be stored")
            assert requests.get(f"{server.url}/", params={"query": "fine"}, timeout=5).status_code == 200
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        assert wait_until_stored(server, 20) < 5
        # From then on every answer is stored and /ready says so: no connection stays read-only.
        for i in range(30):
            response = requests.post(f"{server.url}/feedback", json=answer(30 + i), timeout=30)
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["id"])
            assert requests.get(f"{server.url}/ready", timeout=30).status_code == 200
    finally:
        server.stop()
    with sqlite3.connect(database) as db:
        assert set(acknowledged) <= {row[0] for row in db.execute("SELECT id FROM feedback")}


def test_another_process_holding_sqlites_write_lock_stalls_only_the_writes(tmp_path):
    database = tmp_path / "feedback.sqlite"
    server = start(tmp_path, f"sqlite:///{database}", SENTIMENT_CLF_WORKERS=1)
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        assert requests.get(f"{server.url}/", params={"query": "warm"}, timeout=5).status_code == 200
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held
        slow: list[float] = []
        stored: list[int] = []

        def write() -> None:
            stored.append(requests.post(f"{server.url}/feedback", json=answer(1), timeout=30).status_code)

        writer = threading.Thread(target=write)
        writer.start()
        started = time.monotonic()
        while time.monotonic() - started < 4:
            response, seconds = timed("GET", f"{server.url}/", params={"query": "a good film"})
            assert response.status_code == 200
            slow.append(seconds)
            time.sleep(0.05)
        writer.join()
        assert max(slow) < 0.5, sorted(slow)[-5:]
        assert stored == [503]  # it waited the timeout for the lock, then said so
        holder.execute("ROLLBACK")
        assert wait_until_stored(server, 2) < 5
    finally:
        holder.close()
        server.stop()


def test_no_log_line_holds_a_query_an_answer_or_a_key(tmp_path):
    """At DEBUG, from the app and from gunicorn: answers stored, refused by the database,
    retried with their Idempotency-Key, and malformed requests carrying a query."""
    import socket

    database = tmp_path / "feedback.sqlite"
    server = start(tmp_path, f"sqlite:///{database}", SENTIMENT_CLF_LOG_LEVEL="DEBUG")
    secret, key = "zanzibar quokka seventy", "order-quokka-4242"
    try:
        requests.get(f"{server.url}/", params={"query": secret, "explain": 1}, timeout=10)
        feedback = {"model": "sentiment", "query": secret, "label": "Positive"}
        headers = {"Idempotency-Key": key}
        assert requests.post(f"{server.url}/feedback", json=feedback, headers=headers, timeout=10).status_code == 201
        assert requests.post(f"{server.url}/feedback", json={**feedback, "label": "Negative"}, headers=headers,
                             timeout=10).status_code == 422
        db = sqlite3.connect(database, isolation_level=None)
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON feedback BEGIN SELECT RAISE(FAIL, 'disk full'); END")
        assert requests.post(f"{server.url}/feedback", json={**feedback, "query": secret + " again"},
                             headers={"Idempotency-Key": key + "-2"}, timeout=10).status_code == 503
        db.execute("DROP TRIGGER refuse")
        db.close()
        query = secret.replace(" ", "+")
        for line in (f"GET /?query={query}\x00 HTTP/1.1", f"GET /?query={query} HTTP/9.9",
                     "GET / HTTP/1.1\r\nX-Note: " + secret + "\x7f"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(line.encode("latin-1") + b"\r\nHost: x\r\n\r\n")
                assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    finally:
        server.stop()
    log = server.log()
    assert "could not store feedback" in log and "Invalid request from ip=" in log  # the events are logged
    for word in ("zanzibar", "quokka", "4242"):
        assert word not in log, [line for line in log.splitlines() if word in line][:3]
