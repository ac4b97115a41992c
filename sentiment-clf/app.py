"""HTTP layer: Flask-RESTful resources serving the models saved in MODEL_DIR.

Run it with gunicorn (from the repository root)::

    gunicorn --chdir sentiment-clf 'app:create_app()'

A prediction endpoint takes one ``query`` from the URL (``?query=...``), a JSON
body (``{"query": "..."}``) or a form body, on GET or POST, and answers::

    {"prediction": "Negative", "confidence": 0.87,
     "probabilities": {"Negative": 0.87, "Positive": 0.13}}

Every error is JSON: ``{"message": "..."}`` with a 4xx status.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from flask import Flask, current_app, request
from flask_restful import Api, Resource
from pydantic import Strict, StringConstraints, TypeAdapter, ValidationError
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from config import Settings
from model import NLPModel

logger = logging.getLogger(__name__)

QUERY_HELP = ("send the text as 'query': in the URL (?query=...), as a form field, "
              "or as a JSON body {\"query\": \"...\"}")


class PredictionResource(Resource):
    """Predicts with the model named ``model_name``; subclasses pick the model."""

    model_name: str

    def get(self):
        return self.predict()

    def post(self):
        return self.predict()

    def predict(self) -> dict:
        query = read_query()
        model: NLPModel = current_app.extensions["models"][self.model_name]
        probabilities = model.predict_proba([query])[0]
        best = int(probabilities.argmax())
        return {
            "prediction": model.labels[best],
            "confidence": float(probabilities[best]),
            "probabilities": {label: float(p) for label, p in zip(model.labels, probabilities)},
        }


class PredictSentiment(PredictionResource):
    """Negative or Positive."""

    model_name = "sentiment"


class PredictRatings(PredictionResource):
    """Five ratings, from negative to positive."""

    model_name = "ratings"


class Health(Resource):
    def get(self):
        models = current_app.extensions["models"]
        return {
            "status": "ok",
            "models": {name: {"version": m.manifest_["version"], "labels": m.labels,
                              "created_at": m.manifest_["created_at"]}
                       for name, m in models.items()},
        }


# Resource class -> URL. The model each one serves is loaded from MODEL_DIR/<model_name>.
PREDICTION_ROUTES = {PredictSentiment: "/", PredictRatings: "/ratings"}


def read_query() -> str:
    """The ``query`` of this request, validated; raises a 4xx HTTPException otherwise.

    Looked for in the URL first, then in a JSON body, then in a form body. Form
    bodies are read on GET too (``curl -X GET -d query=...``), which Flask's
    ``request.values`` leaves out.
    """
    if request.args.get("query") is not None:
        value = request.args["query"]
    elif request.is_json and request.get_data(cache=True):
        value = _json_query()
    elif request.form.get("query") is not None:
        value = request.form["query"]
    else:
        raise BadRequest(f"missing 'query': {QUERY_HELP}")
    try:
        return current_app.extensions["query_validator"].validate_python(value)
    except ValidationError as exc:
        raise _query_error(exc.errors()[0], value) from None


def _json_query():
    try:
        body = request.get_json(force=True)
    except BadRequest:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object such as {\"query\": \"...\"}")
    if "query" not in body:
        raise BadRequest(f"missing 'query' in the JSON body: {QUERY_HELP}")
    return body["query"]


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
        logger.info("serving model %s version %s", name, models[name].manifest_["version"])
    return models


def json_error(error: HTTPException):
    """Errors raised outside the API's routes answer JSON too."""
    return {"message": error.description}, error.code


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
    app.extensions["models"] = load_models(
        app.config["MODEL_DIR"], [resource.model_name for resource in PREDICTION_ROUTES])

    api = Api(app, catch_all_404s=True)
    for resource, url in PREDICTION_ROUTES.items():
        api.add_resource(resource, url)
    api.add_resource(Health, "/health")
    app.register_error_handler(HTTPException, json_error)
    return app


def _configure_logging(level: str) -> None:
    # Under gunicorn the root logger has no handler yet; give the app's log one.
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
