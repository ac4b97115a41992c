"""The Flask-RESTful resources. ``app.py`` routes URLs to them.

Each resource gets what it works with through ``resource_class_kwargs``: the
:class:`~sentiment_clf.web.answers.Services` and, for predictions, the served
model's :class:`~sentiment_clf.tasks.ModelSpec`.
"""
from __future__ import annotations

import logging

from flask import current_app, request
from flask_restful import Resource
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ServiceUnavailable

from sentiment_clf import metrics
from sentiment_clf.tasks import MODELS, ModelSpec
from sentiment_clf.web.answers import Services, answer, json_response, predict_one, store_feedback
from sentiment_clf.web.inputs import read_batch, read_feedback, read_flag, read_query

logger = logging.getLogger(__name__)


class _ServiceResource(Resource):
    def __init__(self, services: Services):
        self.registry = services.registry
        self.storage = services.storage


class Prediction(_ServiceResource):
    """``GET`` or ``POST`` one ``query``: the model's answer.

    With ``explain=1`` the answer also says which terms pushed it. A model with
    ``levels`` answers them too, under their keys: ``/questions`` gives the
    coarse class and ``"fine"``.
    """

    def __init__(self, services: Services, spec: ModelSpec):
        super().__init__(services)
        self.spec = spec

    def get(self):
        return self.predict()

    def post(self):
        return self.predict()

    def predict(self):
        query, explain = read_query(), read_flag("explain")
        result = predict_one(self.registry.get(self.spec.name).model, query, explain)
        metrics.count_prediction(self.spec.name, result["prediction"])
        for key, other in self.spec.levels.items():
            result[key] = predict_one(self.registry.get(other).model, query, explain)
        return json_response(result)


class BatchPrediction(_ServiceResource):
    """``POST {"queries": ["...", ...]}``: up to MAX_BATCH texts, one answer each, in order."""

    def __init__(self, services: Services, spec: ModelSpec):
        super().__init__(services)
        self.spec = spec

    def post(self):
        # A batch may be larger than one query's body; the bound is still set before reading.
        request.max_content_length = current_app.config["MAX_BATCH_BYTES"]
        texts, explain = read_batch()
        model = self.registry.get(self.spec.name).model
        results = [answer(model, row, text, explain)
                   for row, text in zip(model.predict_proba(texts), texts, strict=True)]
        for key, other in self.spec.levels.items():
            other_model = self.registry.get(other).model
            for result, row, text in zip(results, other_model.predict_proba(texts), texts, strict=True):
                result[key] = answer(other_model, row, text, explain)
        for result in results:
            metrics.count_prediction(self.spec.name, result["prediction"])
        return json_response({"results": results})


class Health(_ServiceResource):
    """Alive, with each model's version and labels."""

    def get(self):
        return {
            "status": "ok",
            "models": {name: {"version": m.version, "labels": list(m.model.labels)}
                       for name, m in self.registry.served().items()},
        }


class Ready(_ServiceResource):
    """For a load balancer: 200 when the models are loaded and the database answers."""

    def get(self):
        try:
            self.storage.last_feedback_id()
        except SQLAlchemyError:
            logger.exception("readiness check: the database does not answer")
            raise ServiceUnavailable("not ready: the database does not answer") from None
        return {"status": "ready", "models": sorted(self.registry.served())}


class Feedback(_ServiceResource):
    """``POST {"model": "sentiment", "query": "...", "label": "Positive"}``: a user's answer.

    Answers 201 ``{"id": N}`` once the answer is committed to the database. An
    ``Idempotency-Key`` header makes a retried request return the first id
    instead of storing the answer twice.
    """

    def post(self):
        given, key = read_feedback()
        feedback_id = store_feedback(self.registry, self.storage, given.model, given.query, given.label, key)
        return {"id": feedback_id}, 201


class Models(_ServiceResource):
    """The models served: version, labels, training data, feedback and metrics."""

    def get(self):
        stored = self.storage.feedback_counts()
        routes = {spec.name: spec.endpoint for spec in MODELS.values() if spec.endpoint}
        for spec in MODELS.values():
            routes.update({other: f"{spec.endpoint} ({key})" for key, other in spec.levels.items()})
        return {"models": [_describe(name, m, routes[name], stored.get(name, 0))
                           for name, m in self.registry.served().items()]}


def _describe(name: str, online, route: str, stored: int) -> dict:
    manifest = online.model.manifest_
    training_data = manifest.get("training_data", {})
    return {
        "name": name,
        "endpoint": route,
        "classifier": online.model.classifier,
        "learns_online": online.model.supports_partial_fit,
        "version": online.version,
        "base_version": online.base_version,
        "labels": list(online.model.labels),
        "training_data": {
            "phrases": training_data.get("train_phrases"),
            # answers folded into a retrained version, plus those learned on top of it
            "feedback_learned": training_data.get("feedback_learned", 0) + online.learned},
        "feedback_stored": stored,
        "metrics": manifest.get("metrics", {}),
    }
