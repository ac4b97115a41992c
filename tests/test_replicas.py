"""Three replicas behind HAProxy (deploy/haproxy.cfg, as the docs give it), sharing
PostgreSQL and Redis: under mixed load one replica is killed with SIGKILL and restarted;
no acknowledged answer is lost, the balancer's retries leave no request failed, and
every replica, the restarted one included, serves the same learned version within 2 s."""
import json
import random
import shutil
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from bench.harness import Balancer, LiveServer, free_port, replica_env, wait_until
from sentiment_clf.feedback import Storage

from conftest import ARTIFACTS, need

REPLICAS = 3
CONCURRENCY = 16
LOAD_SECONDS = 12
TEXTS = ["that movie was boring", "a gorgeous , witty , seductive movie .", "a dull , lifeless film",
         "the best film of the year", "an uneven but rewarding experience"]


@pytest.fixture
def redis_url():
    url = "redis://127.0.0.1:6379"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        need(False, f"Redis is not reachable at {url} ({type(exc).__name__})")
    return url


@pytest.fixture
def topology(tmp_path, postgresql_url, redis_url):
    need(shutil.which("haproxy"), "the replica test needs HAProxy (Debian: apt-get install haproxy)")
    env = replica_env(postgresql_url, redis_url)
    ports = [free_port() for _ in range(REPLICAS)]
    replicas = [LiveServer(tmp_path / f"replica{i}.log", workers=2, env=env, port=port)
                for i, port in enumerate(ports)]
    balancer = None
    try:
        for replica in replicas:
            replica.wait_ready()
        balancer = Balancer(tmp_path / "haproxy.log", ports)
        wait_until(lambda: requests.get(f"{balancer.url}/ready", timeout=2).ok, timeout=30)
        yield {"replicas": replicas, "balancer": balancer, "env": env, "tmp": tmp_path, "ports": ports,
               "database_url": postgresql_url}
    finally:
        if balancer:
            balancer.stop()
        for replica in replicas:
            replica.stop()


def fast_version(url: str) -> str:
    models = requests.get(f"{url}/models", timeout=5).json()["models"]
    return next(m["version"] for m in models if m["name"] == "sentiment" and m["variant"] == "fast")


def test_a_replica_killed_under_load_loses_no_acknowledged_answer(topology):
    url = topology["balancer"].url
    acknowledged: list[int] = []
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS

    def client(number: int) -> None:
        session = requests.Session()
        rng = random.Random(number)
        while time.monotonic() < stop_at:
            text = f"{rng.choice(TEXTS)} (client {number}, {uuid.uuid4().hex[:6]})"
            kind = "feedback" if rng.random() < 0.3 else "predict"
            try:
                if kind == "feedback":
                    response = session.post(f"{url}/feedback", timeout=15,
                                             json={"model": "sentiment", "query": text, "label": "Positive"},
                                             headers={"Idempotency-Key": uuid.uuid4().hex,
                                                      "X-Forwarded-For": f"10.0.0.{number}"})
                else:
                    response = session.get(url, params={"query": text}, timeout=15)
            except requests.RequestException as exc:
                with lock:
                    outcomes[f"{kind} error at {time.monotonic() - stop_at + LOAD_SECONDS:.2f} s: {exc}"] += 1
                continue
            with lock:
                outcomes[f"{kind} {response.status_code}"] += 1
                if kind == "feedback" and response.status_code == 201:
                    acknowledged.append(response.json()["id"])

    victim = topology["replicas"][1]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        clients = [pool.submit(client, number) for number in range(CONCURRENCY)]
        time.sleep(LOAD_SECONDS / 3)
        killed_at = time.monotonic()
        print("killed at", killed_at - stop_at + LOAD_SECONDS)
        victim.kill()
        time.sleep(1.0)
        restarted = LiveServer(topology["tmp"] / "replica1-again.log", workers=2, env=topology["env"],
                               port=topology["ports"][1])
        topology["replicas"][1] = restarted
        restarted.wait_ready()
        back_at = time.monotonic()
        for done in clients:
            done.result()

    failed = {outcome: n for outcome, n in outcomes.items() if not outcome.endswith((" 200", " 201"))}
    assert failed == {}, (failed, outcomes)  # the balancer retried what the killed replica held
    assert outcomes["feedback 201"] > 50 and outcomes["predict 200"] > 200, outcomes
    assert back_at - killed_at < 30

    # every acknowledged answer is stored, once
    stored = [row.id for row in Storage(topology["database_url"]).feedback_after(0)]
    assert sorted(acknowledged) == sorted(set(acknowledged))
    assert set(acknowledged) <= set(stored)

    # every replica, the restarted one too, serves the same learned version within 2 s
    finished = time.monotonic()
    urls = [replica.url for replica in topology["replicas"]]
    wait_until(lambda: len({fast_version(u) for u in urls}) == 1, timeout=2.0)
    assert time.monotonic() - finished <= 2.0
    assert "+fb" in fast_version(urls[0])  # it learned on the way
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "replicas.json").write_text(json.dumps({
        "outcomes": dict(outcomes), "acknowledged_feedback": len(acknowledged), "stored_feedback": len(stored),
        "seconds_until_the_restarted_replica_was_ready": round(back_at - killed_at, 2),
        "seconds_until_all_served_one_version": round(time.monotonic() - finished, 3)}, indent=1))
