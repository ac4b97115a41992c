"""How work shares a gevent worker: one event loop serves every connection of a process.

Under gunicorn's gevent workers the standard library is patched (server/gunicorn_config.py), so
sockets, sleeps and locks switch greenlets instead of blocking. Work that does not go
through them must be placed with care:

- :func:`off_loop`: CPU work that releases the GIL (a forward pass) runs in the hub's
  thread pool, so the loop keeps reading sockets meanwhile;
- :func:`time_bound`: a wait on a socket (a database call) is cut after so many seconds;
- :func:`take_turn`: a long request lets the others run, sockets polled included;
- :func:`budget` and :func:`check_budget`: every request has a time budget, and long
  work checks it between its steps (:class:`OverBudget`, which the HTTP layer answers
  with a JSON 503).

Outside gevent (the CLI, tests in one process) each is the plain thing: the call in
the calling thread, no bound, and a bare ``time.sleep(0)``.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from sentiment_clf.errors import OverBudget

Result = TypeVar("Result")

# A sleep this long makes the gevent hub poll the sockets before the caller resumes
# (a zero sleep only runs the callbacks already due, so a connection whose request had
# just arrived waited until the caller was done).
TURN_SECONDS = 0.0005


def gevent_patched() -> bool:
    """Whether this process runs under gevent's patched standard library."""
    monkey = sys.modules.get("gevent.monkey")  # not imported: nothing is patched
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def off_loop(function: Callable[..., Result], *args: Any) -> Result:
    """``function(*args)``; under gevent, in a thread of the hub's pool while the calling
    greenlet waits, so the event loop does not stop while it runs. Only for work that
    touches no gevent object (a forward pass, numpy)."""
    if gevent_patched():
        from gevent import get_hub  # type: ignore[import-untyped]  # no type information shipped

        return get_hub().threadpool.apply(function, args)
    return function(*args)


def time_bound(seconds: float, exception: BaseException) -> contextlib.AbstractContextManager:
    """A context in which ``exception`` is raised if the calling greenlet is still inside
    after ``seconds`` (under gevent: a wait on a socket is interrupted); else no bound."""
    if gevent_patched():
        import gevent

        return gevent.Timeout(seconds, exception)
    return contextlib.nullcontext()


def take_turn() -> None:
    """Let the other requests of this worker run, new ones on their sockets included."""
    time.sleep(TURN_SECONDS if gevent_patched() else 0)


# The current request's deadline (time.perf_counter()), None outside a request; each
# greenlet (each request) has its own.
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


@contextlib.contextmanager
def budget(seconds: float):
    """Inside, the current request may work ``seconds`` from its start (no deadline after)."""
    token = _deadline.set(time.perf_counter() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline() -> float | None:
    """The current request's deadline, to hand to work done elsewhere (another thread)."""
    return _deadline.get()


def check_budget(until: float | None = None) -> None:
    """OverBudget if ``until`` (the current request's deadline by default) has passed."""
    until = deadline() if until is None else until
    if until is not None and time.perf_counter() > until:
        raise OverBudget()
