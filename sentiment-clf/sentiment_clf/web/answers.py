"""What the endpoints answer: a prediction's JSON shape, and storing a user's answer.

The models themselves know nothing about HTTP; this module turns their
probabilities into answers and maps storage failures to HTTP errors.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

import numpy as np
from flask import Response, current_app
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import InternalServerError, NotFound, ServiceUnavailable, TooManyRequests, UnprocessableEntity

from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.policy import LearningPolicy, RateLimited
from sentiment_clf.feedback.store import IdempotencyKeyReused, Storage, Stored
from sentiment_clf.serving import documents
from sentiment_clf.serving.accurate import AccurateHead, Reading
from sentiment_clf.serving.decisions import decide
from sentiment_clf.tasks import MODELS
from sentiment_clf.web import metrics
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


def fast_answer(model, name: str, query: str, explain: bool = False, version: str = "") -> dict:
    """The fast model ``name``'s answer for one text, read whole (by sentence if it learned
    from sentences)."""
    probabilities, read = documents.read(model, query, MODELS[name].by_sentence)
    return answer(model, probabilities, query, explain, "fast", version, read, name)


def accurate_answer(head: AccurateHead, reading: Reading, query: str, explain: bool = False,
                    version: str = "") -> dict:
    """An accurate head's answer for one text from the encoder's reading of it (one reading
    serves every head)."""
    return answer(head, head.proba(reading.vector[np.newaxis, :], [query])[0], query, explain, "accurate",
                  version, reading.read, head.name)


def read_accurate(head: AccurateHead, query: str) -> Reading:
    """The encoder's reading of ``query``, queued with the worker's other requests; a 500
    that says what to do if the network failed on it."""
    try:
        return head.encoder.read_one(query)
    except Exception:  # the whole micro-batch failed: its requests (only) get this error
        logger.exception("the accurate model failed on a micro-batch")
        raise InternalServerError("the accurate model failed on the batch this request was part of; "
                                  "nothing was stored, so retry (or use variant=fast)") from None


def model_answer(model, name: str, query: str, variant: str, version: str = "") -> dict:
    """One model's answer (no levels, no explanation) on tier ``variant``."""
    if variant == "accurate":
        return accurate_answer(model, read_accurate(model, query), query, False, version)
    return fast_answer(model, name, query, False, version)


def _with_levels(name: str) -> dict[str | None, str]:
    """Model ``name`` under the key None, and its levels' models under their keys."""
    names: dict[str | None, str] = {None: name}
    names.update(MODELS[name].levels)
    return names


def predict(services: Services, name: str, query: str, explain: bool, variant: str) -> dict:
    """Model ``name``'s answer for one text on tier ``variant``, with its levels' answers
    under their keys (``/questions`` answers ``"fine"`` too)."""
    names = _with_levels(name)
    found: dict[str | None, dict] = {}
    readings: dict[int, Reading] = {}  # one reading per encoder serves its heads
    for key, other in names.items():
        model, version = services.model(other, variant)
        if variant == "accurate":
            if id(model.encoder) not in readings:
                readings[id(model.encoder)] = read_accurate(model, query)
            found[key] = accurate_answer(model, readings[id(model.encoder)], query, explain, version)
        else:
            found[key] = fast_answer(model, other, query, explain, version)
    result = found.pop(None)
    result.update(found)
    return result


def predict_many(services: Services, name: str, texts: list[str], explain: bool, variant: str) -> list[dict]:
    """:func:`predict` of each text (the fast tier weighs the batch in one call; the
    accurate tier reads each text alone, so its answers equal the single ones)."""
    names = _with_levels(name)
    found: dict[str | None, list[dict]] = {}
    by_encoder: dict[int, list[Reading]] = {}  # one reading per encoder serves its heads
    for key, other in names.items():
        model, version = services.model(other, variant)
        if variant == "accurate":
            if id(model.encoder) not in by_encoder:
                by_encoder[id(model.encoder)] = model.encoder.read_many(texts)  # off the event loop
            readings = by_encoder[id(model.encoder)]
            rows = model.proba(np.stack([r.vector for r in readings]), texts)
            found[key] = [answer(model, row, text, explain, variant, version, r.read, other)
                          for row, text, r in zip(rows, texts, readings, strict=True)]
        else:
            rows, reads = documents.read_many(model, texts, MODELS[other].by_sentence)
            found[key] = [answer(model, row, text, explain, variant, version, read, other)
                          for row, text, read in zip(rows, texts, reads, strict=True)]
    results = found.pop(None)
    for key, answers in found.items():
        for result, level in zip(results, answers, strict=True):
            result[key] = level
    return results


def thresholds(name: str) -> dict[str, float] | None:
    """The decision thresholds set for model ``name`` (THRESHOLDS), or None."""
    return current_app.extensions["thresholds"].get(name)


def answer(model, probabilities, query: str, explain: bool = False, variant: str = "fast",
           version: str = "", read: dict | None = None, name: str | None = None) -> dict:
    """The answer's shape, from the text's probabilities in the model's label order; the
    label is the most probable one unless THRESHOLDS sets one for model ``name``."""
    values = probabilities.tolist()
    set_here = thresholds(name) if name else None
    best = decide(model.labels, values, set_here)
    result = {
        "prediction": model.labels[best],
        "confidence": values[best],
        "probabilities": dict(zip(model.labels, values, strict=True)),
        "variant": variant,
        "version": version,
    }
    if read is not None:
        result["read"] = read
    if set_here:
        result["thresholds"] = dict(set_here)
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
    shown, version, tier = (accurate[name], accurate[name].version, "accurate") if variant == "accurate" and accurate \
        else (online.model, online.version, "fast")
    prediction = model_answer(shown, name, query, tier)["prediction"]
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
    except SQLAlchemyError as exc:  # no traceback: a database's message may quote what was sent
        logger.error("could not store feedback (%s: %s)", type(exc).__name__, (str(exc).splitlines() or [""])[0])
        raise ServiceUnavailable("the feedback could not be stored; nothing was saved, try again") from None
    if stored.created:
        metrics.FEEDBACK.labels(name, label).inc()
    if stored.learned:
        registry.sync()
    return stored
