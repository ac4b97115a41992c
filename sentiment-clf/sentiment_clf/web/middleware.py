"""What every request goes through: a request id, one JSON log line, metrics,
and security headers (errors: ``errors.py``)."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import current_app, g, request

from sentiment_clf import logs
from sentiment_clf.web import metrics
from sentiment_clf.web.answers import services
from sentiment_clf.web.inputs import check_url

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("sentiment_clf.access")


def empty_path_is_root(wsgi_app):
    """WSGI: an absolute-form request target without a path (``GET http://host HTTP/1.1``)
    asks for ``/``, as RFC 9112 says; werkzeug would answer it with an HTML redirect."""
    def app(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return wsgi_app(environ, start_response)

    return app


def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    check_url()


def log_request(response):
    """One JSON line per request: no query text, no body, nothing a user typed but the path.

    Also counts the request in the metrics, with labels from closed sets (``metrics.py``).
    """
    response.headers["X-Request-ID"] = g.get("request_id", "")
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.count_request(request.method, request.url_rule, response.status_code, seconds)
    if current_app.config["ACCESS_LOG"] and access_log.isEnabledFor(logging.INFO):
        access_log.info("request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3), "request_id": g.get("request_id")})
    return response


def security_headers(response):
    """No sniffing anywhere; pages may not be framed, run other sites' code or post elsewhere."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        # Only /docs runs scripts (Swagger UI, served from here); the other pages none.
        scripts = "script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:" \
            if request.path == "/docs" else "script-src 'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; {scripts}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def metrics_page():
    metrics.record_versions(services().registry.served())
    body, content_type = metrics.exposition()
    return current_app.response_class(body, mimetype=None, content_type=content_type)


def configure_logging(level: str) -> None:
    logs.configure(level)
