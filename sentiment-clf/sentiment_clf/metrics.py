"""Prometheus metrics, correct with several gunicorn workers.

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
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
