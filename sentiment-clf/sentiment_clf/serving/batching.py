"""Micro-batching: concurrent single requests in one process share one model call.

A transformer's forward pass costs much less per text in a batch than one text at
a time. :class:`MicroBatcher` collects the texts that requests submit while a batch
is open and answers each request with its own row. A batch closes at ``max_batch``
items or ``max_wait`` seconds after it opened, like MLServer's and BentoML's
adaptive batching; when the last batch held one item (no concurrency), the next
one does not wait at all, so a lone request pays no delay.

There is no batching thread: the first request to find no batch running leads
one (waits, runs it, hands out the rows), then passes the lead to the first
request still waiting. It works with threads and with gevent's greenlets (whose
patched locks and sleeps yield to other requests).

Under gevent the batch itself runs in the hub's thread pool (``cooperative.off_loop``): a
forward pass releases the GIL, so while it runs the worker's event loop goes on
reading sockets and answering other requests (the fast tier, health checks, the next
texts joining the queue) instead of stopping for the whole batch.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sentiment_clf.serving.cooperative import off_loop

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot:
    __slots__ = ("item", "result", "error", "done", "lead", "event")

    def __init__(self, item: Any):
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.event = threading.Event()


class MicroBatcher(Generic[Item, Result]):
    """``submit(item)`` returns ``run(batch)[i]`` for its item, with concurrent submits batched.

    ``run`` takes a list of items and returns one result per item, in order. If it
    raises, every request of that batch (and only of that batch) gets the exception.
    ``batch_sizes`` counts the batches run by size, for benchmarks and tests.
    """

    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], *, max_batch: int = 32,
                 max_wait: float = 0.002):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait not negative")
        self._run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self._condition = threading.Condition()
        self._pending: list[_Slot] = []
        self._leading = False
        self._last_size = 1
        self.batch_sizes: dict[int, int] = {}

    def submit(self, item: Item) -> Result:
        slot = _Slot(item)
        with self._condition:
            self._pending.append(slot)
            if not self._leading:
                self._leading = slot.lead = True
            elif len(self._pending) >= self.max_batch:
                self._condition.notify_all()
        try:
            while not slot.done:
                if slot.lead:  # stays set while leading: the slot is in the batch it leads
                    self._lead()
                else:
                    slot.event.wait()
                    slot.event.clear()
        except BaseException:  # interrupted (gevent.Timeout, a killed greenlet): don't strand the others
            self._abandon(slot)
            raise
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _abandon(self, slot: _Slot) -> None:
        """``slot``'s caller stopped waiting: drop it from the queue and, if it held the
        lead without running its batch, pass the lead on (else every later submit waits)."""
        with self._condition:
            if slot in self._pending:
                self._pending.remove(slot)
            if slot.lead and not slot.done:
                if self._pending:
                    self._pending[0].lead = True
                    self._pending[0].event.set()
                else:
                    self._leading = False

    def _lead(self) -> None:
        # One cooperative yield first (gevent: a switch to the hub, which reads the sockets
        # that have requests waiting and runs their greenlets up to their submit). Without
        # it a greenlet whose next request was already in its socket served its connection
        # again and again and the others waited: p99 540 ms and batches of one at
        # concurrency 8.
        time.sleep(0)
        with self._condition:
            if self._last_size > 1:  # others were around last time: wait for them to join
                deadline = time.monotonic() + self.max_wait
                while len(self._pending) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            self._last_size = len(batch)
        interrupted: BaseException | None = None
        try:
            results = off_loop(self._run, [slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function gave {len(results)} results for {len(batch)} items")
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except Exception as exc:  # each request of this batch gets it, nobody else
            for slot in batch:
                slot.error = exc
        except BaseException as exc:  # the leader was interrupted: it re-raises, its batch fails
            interrupted = exc
            for slot in batch:
                slot.error = RuntimeError(f"the batch was interrupted ({type(exc).__name__})")
        with self._condition:
            self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
            for slot in batch:
                slot.done = True
            if self._pending:
                self._pending[0].lead = True
                self._pending[0].event.set()
            else:
                self._leading = False
        for slot in batch:
            slot.event.set()
        if interrupted is not None:
            raise interrupted
