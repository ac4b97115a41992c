"""Learning from feedback: the invariant, the flood rule, the per-client budget, versions and rollback."""
import numpy as np
import pytest

import util
from model import NLPModel
from sentiment_clf.feedback.admission import learn_key as feedback_key
from sentiment_clf.feedback.online import ModelRegistry, learnable
from sentiment_clf.feedback.store import Storage

from conftest import MODELS_DIR

LABELS = ["Negative", "Positive"]
BASE_TEXTS = ["a great , moving film", "great fun", "wonderful acting", "a boring , dull mess",
              "dull and tedious", "terrible acting"]
BASE_TARGETS = ["Positive"] * 3 + ["Negative"] * 3
PROBES = ["great film", "dull film", "moving but tedious", "acting", "never seen words"]


@pytest.fixture()
def storage(sqlite_url):
    return Storage(sqlite_url)


def answer(storage, text, label, model="toy"):
    return storage.add_feedback(model=model, text=text, label=label, prediction="?", model_version="v")[0]


def refit_with_same_vectorizer(base: NLPModel, texts, targets, extra_rows):
    """What the invariant compares with: one fit on base data + learned feedback."""
    all_texts = list(texts) + [r.text for r in extra_rows]
    all_targets = list(targets) + [r.label for r in extra_rows]
    params = base.settings()
    refit = NLPModel(base.labels, **params).fit_from_features(
        base.vectorizer_, base.vectorizer_.transform(all_texts), all_targets)
    refit.temperature_ = base.temperature_  # the calibration is the base's, as retrain.py keeps it
    return refit


def test_feedback_key_ignores_case_and_spacing():
    assert feedback_key("toy", "It's  GREAT", "Positive") == feedback_key("toy", "it 's great", "Positive")
    assert feedback_key("toy", "great", "Positive") != feedback_key("toy", "great", "Negative")
    assert feedback_key("toy", "great", "Positive") != feedback_key("other", "great", "Positive")
    assert len(feedback_key("toy", "great", "Positive")) == 64


def test_replaying_feedback_equals_refitting_on_base_plus_feedback(storage):
    base = NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS)
    for text, label in [("great film", "Negative"), ("dull film", "Positive"), ("GREAT  film", "Negative"),
                        ("brand new words here", "Positive"), ("great film", "Positive"), ("tedious", "Negative")]:
        answer(storage, text, label)
    online = ModelRegistry({"toy": base.served()}, storage, sync_interval=0).get("toy")
    learned = learnable(storage.feedback_after(0))
    assert online.learned == len(learned) == 5  # "GREAT  film"/Negative repeats "great film"/Negative
    assert [r.id for r in storage.feedback_after(0, learned_only=True)] == [r.id for r in learned]
    expected = refit_with_same_vectorizer(base, BASE_TEXTS, BASE_TARGETS, learned)
    np.testing.assert_allclose(online.model.predict_proba(PROBES), expected.predict_proba(PROBES), rtol=0, atol=1e-12)
    # The shipped base model itself is never changed in place.
    np.testing.assert_array_equal(base.predict_proba(PROBES),
                                  NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5).fit(
                                      BASE_TEXTS, BASE_TARGETS).predict_proba(PROBES))


@pytest.mark.slow
def test_the_invariant_holds_for_the_served_sentiment_model(storage, sst_dir):
    from sentiment_clf.training.recipes import RECIPES as MODELS

    base = NLPModel.load(MODELS_DIR / "sentiment")
    train = MODELS["sentiment"].relabel(util.load_sst(sst_dir / "train.txt").drop_duplicates(["phrase", "label"]))
    for text, label in [("that movie was boring", "Positive"), ("a triumph", "Negative"),
                        ("Ça me plaît 😀", "Positive"), ("that   movie was BORING", "Positive")]:
        answer(storage, text, label, model="sentiment")
    online = ModelRegistry({"sentiment": base.served()}, storage, sync_interval=0).get("sentiment")
    expected = refit_with_same_vectorizer(base, train["phrase"], train["target"],
                                          learnable(storage.feedback_after(0)))
    probes = ["that movie was boring", "a triumph", "an ok film", "Ça me plaît"]
    np.testing.assert_allclose(online.model.predict_proba(probes), expected.predict_proba(probes), rtol=0, atol=1e-9)


def test_a_flood_of_one_answer_counts_once(storage, tmp_path):
    base = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS)
    answer(storage, "great fun", "Negative")
    once = ModelRegistry({"toy": base.served()}, storage, sync_interval=0).get("toy").model.predict_proba(["great fun"])
    for _ in range(200):
        answer(storage, "Great fun", "Negative")
    flooded = ModelRegistry({"toy": base.served()}, storage, sync_interval=0).get("toy")
    np.testing.assert_array_equal(flooded.model.predict_proba(["great fun"]), once)
    assert flooded.learned == 1
    assert storage.feedback_counts() == {"toy": 201}  # all stored, learned once


def test_registry_follows_new_feedback_and_published_versions(storage):
    base = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS)
    registry = ModelRegistry({"toy": base.served()}, storage, sync_interval=0)
    assert registry.get("toy").version == "unsaved"  # fitted here, never saved
    first = answer(storage, "wonderful", "Negative")
    assert registry.get("toy").last_learned_id == first
    assert registry.get("toy").version.endswith(f"+fb{first}")

    # A retrained version that folds in the first answer; a later one is learned on top.
    retrained = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS + ["wonderful"], BASE_TARGETS + ["Negative"])
    manifest, payload = retrained.dumps(name="toy")
    storage.publish("toy", manifest, payload, feedback_upto=first)
    second = answer(storage, "terrible", "Positive")
    served = registry.get("toy")
    assert (served.published, served.base_version, served.learned) == (manifest["version"], manifest["version"], 1)
    expected = NLPModel.loads(manifest, payload).partial_fit(["terrible"], ["Positive"])
    np.testing.assert_allclose(served.model.predict_proba(PROBES), expected.predict_proba(PROBES), rtol=0, atol=1e-12)
    assert served.last_learned_id == second

    storage.rollback("toy")
    back = registry.get("toy")
    assert back.published is None and back.learned == 2  # base + both answers again


def test_a_broken_database_keeps_the_models_serving(storage, caplog):
    base = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS)
    registry = ModelRegistry({"toy": base.served()}, storage, sync_interval=0)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feedback")
    assert registry.get("toy").model.predict(["great fun"]).tolist() == ["Positive"]
    assert "could not sync models" in caplog.text


def test_a_client_beyond_its_budget_is_stored_not_learned_until_a_trusted_client_confirms(storage):
    from sentiment_clf.feedback.policy import LearningPolicy

    base = NLPModel(LABELS, alpha=0.5).fit(BASE_TEXTS, BASE_TARGETS)
    policy = LearningPolicy.parse("100 per minute", "2 per day")

    def send(text, client="ip:1", trusted=False):
        return storage.add_feedback(model="toy", text=text, label="Negative", prediction="?", model_version="v",
                                    client=client, trusted=trusted, policy=policy)

    assert [send(t).learned for t in ("great fun 1", "great fun 2", "great fun 3", "great fun 4")] == \
        [True, True, False, False]
    assert send("great fun 3").reason == "budget"
    assert send("great fun 5", client="ip:2").learned  # another client has its own budget
    assert send("great fun 3", client="key:ops", trusted=True).learned  # a trusted client confirms a held one
    assert send("great fun 1", client="key:ops", trusted=True).reason == "duplicate"  # learned already
    registry = ModelRegistry({"toy": base.served()}, storage, sync_interval=0)
    learned = learnable(storage.feedback_after(0))
    assert [r.text for r in learned] == ["great fun 1", "great fun 2", "great fun 5", "great fun 3"]
    expected = refit_with_same_vectorizer(base, BASE_TEXTS, BASE_TARGETS, learned)
    np.testing.assert_allclose(registry.get("toy").model.predict_proba(PROBES), expected.predict_proba(PROBES),
                               rtol=0, atol=1e-12)


def test_a_get_never_writes_to_the_database(tmp_path):
    """Checkpoints due after every answer, five answers learned (stored by another server on
    the same database), then 600 predictions: the database's files are as they were (a GET
    used to sync, and so write the checkpoints the new answers made due)."""
    import hashlib

    from conftest import make_app

    database = tmp_path / "feedback.sqlite"
    client = make_app(f"sqlite:///{database}", CHECKPOINT_EVERY=1, SYNC_INTERVAL=0).test_client()
    elsewhere = Storage(f"sqlite:///{database}")
    for i in range(5):
        elsewhere.add_feedback(model="sentiment", text=f"an answer {i}", label="Positive", prediction="?",
                               model_version="v", client=f"ip:{i}")

    def files() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (database, tmp_path / "feedback.sqlite-wal")
                if p.exists()}

    before = files()
    for i in range(600):
        endpoint = ("/", "/ratings", "/hatespeech", "/questions")[i % 4]
        assert client.get(endpoint, query_string={"query": f"a text {i}"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/models").status_code == 200
    assert files() == before
    assert client.get("/health").json["models"]["sentiment"]["version"].endswith("+fb5")  # learned all the same
