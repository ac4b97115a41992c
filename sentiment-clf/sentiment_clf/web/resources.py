"""The Flask-RESTful resources. ``app.py`` routes URLs to them.

Each resource gets what it works with through ``resource_class_kwargs``: the
:class:`~sentiment_clf.web.answers.Services` and, for predictions, the served
model's :class:`~sentiment_clf.tasks.ModelSpec`.
"""
from __future__ import annotations

import logging
import math
import time

from flask import current_app, request
from flask_restful import Resource
from werkzeug.exceptions import NotFound

from sentiment_clf.errors import OverBudget, StorageUnavailable
from sentiment_clf.feedback import NOT_LEARNED
from sentiment_clf.serving import budget, card_path, take_turn
from sentiment_clf.tasks import MODELS, ModelSpec
from sentiment_clf.web import metrics
from sentiment_clf.web.answers import Services, json_response, thresholds
from sentiment_clf.web.clients import identify
from sentiment_clf.web.inputs import read_batch, read_feedback, read_prediction, read_variant

logger = logging.getLogger(__name__)

# A batch is answered in chunks of about this many characters (or BATCH_CHUNK_TEXTS
# texts): between two, the request's time budget is checked and other requests on
# the worker get a turn, new ones on their sockets included (cooperative.take_turn).
# A chunk takes at most ~35 ms (1.75 µs a character, the slowest text measured, with explain).
BATCH_CHUNK_CHARS = 20_000
BATCH_CHUNK_TEXTS = 256
ACCURATE_CHUNK_CHARS = 2_000  # about 4 windows of the transformer, ~40 ms


class ServiceResource(Resource):
    def __init__(self, services: Services):
        self.services = services
        self.registry = services.registry


class Prediction(ServiceResource):
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
        asked = read_prediction()
        seconds = current_app.config["REQUEST_TIME_BUDGET"]
        try:
            with budget(seconds):  # from here: the work, the request read
                result = self.services.answers(self.spec.name, [asked.query], asked.variant, asked.explain)[0]
        except OverBudget:
            raise _over_budget(seconds) from None
        metrics.count_prediction(self.spec.name, result["prediction"])
        return json_response(result)


class BatchPrediction(ServiceResource):
    """``POST {"queries": ["...", ...]}``: up to MAX_BATCH texts, one answer each, in order."""

    def __init__(self, services: Services, spec: ModelSpec):
        super().__init__(services)
        self.spec = spec

    def post(self):
        # A batch may be larger than one query's body; the bound is still set before reading.
        request.max_content_length = current_app.config["MAX_BATCH_BYTES"]
        texts, explain = read_batch()
        results = answer_many(self.services, self.spec.name, texts, read_variant(), explain)
        return json_response({"results": results})


def answer_many(services: Services, name: str, texts: list[str], variant: str, explain: bool = False) -> list[dict]:
    """Model ``name``'s answers for ``texts`` on tier ``variant``, in chunks: between two,
    the request's time budget is checked (a 503 past it) and the worker's other requests
    get a turn. Counted in the metrics."""
    # The budget counts the work, from when the body has been read and checked.
    seconds = current_app.config["REQUEST_TIME_BUDGET"]
    deadline = time.perf_counter() + seconds
    # The transformer costs ~100x a linear model per text, and a long text is read in
    # windows: smaller chunks, so the deadline is checked often (an explained text is
    # one forward pass per word).
    accurate = variant == "accurate"
    results: list[dict] = []
    for chunk in _chunks(texts, (1 if explain else 16) if accurate else BATCH_CHUNK_TEXTS,
                         ACCURATE_CHUNK_CHARS if accurate else BATCH_CHUNK_CHARS):
        if time.perf_counter() > deadline:
            raise _over_budget(seconds, len(results), len(texts))
        take_turn()  # the worker's other requests run, and new ones are read
        try:
            with budget(deadline - time.perf_counter()):  # the accurate tier checks it inside a chunk too
                results += services.answers(name, chunk, variant, explain, batch=True)
        except OverBudget:
            raise _over_budget(seconds, len(results), len(texts)) from None
    for result in results:
        metrics.count_prediction(name, result["prediction"])
    return results


def _chunks(texts: list[str], most: int = BATCH_CHUNK_TEXTS, most_chars: int = BATCH_CHUNK_CHARS):
    """``texts`` in order, in runs of at most ``most`` texts and, but for a single long
    text, ``most_chars`` characters."""
    start, chars = 0, 0
    for end, text in enumerate(texts):
        if end > start and (chars + len(text) > most_chars or end - start == most):
            yield texts[start:end]
            start, chars = end, 0
        chars += len(text)
    yield texts[start:]


def _over_budget(seconds: float, done: int = 0, total: int = 1) -> OverBudget:
    """The error of a request stopped at its time budget, saying how far it got."""
    logger.warning("a request ran past the time budget of %s s after %d of %d texts; stopped", seconds, done, total)
    stopped = f"and was stopped after {done} of {total} texts" if total > 1 else "and was stopped"
    return OverBudget(f"this request ran past the time budget of {seconds:g} seconds {stopped}; nothing is "
                      "stored by a prediction, so retry with fewer or shorter texts, or without explain",
                      retry_after=max(1, math.ceil(seconds / 10)))


class Health(ServiceResource):
    """Alive, with each model's version and labels."""

    def get(self):
        return {
            "status": "ok",
            "default_variant": current_app.config["DEFAULT_VARIANT"],
            "models": {name: {"version": m.version, "labels": list(m.model.labels)}
                       for name, m in self.registry.served().items()},
            "accurate": {name: {"version": head.version, "labels": list(head.labels)}
                         for name, head in self.services.accurate.items()},
        }


class Ready(ServiceResource):
    """For a load balancer: 200 when the models are loaded and the database takes writes.

    The write is a probe (``FeedbackService.ready_problem``), done at most every
    READY_PROBE_INTERVAL seconds per process; in between, the last probe's result answers.
    """

    def get(self):
        probe = current_app.extensions.setdefault("ready_probe", {"at": -math.inf, "problem": None})
        now = time.monotonic()
        if now - probe["at"] >= current_app.config["READY_PROBE_INTERVAL"]:
            probe["at"], probe["problem"] = now, self.services.feedback.ready_problem()
        if probe["problem"]:
            raise StorageUnavailable(f"not ready: {probe['problem']}", retry_after=1)
        return {"status": "ready", "models": sorted(self.registry.served())}


class Feedback(ServiceResource):
    """``POST {"model": "sentiment", "query": "...", "label": "Positive"}``: a user's answer.

    Answers 201 ``{"id": N, "learned": true}`` once the answer is committed to the
    database; ``"learned": false`` and a ``"reason"`` when it is stored but not
    learned online (``feedback/policy.py``). The client is its API key (``Authorization:
    Bearer``, or ``X-API-Key``; 401 if unknown) or its address (``clients.py``). An
    ``Idempotency-Key`` header makes a retried request return the first id instead
    of storing the answer twice; the key with another answer is a 422.
    """

    def post(self):
        client = identify()
        given, key = read_feedback()
        variant = given.variant or current_app.config["DEFAULT_VARIANT"]
        stored = self.services.submit(given.model, given.query, given.label, variant, key, client)
        result: dict = {"id": stored.id, "learned": stored.learned}
        if stored.reason:
            result["reason"] = NOT_LEARNED[stored.reason]
        return result, 201


class Models(ServiceResource):
    """The models served: version, labels, training data, feedback and metrics."""

    def get(self):
        stored = self.services.feedback.stored_counts()
        routes = {spec.name: spec.endpoint for spec in MODELS.values() if spec.endpoint}
        for spec in MODELS.values():
            routes.update({other: f"{spec.endpoint} ({key})" for key, other in spec.levels.items()})
        return {"models": [_describe(name, m, routes[name], stored.get(name, 0))
                           for name, m in self.registry.served().items()]
                + [_describe_accurate(name, head, routes[name], stored.get(name, 0))
                   for name, head in self.services.accurate.items()]}


def _describe(name: str, online, route: str, stored: int) -> dict:
    manifest = online.model.manifest_
    training_data = manifest.get("training_data", {})
    return {
        "name": name,
        "variant": "fast",
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
        "decision": _decision(name, manifest.get("metrics", {}).get("calibration", {}).get("operating_points"),
                              manifest.get("metrics", {}).get("per_class", {}).get("hate speech")),
        "calibration": _calibration(manifest.get("metrics", {}).get("calibration")),
        "model_card": f"/models/{name}/card?variant=fast",
    }


def _calibration(found: dict | None) -> dict | None:
    """The temperature and the held-out calibration error, without the diagram's data."""
    if not found:
        return None
    return {key: found[key] for key in ("temperature", "fitted_on", "test_ece_before", "test_ece") if key in found}


def _decision(name: str, curve: dict | None, most_probable: dict | None) -> dict:
    """How the model's label is chosen now, and for a label with a measured curve (the hate
    class) its held-out precision and recall under that rule."""
    set_here = thresholds(name) or {}
    found: dict = {"rule": "thresholds" if set_here else "most probable", "thresholds": dict(set_here)}
    if curve:
        label = curve["label"]
        threshold = set_here.get(label)
        if threshold is None:
            point = {"threshold": None, "precision": (most_probable or {}).get("precision"),
                     "recall": (most_probable or {}).get("recall")}
        else:
            row = min(curve["held_out"], key=lambda r: abs(r["threshold"] - threshold))
            point = {"threshold": threshold, "measured_at": row["threshold"], "precision": row["precision"],
                     "recall": row["recall"]}
        found[label] = {**point, "on": "held-out texts", "best_dev_f1_threshold": curve.get("best_dev_f1_threshold")}
    return found


def _describe_accurate(name: str, head, route: str, stored: int) -> dict:
    manifest = head.manifest_
    part = next((p for p in manifest.get("parts", {}).values() if name in p.get("heads", [])), manifest)
    source = "hate" if name == "hatespeech" else "questions" if name.startswith("questions") else "sst"
    partner = manifest.get("partners", {}).get(name) if head.partner is not None else None
    return {
        "name": name,
        "variant": "accurate",
        "endpoint": f"{route} (variant=accurate)",
        "classifier": f"{head.classifier}: {manifest['base_weights']['model']} fine-tuned, "
                      f"{manifest.get('quantization', 'int8')}",
        "learns_online": False,  # it learns stored answers when retrained
        "version": head.version,
        "base_version": head.base_version,
        "labels": list(head.labels),
        "training_data": {"phrases": (part.get("training_data") or {}).get("train_texts", {}).get(source),
                          "feedback_learned": head.feedback_learned},
        "feedback_stored": stored,
        "metrics": manifest.get("metrics", {}).get(name, {}),
        "decision": _decision(name, manifest.get("operating_points", {}).get(name),
                              manifest.get("metrics", {}).get(name, {}).get("hate_class")),
        "calibration": _calibration({"temperature": head.temperature,
                                     **manifest.get("calibration", {}).get(name, {})}),
        **({"partner": {"weight": head.partner.weight,
                        **{k: partner[k] for k in ("classifier", "trained_on", "weight_chosen_on") if k in partner}}}
           if partner else {}),
        "model_card": f"/models/{name}/card?variant=accurate",
    }


class ModelCard(ServiceResource):
    """``GET /models/<name>/card?variant=fast``: the model card (Markdown) written with the model."""

    def get(self, name: str):
        variant = request.args.get("variant", "fast")
        if name not in MODELS or variant not in ("fast", "accurate"):
            raise NotFound(f"no model {name!r} on a tier {variant!r}: /models lists the models and their cards")
        path = card_path(current_app.config["MODEL_DIR"], name, variant)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"no model card for {name} ({variant}) in this installation") from None
        return current_app.response_class(text, mimetype="text/markdown")
