"""Three replicas behind HAProxy (deploy/haproxy.cfg, as the docs give it), sharing
PostgreSQL and Redis: under mixed load one replica is killed with SIGKILL and restarted;
no acknowledged answer is lost, the balancer's retries leave no request failed, and
every replica, the restarted one included, serves the same learned version within 2 s."""
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from bench.harness import LiveServer, mixed_load, replica_topology, wait_until
from sentiment_clf.feedback import Storage

from conftest import ARTIFACTS, need

REPLICAS = 3
CONCURRENCY = 16
LOAD_SECONDS = 12

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
    with replica_topology(tmp_path, postgresql_url, redis_url, count=REPLICAS) as topology:
        yield {**topology, "tmp": tmp_path, "database_url": postgresql_url}


def fast_version(url: str) -> str:
    models = requests.get(f"{url}/models", timeout=5).json()["models"]
    return next(m["version"] for m in models if m["name"] == "sentiment" and m["variant"] == "fast")


def test_a_replica_killed_under_load_loses_no_acknowledged_answer(topology):
    victim = topology["replicas"][1]
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(mixed_load, topology["balancer"].url, LOAD_SECONDS, CONCURRENCY)
        time.sleep(LOAD_SECONDS / 3)
        killed_at = time.monotonic()
        victim.kill()
        time.sleep(1.0)
        restarted = LiveServer(topology["tmp"] / "replica1-again.log", workers=2, env=topology["env"],
                               port=topology["ports"][1])
        topology["replicas"][1] = restarted
        restarted.wait_ready()
        back_at = time.monotonic()
        outcomes, acknowledged = load.result().values()

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
