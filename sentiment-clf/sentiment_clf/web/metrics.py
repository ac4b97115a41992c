"""Prometheus metrics, correct with several gunicorn workers.

The gunicorn settings (server/gunicorn_config.py) point ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start: each worker writes its numbers there and ``GET /metrics`` adds
them up (prometheus_client's multiprocess mode). Without that variable (tests,
a single process) the process's own registry answers.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("sentiment_clf_http_requests_total", "HTTP requests answered",
                   ["method", "endpoint", "status"])
LATENCY = Histogram("sentiment_clf_http_request_duration_seconds", "Time to answer an HTTP request",
                    ["method", "endpoint"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
PREDICTIONS = Counter("sentiment_clf_predictions_total", "Texts predicted, by model and predicted label",
                      ["model", "label"])
FEEDBACK = Counter("sentiment_clf_feedback_total", "Answers from users stored, by model and label",
                   ["model", "label"])
MODEL_INFO = Gauge("sentiment_clf_model_info", "1 for the version each model is served at",
                   ["model", "version"], multiprocess_mode="livemax")

_versions: dict[str, str] = {}
_prediction_counters: dict[tuple[str, str], Counter] = {}

# Every label value of the request metrics comes from a closed set, whatever a client
# sends: a method outside METHODS is "other"; the endpoint is the URL rule that matched
# (the app's own list) or "<unmatched>" (unknown paths, and methods a route lacks); the
# status is a code the app answers (werkzeug's errors and the app's own), else "other".
METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
UNMATCHED = "<unmatched>"
STATUSES = frozenset((200, 201, 204, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409, 411,
                      412, 413, 414, 415, 416, 417, 418, 422, 423, 424, 428, 429, 431, 451, 500, 501, 502,
                      503, 504, 505))
# (method, endpoint, status) -> (requests counter, latency histogram): bounded by the sets above.
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def count_request(method: str, rule, status: int, seconds: float) -> None:
    """Count one request answered with ``status`` and its latency; ``rule`` is the URL rule
    that matched, or None. Labels from closed sets; each child is looked up once."""
    key = (method, rule.rule if rule is not None else UNMATCHED, status)
    children = _request_children.get(key)
    if children is None:
        method = method if method in METHODS else "other"
        status_label = str(status) if status in STATUSES else "other"
        children = (REQUESTS.labels(method, key[1], status_label), LATENCY.labels(method, key[1]))
        if key[0] in METHODS and status in STATUSES:  # only known keys are kept: the cache stays bounded
            _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def count_prediction(model: str, label: str) -> None:
    """Count one prediction; each (model, label) child is looked up once, it is on every request."""
    counter = _prediction_counters.get((model, label))
    if counter is None:
        counter = _prediction_counters[model, label] = PREDICTIONS.labels(model, label)
    counter.inc()


def record_versions(served: dict) -> None:
    """Keep ``sentiment_clf_model_info`` at the versions this process serves."""
    for name, online in served.items():
        version = online.version
        if _versions.get(name) != version:
            if name in _versions:
                MODEL_INFO.labels(name, _versions[name]).set(0)
            MODEL_INFO.labels(name, version).set(1)
            _versions[name] = version


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type: every worker's, added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
