"""Spreading kept-alive connections evenly over gunicorn's gevent workers.

The workers share one listening socket, and a new connection goes to whichever
worker calls ``accept`` first. A client that opens a few connections at once (wrk,
a connection pool) finds one worker awake, and that worker accepts them all before
the others are scheduled: 8 connections landed 8/0 or 7/1 on 2 workers, and stayed
so for as long as they were kept alive, so one core served them and the other idled
(340 requests/s against 540-560 at 7/1 on the accurate tier).

Here each worker publishes how many connections it holds in a small array shared
by the workers (made by the master before it forks them), and a worker holding
more than the least-loaded other worker does not accept for a moment
(``RETRY_SECONDS``), leaving the connection to that worker. It never defers longer
than ``MAX_DEFER_SECONDS`` in a row: a worker busy in a long request cannot leave a
connection waiting. One worker alone never defers.

gunicorn_config.py makes the array (``ConnectionCounts``), gives each worker a slot in
``pre_fork`` and frees it in ``child_exit``, and in each worker replaces the
``StreamServer`` gunicorn's gevent worker builds with :class:`BalancedStreamServer`.
"""
from __future__ import annotations

import multiprocessing
import time
from typing import Any

from gevent.server import StreamServer  # type: ignore[import-untyped]  # no type information shipped

FREE = -1  # a slot no worker holds
RETRY_SECONDS = 0.001
MAX_DEFER_SECONDS = 0.02


class ConnectionCounts:
    """Connections held per worker, in shared memory: one slot per worker, FREE when
    none. The master assigns and frees slots; each worker writes only its own."""

    def __init__(self, slots: int):
        self._counts: Any = multiprocessing.RawArray("i", [FREE] * slots)

    def take_slot(self) -> int | None:
        """A free slot, now marked held with 0 connections (None if all are taken)."""
        for slot, count in enumerate(self._counts):
            if count == FREE:
                self._counts[slot] = 0
                return slot
        return None

    def free_slot(self, slot: int | None) -> None:
        if slot is not None:
            self._counts[slot] = FREE

    def set(self, slot: int, connections: int) -> None:
        self._counts[slot] = connections

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections another live worker holds (None: no other worker)."""
        others = [count for other, count in enumerate(self._counts) if other != slot and count != FREE]
        return min(others) if others else None


class BalancedStreamServer(StreamServer):
    """gevent's StreamServer that leaves a new connection to a less-loaded worker."""

    counts: ConnectionCounts | None = None  # set in each worker (gunicorn_config.py)
    slot: int | None = None

    def __init__(self, listener, handle=None, *args, **kwargs):
        self._held = 0
        self._deferring_since: float | None = None
        self._last_deferred = 0.0
        super().__init__(listener, self._counted(handle), *args, **kwargs)

    def _publish(self) -> None:
        if self.counts is not None and self.slot is not None:
            self.counts.set(self.slot, self._held)

    def _counted(self, handle):
        def counted(*args):
            try:
                return handle(*args)
            finally:
                self._held -= 1
                self._publish()
        return counted

    def _should_defer(self) -> bool:
        if self.counts is None or self.slot is None:
            return False
        fewest = self.counts.fewest_elsewhere(self.slot)
        if fewest is None or self._held <= fewest:
            return False
        now = time.monotonic()
        if self._deferring_since is None or now - self._last_deferred > 5 * RETRY_SECONDS:
            self._deferring_since = now  # a new wait, not the tail of an old one
        self._last_deferred = now
        return now - self._deferring_since < MAX_DEFER_SECONDS

    def do_read(self):
        if self._should_defer():
            # As gevent's own error path backs off: stop watching the socket, look again soon.
            self.stop_accepting()
            self._timer = self.loop.timer(RETRY_SECONDS)
            self._timer.start(self._start_accepting_if_started)
            return None
        accepted = super().do_read()
        if accepted:
            self._deferring_since = None
            self._held += 1
            self._publish()
        return accepted
