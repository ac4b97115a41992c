"""The storage module, against SQLite and the real PostgreSQL server."""
import threading

import pytest
from sqlalchemy import inspect

from sentiment_clf.errors import IdempotencyKeyReused, RateLimited
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.feedback.schema import SCHEMA_VERSION
from sentiment_clf.feedback.store import Storage


@pytest.fixture()
def storage(database_url):
    store = Storage(database_url)
    yield store
    store.dispose()


def add(storage, text="good film", label="Positive", **extra):
    return storage.add_feedback(model="sentiment", text=text, label=label, prediction="Negative",
                                model_version="v1", **extra)


def test_a_record_keeps_everything_about_the_answer(storage):
    feedback_id, created, learned, _ = add(storage, "ça alors 😀", client="ip:0123456789abcdef")
    assert created and learned
    row = storage.get_feedback(feedback_id)
    assert (row.model, row.text, row.label, row.prediction, row.model_version) == \
        ("sentiment", "ça alors 😀", "Positive", "Negative", "v1")
    assert (row.client, row.learned, len(row.learn_key)) == ("ip:0123456789abcdef", True, 64)
    assert row.created_at is not None


def test_ids_grow_and_reading_after_an_id_is_ordered(storage):
    ids = [add(storage, f"text {i}")[0] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [r.id for r in storage.feedback_after(ids[1])] == ids[2:]
    assert [r.id for r in storage.feedback_after(ids[0], upto_id=ids[2])] == ids[1:3]
    assert storage.last_feedback_id() == ids[-1]
    assert storage.feedback_counts() == {"sentiment": 5}


def test_a_retried_request_is_stored_once(storage):
    first, created, _, _ = add(storage, request_key="req-1")
    again, created_again, learned, _ = add(storage, request_key="req-1")
    assert (again, created, created_again, learned) == (first, True, False, True)
    assert storage.feedback_counts() == {"sentiment": 1}


@pytest.mark.parametrize("change", [{"text": "another film"}, {"label": "Negative"}, {"model": "ratings"}])
def test_an_idempotency_key_reused_with_another_answer_is_refused(storage, change):
    first = add(storage, request_key="req-1")
    answer = {"model": "sentiment", "text": "good film", "label": "Positive", **change}
    with pytest.raises(IdempotencyKeyReused, match="already used for another answer"):
        storage.add_feedback(prediction="Negative", model_version="v1", request_key="req-1", **answer)
    assert storage.feedback_counts() == {"sentiment": 1}
    assert add(storage, request_key="req-1").id == first.id


def test_concurrent_writers_lose_nothing(storage):
    ids, errors = [], []

    def write(worker):
        try:
            for i in range(20):
                ids.append(add(storage, f"worker {worker} answer {i}")[0])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = storage.feedback_after(0)
    assert sorted(ids) == [r.id for r in stored] and len(stored) == 120


def test_publish_activate_and_roll_back(storage):
    assert storage.active_versions() == {}
    storage.publish("sentiment", {"version": "aaa", "metrics": {"test_accuracy": 0.8}}, b"one", 3)
    storage.publish("sentiment", {"version": "bbb", "metrics": {}}, b"two", 7)
    assert storage.active_versions() == {"sentiment": "bbb"}
    assert storage.load_version("sentiment", "aaa").arrays == b"one"
    assert storage.load_version("sentiment", "bbb").feedback_upto == 7
    assert [(v["version"], v["active"]) for v in storage.versions("sentiment")] == [("aaa", False), ("bbb", True)]
    assert storage.rollback("sentiment") == "aaa"
    assert storage.rollback("sentiment") is None
    with pytest.raises(LookupError, match="nothing to roll back"):
        storage.rollback("sentiment")
    storage.publish("sentiment", {"version": "aaa", "metrics": {}}, b"one", 3)  # published again
    assert storage.active_versions() == {"sentiment": "aaa"}


def test_the_schema_is_created_once_and_versioned(database_url):
    first, second = Storage(database_url), Storage(database_url)  # the second finds it made
    assert {"feedback", "model_versions", "activations", "schema_info"} <= set(inspect(first.engine).get_table_names())
    add(first)
    assert second.feedback_counts() == {"sentiment": 1}
    with first.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE schema_info SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this code"):
        Storage(database_url)
    first.dispose()
    second.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url):
    store = Storage(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def _open_storage(url, results):
    try:
        Storage(url).dispose()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_together_on_a_new_database_all_start(tmp_path):
    """gunicorn boots its workers at once; each creates the schema if it is missing."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for trial in range(6):
        url = f"sqlite:///{tmp_path / str(trial) / 'feedback.sqlite'}"
        results = context.Queue()
        processes = [context.Process(target=_open_storage, args=(url, results)) for _ in range(4)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(60)
        assert [results.get(timeout=5) for _ in processes] == ["ok"] * 4
        with Storage(url).engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM schema_info").scalar() == 1


def test_the_rate_limit_is_per_client_across_processes_and_a_retry_is_free(database_url):
    """Two Storage objects stand for two workers (or servers): the counter is the database."""
    first, second = Storage(database_url), Storage(database_url)
    policy = LearningPolicy.parse("3 per minute", "1 per day")
    sent = [store.add_feedback(model="sentiment", text=f"answer {i}", label="Positive", prediction="?",
                               model_version="v", client="ip:a", policy=policy, request_key=f"k{i}")
            for i, store in enumerate([first, second, first])]
    assert [s.learned for s in sent] == [True, False, False]  # a budget of one a day
    assert [s.reason for s in sent] == [None, "budget", "budget"]
    with pytest.raises(RateLimited) as refused:
        second.add_feedback(model="sentiment", text="answer 3", label="Positive", prediction="?",
                            model_version="v", client="ip:a", policy=policy)
    assert refused.value.limit == "3 per 1 minute" and 1 <= refused.value.retry_after <= 60
    retry = second.add_feedback(model="sentiment", text="answer 0", label="Positive", prediction="?",
                                model_version="v", client="ip:a", policy=policy, request_key="k0")
    assert (retry.id, retry.created) == (sent[0].id, False)  # a retry does not count against the limit
    other = first.add_feedback(model="sentiment", text="answer 3", label="Positive", prediction="?",
                               model_version="v", client="ip:b", policy=policy)
    assert other.learned and first.feedback_counts() == {"sentiment": 4}
    assert [r.client for r in first.feedback_after(0)] == ["ip:a"] * 3 + ["ip:b"]
    first.dispose()
    second.dispose()


def test_an_answer_folded_into_the_serving_version_is_not_learned_again(storage):
    policy = LearningPolicy.parse("100 per minute", "1 per day")
    add(storage, "first")
    storage.add_feedback(model="sentiment", text="held one", label="Positive", prediction="?",
                         model_version="v", client="ip:a", policy=policy)
    held = storage.add_feedback(model="sentiment", text="held two", label="Positive", prediction="?",
                                model_version="v", client="ip:a", policy=policy)
    assert not held.learned
    storage.publish("sentiment", {"version": "retrained"}, b"x", feedback_upto=held.id)
    again = storage.add_feedback(model="sentiment", text="HELD  two", label="Positive", prediction="?",
                                 model_version="v", client="key:ops", trusted=True, policy=policy)
    assert (again.learned, again.reason) == (False, "duplicate")
    assert storage.add_feedback(model="sentiment", text="held two", label="Positive", prediction="?",
                                model_version="v", online=False).reason == "retrain"


def test_a_version_1_database_is_upgraded_in_place(database_url):
    """Old rows get a learn key, no client, and the old rule's decision: the first of each answer."""
    from datetime import UTC, datetime

    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine
    from sqlalchemy.engine import make_url

    old = MetaData()
    feedback_v1 = Table("feedback", old, Column("id", Integer, primary_key=True, autoincrement=True),
                        Column("model", String(64), nullable=False), Column("text", Text, nullable=False),
                        Column("label", String(64), nullable=False), Column("prediction", String(64), nullable=False),
                        Column("model_version", String(64), nullable=False),
                        Column("request_key", String(200), nullable=True, unique=True),
                        Column("created_at", DateTime(timezone=True), nullable=False))
    info = Table("schema_info", old, Column("id", Integer, primary_key=True, autoincrement=False),
                 Column("version", Integer, nullable=False))
    url = make_url(database_url)
    engine = create_engine(url.set(drivername="postgresql+psycopg") if url.get_backend_name() == "postgresql" else url)
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(info.insert().values(id=1, version=1))
        now = datetime.now(UTC)
        conn.execute(feedback_v1.insert(), [
            {"model": "sentiment", "text": text, "label": label, "prediction": "?", "model_version": "v",
             "request_key": None, "created_at": now}
            for text, label in [("good film", "Positive"), ("GOOD  film", "Positive"), ("good film", "Negative")]])
    engine.dispose()
    storage = Storage(database_url)
    rows = storage.feedback_after(0)
    assert [(r.learned, r.client) for r in rows] == [(True, None), (False, None), (True, None)]
    assert rows[0].learn_key == rows[1].learn_key != rows[2].learn_key
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_info").scalar() == SCHEMA_VERSION == 2
    assert {"feedback_by_learn_key", "feedback_by_client"} <= {i["name"] for i in inspect(storage.engine)
                                                                .get_indexes("feedback")}
    assert add(storage, "good film").reason == "duplicate"
    Storage(database_url).dispose()  # opening it again changes nothing
    assert [r.learned for r in storage.feedback_after(0)] == [True, False, True, False]
    storage.dispose()
