"""What the endpoints answer: a prediction's JSON shape, and storing a user's answer.

The models themselves know nothing about HTTP; this module turns their
probabilities into answers and maps storage failures to HTTP errors.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

from flask import Response, current_app
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound, ServiceUnavailable, TooManyRequests, UnprocessableEntity

from sentiment_clf import metrics
from sentiment_clf.accurate import AccurateHead
from sentiment_clf.learning import ModelRegistry
from sentiment_clf.storage import IdempotencyKeyReused, Storage, Stored
from sentiment_clf.trust import LearningPolicy, RateLimited
from sentiment_clf.web.clients import Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the resources work with; ``create_app`` makes one per app."""

    registry: ModelRegistry
    storage: Storage

    @property
    def accurate(self) -> dict[str, AccurateHead]:
        """The accurate tier's heads serving now, by model name (none if no accurate model loaded)."""
        return self.registry.accurate()

    def model(self, name: str, variant: str):
        """The model that answers for ``name`` in ``variant``, and its version."""
        if variant == "accurate":
            try:
                head = self.accurate[name]
            except KeyError:
                raise NotFound("the accurate tier is not served here (no accurate model was loaded)") from None
            return head, head.version
        online = self.registry.get(name)
        return online.model, online.version


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


def predict_one(model, query: str, explain: bool = False, variant: str = "fast", version: str = "") -> dict:
    """The answer for one text: the best label, its probability, and every label's."""
    return answer(model, model.predict_one(query), query, explain, variant, version)


def answer(model, probabilities, query: str, explain: bool = False, variant: str = "fast",
           version: str = "") -> dict:
    """The answer's shape, from the text's probabilities in the model's label order."""
    values = probabilities.tolist()
    best = max(range(len(values)), key=values.__getitem__)  # the first of equals, as argmax
    result = {
        "prediction": model.labels[best],
        "confidence": values[best],
        "probabilities": dict(zip(model.labels, values, strict=True)),
        "variant": variant,
        "version": version,
    }
    if explain:
        result["explanation"] = model.explain(query)
    return result


def learning_policy() -> LearningPolicy:
    """The current app's per-client limits (FEEDBACK_RATE_LIMIT, CLIENT_LEARNING_BUDGET)."""
    config = current_app.config
    return _policy(config["FEEDBACK_RATE_LIMIT"], config["CLIENT_LEARNING_BUDGET"])


@functools.lru_cache(maxsize=8)
def _policy(rate_limit: str, budget: str) -> LearningPolicy:
    return LearningPolicy.parse(rate_limit, budget)


def store_feedback(registry: ModelRegistry, storage: Storage, name: str, query: str, label: str,
                   key: str | None = None, client: Client | None = None, variant: str = "fast",
                   accurate: dict[str, AccurateHead] | None = None) -> Stored:
    """Store an answer with what the model predicted, then learn it here at once if it
    is to be learned online (the database decides: ``trust.py``).

    Raises a 422 for an Idempotency-Key reused with another answer, a 429 (with
    Retry-After) when the client sent its limit of answers, a 503 when the database
    cannot store it.
    """
    online = registry.get(name)
    # What the user saw: the answer of the tier asked about, and that model's version. The
    # label is about the text, so the fast model learns it online under the same policy
    # whichever tier answered; the accurate tier learns stored answers when retrained.
    shown, version = (accurate[name], accurate[name].version) if variant == "accurate" and accurate \
        else (online.model, online.version)
    prediction = predict_one(shown, query)["prediction"]
    try:
        stored = storage.add_feedback(
            model=name, text=query, label=label, prediction=prediction, model_version=version,
            request_key=key, client=client.id if client else None, trusted=bool(client and client.trusted),
            online=online.model.supports_partial_fit, policy=learning_policy())
    except IdempotencyKeyReused as exc:
        raise UnprocessableEntity(str(exc)) from None
    except RateLimited as exc:
        raise TooManyRequests(f"too many answers from this client: the limit is {exc.limit}; "
                              f"try again in {exc.retry_after} s", retry_after=exc.retry_after) from None
    except SQLAlchemyError:
        logger.exception("could not store feedback")
        raise ServiceUnavailable("the feedback could not be stored; nothing was saved, try again") from None
    if stored.created:
        metrics.FEEDBACK.labels(name, label).inc()
    if stored.learned:
        registry.sync()
    return stored
