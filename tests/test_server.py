"""The service under gunicorn, called over real HTTP the ways front ends call it."""
import json
import shutil
import subprocess

import pytest
import requests

from conftest import need, venv_tool

QUERY = "that movie was boring"


@pytest.fixture(scope="module")
def expected(live_server):
    response = requests.get(f"{live_server.url}/", params={"query": QUERY}, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_requests_get_with_params(live_server, expected):
    # The tutorial's first way, word for word but for the port.
    response = requests.get(f"{live_server.url}/", params={"query": QUERY}, timeout=10)
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == expected
    assert expected["prediction"] == "Negative"
    assert expected["confidence"] == expected["probabilities"]["Negative"] > 0.5


def test_curl_with_a_form_body_on_get(live_server, expected):
    curl = shutil.which("curl")
    need(curl, "curl is not installed")
    result = subprocess.run([curl, "-sS", "-X", "GET", f"{live_server.url}/", "-d", f"query={QUERY}"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == expected


def test_httpie_with_a_query_parameter(live_server, expected):
    http = venv_tool("http")
    need(http, "HTTPie is not installed (requirements-test.txt)")
    # --ignore-stdin: with no terminal HTTPie would otherwise read a body from stdin.
    result = subprocess.run([http, "--ignore-stdin", "--body", f"{live_server.url}/", f"query=={QUERY}"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == expected


def test_httpie_with_a_json_body(live_server, expected):
    http = venv_tool("http")
    need(http, "HTTPie is not installed (requirements-test.txt)")
    result = subprocess.run([http, "--ignore-stdin", "--body", "POST", f"{live_server.url}/", f"query={QUERY}"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == expected


def test_post_json_to_ratings(live_server):
    response = requests.post(f"{live_server.url}/ratings", json={"query": "a masterpiece , dazzling"},
                             timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert list(body["probabilities"]) == ["negative", "somewhat negative", "neutral",
                                           "somewhat positive", "positive"]
    assert body["prediction"] in ("somewhat positive", "positive")


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/", {}, 400),
    ("GET", "/", {"params": {"query": "   "}}, 400),
    ("GET", "/", {"params": {"query": "é" * 10_001}}, 413),  # a 110 kB URL reaches the app
    ("POST", "/", {"data": "{oops", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/", {"data": "x" * 300_000, "headers": {"Content-Type": "application/json"}}, 413),
    ("GET", "/does-not-exist", {}, 404),
    ("PATCH", "/ratings", {}, 405),
])
def test_errors_over_http_are_json(live_server, method, path, kwargs, status):
    response = requests.request(method, f"{live_server.url}{path}", timeout=10, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"message"}
    assert "<html" not in response.text.lower() and "Traceback" not in response.text


def test_health_and_binding(live_server):
    body = requests.get(f"{live_server.url}/health", timeout=10).json()
    assert body["status"] == "ok"
    assert set(body["models"]) == {"sentiment", "ratings", "hatespeech", "questions", "questions-fine"}
    # The README's command binds loopback only, with the workers asked for.
    log = live_server.log()
    assert f"Listening at: http://127.0.0.1:{live_server.port}" in log
    assert log.count("Booting worker") == 2


@pytest.mark.parametrize("path, query, expected", [
    ("/hatespeech", "RT @user: these hoes aint loyal", "offensive language"),
    ("/questions", "Where is the Eiffel Tower ?", "location"),
])
def test_the_other_models_over_http(live_server, path, query, expected):
    response = requests.get(f"{live_server.url}{path}", params={"query": query, "explain": 1}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == expected and body["explanation"]["toward"]
    bad = requests.post(f"{live_server.url}{path}", json={"query": ""}, timeout=10)
    assert bad.status_code == 400 and bad.json() == {"message": "'query' is empty: send some text to classify"}
