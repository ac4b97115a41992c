"""gunicorn settings, read when gunicorn starts in this folder (the repository root).

gunicorn looks for this file before it applies ``--chdir sentiment-clf``, so it
lives here. Host, port and workers come from the same environment variables as
the app (sentiment-clf/config.py). Binding is explicit: gunicorn on its own
would bind 0.0.0.0 whenever a PORT variable is set.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "sentiment-clf"))
from config import Settings  # noqa: E402

_settings = Settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers
# 0 lets a request line reach gunicorn's hard cap of 1 MiB, so a long GET query
# reaches the app and gets its JSON 413 instead of gunicorn's plain-text 400.
limit_request_line = 0
graceful_timeout = 20
loglevel = _settings.log_level.lower()
# gunicorn 27 opens a control socket at one fixed path per user; two servers on
# one machine would fight over it, and nothing here uses it.
control_socket_disable = True
