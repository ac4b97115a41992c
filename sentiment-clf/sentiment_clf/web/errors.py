"""Every error answers JSON, ``{"message": "..."}``: the one place the service's errors
(``sentiment_clf.errors``) become HTTP answers, on the API's routes and elsewhere.

The page (``ui.py``) shows the same errors as pages, through :func:`http_error`.
"""
from __future__ import annotations

from flask import request
from flask_restful import Api
from werkzeug.exceptions import HTTPException, TooManyRequests, default_exceptions

from sentiment_clf.errors import ServiceError


def http_error(error: ServiceError) -> HTTPException:
    """``error`` as the HTTP error it answers with (its status, message and Retry-After)."""
    kind = default_exceptions[error.status]
    if error.retry_after is not None and (kind is TooManyRequests or error.status == 503):
        return kind(error.message, retry_after=error.retry_after)  # type: ignore[call-arg]
    return kind(error.message)


def json_error(error: HTTPException):
    """An HTTP error as JSON (keeping headers such as Allow and Retry-After): ``{"message":
    ...}``, or ``{"error": ...}`` on the Open Inference Protocol's routes, as it says."""
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    key = "error" if request.path == "/v2" or request.path.startswith("/v2/") else "message"
    return {key: error.description}, error.code, headers


def service_error(error: ServiceError):
    """A service error as JSON; no traceback is logged (the error is the answer)."""
    return json_error(http_error(error))


class ServiceApi(Api):
    """Flask-RESTful's Api, answering the service's errors as every other route does
    (Flask-RESTful would answer them as a 500 and log a traceback)."""

    def handle_error(self, e):
        if isinstance(e, ServiceError):
            return self.make_response(*service_error(e))
        if isinstance(e, HTTPException) and e.code and e.code < 500 and request.path.startswith("/v2"):
            return self.make_response(*json_error(e))  # the protocol's error shape
        return super().handle_error(e)
