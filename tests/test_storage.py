"""The storage module, against SQLite and the real PostgreSQL server."""
import threading

import pytest
from sqlalchemy import inspect

from sentiment_clf.storage import SCHEMA_VERSION, Storage


@pytest.fixture()
def storage(database_url):
    store = Storage(database_url)
    yield store
    store.dispose()


def add(storage, text="good film", label="Positive", **extra):
    return storage.add_feedback(model="sentiment", text=text, label=label, prediction="Negative",
                                model_version="v1", **extra)


def test_a_record_keeps_everything_about_the_answer(storage):
    feedback_id, created = add(storage, "ça alors 😀")
    assert created
    row = storage.get_feedback(feedback_id)
    assert (row.model, row.text, row.label, row.prediction, row.model_version) == \
        ("sentiment", "ça alors 😀", "Positive", "Negative", "v1")
    assert row.created_at is not None


def test_ids_grow_and_reading_after_an_id_is_ordered(storage):
    ids = [add(storage, f"text {i}")[0] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [r.id for r in storage.feedback_after(ids[1])] == ids[2:]
    assert [r.id for r in storage.feedback_after(ids[0], upto_id=ids[2])] == ids[1:3]
    assert storage.last_feedback_id() == ids[-1]
    assert storage.feedback_counts() == {"sentiment": 5}


def test_a_retried_request_is_stored_once(storage):
    first, created = add(storage, request_key="req-1")
    again, created_again = add(storage, request_key="req-1")
    assert (again, created, created_again) == (first, True, False)
    assert storage.feedback_counts() == {"sentiment": 1}


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
