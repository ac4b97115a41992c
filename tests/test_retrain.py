"""build_model.py retrain / rollback against a running server: versions switch, no request fails."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import requests

import build_model
from bench.harness import LiveServer
from model import NLPModel
from sentiment_clf.feedback.policy import new_key
from sentiment_clf.feedback.store import Storage

from conftest import ROOT

TEXT = "that movie was boring"
KEY, KEY_ENTRY = new_key("retrain-test")


def cli(*args, database_url, data_dir, **settings):
    env = {**os.environ, "DATABASE_URL": database_url, "SENTIMENT_CLF_DATA_DIR": str(data_dir), **settings}
    return subprocess.run([sys.executable, "sentiment-clf/build_model.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def served_version(url, name="sentiment"):
    models = requests.get(f"{url}/models", timeout=10).json()["models"]
    return next(m["version"] for m in models if m["name"] == name)


def wait_for_version(url, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(served_version(url) == wanted for _ in range(6)):
            return True
        time.sleep(0.1)
    return False


def test_retrain_publishes_and_rollback_returns_without_failing_a_request(tmp_path, sqlite_url, small_sst):
    server = LiveServer(tmp_path / "server.log", workers=2, env={
        "DATABASE_URL": sqlite_url, "SENTIMENT_CLF_CLIENT_LEARNING_BUDGET": "3 per day",
        "SENTIMENT_CLF_TRUSTED_API_KEYS": KEY_ENTRY})
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                statuses.append(requests.get(f"{server.url}/", params={"query": TEXT}, timeout=10).status_code)
            except requests.RequestException as exc:
                statuses.append(type(exc).__name__)

    try:
        server.wait_ready()
        # Answers the steering check lets through: it is retrained on a tiny slice, which
        # would turn around what the shipped model is sure of (that check's own tests are below).
        for text, label in [(TEXT, "Negative"), ("a gorgeous mess", "Positive"), ("zzyzx", "Positive")]:
            assert requests.post(f"{server.url}/feedback", timeout=10, json={
                "model": "sentiment", "query": text, "label": label}).status_code == 201
        time.sleep(0.6)
        online_version = served_version(server.url)
        assert online_version.endswith("+fb3")
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()

        # Trained on a small slice, the new version is worse: published all the same.
        done = cli("retrain", "--model", "sentiment", "--data-dir", str(small_sst), "--tolerance", "1",
                   database_url=sqlite_url, data_dir=tmp_path, SENTIMENT_CLF_CLIENT_LEARNING_BUDGET="3 per day")
        assert done.returncode == 0, done.stderr
        published = Storage(sqlite_url).active_versions()["sentiment"]
        assert f"published as version {published}" in done.stdout
        assert wait_for_version(server.url, published)
        stored = Storage(sqlite_url).load_version("sentiment", published)
        assert stored.feedback_upto == 3 and stored.manifest["training_data"]["feedback_learned"] == 3
        retrained = NLPModel.loads(stored.manifest, stored.arrays)
        answer = requests.get(f"{server.url}/", params={"query": TEXT}, timeout=10).json()
        assert np.isclose(answer["probabilities"]["Positive"], retrained.predict_proba([TEXT])[0, 1],
                          rtol=0, atol=1e-12)
        assert (tmp_path / "reports" / "sentiment" / published / "metrics.json").exists()
        listed = {m["name"]: m for m in requests.get(f"{server.url}/models", timeout=10).json()["models"]
                  if m["variant"] == "fast"}
        assert listed["sentiment"]["training_data"]["feedback_learned"] == 3

        # Feedback after the retrain is learned on top of the new version (a trusted client's:
        # the anonymous one has spent its budget of 3).
        assert requests.post(f"{server.url}/feedback", timeout=10, json={
            "model": "sentiment", "query": "fine", "label": "Negative"}).json()["learned"] is False
        assert requests.post(f"{server.url}/feedback", timeout=10, headers={"X-API-Key": KEY}, json={
            "model": "sentiment", "query": "fine", "label": "Negative"}).json()["learned"] is True
        assert wait_for_version(server.url, f"{published}+fb5")

        back = cli("rollback", "--model", "sentiment", database_url=sqlite_url, data_dir=tmp_path)
        assert back.returncode == 0 and "base model" in back.stdout
        assert wait_for_version(server.url, online_version.replace("+fb3", "+fb5"))
        listed = cli("versions", "--model", "sentiment", database_url=sqlite_url, data_dir=tmp_path)
        assert published in listed.stdout and "* base model" in listed.stdout
    finally:
        stop.set()
        for t in threads if "threads" in dir() else []:
            t.join()
        server.stop()
    assert len(statuses) > 50
    assert set(statuses) == {200}, {s for s in statuses if s != 200}


def test_a_retrained_model_worse_than_the_serving_one_is_not_published(sqlite_url, small_sst, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    Storage(sqlite_url).add_feedback(model="ratings", text="fine", label="neutral", prediction="?", model_version="v")
    # A negative tolerance asks for a gain of 50 points: no retrain can give that.
    assert build_model.main(["retrain", "--model", "ratings", "--data-dir", str(small_sst),
                             "--database-url", sqlite_url, "--tolerance", "-0.5"]) == 3
    assert Storage(sqlite_url).active_versions() == {}


def test_rollback_with_nothing_to_roll_back(sqlite_url, capsys):
    assert build_model.main(["rollback", "--model", "sentiment", "--database-url", sqlite_url]) == 1
    assert "nothing to roll back" in capsys.readouterr().out


def test_a_held_out_model_is_retrained_with_its_answers(sqlite_url, sst_dir, tmp_path, monkeypatch):
    """hatespeech learns answers only by retraining: on its 80%, checked on its held-out 20%."""
    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    storage = Storage(sqlite_url)
    storage.add_feedback(model="questions", text="Which city hosts the Louvre ?", label="location",
                         prediction="?", model_version="v")
    assert build_model.main(["retrain", "--model", "questions", "--data-dir", str(sst_dir),
                             "--database-url", sqlite_url]) == 0
    published = storage.active_versions()["questions"]
    stored = storage.load_version("questions", published)
    assert stored.manifest["training_data"]["feedback_learned"] == 1
    assert stored.manifest["params"]["classifier"] == "svm"
    assert stored.manifest["metrics"]["test_texts"] == 1091


def test_a_retrain_counts_a_clients_answers_only_within_its_budget(sqlite_url, small_sst, tmp_path, monkeypatch):
    """A retrain learns what each client's learning budget lets it teach, as online learning
    does: answers held beyond it are left out (a trusted key's all count), each distinct
    answer once."""
    from sentiment_clf.feedback.policy import LearningPolicy

    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    storage = Storage(sqlite_url)
    policy = LearningPolicy.parse("100 per minute", "1 per day")
    for text in ["a fine film", "a dull film", "A  dull film", "a dull film 2"]:
        storage.add_feedback(model="sentiment", text=text, label="Positive", prediction="?", model_version="v",
                             client="ip:a", policy=policy)
    for text in ["a bold film", "a bold film", "a cold film"]:
        storage.add_feedback(model="sentiment", text=text, label="Negative", prediction="?", model_version="v",
                             client="key:ops", trusted=True, policy=policy)
    assert [r.learned for r in storage.feedback_after(0)] == [True, False, False, False, True, False, True]
    assert build_model.main(["retrain", "--model", "sentiment", "--data-dir", str(small_sst),
                             "--database-url", sqlite_url, "--tolerance", "1"]) == 0
    stored = storage.load_version("sentiment", storage.active_versions()["sentiment"])
    data = stored.manifest["training_data"]
    assert (data["feedback_learned"], data["answers_left_out_over_budget"], stored.feedback_upto) == (3, 3, 7)
    assert data["clients"] == [{"client": "key:ops", "answers_counted": 2, "answers_left_out": 0},
                               {"client": "ip:a", "answers_counted": 1, "answers_left_out": 3}]
    again = storage.add_feedback(model="sentiment", text="a bold film", label="Negative", prediction="?",
                                 model_version="v", client="key:ops", trusted=True, policy=policy)
    assert again.reason == "duplicate"  # folded into the serving version


def test_a_family_of_untrusted_answers_cannot_turn_a_confident_prediction_around(sqlite_url, sst_dir, tmp_path,
                                                                                monkeypatch, capsys):
    """40 clients, one answer each (within every budget), all saying "Who wrote Hamlet ? N"
    asks for a location: the candidate would answer location where the serving model says
    human with 0.996. Refused and reported, nothing published; the same answers from a
    trusted key are a correction, published."""
    from sentiment_clf.feedback.policy import LearningPolicy

    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    storage = Storage(sqlite_url)
    policy = LearningPolicy.parse("100 per minute", "1 per day")
    for i in range(40):
        storage.add_feedback(model="questions", text=f"Who wrote Hamlet ? {i}", label="location", prediction="?",
                             model_version="v", client=f"ip:{i:04d}", policy=policy, online=False)
    assert build_model.main(["retrain", "--model", "questions", "--data-dir", str(sst_dir),
                             "--database-url", sqlite_url]) == 3
    said = capsys.readouterr().out
    assert "NOT published: it would turn confident predictions around" in said
    assert "family 'hamlet who wrote': 40 answers from 40 clients asking location; serving human" in said
    assert storage.active_versions() == {}
    for i in range(40):
        storage.add_feedback(model="questions", text=f"Who wrote Hamlet ? {i}", label="location", prediction="?",
                             model_version="v", client="key:ops", trusted=True, policy=policy, online=False)
    assert build_model.main(["retrain", "--model", "questions", "--data-dir", str(sst_dir),
                             "--database-url", sqlite_url]) == 0
    assert "questions" in storage.active_versions()


def test_held_answers_from_ten_addresses_do_not_steer_the_sentiment_retrain(sqlite_url, sst_dir, tmp_path,
                                                                            monkeypatch, capsys):
    """The case that steered it: 200 answers "a gorgeous , witty , seductive movie N" =
    Negative from 10 addresses, 20 each, within the rate limit; online learning held 190
    of them. The retrain counts each address's answers within its budget (1 a day): 10,
    the ones learned online, which left the phrase Positive (0.74); refitted they would
    make it Negative, further than the budget let them move it: refused. (It went from
    Positive 0.9995 to Negative 0.99999 when the retrain counted all 200.)"""
    from sentiment_clf.feedback.policy import LearningPolicy
    from sentiment_clf.serving.linear_model import LinearTextModel

    from conftest import MODELS_DIR

    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    storage = Storage(sqlite_url)
    policy = LearningPolicy.parse("20 per minute", "1 per day")
    for address in range(10):
        for i in range(20):
            storage.add_feedback(model="sentiment", text=f"a gorgeous , witty , seductive movie {address * 20 + i}",
                                 label="Negative", prediction="Positive", model_version="v",
                                 client=f"ip:{address:04d}", policy=policy)
    assert sum(row.learned for row in storage.feedback_after(0)) == 10
    phrase = "a gorgeous , witty , seductive movie"
    base = LinearTextModel.load(MODELS_DIR / "sentiment")
    assert base.predict_proba([phrase])[0, 1] > 0.99
    assert build_model.main(["retrain", "--model", "sentiment", "--data-dir", str(sst_dir),
                             "--database-url", sqlite_url]) == 3
    said = capsys.readouterr().out
    assert "retrained with 10 answers" in said and "190 answers over their client's budget left out" in said
    assert "family 'a gorgeous movie seductive witty': 10 answers from 10 clients asking Negative" in said
    assert storage.active_versions() == {}
