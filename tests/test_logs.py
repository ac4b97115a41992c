"""Logs a machine can read: every line a real server writes, from gunicorn's master and
workers, the app and the access log, is one JSON object with a timestamp and a level,
the access lines carry their request id, and no line holds a query's text."""
import json
import socket
from datetime import datetime

import requests

from bench.harness import LiveServer

SECRET = "my private review of a dull film"


def test_every_line_a_server_writes_is_json_with_no_query_text(tmp_path):
    server = LiveServer(tmp_path / "server.log", workers=2,
                        env={"SENTIMENT_CLF_DATA_DIR": str(tmp_path), "SENTIMENT_CLF_LOG_LEVEL": "INFO"})
    try:
        server.wait_ready()
        assert requests.get(server.url, params={"query": SECRET}, headers={"X-Request-ID": "req-1"},
                            timeout=10).status_code == 200
        assert requests.get(server.url, params={"query": ""}, timeout=10).status_code == 400
        assert requests.post(f"{server.url}/feedback", json={"model": "sentiment", "query": SECRET,
                                                             "label": "Negative"}, timeout=10).status_code == 201
        assert requests.get(f"{server.url}/nope", params={"query": SECRET}, timeout=10).status_code == 404
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:  # a malformed request
            raw.sendall(f"GET /?query={SECRET} HTTP/1.1 extra\r\n\r\n".encode())
            raw.recv(1024)
    finally:
        server.stop()
    lines = server.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line, or this fails
    assert len(entries) > 20
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
        assert datetime.fromisoformat(entry["timestamp"]).tzinfo is not None
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    assert not [line for line in lines if "private review" in line]
    access = [e for e in entries if e["logger"] == "sentiment_clf.access"]
    assert [(e["method"], e["path"], e["status"]) for e in access if e["path"] != "/health"] == [
        ("GET", "/", 200), ("GET", "/", 400), ("POST", "/feedback", 201), ("GET", "/nope", 404)]
    assert all(e["request_id"] for e in access) and access[-4]["request_id"] == "req-1"
    loggers = {e["logger"] for e in entries}
    assert {"gunicorn.error", "sentiment_clf.access", "sentiment_clf.serving.loading"} <= loggers
    assert any(e["level"] == "WARNING" and "Invalid request" in e["message"] for e in entries)
    assert any(e["message"] == "Shutting down: Master" for e in entries)
