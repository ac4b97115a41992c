"""The optional per-client limit on predictions (flask-limiter, PREDICT_RATE_LIMIT).

Answers are limited elsewhere: FEEDBACK_RATE_LIMIT is counted in the database as
each answer is stored (``storage.add_feedback``), per client across every worker,
every server and both feedback routes. flask-limiter's counters here live in
RATELIMIT_STORAGE_URI (per process with the default ``memory://``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify
from flask_limiter import Limiter, RouteLimit
from werkzeug.exceptions import TooManyRequests

from sentiment_clf.web.clients import client_address
from sentiment_clf.web.errors import json_error


def install(app: Flask, prediction_endpoints: list[str]) -> Limiter | None:
    """Limit the prediction endpoints when PREDICT_RATE_LIMIT is set, per client address
    (TRUSTED_PROXIES' X-Forwarded-For counts, as for answers); else nothing is installed."""
    if not app.config["PREDICT_RATE_LIMIT"]:
        return None
    limiter = Limiter(client_address, app=app, on_breach=_rate_limited)
    _limit(app, prediction_endpoints, limiter.limit(app.config["PREDICT_RATE_LIMIT"]))
    return limiter


def _limit(app: Flask, endpoints: Iterable[str], limit: RouteLimit) -> None:
    for endpoint in endpoints:
        view: Callable[..., Any] = app.view_functions[endpoint]  # Flask's type: a sync or an async view
        app.view_functions[endpoint] = limit(view)


def _rate_limited(limit):
    """A 429 with a clear message and Retry-After, in the route's error shape."""
    retry_after = max(1, int(limit.reset_at - time.time()))
    body, status, headers = json_error(TooManyRequests(f"too many requests from this client: the limit is "
                                                       f"{limit.limit}; try again in {retry_after} s",
                                                       retry_after=retry_after))
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response
