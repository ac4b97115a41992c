"""Checkpoints of the learned state: a start replays only the answers after the newest one.

Round trip, refusal of altered checkpoints (a fall back, never a wrong model), a
start from a checkpoint equal to a full replay, when checkpoints are written and
how many are kept, one base version never using another's, and a real server
restarted from its checkpoint.
"""
import json
import time

import numpy as np
import pytest
import requests
from sqlalchemy import select, update

from bench.harness import LiveServer
from model import NLPModel
from sentiment_clf.feedback import checkpoints
from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.schema import checkpoints as table
from sentiment_clf.feedback.store import Storage
from sentiment_clf.serving import formats as model_files
from sentiment_clf.serving.linear_model import LinearTextModel

LABELS = ["Negative", "Positive"]
BASE_TEXTS = ["a great , moving film", "great fun", "wonderful acting", "a boring , dull mess",
              "dull and tedious", "terrible acting"]
BASE_TARGETS = ["Positive"] * 3 + ["Negative"] * 3
ANSWERS = [("great film", "Negative"), ("dull film", "Positive"), ("brand new words here", "Positive"),
           ("tedious", "Negative"), ("moving and wonderful", "Positive"), ("a mess of a film", "Negative"),
           ("fun , fun , fun", "Positive"), ("acting was dull", "Negative"), ("great great film", "Positive")]
PROBES = ["great film", "dull film", "moving but tedious", "acting", "never seen words", "brand new fun"]


def saved(texts=BASE_TEXTS, targets=BASE_TARGETS) -> tuple[LinearTextModel, dict, bytes]:
    """A toy model as the service loads one: saved, so it has a version and a checksum."""
    manifest, payload = NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5).fit(texts, targets).dumps(name="toy")
    return LinearTextModel.loads(manifest, payload), manifest, payload


@pytest.fixture()
def storage(database_url):
    return Storage(database_url)


def answer(storage, text, label):
    return storage.add_feedback(model="toy", text=text, label=label, prediction="?", model_version="v")[0]


def registry(storage, base, every=1000):
    return ModelRegistry({"toy": base}, storage, sync_interval=0, checkpoint_every=every)


def stored(storage) -> list:
    with storage.engine.connect() as conn:
        return conn.execute(select(table).order_by(table.c.feedback_upto)).all()


def same_predictions(first: LinearTextModel, second: LinearTextModel) -> None:
    np.testing.assert_array_equal(first.predict_proba(PROBES), second.predict_proba(PROBES))
    np.testing.assert_array_equal([first.predict_one(t) for t in PROBES], [second.predict_one(t) for t in PROBES])


def test_a_checkpoint_round_trips_exactly():
    base = saved()[0]
    learned = base.learn([t for t, _ in ANSWERS], [label for _, label in ANSWERS]).fold()
    manifest, payload = checkpoints.dumps("toy", base.version, learned, feedback_upto=12, learned=9,
                                          last_learned_id=11)
    assert manifest["arrays_sha256"] == model_files.checksum(payload)
    restored = checkpoints.loads(json.loads(json.dumps(manifest)), payload, base, source="test")
    assert (restored.feedback_upto, restored.learned, restored.last_learned_id) == (12, 9, 11)
    same_predictions(restored.model, learned)
    assert restored.model.explain("great film") == learned.explain("great film")
    # It keeps what learning needs, not texts: a few bytes a learned term.
    counts = restored.model.counts
    assert counts is not None and counts.folded is not None and counts.recent is None
    assert counts.folded.terms.nbytes + counts.folded.counts.nbytes == 8 * (1 + len(LABELS)) * len(
        counts.folded.terms)
    # Learning on from a checkpoint equals learning on from the state it was taken of.
    same_predictions(restored.model.learn(["dull fun"], ["Positive"]), learned.learn(["dull fun"], ["Positive"]))


def test_a_fold_changes_no_answer_and_learning_stays_exact():
    base, manifest, payload = saved()
    texts, labels = [t for t, _ in ANSWERS], [label for _, label in ANSWERS]
    two_layers = base.learn(texts[:5], labels[:5]).fold().learn(texts[5:], labels[5:])
    counts = two_layers.counts
    assert counts is not None and counts.folded is not None and counts.recent is not None
    same_predictions(two_layers.fold(), two_layers)  # the same floats before and after a fold
    fitted = NLPModel.loads(manifest, payload).partial_fit(texts, labels)
    np.testing.assert_allclose(two_layers.predict_proba(PROBES), fitted.predict_proba(PROBES), rtol=0, atol=1e-12)
    np.testing.assert_allclose([two_layers.predict_one(t) for t in PROBES], fitted.predict_proba(PROBES),
                               rtol=0, atol=1e-12)
    assert two_layers.explain("great film")["margin"] == pytest.approx(fitted.explain("great film")["margin"])


def test_a_start_from_a_checkpoint_and_later_answers_equals_a_full_replay(storage):
    base = saved()[0]
    for text, label in ANSWERS[:5]:
        answer(storage, text, label)
    first = registry(storage, base, every=5)  # learns 5 answers: writes a checkpoint
    assert [row.feedback_upto for row in stored(storage)] == [first.get("toy").last_learned_id]
    for text, label in ANSWERS[5:]:
        answer(storage, text, label)
    resumed = registry(storage, base, every=5).get("toy")
    with storage.engine.begin() as conn:
        conn.execute(table.delete())
    replayed = registry(storage, base, every=5).get("toy")
    assert (resumed.learned, resumed.last_learned_id, resumed.version) == \
           (replayed.learned, replayed.last_learned_id, replayed.version) == \
           (len(ANSWERS), replayed.last_learned_id, f"{base.version}+fb{replayed.last_learned_id}")
    same_predictions(resumed.model, replayed.model)
    # Both equal learning every answer at once, but for rounding: a fold adds what was
    # learned before it to what was learned after, not one answer at a time.
    at_once = base.learn([t for t, _ in ANSWERS], [label for _, label in ANSWERS])
    np.testing.assert_allclose(resumed.model.predict_proba(PROBES), at_once.predict_proba(PROBES), rtol=0, atol=1e-12)


def test_a_checkpoint_is_written_every_n_learned_answers_and_two_are_kept(storage):
    base = saved()[0]
    served = registry(storage, base, every=3)
    ids = []
    for text, label in ANSWERS:  # nine answers, learned one sync at a time
        ids.append(answer(storage, text, label))
        served.sync()
    assert [row.feedback_upto for row in stored(storage)] == [ids[5], ids[8]]  # the one at ids[2] dropped
    assert [json.loads(row.manifest)["learned"] for row in stored(storage)] == [6, 9]
    # Another worker at the same place finds the checkpoint written: no second one.
    other = registry(storage, base, every=3)
    assert other.get("toy").learned == 9 and len(stored(storage)) == 2
    # A writer that loses the race to the same checkpoint is told so, nothing else.
    model = other.get("toy")
    assert not checkpoints.save(storage, "toy", base.version, model.model, feedback_upto=ids[8], learned=9,
                                last_learned_id=ids[8])


def test_an_altered_checkpoint_is_refused_and_an_older_one_or_a_full_replay_used(storage, caplog):
    base = saved()[0]
    ids = [answer(storage, text, label) for text, label in ANSWERS[:3]]
    registry(storage, base, every=3)
    ids += [answer(storage, text, label) for text, label in ANSWERS[3:6]]
    registry(storage, base, every=3)
    older, newest = stored(storage)
    assert (older.feedback_upto, newest.feedback_upto) == (ids[2], ids[5])
    for text, label in ANSWERS[6:8]:  # two more: no third checkpoint
        answer(storage, text, label)
    expected = registry(storage, base, every=3).get("toy").model

    damaged = bytearray(newest.arrays)
    damaged[len(damaged) // 2] ^= 0xFF
    with storage.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == newest.id).values(arrays=bytes(damaged)))
    found = checkpoints.load_newest(storage, "toy", base.version, base)
    assert found is not None and found.feedback_upto == ids[2]
    assert "checksum mismatch" in caplog.text
    same_predictions(registry(storage, base, every=3).get("toy").model, expected)

    # A checkpoint whose checksum matches but whose content does not fit the model.
    arrays = model_files.unpack_arrays(older.arrays)
    arrays = {**arrays, "learned_terms": arrays["learned_terms"] + len(base.vocabulary)}
    payload = model_files.pack_arrays(arrays)
    manifest = {**json.loads(older.manifest), "arrays_sha256": model_files.checksum(payload)}
    with storage.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == older.id).values(arrays=payload,
                                                                         manifest=json.dumps(manifest)))
    assert checkpoints.load_newest(storage, "toy", base.version, base) is None
    assert "not distinct columns of the vocabulary" in caplog.text
    same_predictions(registry(storage, base, every=3).get("toy").model, expected)  # a full replay


def test_a_checkpoint_of_another_base_is_never_used(storage):
    base = saved()[0]
    for text, label in ANSWERS[:3]:
        answer(storage, text, label)
    registry(storage, base, every=3)
    assert len(stored(storage)) == 1
    # Another base model under the same name and version string: its checksum differs.
    other = saved(BASE_TEXTS + ["great"], BASE_TARGETS + ["Positive"])[0]
    assert checkpoints.load_newest(storage, "toy", base.version, other) is None

    # A published version starts from its own base, never from the shipped model's checkpoints.
    _, manifest, payload = saved(BASE_TEXTS + ["dull"], BASE_TARGETS + ["Negative"])
    last = answer(storage, "fresh words", "Positive")
    storage.publish("toy", manifest, payload, feedback_upto=last - 1)
    served = registry(storage, base, every=1000).get("toy")
    assert served.published == manifest["version"] and served.learned == 1
    expected = LinearTextModel.loads(manifest, payload).learn(["fresh words"], ["Positive"])
    same_predictions(served.model, expected)


def test_a_model_never_saved_gets_no_checkpoints(storage):
    base = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS).served()
    for text, label in ANSWERS[:4]:
        answer(storage, text, label)
    assert registry(storage, base, every=2).get("toy").learned == 4
    assert stored(storage) == []


def test_a_restarted_server_starts_from_its_checkpoint_and_serves_the_same_model(tmp_path, database_url):
    """Against real servers: answers learned past a checkpoint survive a restart, which
    reads the checkpoint and replays only the answers after it."""
    env = {"DATABASE_URL": database_url, "SENTIMENT_CLF_CHECKPOINT_EVERY": "5",
           "SENTIMENT_CLF_CLIENT_LEARNING_BUDGET": "100 per day",
           "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "1000 per minute"}
    probes = ["a great , moving film", "dull and tedious", "what a film"]

    def served(server) -> tuple[str, list]:
        version = {m["name"]: m["version"] for m in requests.get(f"{server.url}/models", timeout=10).json()["models"]
                   if m["variant"] == "fast"}
        answers = requests.post(f"{server.url}/batch", json={"queries": probes}, timeout=10).json()["results"]
        return version["sentiment"], [a["probabilities"] for a in answers]

    first = LiveServer(tmp_path / "first.log", workers=2, env=env)
    try:
        first.wait_ready()
        for i in range(12):
            reply = requests.post(f"{first.url}/feedback", timeout=10, json={
                "model": "sentiment", "query": f"a great , moving film number {i}", "label": "Negative"})
            assert reply.status_code == 201 and reply.json()["learned"], reply.text
        time.sleep(1)  # past the sync interval (0.5 s): both workers have learned every answer
        before = served(first)
    finally:
        first.stop()
    assert before[0].endswith("+fb12")
    assert [row.feedback_upto for row in stored(Storage(database_url)) if row.model == "sentiment"] == [5, 10]

    second = LiveServer(tmp_path / "second.log", workers=2, env=env)
    try:
        second.wait_ready()
        assert served(second) == before
    finally:
        second.stop()
    assert "started from a checkpoint of 10 learned answers" in second.log()
