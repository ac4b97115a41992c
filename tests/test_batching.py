"""The micro-batcher (sentiment_clf/batching.py) under real concurrency.

Threads (and, in a subprocess, gevent's greenlets) submit distinct items through a
run function that sleeps like a model call: each caller must get its own item's
result, batches must form and stay within ``max_batch``, a failing batch must fail
its own callers only, and a lone request must not wait for company.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from sentiment_clf.serving.batching import MicroBatcher

from conftest import ROOT

CALLERS = 32


class Recorder:
    """A run function that sleeps like a model call, records every batch it is given,
    and answers item -> item * 10 (so a row given to the wrong caller shows)."""

    def __init__(self, seconds: float = 0.02, fail_with=None):
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.fail_with = fail_with  # fail_with(batch) -> raise or return a wrong answer, or None
        self.first_called = threading.Event()
        self.release_first = threading.Event()
        self.hold_first = False
        self._lock = threading.Lock()

    def __call__(self, batch: list[int]) -> list[int]:
        with self._lock:
            first = not self.batches
            self.batches.append(list(batch))
        if first and self.hold_first:
            self.first_called.set()
            assert self.release_first.wait(10), "the test never released the first batch"
        time.sleep(self.seconds)
        if self.fail_with is not None:
            answer = self.fail_with(batch)
            if answer is not None:
                return answer
        return [item * 10 for item in batch]


def submit_all(batcher: MicroBatcher, items: list[int]) -> dict[int, object]:
    """Every item submitted from a thread of its own, all released at once; each item's
    result or the exception its caller got."""
    outcomes: dict[int, object] = {}
    start = threading.Barrier(len(items))

    def call(item: int) -> None:
        start.wait()
        try:
            outcomes[item] = batcher.submit(item)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each caller got
            outcomes[item] = exc

    # Daemon threads: a batcher that loses a caller fails the test instead of hanging pytest.
    threads = [threading.Thread(target=call, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a caller never got an answer"
    return outcomes


def submit_behind_a_held_batch(batcher: MicroBatcher, run: Recorder, items: list[int]) -> dict[int, object]:
    """Item 0 alone first (a batch of one, held open), then ``items`` from threads that
    queue up behind it: the batches after the first are made of them only."""
    run.hold_first = True
    first: dict[int, object] = {}
    leader = threading.Thread(target=lambda: first.update({0: batcher.submit(0)}), daemon=True)
    leader.start()
    assert run.first_called.wait(10)
    # The others queue while the first batch is held; release it once they have had time to.
    releaser = threading.Timer(0.3, run.release_first.set)
    releaser.start()
    outcomes = submit_all(batcher, items)
    leader.join(20)
    releaser.join()
    assert first == {0: 0}
    assert run.batches[0] == [0]
    return outcomes


def test_every_caller_gets_its_own_items_result_and_batches_form():
    run = Recorder(seconds=0.05)
    batcher = MicroBatcher(run, max_batch=CALLERS, max_wait=0.01)
    items = list(range(1, CALLERS + 1))
    outcomes = submit_all(batcher, items)
    assert outcomes == {item: item * 10 for item in items}
    # Every item was run exactly once, and the counts agree with the batches run.
    assert sorted(item for batch in run.batches for item in batch) == items
    assert sum(size * count for size, count in batcher.batch_sizes.items()) == CALLERS
    assert sum(batcher.batch_sizes.values()) == len(run.batches)
    assert max(batcher.batch_sizes) > 1, f"no batch formed: {batcher.batch_sizes}"
    assert len(run.batches) < CALLERS


def test_no_batch_is_larger_than_max_batch():
    run = Recorder(seconds=0.02)
    batcher = MicroBatcher(run, max_batch=4, max_wait=0.05)
    outcomes = submit_behind_a_held_batch(batcher, run, list(range(1, CALLERS + 1)))
    assert outcomes == {item: item * 10 for item in range(1, CALLERS + 1)}
    assert max(len(batch) for batch in run.batches) == 4, run.batches
    assert max(batcher.batch_sizes) == 4


POISON = 13


def raise_on_poison(batch):
    if POISON in batch:
        raise ValueError(f"poisoned batch {batch}")


def short_answer_on_poison(batch):
    if POISON in batch:
        return [item * 10 for item in batch][:-1]
    return None


@pytest.mark.parametrize(("fail_with", "error", "message"), [
    (raise_on_poison, ValueError, "poisoned batch"),
    (short_answer_on_poison, RuntimeError, "results for"),
], ids=["run-raises", "wrong-number-of-results"])
def test_a_failing_batch_fails_only_its_own_callers(fail_with, error, message):
    run = Recorder(seconds=0.02, fail_with=fail_with)
    batcher = MicroBatcher(run, max_batch=8, max_wait=0.01)
    items = list(range(1, CALLERS + 1))
    outcomes = submit_behind_a_held_batch(batcher, run, items)

    poisoned = [batch for batch in run.batches if POISON in batch]
    assert len(poisoned) == 1
    # Not vacuous: the poisoned item shared its batch, and other batches ran too.
    assert len(poisoned[0]) > 1, f"the poisoned item ran alone: {run.batches}"
    assert len(run.batches) >= 3, run.batches
    failed = {item for item, outcome in outcomes.items() if isinstance(outcome, Exception)}
    assert failed == set(poisoned[0])
    for item in failed:
        assert isinstance(outcomes[item], error) and message in str(outcomes[item])
    assert {item: outcome for item, outcome in outcomes.items() if item not in failed} == \
        {item: item * 10 for item in items if item not in failed}
    # The batcher still works afterwards.
    assert batcher.submit(5) == 50


def test_a_lone_request_does_not_wait_for_company():
    wait = 0.5
    first = MicroBatcher(Recorder(seconds=0), max_batch=32, max_wait=wait)
    started = time.perf_counter()
    assert first.submit(1) == 10  # the first request of all
    assert time.perf_counter() - started < wait / 2
    # The wait is real: after a batch of several, the next batch waits for others to
    # join (up to max_wait); after that batch of one, the next does not wait again.
    # The batch of several is made deterministic: ten callers queue behind a held batch.
    run = Recorder(seconds=0)
    batcher = MicroBatcher(run, max_batch=32, max_wait=wait)
    outcomes = submit_behind_a_held_batch(batcher, run, list(range(10, 20)))
    assert outcomes == {item: item * 10 for item in range(10, 20)}
    assert sorted(run.batches[-1]) == list(range(10, 20)), run.batches
    started = time.perf_counter()
    assert batcher.submit(3) == 30
    assert time.perf_counter() - started >= wait * 0.9
    started = time.perf_counter()
    assert batcher.submit(4) == 40
    assert time.perf_counter() - started < wait / 2


def test_settings_are_checked():
    with pytest.raises(ValueError):
        MicroBatcher(lambda batch: batch, max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda batch: batch, max_wait=-1)


GEVENT_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, time
import gevent
from sentiment_clf.serving.batching import MicroBatcher

assert monkey.is_module_patched("threading") and monkey.is_module_patched("time")
batches = []

def run(batch):
    batches.append(list(batch))
    time.sleep(0.01)  # patched: yields to the other greenlets, as a real request would
    if 13 in batch:
        raise ValueError("poisoned")
    return [item * 10 for item in batch]

batcher = MicroBatcher(run, max_batch=8, max_wait=0.005)

def call(item):
    try:
        return batcher.submit(item)
    except ValueError:
        return "failed"

greenlets = [gevent.spawn(call, item) for item in range(32)]
gevent.joinall(greenlets, timeout=20)
print(json.dumps({"done": all(g.ready() for g in greenlets), "values": [g.value for g in greenlets],
                  "batches": batches}))
"""


def test_under_gevent_greenlets():
    """The same in a gevent-patched interpreter (patching must not touch this process)."""
    result = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["done"]
    batches = found["batches"]
    assert sorted(item for batch in batches for item in batch) == list(range(32))
    assert max(len(batch) for batch in batches) > 1 and max(len(batch) for batch in batches) <= 8, batches
    poisoned = next(batch for batch in batches if 13 in batch)
    assert len(poisoned) > 1, batches
    assert found["values"] == ["failed" if item in poisoned else item * 10 for item in range(32)]


INTERRUPTED_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, time
import gevent
from sentiment_clf.serving.batching import MicroBatcher

def run(batch):
    time.sleep(0.05)
    return [item * 10 for item in batch]

def outcome(greenlet):
    if not greenlet.ready():
        return "still waiting"
    error = greenlet.exception if greenlet.exception is not None else greenlet.value
    if isinstance(error, BaseException):  # a killed greenlet's value is its GreenletExit
        return type(error).__name__ + ": " + str(error)
    return greenlet.value

def submit_within(batcher, item, seconds):
    with gevent.Timeout(seconds):
        return batcher.submit(item)

found = {}
# 1. The leader is interrupted while its batch [0, 1] runs: 1 fails, and the lead
#    passes on to the next batch, [2, 3].
batcher = MicroBatcher(run, max_batch=2, max_wait=0.01)
gevent.joinall([gevent.spawn(batcher.submit, item) for item in (10, 11, 12)])  # batches of several
leader = gevent.spawn(submit_within, batcher, 0, 0.03)
followers = [gevent.spawn(batcher.submit, item) for item in (1, 2, 3)]
gevent.joinall([leader, *followers], timeout=5)
found["run"] = [outcome(g) for g in (leader, *followers)]
later = gevent.spawn(batcher.submit, 4)
later.join(timeout=5)
found["run_later"] = outcome(later)

# 2. The leader is interrupted while it waits for others to join (max_wait): the
#    caller queued behind it takes the lead.
batcher = MicroBatcher(run, max_batch=8, max_wait=0.5)
gevent.joinall([gevent.spawn(batcher.submit, item) for item in (1, 2, 3)])  # batches of several
leader = gevent.spawn(submit_within, batcher, 5, 0.1)
gevent.sleep(0.01)
follower = gevent.spawn(batcher.submit, 6)
gevent.joinall([leader, follower], timeout=5)
found["wait"] = [outcome(leader), outcome(follower)]

# 3. A caller waiting in the queue is killed: it is not run, the others are.
batcher = MicroBatcher(run, max_batch=8, max_wait=0.01)
callers = [gevent.spawn(batcher.submit, 0)]
gevent.sleep(0.005)  # 0 leads (one yield) and runs alone
callers += [gevent.spawn(batcher.submit, item) for item in range(1, 4)]
gevent.sleep(0.01)  # 1-3 wait
callers[2].kill()
gevent.joinall(callers, timeout=5)
found["killed"] = [outcome(g) for g in callers]
found["killed_batches"] = batcher.batch_sizes
print(json.dumps(found))
"""


def test_an_interrupted_caller_does_not_strand_the_others():
    """Under gevent a request can be interrupted (gevent.Timeout, a killed greenlet) while
    it leads a batch, waits for company or waits in the queue; the others still get answers."""
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_SCRIPT], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["run"][0].startswith("Timeout")
    assert found["run"][1:] == ["RuntimeError: the batch was interrupted (Timeout)", 20, 30]
    assert found["run_later"] == 40
    assert found["wait"][0].startswith("Timeout") and found["wait"][1] == 60
    assert found["killed"][0:2] == [0, 10] and found["killed"][3] == 30
    assert found["killed"][2].startswith("GreenletExit")
    assert found["killed_batches"] == {"1": 1, "2": 1}


OFF_LOOP_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, threading
import gevent
from sentiment_clf.serving.batching import MicroBatcher
from sentiment_clf.serving.cooperative import off_loop

native_sleep = monkey.get_original("time", "sleep")  # holds its thread, as a forward pass does
loop_thread = threading.get_ident()
ran_in = []

def run(batch):
    ran_in.append(threading.get_ident())
    native_sleep(0.3)
    return [item * 10 for item in batch]

ticks = []
def ticker():  # another request's greenlet: it runs only while the event loop runs
    for _ in range(100):
        ticks.append(1)
        gevent.sleep(0.01)

batcher = MicroBatcher(run, max_batch=8, max_wait=0.0)
other = gevent.spawn(ticker)
gevent.sleep(0)
value = batcher.submit(4)
during = len(ticks)
other.kill()
try:
    off_loop(lambda: 1 / 0)
    error = None
except ZeroDivisionError as exc:
    error = type(exc).__name__
print(json.dumps({"value": value, "ticks_during_batch": during, "off_the_loop": ran_in[0] != loop_thread,
                  "error": error, "plain": off_loop(lambda a, b: a + b, 2, 3)}))
"""


def test_under_gevent_a_batch_runs_off_the_event_loop():
    """Under gevent a batch runs in the hub's thread pool: while it holds its thread (as a
    forward pass does, outside the GIL), the worker's other greenlets go on running."""
    result = subprocess.run([sys.executable, "-c", OFF_LOOP_SCRIPT], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["value"] == 40
    assert found["off_the_loop"]
    assert found["ticks_during_batch"] >= 5, found  # 0.3 s of batch, a tick every 10 ms
    assert found["error"] == "ZeroDivisionError"  # its exception reaches the caller
    assert found["plain"] == 5


def test_without_gevent_a_batch_runs_in_the_callers_thread():
    from sentiment_clf.serving.cooperative import off_loop

    assert off_loop(threading.get_ident) == threading.get_ident()
