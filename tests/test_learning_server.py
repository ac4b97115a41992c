"""Learning under real gunicorn servers: every worker, restarts, two servers, crashes."""
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.harness import LiveServer
from model import NLPModel
from sentiment_clf.feedback.store import Storage

from conftest import MODELS_DIR

TEXT = "an utterly forgettable , bland film"


def start(tmp_path, name, database_url, workers=4):
    server = LiveServer(tmp_path / f"{name}.log", workers=workers,
                        env={"DATABASE_URL": database_url,
                             "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "100000 per minute",
                             # every answer here is learned at once: what is tested is how workers learn
                             "SENTIMENT_CLF_CLIENT_LEARNING_BUDGET": "100000 per day"})
    server.wait_ready()
    return server


@pytest.fixture()
def servers():
    started = []
    yield started
    for server in started:
        server.stop()


def positive(url, text=TEXT):
    return requests.get(f"{url}/", params={"query": text}, timeout=10).json()["probabilities"]["Positive"]


def many_answers(url, count=64, concurrency=8, text=TEXT):
    """``count`` predictions, ``concurrency`` at a time: with 4 sync workers, all of them answer."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: positive(url, text), range(count)))


def expected_after(answers):
    model = NLPModel.load(MODELS_DIR / "sentiment")
    for text, label in answers:
        model.partial_fit([text], [label])
    return float(model.predict_proba([TEXT])[0, 1])


def give(url, text=TEXT, label="Positive", **kwargs):
    response = requests.post(f"{url}/feedback", json={"model": "sentiment", "query": text, "label": label},
                             timeout=10, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_feedback_reaches_every_worker_within_two_seconds(tmp_path, sqlite_url, servers):
    server = start(tmp_path, "four-workers", sqlite_url)
    servers.append(server)
    before = many_answers(server.url)
    assert max(before) == min(before)
    give(server.url)
    given_at = time.monotonic()
    time.sleep(max(0.0, 2.0 - (time.monotonic() - given_at)))
    after = many_answers(server.url)
    assert np.allclose(after, expected_after([(TEXT, "Positive")]), rtol=0, atol=1e-9)
    assert after[0] > before[0]


def test_a_restart_predicts_as_before(tmp_path, sqlite_url, servers):
    server = start(tmp_path, "first", sqlite_url, workers=2)
    servers.append(server)
    give(server.url)
    give(server.url, "a dull film", "Positive")
    time.sleep(0.6)
    probes = [TEXT, "a dull film", "a great film"]
    before = [many_answers(server.url, 8, 4, text) for text in probes]
    server.stop()
    servers.remove(server)
    again = start(tmp_path, "second", sqlite_url, workers=2)
    servers.append(again)
    assert [many_answers(again.url, 8, 4, text) for text in probes] == before


def test_two_servers_on_one_postgresql_converge(tmp_path, postgresql_url, servers):
    first = start(tmp_path, "a", postgresql_url, workers=2)
    second = start(tmp_path, "b", postgresql_url, workers=2)
    servers += [first, second]
    give(first.url)
    give(second.url, "a dull film", "Positive")
    time.sleep(2.0)
    expected = expected_after([(TEXT, "Positive"), ("a dull film", "Positive")])
    for server in (first, second):
        assert np.allclose(many_answers(server.url, 16, 4), expected, rtol=0, atol=1e-9)
    versions = {requests.get(f"{s.url}/models", timeout=10).json()["models"][0]["version"] for s in servers}
    assert len(versions) == 1 and next(iter(versions)).endswith("+fb2")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_feedback_every_201_is_stored_exactly_once(tmp_path, request, servers, backend):
    url = request.getfixturevalue(f"{backend}_url")
    server = start(tmp_path, "burst", url)
    servers.append(server)

    def send(i):
        return give(server.url, f"client {i % 16} says review {i} was fine", "Positive")

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(send, range(240)))
    rows = Storage(url).feedback_after(0)
    assert len(ids) == len(set(ids)) == 240
    assert sorted(ids) == [r.id for r in rows]
    assert sorted(r.text for r in rows) == sorted(f"client {i % 16} says review {i} was fine" for i in range(240))


def worker_pids(master_pid):
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            pids.append(int(stat.parent.name))
    return pids


def test_a_worker_killed_mid_burst_loses_no_acknowledged_answer(tmp_path, sqlite_url, servers):
    server = start(tmp_path, "crash", sqlite_url)
    servers.append(server)
    acknowledged, failures, stop = [], [], threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            try:
                r = requests.post(f"{server.url}/feedback", timeout=10, json={
                    "model": "sentiment", "query": f"client {n} answer {i}", "label": "Negative"})
                if r.status_code == 201:
                    acknowledged.append(r.json()["id"])
                else:
                    failures.append(r.status_code)
            except requests.RequestException as exc:
                failures.append(type(exc).__name__)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    victims = worker_pids(server.process.pid)
    assert len(victims) == 4
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()

    stored = {r.id for r in Storage(sqlite_url).feedback_after(0)}
    assert acknowledged and set(acknowledged) <= stored
    assert len(acknowledged) == len(set(acknowledged))
    # The service keeps answering, with a new worker in place of the killed one.
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert positive(server.url) < 0.5
    deadline = time.monotonic() + 10
    while len(worker_pids(server.process.pid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(worker_pids(server.process.pid)) == 4 and victims[0] not in worker_pids(server.process.pid)
