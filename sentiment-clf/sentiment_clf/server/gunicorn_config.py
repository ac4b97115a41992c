"""How gunicorn runs the service: its settings and the hooks they install.

gunicorn reads them through ``gunicorn.conf.py`` at the repository's root, a one-line
shim (``gunicorn -c python:sentiment_clf.server.gunicorn_config`` reads them directly).
Host, port, workers, keep-alive and connections per worker come from the same
environment variables as the app (``config.py``). Binding is explicit: gunicorn on its
own would bind 0.0.0.0 whenever a PORT variable is set.

Only gunicorn imports this module: importing it patches the standard library for gevent.
"""
# gevent workers (below) with the app preloaded in the master: the standard library
# is patched here, first, before anything imports the app, so what the app makes at
# start (the model registry's lock, SQLAlchemy's pool and its locks, psycopg's choice
# of a cooperative wait function) is made from gevent's versions. Each worker patches
# again when it starts, which is a no-op by then.
import gevent  # type: ignore[import-untyped]  # no type information shipped
from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402 - after the patch, on purpose
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from gunicorn.glogging import Logger  # type: ignore[import-untyped]  # noqa: E402
from gunicorn.http import message  # type: ignore[import-untyped]  # noqa: E402

from sentiment_clf import logs  # noqa: E402
from sentiment_clf.config import Settings, unknown_variables  # noqa: E402
from sentiment_clf.server.worker_balance import BalancedStreamServer, ConnectionCounts  # noqa: E402

# What gunicorn reads: its settings and hooks, by name.
__all__ = ["bind", "child_exit", "control_socket_disable", "graceful_timeout", "keepalive", "limit_request_line",
           "logconfig_dict", "logger_class", "loglevel", "on_exit", "post_fork", "post_request", "post_worker_init",
           "pre_fork", "preload_app", "timeout", "worker_class", "worker_connections", "workers"]

if unknown_variables():  # an operator's typo stops the start, named, before gunicorn binds
    raise SystemExit("sentiment-clf: " + "; ".join(unknown_variables()))
_settings = Settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers
# One gevent worker serves many connections at once, each in a greenlet: one that
# sends nothing, or dribbles its request a byte at a time, holds a greenlet and a
# socket, not the worker. The work of a request is CPU-bound and short, so the
# greenlets take turns; up to worker_connections connections per worker (more wait
# in the listen backlog).
worker_class = "gevent"
worker_connections = _settings.worker_connections
# Seconds a connection may wait for its next request head, and the bound on reading
# each head (gunicorn's async workers read every head under this timeout): a client
# that sends nothing, or not a whole head in this time, is disconnected. Whole
# seconds for gunicorn, rounded up.
keepalive = math.ceil(_settings.keepalive)
# A worker that does not report to the master for this long is killed and replaced.
# A gevent worker reports from its own greenlet, so it misses only when one request
# holds the CPU that long; the app cuts a request at its time budget with a JSON 503,
# well before this.
timeout = max(30, math.ceil(3 * _settings.request_time_budget))
# The app is made once, in the master, before the workers are forked: they share its
# imported code and loaded models (copy-on-write pages; the model arrays are
# memory-mapped anyway), so each worker adds ~20 MiB instead of ~55, and a start
# imports everything once. The app holds nothing a fork would break: the database
# pool is emptied in each child (feedback/store.py), and Prometheus and the rate limiter
# open their per-process state on first use.
preload_app = True
# gunicorn's own bounded limit on the request line is at most 8190 bytes, less than a
# query of MAX_QUERY_CHARS characters needs in a URL; 0 (no limit) lets a long GET
# query reach the app and get its JSON 413 instead of gunicorn's HTML 414. But with
# no limit, gunicorn's Python parser buffers a request line of any size and scans the
# whole buffer again after every 8 KiB it reads: a 64 MiB line held a worker's CPU
# (and, with gevent, every connection of that worker) until the worker timeout killed
# it. So the unlimited case is capped here, at what a query of MAX_QUERY_CHARS
# characters can take percent-encoded (up to 12 bytes a character) plus room for the
# path and other parameters: a longer line gets gunicorn's 414 at once. (gunicorn's
# optional C parser, gunicorn_h1c, is not installed; it would cap the line at 1 MiB.)
limit_request_line = 0
REQUEST_LINE_CAP = 12 * _settings.max_query_chars + 8192
_read_line = message.Request.read_line


def _read_line_capped(self, unreader, buf, limit=0):
    return _read_line(self, unreader, buf, limit or REQUEST_LINE_CAP)


message.Request.read_line = _read_line_capped
graceful_timeout = 20
loglevel = _settings.log_level.lower()
# One JSON object per line from gunicorn and the app alike (sentiment_clf/logs.py).
logconfig_dict = logs.gunicorn_config(_settings.log_level)


class ScrubbedLogger(Logger):
    """gunicorn's error log without what a client sent: a malformed request's line or
    header (which may hold a query's text) and a failed request's query string are left
    out; what went wrong, and from which address, stays."""

    def warning(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith("Invalid request from ip="):
            # "Invalid request from ip=X: Invalid HTTP request line: 'GET /?query=...'"
            msg = ": ".join(msg.split(": ", 2)[:2]) + " (the request's text is not logged)"
        super().warning(msg, *args, **kwargs)

    def access(self, *args, **kwargs):
        """Off: its line holds the query string. The app logs each request without it."""

    def exception(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith("Error handling request"):
            args = tuple(str(arg).split("?", 1)[0] for arg in args)  # the URI's path, not its query
        super().exception(msg, *args, **kwargs)


logger_class = ScrubbedLogger
# gunicorn 27 opens a control socket at one fixed path per user; two servers on
# one machine would fight over it, and nothing here uses it.
control_socket_disable = True


# Prometheus multiprocess mode: the workers' metrics go to files in one folder,
# fresh for each server start, so GET /metrics adds up every worker's numbers.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sentiment-clf-metrics-")
else:
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


# Kept-alive connections spread evenly over the workers (worker_balance.py):
# one slot per worker in memory the workers share, made here, before they are forked.
_connection_counts = ConnectionCounts(slots=64)


def pre_fork(server, worker):
    worker.balance_slot = _connection_counts.take_slot() if _settings.balance_connections else None
    # A timer the app started in the master (the rate limiter's in-memory storage starts
    # one of 0.01 s) is a greenlet after the patch; one forked half-run fails in the
    # worker with a traceback in the log. Let it finish first.
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(timeout=1)
    # Python's collector would write to every object the workers inherit, turning the
    # pages they share with the master into private copies; frozen objects it skips.
    gc.freeze()


def post_fork(server, worker):
    from gunicorn.workers import ggevent  # type: ignore[import-untyped]

    if not _settings.balance_connections:
        return
    BalancedStreamServer.counts, BalancedStreamServer.slot = _connection_counts, worker.balance_slot
    ggevent.StreamServer = BalancedStreamServer  # the server gunicorn's gevent worker builds


def post_request(worker, req, environ, resp):
    # A gevent worker reads a kept-alive connection's next request without yielding when
    # it is already buffered, so a client that pipelines requests (or sends each one the
    # moment the last answer arrives) kept its greenlet running, and every other
    # connection of that worker waited: a health check sat 3-4 s behind 3,000 pipelined
    # predictions, and at concurrency 8 on the fast tier p90 was 55 ms though a request
    # takes under 1 ms in the app. One turn of the event loop after each request lets
    # the others in (tests/test_adversarial_server.py, bench/experiments/fairness.py).
    gevent.sleep(0)


def post_worker_init(worker):
    # The accurate tier's ONNX sessions are made in each worker (one made in the master
    # would not survive the fork), here rather than on the first request.
    services = getattr(worker.wsgi, "extensions", {}).get("sentiment_clf")
    encoders = {id(head.encoder): head.encoder for head in getattr(services, "accurate", {}).values()}
    for encoder in encoders.values():  # several heads share each encoder
        encoder.warm()
    # Each worker reads new feedback and versions in a greenlet of its own: no request
    # waits on the database for a model (feedback/online.py).
    if services is not None:
        services.registry.start_background()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    _connection_counts.free_slot(getattr(worker, "balance_slot", None))

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if Path(folder).name.startswith("sentiment-clf-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
