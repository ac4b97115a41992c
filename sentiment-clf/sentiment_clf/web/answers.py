"""What the endpoints answer: a prediction's JSON shape, and storing a user's answer.

The models themselves know nothing about HTTP; this module turns their
probabilities into answers and maps storage failures to HTTP errors.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import Response, current_app
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import Conflict, ServiceUnavailable

from sentiment_clf import metrics
from sentiment_clf.learning import ModelRegistry
from sentiment_clf.storage import IdempotencyKeyReused, Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the resources work with; ``create_app`` makes one per app."""

    registry: ModelRegistry
    storage: Storage


def services() -> Services:
    """The current app's services (for code outside the resources: the page, hooks)."""
    return current_app.extensions["sentiment_clf"]


def json_response(data) -> Response:
    """``data`` as a JSON response, written as Flask-RESTful writes it.

    The prediction endpoints answer with a ready response: Flask-RESTful would
    otherwise negotiate the media type twice per request, and the only one it
    offers is JSON anyway.
    """
    return current_app.response_class(json.dumps(data) + "\n", mimetype="application/json")


def predict_one(model, query: str, explain: bool = False) -> dict:
    """The answer for one text: the best label, its probability, and every label's."""
    return answer(model, model.predict_one(query), query, explain)


def answer(model, probabilities, query: str, explain: bool = False) -> dict:
    """The answer's shape, from the text's probabilities in the model's label order."""
    values = probabilities.tolist()
    best = max(range(len(values)), key=values.__getitem__)  # the first of equals, as argmax
    result = {
        "prediction": model.labels[best],
        "confidence": values[best],
        "probabilities": dict(zip(model.labels, values, strict=True)),
    }
    if explain:
        result["explanation"] = model.explain(query)
    return result


def store_feedback(registry: ModelRegistry, storage: Storage, name: str, query: str, label: str,
                   key: str | None = None) -> int:
    """Store an answer with what the model predicted, then learn it here at once."""
    online = registry.get(name)
    prediction = predict_one(online.model, query)["prediction"]  # what the endpoint answers
    try:
        feedback_id, _ = storage.add_feedback(
            model=name, text=query, label=label, prediction=prediction,
            model_version=online.version, request_key=key)
    except IdempotencyKeyReused as exc:
        raise Conflict(str(exc)) from None
    except SQLAlchemyError:
        logger.exception("could not store feedback")
        raise ServiceUnavailable("the feedback could not be stored; nothing was saved, try again") from None
    metrics.FEEDBACK.labels(name, label).inc()
    registry.sync()
    return feedback_id
