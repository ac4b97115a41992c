"""HTTP layer: Flask-RESTful resources serving the models saved in MODEL_DIR.

Run it with gunicorn (from the repository root)::

    gunicorn --chdir sentiment-clf 'app:create_app()'

A prediction endpoint takes one ``query`` from the URL (``?query=...``), a JSON
body (``{"query": "..."}``) or a form body, on GET or POST, and answers::

    {"prediction": "Negative", "confidence": 0.87,
     "probabilities": {"Negative": 0.87, "Positive": 0.13}}

``POST /feedback`` stores a user's answer and the models learn it (learning.py);
``GET /models`` lists what is served. Every error is JSON: ``{"message": "..."}``.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Annotated

from flask import Flask, current_app, g, jsonify, render_template, request, send_from_directory
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_restful import Api, Resource
from pydantic import Strict, StringConstraints, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import (BadRequest, Conflict, HTTPException, RequestEntityTooLarge,
                                 ServiceUnavailable)

import metrics
import openapi
from config import Settings
from learning import ModelRegistry
from model import NLPModel
from storage import IdempotencyKeyReused, Storage
from tasks import MODELS

logger = logging.getLogger(__name__)

QUERY_HELP = ("send the text as 'query': in the URL (?query=...), as a form field, "
              "or as a JSON body {\"query\": \"...\"}")


class PredictionResource(Resource):
    """Predicts with the model named ``model_name``; subclasses pick the model.

    With ``explain=1`` the answer also says which terms pushed it (see
    :meth:`NLPModel.explain`). A model with ``levels`` (tasks.py) answers them too,
    under their keys: ``/questions`` gives the coarse class and ``"fine"``.
    """

    model_name: str

    def get(self):
        return self.predict()

    def post(self):
        return self.predict()

    def predict(self):
        query, explain = read_query(), read_flag("explain")
        answer = predict_one(registry().get(self.model_name).model, query, explain)
        metrics.count_prediction(self.model_name, answer["prediction"])
        for key, other in MODELS[self.model_name].levels.items():
            answer[key] = predict_one(registry().get(other).model, query, explain)
        return json_response(answer)


class BatchPredictionResource(Resource):
    """``POST {"queries": ["...", ...]}``: up to MAX_BATCH texts, one answer each, in order."""

    model_name: str

    def post(self):
        # A batch may be larger than one query's body; the bound is still set before reading.
        request.max_content_length = current_app.config["MAX_BATCH_BYTES"]
        body = _json_body()
        queries = body.get("queries")
        if not isinstance(queries, list) or not queries:
            raise BadRequest("send a JSON body {\"queries\": [\"...\", ...]} with at least one text")
        limit = current_app.config["MAX_BATCH"]
        if len(queries) > limit:
            raise RequestEntityTooLarge(f"too many texts: {len(queries)}, the limit is {limit} per request")
        explain = read_flag("explain")
        texts = []
        for i, value in enumerate(queries):
            try:
                texts.append(validate_query(value))
            except HTTPException as exc:
                exc.description = f"queries[{i}]: {exc.description}"
                raise
        # One vectorized call per model: faster per text than the scorer's loop for a batch.
        model = registry().get(self.model_name).model
        results = [answer(model, row, text, explain) for row, text in zip(model.predict_proba(texts), texts)]
        for key, other in MODELS[self.model_name].levels.items():
            other_model = registry().get(other).model
            for result, row, text in zip(results, other_model.predict_proba(texts), texts):
                result[key] = answer(other_model, row, text, explain)
        for result in results:
            metrics.count_prediction(self.model_name, result["prediction"])
        return json_response({"results": results})


def _resource(base: type, prefix: str, name: str) -> type:
    """A Resource class for the model ``name``: ``hatespeech`` -> ``PredictHatespeech``."""
    class_name = prefix + "".join(part.capitalize() for part in re.split(r"[-_]", name))
    return type(class_name, (base,), {"model_name": name, "__doc__": f"The {name} model."})


def prediction_resource(name: str) -> type[PredictionResource]:
    return _resource(PredictionResource, "Predict", name)


def batch_resource(name: str) -> type[BatchPredictionResource]:
    return _resource(BatchPredictionResource, "PredictBatch", name)


PredictSentiment = prediction_resource("sentiment")
PredictRatings = prediction_resource("ratings")


class Health(Resource):
    def get(self):
        return {
            "status": "ok",
            "models": {name: {"version": m.version, "labels": m.model.labels}
                       for name, m in registry().served().items()},
        }


class Ready(Resource):
    """For a load balancer: 200 when the models are loaded and the database answers."""

    def get(self):
        try:
            _storage().last_feedback_id()
        except SQLAlchemyError:
            logger.exception("readiness check: the database does not answer")
            raise ServiceUnavailable("not ready: the database does not answer") from None
        return {"status": "ready", "models": sorted(registry().served())}


class Feedback(Resource):
    """``POST {"model": "sentiment", "query": "...", "label": "Positive"}``: a user's answer.

    Answers 201 ``{"id": N}`` once the answer is committed to the database. An
    ``Idempotency-Key`` header makes a retried request return the first id
    instead of storing the answer twice.
    """

    def post(self):
        body = _json_body()
        name, label = body.get("model"), body.get("label")
        served = registry().served()
        if not isinstance(name, str) or name not in served:
            raise BadRequest(f"unknown model {name!r}: choose one of {sorted(served)}")
        online = served[name]
        if not isinstance(label, str) or label not in online.model.labels:
            raise BadRequest(f"unknown label {label!r} for {name}: choose one of {online.model.labels}")
        if "query" not in body:
            raise BadRequest("missing 'query': the text the answer is about")
        try:
            query = validate_query(body["query"])
        except RequestEntityTooLarge as exc:  # feedback answers 400 for any bad text
            raise BadRequest(exc.description) from None
        key = request.headers.get("Idempotency-Key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise BadRequest("Idempotency-Key must be 1 to 200 letters, digits or . _ : -")
        feedback_id = store_feedback(name, query, label, key)
        return {"id": feedback_id}, 201


class Models(Resource):
    def get(self):
        stored = _storage().feedback_counts()
        routes = {spec.name: spec.endpoint for spec in MODELS.values() if spec.endpoint}
        for spec in MODELS.values():
            routes.update({other: f"{spec.endpoint} ({key})" for key, other in spec.levels.items()})
        return {"models": [{
            "name": name,
            "endpoint": routes[name],
            "classifier": m.model.classifier,
            "learns_online": m.model.supports_partial_fit,
            "version": m.version,
            "base_version": m.base_version,
            "labels": m.model.labels,
            "training_data": {
                "phrases": m.model.manifest_.get("training_data", {}).get("train_phrases"),
                # answers folded into a retrained version, plus those learned on top of it
                "feedback_learned": m.model.manifest_.get("training_data", {}).get("feedback_learned", 0)
                + m.learned},
            "feedback_stored": stored.get(name, 0),
            "metrics": m.model.manifest_.get("metrics", {}),
        } for name, m in registry().served().items()]}


# Resource class -> URL, one for each model with an endpoint in tasks.py. Every model
# in tasks.py (also those answered inside another's endpoint) is loaded from
# MODEL_DIR/<name>.
_NAMED = {"sentiment": PredictSentiment, "ratings": PredictRatings}
PREDICTION_ROUTES = {_NAMED.get(spec.name) or prediction_resource(spec.name): spec.endpoint
                     for spec in MODELS.values() if spec.endpoint}


def registry() -> ModelRegistry:
    return current_app.extensions["registry"]


def _storage() -> Storage:
    return current_app.extensions["storage"]


def json_response(data):
    """``data`` as a JSON response, written as Flask-RESTful writes it.

    The prediction endpoints answer with a ready response: Flask-RESTful would
    otherwise negotiate the media type twice per request, and the only one it
    offers is JSON anyway.
    """
    return current_app.response_class(json.dumps(data) + "\n", mimetype="application/json")


def predict_one(model: NLPModel, query: str, explain: bool = False) -> dict:
    """The answer for one text: the best label, its probability, and every label's."""
    return answer(model, model.scorer().predict_proba(query), query, explain)


def answer(model: NLPModel, probabilities, query: str, explain: bool = False) -> dict:
    """The answer's shape, from the text's probabilities in the model's label order."""
    values = probabilities.tolist()
    best = max(range(len(values)), key=values.__getitem__)  # the first of equals, as argmax
    result = {
        "prediction": model.labels[best],
        "confidence": values[best],
        "probabilities": dict(zip(model.labels, values)),
    }
    if explain:
        result["explanation"] = model.explain(query)
    return result


_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def read_flag(name: str) -> bool:
    """A yes/no argument: ``1``/``true`` or ``0``/``false`` in the URL or a form, a
    boolean (or null) in a JSON body; absent is no. Anything else is a 400."""
    has_body = _may_have_body()
    if has_body and request.is_json and request.get_data(cache=True) and name in _json_body():
        value = _json_body()[name]
        if value is None or isinstance(value, bool):
            return bool(value)
        raise BadRequest(f"'{name}' must be true or false in a JSON body, not {value!r}")
    value = request.args.get(name)
    if value is None and has_body:
        value = request.form.get(name)
    if value is None:
        return False
    if value in _FLAGS:
        return _FLAGS[value]
    raise BadRequest(f"'{name}' must be 1 or 0 (or true/false), not {value!r}")


def store_feedback(name: str, query: str, label: str, key: str | None = None) -> int:
    """Store an answer with what the model predicted, then learn it here at once."""
    online = registry().get(name)
    prediction = predict_one(online.model, query)["prediction"]  # what the endpoint answers
    try:
        feedback_id, _ = _storage().add_feedback(
            model=name, text=query, label=label, prediction=prediction,
            model_version=online.version, request_key=key)
    except IdempotencyKeyReused as exc:
        raise Conflict(str(exc)) from None
    except SQLAlchemyError:
        logger.exception("could not store feedback")
        raise ServiceUnavailable("the feedback could not be stored; nothing was saved, try again") from None
    metrics.FEEDBACK.labels(name, label).inc()
    registry().sync()
    return feedback_id


def read_query() -> str:
    """The ``query`` of this request, validated; raises a 4xx HTTPException otherwise.

    Looked for in the URL first, then in a JSON body, then in a form body. Form
    bodies are read on GET too (``curl -X GET -d query=...``), which Flask's
    ``request.values`` leaves out.
    """
    if request.args.get("query") is not None:
        value = request.args["query"]
    elif not _may_have_body():
        raise BadRequest(f"missing 'query': {QUERY_HELP}")
    elif request.is_json and request.get_data(cache=True):
        body = _json_body()
        if "query" not in body:
            raise BadRequest(f"missing 'query' in the JSON body: {QUERY_HELP}")
        value = body["query"]
    elif request.form.get("query") is not None:
        value = request.form["query"]
    else:
        raise BadRequest(f"missing 'query': {QUERY_HELP}")
    return validate_query(value)


def _may_have_body() -> bool:
    """False when the request has no Content-Type: its body (if any) is read neither
    as JSON nor as a form, so a GET from a browser or curl skips both (they cost
    more than the rest of reading the query)."""
    return "CONTENT_TYPE" in request.environ


def validate_query(value) -> str:
    """``value`` as a query (surrounding space stripped), or a 400/413 HTTPException."""
    try:
        return current_app.extensions["query_validator"].validate_python(value)
    except ValidationError as exc:
        raise _query_error(exc.errors()[0], value) from None


def _json_body() -> dict:
    try:
        body = request.get_json(force=True)
    except BadRequest:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object such as {\"query\": \"...\"}")
    return body


def _query_error(error: dict, value) -> HTTPException:
    limit = current_app.config["MAX_QUERY_CHARS"]
    if error["type"] == "string_too_long":
        return RequestEntityTooLarge(
            f"'query' is too long: {len(value)} characters, the limit is {limit}")
    if error["type"] == "string_too_short":
        return BadRequest("'query' is empty: send some text to classify")
    if error["type"] == "string_type":
        return BadRequest("'query' must be a string")
    if error["type"] == "string_unicode":
        return BadRequest("'query' is not valid Unicode text (it holds a lone surrogate)")
    return BadRequest(f"'query' is not valid: {error['msg']}")


def load_models(model_dir: Path, names) -> dict[str, NLPModel]:
    """Load each named model from ``model_dir/<name>``; fails loudly if one cannot load."""
    models = {}
    for name in names:
        models[name] = NLPModel.load(Path(model_dir) / name)
        logger.info("loaded model %s version %s", name, models[name].manifest_["version"])
    return models


def _rate_limited(limit):
    """A 429 with a clear message and Retry-After; the page shows its own (ui.py)."""
    if request.blueprint == "ui":
        return None
    retry_after = max(1, int(limit.reset_at - time.time()))
    what = "answers" if request.endpoint == "feedback" else "requests"
    response = jsonify(message=f"too many {what} from this client: the limit is {limit.limit}; "
                               f"try again in {retry_after} s")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def json_error(error: HTTPException):
    """Errors raised outside the API's routes answer JSON too (keeping headers such as Allow)."""
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return {"message": error.description}, error.code, headers


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (config.py), then ``config`` on top."""
    app = Flask(__name__)
    app.config.update(Settings().flask_config())
    app.config.update(ERROR_404_HELP=False)
    app.config.update(config or {})
    _configure_logging(app.config["LOG_LEVEL"])

    # A query is a string of 1..MAX_QUERY_CHARS characters once surrounding space is stripped.
    app.extensions["query_validator"] = TypeAdapter(Annotated[str, Strict(), StringConstraints(
        strip_whitespace=True, min_length=1, max_length=app.config["MAX_QUERY_CHARS"])])
    base_models = load_models(app.config["MODEL_DIR"], list(MODELS))
    storage = Storage(app.config["DATABASE_URL"])
    app.extensions["storage"] = storage
    app.extensions["registry"] = ModelRegistry(base_models, storage, app.config["SYNC_INTERVAL"])

    api = Api(app, catch_all_404s=True)
    prediction_endpoints = []
    for resource, url in PREDICTION_ROUTES.items():
        batch = batch_resource(resource.model_name)
        api.add_resource(resource, url)
        api.add_resource(batch, url.rstrip("/") + "/batch")
        prediction_endpoints += [resource.endpoint, batch.endpoint]
    api.add_resource(Health, "/health")
    api.add_resource(Ready, "/ready")
    app.add_url_rule("/metrics", "metrics", metrics_page)
    document = openapi.build(app.config["MAX_QUERY_CHARS"], app.config["MAX_BATCH"])
    app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(document))
    app.add_url_rule("/docs", "docs", lambda: render_template("docs.html"))
    app.add_url_rule("/docs/assets/<path:filename>", "docs_asset",
                     lambda filename: send_from_directory(swagger_ui_path, filename))
    api.add_resource(Models, "/models")
    api.add_resource(Feedback, "/feedback")

    import ui  # the web page; imported here so the API alone has no template work

    app.register_blueprint(ui.blueprint)
    # Answers change the models: one client may send only so many. Predictions
    # are limited only when PREDICT_RATE_LIMIT is set.
    limiter = Limiter(get_remote_address, app=app, on_breach=_rate_limited)
    feedback_limit = limiter.limit(lambda: app.config["FEEDBACK_RATE_LIMIT"])
    for endpoint in ("feedback", "ui.feedback"):
        app.view_functions[endpoint] = feedback_limit(app.view_functions[endpoint])
    if app.config["PREDICT_RATE_LIMIT"]:
        predict_limit = limiter.limit(app.config["PREDICT_RATE_LIMIT"])
        for endpoint in prediction_endpoints:
            app.view_functions[endpoint] = predict_limit(app.view_functions[endpoint])
    app.register_error_handler(HTTPException, json_error)
    app.after_request(security_headers)
    app.before_request(start_request)
    app.after_request(log_request)
    return app


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,200}")
access_log = logging.getLogger("sentiment_clf.access")


def metrics_page():
    metrics.record_versions(registry().served())
    body, content_type = metrics.exposition()
    return current_app.response_class(body, mimetype=None, content_type=content_type)


def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def log_request(response):
    """One JSON line per request: no query text, no body, nothing a user typed but the path.

    Also counts the request in the metrics, by URL rule (an unknown path is one
    ``<unmatched>`` endpoint, so stray paths cannot grow the metrics).
    """
    response.headers["X-Request-ID"] = g.get("request_id", "")
    endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    metrics.LATENCY.labels(request.method, endpoint).observe(seconds)
    if current_app.config["ACCESS_LOG"] and access_log.isEnabledFor(logging.INFO):
        access_log.info(json.dumps({
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": g.get("request_id")}))
    return response


def security_headers(response):
    """No sniffing anywhere; pages may not be framed, run other sites' code or post elsewhere."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        # Only /docs runs scripts (Swagger UI, served from here); the other pages none.
        scripts = "script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:" \
            if request.path == "/docs" else "script-src 'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; {scripts}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _configure_logging(level: str) -> None:
    # Under gunicorn the root logger has no handler yet; give the app's log one.
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
