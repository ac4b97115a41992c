"""A bare WSGI app for bench/experiments/bare_ceiling.py: the accurate sentiment head without Flask.

``GET /?query=...`` answers ``{"prediction", "confidence"}`` from the committed
accurate model through the same micro-batcher as the service; ``GET /constant``
answers a constant JSON. No Flask, no middleware, no validation beyond what the
measurement needs: it shows what gunicorn's gevent worker plus the model cost on
their own, the least any WSGI app on this server could spend. Not for serving.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

MODEL_DIR = Path(__file__).resolve().parents[2] / "sentiment-clf" / "lib" / "models" / "accurate"
_CONSTANT = json.dumps({"prediction": "Negative", "confidence": 0.9}).encode()


def create_app():
    from sentiment_clf.serving.accurate import load_accurate

    head = load_accurate(MODEL_DIR)["sentiment"]

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/constant":
            body = _CONSTANT
        else:
            query = parse_qs(environ.get("QUERY_STRING", "")).get("query", [""])[0]
            proba = head.predict_one(query)
            best = int(proba.argmax())
            body = json.dumps({"prediction": head.labels[best], "confidence": float(proba[best])}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return application
