"""Logs a machine can read: one JSON object per line from every source (gunicorn's
master and workers, the app, the access log), each with ``timestamp`` (ISO 8601, UTC),
``level``, ``logger`` and ``message``, the ``request_id`` of the request being served
where there is one, and whatever fields the call gave (``extra=``). A query's text is
never logged: the access log holds the method, the path, the status and the duration.
"""
from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter


class RequestId(logging.Filter):
    """Adds the id of the request being served (``X-Request-ID``, or drawn) to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            from flask import g, has_request_context

            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def formatter() -> logging.Formatter:
    return JsonFormatter("{levelname}{name}{message}", style="{", timestamp=True,
                         rename_fields={"levelname": "level", "name": "logger"})


def gunicorn_config(level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error log and the root logger, which the app's
    loggers reach, write JSON lines to stderr. (gunicorn's own access log, which would
    hold the query string, stays off: the app writes one line per request.)"""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": formatter}},
        "filters": {"request_id": {"()": RequestId}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False}},
    }


def configure(level: str) -> None:
    """The app's logs as JSON lines on stderr where nothing configured them yet (outside
    gunicorn: ``flask run``, a test, a notebook)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter())
        handler.addFilter(RequestId())
        root.addHandler(handler)
    root.setLevel(level.upper())
