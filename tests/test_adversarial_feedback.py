"""Hostile clients against the real server (issue #10 c, h): what one client can teach.

Each test starts gunicorn (2 workers) on its own database, at the default learning
budget (CLIENT_LEARNING_BUDGET, "1 per day"): one client poisons with 1,000
near-duplicate answers against 50 confident SST test sentences and flips none; a
trusted key teaches at once; a new client's first answer is learned at once; the
rate limit holds across workers and both feedback routes; X-Forwarded-For counts
only from a trusted proxy; an unknown key is a 401; an Idempotency-Key reused with
another answer is a 422.
"""
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import util
from bench.harness import LiveServer
from sentiment_clf.feedback.policy import new_key
from sentiment_clf.feedback.store import Storage
from sentiment_clf.serving.linear_model import LinearTextModel

from conftest import MODELS_DIR

KEY, KEY_ENTRY = new_key("moderator")
SYNC = 0.5  # the workers' sync interval (the default), in seconds
LABELS = ("Negative", "Positive")


def start(request, tmp_path, database_url, **env):
    """gunicorn with 2 workers on ``database_url``, stopped after the test."""
    server = LiveServer(tmp_path / "server.log", workers=2, env={
        "DATABASE_URL": database_url, "SENTIMENT_CLF_SYNC_INTERVAL": str(SYNC),
        "SENTIMENT_CLF_TRUSTED_API_KEYS": KEY_ENTRY, **env})
    request.addfinalizer(server.stop)
    server.wait_ready()
    return server


def confident_sentences(sst_dir, count=50, confidence=0.9):
    """The first ``count`` SST test sentences (not neutral) the served model gives ``confidence`` or more."""
    model = LinearTextModel.load(MODELS_DIR / "sentiment")
    chosen = []
    for sentence in util.load_sst(sst_dir / "test.txt", roots_only=True).query("label != 2")["phrase"]:
        probabilities = model.predict_one(sentence)
        if probabilities.max() >= confidence:
            chosen.append((sentence, LABELS[int(probabilities.argmax())]))
        if len(chosen) == count:
            return chosen
    raise AssertionError("too few confident sentences")


def predictions(url, texts):
    """Each text's label, asked of both workers (several new connections) and checked equal."""
    seen = set()
    for _ in range(6):
        answer = requests.post(f"{url}/batch", json={"queries": texts}, timeout=30)
        assert answer.status_code == 200, answer.text
        seen.add(tuple(result["prediction"] for result in answer.json()["results"]))
    assert len(seen) == 1, "the workers disagree"
    return list(seen.pop())


def positive(url, text):
    return requests.get(f"{url}/", params={"query": text}, timeout=10).json()["probabilities"]["Positive"]


def give(url, text, label, headers=None, model="sentiment"):
    return requests.post(f"{url}/feedback", json={"model": model, "query": text, "label": label},
                         headers=headers or {}, timeout=30)


def attack(sentences):
    """1,000 distinct answers with the opposite label: 500 concentrated on the first
    sentence (numbered near-duplicates, the strongest measured), then 10 for each of
    the 50 (numbered or with one word changed)."""
    sentence, label = sentences[0]
    other = LABELS[1 - LABELS.index(label)]
    answers = [(f"{sentence} {i}", other) for i in range(1, 501)]
    for sentence, label in sentences:
        other = LABELS[1 - LABELS.index(label)]
        words = sentence.split()
        for i in range(10):
            changed = " ".join(words[:i % len(words)] + [f"x{i}"] + words[i % len(words) + 1:])
            answers.append((f"{sentence} #{i}" if i % 2 else changed, other))
    assert len(set(answers)) == 1000
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_client_with_1000_answers_flips_none_of_50_confident_sentences(tmp_path, request, sst_dir, backend):
    url = request.getfixturevalue(f"{backend}_url")
    server = start(request, tmp_path, url, SENTIMENT_CLF_FEEDBACK_RATE_LIMIT="100000 per minute")
    sentences = confident_sentences(sst_dir)
    texts = [s for s, _ in sentences]
    assert predictions(server.url, texts) == [label for _, label in sentences]

    answers = attack(sentences)
    first = give(server.url, *answers[0]).json()
    assert first["learned"] is True  # a new client's first answer is learned at once
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda answer: give(server.url, *answer), answers[1:]))
    assert {r.status_code for r in replies} == {201}
    held = [r.json() for r in replies]
    assert not any(r["learned"] for r in held)
    assert {r["reason"] for r in held} == {"this client's answers beyond its learning budget are stored but not "
                                           "learned, now or by a retrain; a trusted client's same answer is "
                                           "learned at once"}
    time.sleep(2 * SYNC)
    assert predictions(server.url, texts) == [label for _, label in sentences]  # none flipped

    rows = Storage(url).feedback_after(0)
    assert len(rows) == 1000 and sum(r.learned for r in rows) == 1
    assert {r.client for r in rows} == {rows[0].client} and rows[0].client.startswith("ip:")
    assert "127.0.0.1" not in rows[0].client

    # A spoofed X-Forwarded-For from an untrusted peer changes nothing: still the same client.
    spoofed = give(server.url, "a brand new sentence", "Positive", {"X-Forwarded-For": "198.51.100.7"}).json()
    assert spoofed["learned"] is False
    assert Storage(url).get_feedback(spoofed["id"]).client == rows[0].client

    # A trusted key teaches at once, and confirms a held answer.
    sentence, label = sentences[1]
    before = positive(server.url, sentence)
    confirmed = give(server.url, *answers[500], headers={"Authorization": f"Bearer {KEY}"}).json()
    assert confirmed["learned"] is True
    time.sleep(2 * SYNC)
    after = [positive(server.url, sentence) for _ in range(6)]
    assert len(set(after)) == 1 and after[0] != before
    assert Storage(url).get_feedback(confirmed["id"]).client == "key:moderator"


def csrf_token(session, url):
    page = session.get(f"{url}/ui", timeout=10)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_rate_limit_holds_across_workers_and_both_routes_and_trusts_only_its_proxy(tmp_path, request, backend):
    url = request.getfixturevalue(f"{backend}_url")
    server = start(request, tmp_path, url, SENTIMENT_CLF_TRUSTED_PROXIES="127.0.0.1")
    client = {"X-Forwarded-For": "203.0.113.5"}  # what the trusted proxy (127.0.0.1) says the client is
    page = requests.Session()
    request.addfinalizer(page.close)
    token = csrf_token(page, server.url)
    statuses = []
    for i in range(21):  # default: 20 per minute; /feedback on new connections, the page on its session
        if i % 2:
            reply = page.post(f"{server.url}/ui/feedback", headers=client, timeout=10, data={
                "model": "sentiment", "review": f"page answer {i}", "prediction": "Negative",
                "verdict": "incorrect", "csrf_token": token})
        else:
            reply = give(server.url, f"api answer {i}", "Positive", client)
        statuses.append(reply.status_code)
    assert statuses == [201, 200] * 10 + [429]
    assert reply.json()["message"].startswith("too many answers from this client: the limit is 20 per 1 minute")
    assert 0 < int(reply.headers["Retry-After"]) <= 60
    refused = page.post(f"{server.url}/ui/feedback", headers=client, timeout=10, data={
        "model": "sentiment", "review": "one more", "prediction": "Negative", "verdict": "correct",
        "csrf_token": token})
    assert refused.status_code == 429 and "please wait a minute" in refused.text
    assert len(Storage(url).feedback_after(0)) == 20

    # Through the trusted proxy, X-Forwarded-For names the client: another one may answer,
    # and a new client's single answer is learned at once (the page shows the change).
    text = "an utterly forgettable , bland film"
    before = positive(server.url, text)
    thanks = page.post(f"{server.url}/ui/feedback", headers={"X-Forwarded-For": "198.51.100.9"}, timeout=10, data={
        "model": "sentiment", "review": text, "prediction": "Negative", "verdict": "incorrect",
        "csrf_token": token})
    assert thanks.status_code == 200 and "has learned from it" in thanks.text
    assert give(server.url, "another new client", "Positive",
                {"X-Forwarded-For": "1.2.3.4, 198.51.100.10"}).json()["learned"] is True
    time.sleep(2 * SYNC)
    assert positive(server.url, text) > before
    # A proxy that writes the client's port too: the address still names the client.
    assert give(server.url, "a client with a port", "Positive",
                {"X-Forwarded-For": "198.51.100.11:41000"}).json()["learned"] is True
    assert give(server.url, "the same client again", "Positive",
                {"X-Forwarded-For": "198.51.100.11:52000"}).json()["learned"] is False  # its budget is spent


def test_unknown_keys_and_reused_idempotency_keys_are_refused(tmp_path, request, sqlite_url):
    server = start(request, tmp_path, sqlite_url, SENTIMENT_CLF_TRUSTED_PROXIES="127.0.0.1")
    for headers in ({"Authorization": "Bearer not-a-key"}, {"X-API-Key": KEY[:-1]}):
        refused = give(server.url, "a fine film", "Positive", headers)
        assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/json"
        assert refused.json()["message"].startswith("unknown API key")
    key = {"Idempotency-Key": "retry-7"}
    first = give(server.url, "a fine film", "Positive", key)
    again = give(server.url, "a fine film", "Positive", key)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    for text, label in (("a fine film", "Negative"), ("another film", "Positive")):
        reused = give(server.url, text, label, key)
        assert reused.status_code == 422 and "already used for another answer" in reused.json()["message"]
    assert len(Storage(sqlite_url).feedback_after(0)) == 1
    # A key is its client's own: another client with the same key (and even the same answer)
    # stores its own answer, neither confirming the first client's nor blocked by it.
    other = {**key, "X-Forwarded-For": "198.51.100.20"}
    guess = give(server.url, "a fine film", "Positive", other)
    assert guess.status_code == 201 and guess.json()["id"] != first.json()["id"]
    squat = {"Idempotency-Key": "order-1002", "X-Forwarded-For": "198.51.100.21"}
    assert give(server.url, "junk", "Negative", squat).status_code == 201
    real = give(server.url, "the real answer", "Positive", {"Idempotency-Key": "order-1002"})
    assert real.status_code == 201
    assert Storage(sqlite_url).get_feedback(real.json()["id"]).text == "the real answer"
