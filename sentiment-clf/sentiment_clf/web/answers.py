"""What the resources work with (:class:`Services`) and the two things every endpoint does
with it: ask serving for answers, and hand a user's answer to feedback."""
from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Response, current_app

from sentiment_clf.feedback import Client as FeedbackClient
from sentiment_clf.feedback import FeedbackService, ModelRegistry, Storage, Stored
from sentiment_clf.serving import AccurateHead, predict
from sentiment_clf.web import metrics


@dataclass(frozen=True)
class Services:
    """What the resources work with; ``create_app`` makes one per app."""

    registry: ModelRegistry
    storage: Storage
    feedback: FeedbackService

    @property
    def accurate(self) -> dict[str, AccurateHead]:
        """The accurate tier's heads serving now, by model name (none if no accurate model loaded)."""
        return self.registry.accurate()

    def answers(self, name: str, texts: list[str], variant: str, explain: bool = False, levels: bool = True,
                batch: bool = False) -> list[dict]:
        """Model ``name``'s answers on tier ``variant`` (``serving.predict``), with the
        decision thresholds the operator set (THRESHOLDS)."""
        return predict(self.registry.serving, name, texts, variant, explain, current_app.extensions["thresholds"],
                       levels, batch)

    def submit(self, name: str, query: str, label: str, variant: str, key: str | None = None,
               client: FeedbackClient | None = None) -> Stored:
        """Store a user's answer with the answer they were shown (the ``variant`` tier's, now),
        and count it. Raises the service's errors (feedback's front door says which)."""
        if variant == "accurate" and name not in self.accurate:  # no accurate model loaded: the fast one answered
            variant = "fast"
        shown = self.answers(name, [query], variant, levels=False)[0]
        stored = self.feedback.submit(model=name, text=query, label=label, prediction=shown["prediction"],
                                      version=shown["version"], key=key, client=client)
        if stored.created:
            metrics.FEEDBACK.labels(name, label).inc()
        return stored


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


def thresholds(name: str) -> dict[str, float] | None:
    """The decision thresholds set for model ``name`` (THRESHOLDS), or None."""
    return current_app.extensions["thresholds"].get(name)
