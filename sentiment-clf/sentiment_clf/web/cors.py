"""Browser front-ends on other origins: CORS on the API's routes, for the origins the
CORS_ORIGINS setting names (flask-cors).

Empty (the default) adds nothing: a browser lets only pages of the service's own origin
read its answers. The page (/ui), /docs and /metrics never answer other origins. No
credentials are allowed (cookies or HTTP authentication): a front-end that sends an API
key sends it in a header it names, which the preflight allows. ``*`` answers any origin,
which is safe only because of that.
"""
from __future__ import annotations

from flask import Flask
from flask_cors import CORS

# Every path but the page's, the API document's viewer and the metrics.
API_PATHS = r"^/(?!ui(/|$)|docs(/|$)|metrics$).*"
REQUEST_HEADERS = ["Content-Type", "Authorization", "X-API-Key", "Idempotency-Key", "X-Request-ID"]
ANSWER_HEADERS = ["X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


def install(app: Flask, origins: list[str]) -> None:
    """Answer preflights and add the CORS headers on the API's routes for ``origins``."""
    if not origins:
        return
    CORS(app, resources={API_PATHS: {"origins": origins}}, methods=["GET", "POST", "OPTIONS"],
         allow_headers=REQUEST_HEADERS, expose_headers=ANSWER_HEADERS, supports_credentials=False, max_age=600,
         send_wildcard=origins == ["*"],
         vary_header=True)
