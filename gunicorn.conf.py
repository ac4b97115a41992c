"""gunicorn settings, read when gunicorn starts in this folder (the repository root).

gunicorn looks for this file before it applies ``--chdir sentiment-clf``, so it
lives here. Host, port and workers come from the same environment variables as
the app (sentiment-clf/sentiment_clf/config.py). Binding is explicit: gunicorn on its own
would bind 0.0.0.0 whenever a PORT variable is set.
"""
import gc
import os
import shutil
import tempfile
from pathlib import Path

from sentiment_clf.config import Settings

_settings = Settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers
# The app is made once, in the master, before the workers are forked: they share its
# imported code and loaded models (copy-on-write pages; the model arrays are
# memory-mapped anyway), so each worker adds ~20 MiB instead of ~55, and a start
# imports everything once. The app holds nothing a fork would break: the database
# pool is emptied in each child (storage.py), and Prometheus and the rate limiter
# open their per-process state on first use.
preload_app = True
# 0 lets a request line reach gunicorn's hard cap of 1 MiB, so a long GET query
# reaches the app and gets its JSON 413 instead of gunicorn's plain-text 400.
limit_request_line = 0
graceful_timeout = 20
loglevel = _settings.log_level.lower()
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


def pre_fork(server, worker):
    # Python's collector would write to every object the workers inherit, turning the
    # pages they share with the master into private copies; frozen objects it skips.
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if Path(folder).name.startswith("sentiment-clf-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
