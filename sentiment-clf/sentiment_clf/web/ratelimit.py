"""Per-client rate limits (flask-limiter): answers always, predictions when configured."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify, request
from flask_limiter import Limiter, RouteLimit
from flask_limiter.util import get_remote_address

FEEDBACK_ENDPOINTS = ("feedback", "ui.feedback")


def install(app: Flask, prediction_endpoints: list[str]) -> Limiter:
    """Limit the feedback endpoints always (answers change the models: one client may
    send only so many), the prediction endpoints only when PREDICT_RATE_LIMIT is set."""
    limiter = Limiter(get_remote_address, app=app, on_breach=_rate_limited)
    _limit(app, FEEDBACK_ENDPOINTS, limiter.limit(lambda: app.config["FEEDBACK_RATE_LIMIT"]))
    if app.config["PREDICT_RATE_LIMIT"]:
        _limit(app, prediction_endpoints, limiter.limit(app.config["PREDICT_RATE_LIMIT"]))
    return limiter


def _limit(app: Flask, endpoints: Iterable[str], limit: RouteLimit) -> None:
    for endpoint in endpoints:
        view: Callable[..., Any] = app.view_functions[endpoint]  # Flask's type: a sync or an async view
        app.view_functions[endpoint] = limit(view)


def _rate_limited(limit):
    """A 429 with a clear message and Retry-After; the page shows its own (ui.py)."""
    if request.blueprint == "ui":
        return None
    retry_after = max(1, int(limit.reset_at - time.time()))
    what = "answers" if request.endpoint == "feedback" else "requests"
    response = jsonify(message=f"too many {what} from this client: the limit is {limit.limit}; "
                               f"try again in {retry_after} s")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response
