"""Batch predictions, readiness and response headers."""
import json

import pytest
import requests

from conftest import make_app

TEXTS = ["that movie was boring", "a gorgeous , witty , seductive movie", "Ça me plaît 😀", "an ok film"]


def assert_same_answer(batch, single):
    """A batch is scored by scikit-learn in one call, a single text by the scorer: equal to 1e-9."""
    assert batch["prediction"] == single["prediction"]
    assert list(batch["probabilities"]) == list(single["probabilities"])
    assert batch["probabilities"] == pytest.approx(single["probabilities"], abs=1e-9)
    assert batch["confidence"] == pytest.approx(single["confidence"], abs=1e-9)
    if "fine" in single:
        assert_same_answer(batch["fine"], single["fine"])


@pytest.mark.parametrize("single, batch", [("/", "/batch"), ("/ratings", "/ratings/batch"),
                                           ("/hatespeech", "/hatespeech/batch"), ("/questions", "/questions/batch")])
def test_a_batch_answers_each_text_in_order_as_single_requests_do(client, single, batch):
    response = client.post(batch, json={"queries": TEXTS})
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == len(TEXTS)
    for result, text in zip(results, TEXTS, strict=True):
        assert_same_answer(result, client.get(single, query_string={"query": text}).json)


def test_a_batch_of_a_thousand_is_accepted_and_one_more_is_not(client):
    texts = [f"review number {i} was {'good' if i % 2 else 'dull'}" for i in range(1000)]
    response = client.post("/batch", json={"queries": texts})
    assert response.status_code == 200 and len(response.json["results"]) == 1000
    for i in (0, 1, 999):
        assert_same_answer(response.json["results"][i], client.get("/", query_string={"query": texts[i]}).json)
    too_many = client.post("/batch", json={"queries": texts + ["one more"]})
    assert too_many.status_code == 413
    assert too_many.json == {"message": "too many texts: 1001, the limit is 1000 per request"}


@pytest.mark.parametrize("body, status, fragment", [
    ({"queries": []}, 400, "at least one text"),
    ({"queries": "just a string"}, 400, "at least one text"),
    ({"query": "x"}, 400, "at least one text"),
    ({"queries": ["fine", ""]}, 400, "queries[1]: 'query' is empty"),
    ({"queries": ["fine", 3]}, 400, "queries[1]: 'query' must be a string"),
    ({"queries": ["x" * 10_001]}, 413, "queries[0]: 'query' is too long"),
])
def test_bad_batches_get_a_clear_error(client, body, status, fragment):
    response = client.post("/ratings/batch", json=body)
    assert response.status_code == status and fragment in response.json["message"]


@pytest.mark.parametrize("body, status, message", [
    ({"queries": ["fine"] * 1001, "explain": "1"}, 413, "too many texts: 1001, the limit is 1000 per request"),
    ({"queries": ["fine", 3], "explain": "1"}, 400, "'explain' must be true or false in a JSON body, not '1'"),
    ({"queries": ["fine", "", 3]}, 400, "queries[1]: 'query' is empty: send some text to classify"),
    ({"queries": None}, 400, "send a JSON body {\"queries\": [\"...\", ...]} with at least one text"),
], ids=["count-before-flag", "flag-before-texts", "first-bad-text", "null"])
def test_a_batch_reports_its_first_problem_in_reading_order(client, body, status, message):
    response = client.post("/batch", json=body)
    assert (response.status_code, response.json) == (status, {"message": message})


def test_a_batch_reads_explain_from_the_url_when_the_body_has_none(client):
    results = client.post("/batch?explain=1", json={"queries": TEXTS[:2]}).json["results"]
    assert all("explanation" in r for r in results)
    plain = client.post("/batch?explain=1", json={"queries": TEXTS[:2], "explain": False}).json["results"]
    assert not any("explanation" in r for r in plain)


def test_the_batch_limit_is_configurable(sqlite_url):
    client = make_app(sqlite_url, MAX_BATCH=3).test_client()
    assert client.post("/batch", json={"queries": ["a", "b", "c"]}).status_code == 200
    response = client.post("/batch", json={"queries": ["a", "b", "c", "d"]})
    assert (response.status_code, response.json["message"]) == (413, "too many texts: 4, the limit is 3 per request")


def test_a_batch_body_has_its_own_size_limit(sqlite_url):
    client = make_app(sqlite_url, MAX_BATCH_BYTES=2048).test_client()
    assert client.post("/batch", json={"queries": ["fine"] * 10}).status_code == 200
    big = client.post("/batch", data=json.dumps({"queries": ["x" * 500] * 10}), content_type="application/json")
    assert big.status_code == 413
    # A single prediction keeps the smaller limit of its own.
    assert client.post("/", data=json.dumps({"query": "x", "pad": "y" * 200_000}),
                       content_type="application/json").status_code == 413


def test_batch_takes_only_post(client):
    assert client.get("/batch", query_string={"query": "x"}).status_code == 405


def test_explain_in_a_batch(client):
    results = client.post("/batch", json={"queries": TEXTS[:2], "explain": True}).json["results"]
    assert all("explanation" in r for r in results)


@pytest.mark.parametrize("interval", [0, 3600])
def test_ready_when_models_and_database_answer(sqlite_url, interval):
    """/ready probes a write at most every READY_PROBE_INTERVAL seconds; in between its last result answers."""
    app = make_app(sqlite_url, READY_PROBE_INTERVAL=interval)
    client = app.test_client()
    assert client.get("/ready").json == {
        "status": "ready", "models": ["hatespeech", "questions", "questions-fine", "ratings", "sentiment"]}
    with app.extensions["sentiment_clf"].storage.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE health_probe")
    response = client.get("/ready")
    if interval:
        assert response.status_code == 200
    else:
        assert response.status_code == 503 and "database" in response.json["message"]
        assert response.headers["Retry-After"] == "1"


def test_pages_carry_security_headers_and_json_does_not_sniff(client):
    page = client.get("/ui")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    answer = client.get("/", query_string={"query": "fine"})
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in answer.headers


def test_over_http_the_server_header_names_no_version(live_server):
    response = requests.post(f"{live_server.url}/batch", json={"queries": TEXTS}, timeout=10)
    assert response.status_code == 200 and len(response.json()["results"]) == 4
    assert response.headers.get("Server", "") in ("", "gunicorn")
    assert requests.get(f"{live_server.url}/ready", timeout=10).status_code == 200


def test_one_log_line_per_request_without_the_text(client, caplog):
    caplog.set_level("INFO", logger="sentiment_clf.access")
    secret = "my very private review about a dull film"
    response = client.get("/", query_string={"query": secret}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    [record] = [r for r in caplog.records if r.name == "sentiment_clf.access"]
    entry = vars(record)
    assert entry["method"] == "GET" and entry["path"] == "/" and entry["status"] == 200
    assert entry["request_id"] == "abc-123" and entry["duration_ms"] >= 0
    assert "private" not in caplog.text
    client.post("/feedback", json={"model": "sentiment", "query": secret, "label": "Positive"})
    assert "private" not in caplog.text
    generated = client.get("/nope", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert len(generated) == 32 and " " not in generated


def metric_value(text, name, **labels):
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_add_up_every_worker(live_server):
    """2 workers: /metrics must count the requests every one of them answered."""
    from concurrent.futures import ThreadPoolExecutor

    def scrape():
        response = requests.get(f"{live_server.url}/metrics", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        return response.text

    before = scrape()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: requests.get(f"{live_server.url}/ratings",
                                                        params={"query": f"film {i}"}, timeout=10).status_code,
                                 range(60)))
    requests.get(f"{live_server.url}/ratings", timeout=10)  # one 400
    requests.get(f"{live_server.url}/no/such/path", timeout=10)
    after = scrape()
    assert statuses == [200] * 60
    name = "sentiment_clf_http_requests_total"
    assert metric_value(after, name, endpoint="/ratings", status="200") - \
        metric_value(before, name, endpoint="/ratings", status="200") == 60
    assert metric_value(after, name, endpoint="/ratings", status="400") - \
        metric_value(before, name, endpoint="/ratings", status="400") == 1
    assert metric_value(after, name, endpoint="<unmatched>", status="404") >= 1
    assert metric_value(after, "sentiment_clf_predictions_total", model="ratings") - \
        metric_value(before, "sentiment_clf_predictions_total", model="ratings") == 60
    assert metric_value(after, "sentiment_clf_http_request_duration_seconds_count", endpoint="/ratings") - \
        metric_value(before, "sentiment_clf_http_request_duration_seconds_count", endpoint="/ratings") == 61
    assert metric_value(after, "sentiment_clf_model_info", model="sentiment") == 1
    assert "my very private" not in after


def test_metrics_count_feedback(client):
    from sentiment_clf.web.metrics import FEEDBACK

    before = FEEDBACK.labels("sentiment", "Positive")._value.get()
    client.post("/feedback", json={"model": "sentiment", "query": "fine film", "label": "Positive"})
    assert FEEDBACK.labels("sentiment", "Positive")._value.get() == before + 1
    assert "sentiment_clf_feedback_total" in client.get("/metrics").text


def test_sigterm_lets_a_request_in_flight_finish(tmp_path, sqlite_url):
    """gunicorn's graceful shutdown: a worker finishes what it is answering, then stops."""
    import random
    import signal
    import threading
    import time

    from bench.harness import LiveServer

    words = "the movie was boring and long but the actors were gorgeous witty and moving".split()
    rng = random.Random(1)
    texts = [" ".join(rng.choice(words) for _ in range(300)) for _ in range(1000)]  # a few seconds of work
    # Limits raised for this test: it needs a request that takes seconds.
    server = LiveServer(tmp_path / "server.log", workers=1, env={
        "DATABASE_URL": sqlite_url, "SENTIMENT_CLF_MAX_BATCH_CHARS": "10000000",
        "SENTIMENT_CLF_MAX_EXPLAIN_CHARS": "10000000"})
    answered = {}
    try:
        server.wait_ready()
        thread = threading.Thread(target=lambda: answered.update(response=requests.post(
            f"{server.url}/batch", json={"queries": texts, "explain": True}, timeout=120)))
        thread.start()
        time.sleep(0.5)  # the batch is being answered
        server.process.send_signal(signal.SIGTERM)
        thread.join(120)
        assert server.process.wait(60) == 0
    finally:
        server.stop()
    response = answered["response"]
    assert response.status_code == 200 and len(response.json()["results"]) == 1000
    assert "Handling signal: term" in server.log()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=5)
