"""The service: ``create_app`` and the list of its routes.

Run it with ``sentiment-clf serve``, or gunicorn from the repository root (the
checkout's ``app.py`` imports this)::

    gunicorn --chdir sentiment-clf 'app:create_app()'

A prediction endpoint takes one ``query`` from the URL (``?query=...``), a JSON
body (``{"query": "..."}``) or a form body, on GET or POST, and answers::

    {"prediction": "Negative", "confidence": 0.87,
     "probabilities": {"Negative": 0.87, "Positive": 0.13}, "variant": "fast", "version": "..."}

``variant=accurate`` (URL, form or JSON, as ``query``) asks the fine-tuned transformer
instead of the fast linear model.

Every error is JSON: ``{"message": "..."}`` (``{"error": "..."}`` on the Open Inference
Protocol's routes). The resources are in ``web/resources.py`` and ``web/inference.py``;
the README's "Where a request goes" follows one. The page's templates and static files
are in ``templates/`` and ``static/`` beside this module.
"""
from __future__ import annotations

import secrets

from flask import Flask, jsonify, render_template, send_from_directory
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import HTTPException

from sentiment_clf.config import Settings, check_environment, cors_origins
from sentiment_clf.errors import ServiceError
from sentiment_clf.feedback import FeedbackService, LearningPolicy, ModelRegistry, Storage
from sentiment_clf.serving import load_accurate_tier, load_models, parse_thresholds
from sentiment_clf.tasks import MODELS, endpoint_models
from sentiment_clf.web import cors, errors, inference, middleware, openapi, ratelimit, schemas, ui
from sentiment_clf.web.answers import Services
from sentiment_clf.web.resources import BatchPrediction, Feedback, Health, ModelCard, Models, Prediction, Ready


def add_routes(api: errors.ServiceApi, services: Services) -> list[str]:
    """Every API route; returns the prediction endpoints' names (for their rate limit)."""
    kwargs = {"services": services}
    prediction_endpoints = []
    for spec in endpoint_models():  # "/", "/ratings", "/hatespeech", "/questions"
        api.add_resource(Prediction, spec.endpoint, endpoint=f"predict_{spec.name}",
                         resource_class_kwargs={**kwargs, "spec": spec})
        api.add_resource(BatchPrediction, spec.batch_endpoint, endpoint=f"batch_{spec.name}",
                         resource_class_kwargs={**kwargs, "spec": spec})
        prediction_endpoints += [f"predict_{spec.name}", f"batch_{spec.name}"]
    api.add_resource(Health, "/health", resource_class_kwargs=kwargs)
    api.add_resource(Ready, "/ready", resource_class_kwargs=kwargs)
    api.add_resource(Models, "/models", resource_class_kwargs=kwargs)
    api.add_resource(ModelCard, "/models/<string:name>/card", resource_class_kwargs=kwargs)
    api.add_resource(Feedback, "/feedback", resource_class_kwargs=kwargs)
    prediction_endpoints += inference.add_routes(api, services)  # the Open Inference Protocol (v2)
    return prediction_endpoints


def add_pages(app: Flask) -> None:
    """Metrics, the OpenAPI document, Swagger UI and the web page (/ui)."""
    app.add_url_rule("/metrics", "metrics", middleware.metrics_page)
    document = openapi.build(app.extensions["schemas"])
    app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(document))
    app.add_url_rule("/docs", "docs", lambda: render_template("docs.html"))
    app.add_url_rule("/docs/assets/<path:filename>", "docs_asset",
                     lambda filename: send_from_directory(swagger_ui_path, filename))
    app.register_blueprint(ui.blueprint)


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (config.py), then ``config`` on top."""
    check_environment()  # a SENTIMENT_CLF_ variable that is no setting: a typo, said at once
    app = Flask(__name__)
    # No route matches a path with an empty segment (//health, /ratings//batch): werkzeug
    # would otherwise answer a redirect to a URL built from the client's Host header.
    app.url_map.merge_slashes = False
    app.config.update(Settings().flask_config())
    # The page's forms carry a CSRF token (checked in ui.py only; the API is JSON-only,
    # which a cross-site form cannot send). The token is signed with SECRET_KEY: drawn
    # here when unset, in gunicorn's master, so every worker shares it. No Referer check
    # over HTTPS: the pages send none (Referrer-Policy: no-referrer).
    app.config.update(ERROR_404_HELP=False, WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_SSL_STRICT=False,
                      SESSION_COOKIE_SAMESITE="Lax")
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    middleware.configure_logging(app.config["LOG_LEVEL"])

    # What requests take and answers hold, for this app's limits: validation and the document.
    app.extensions["schemas"] = schemas.build(app.config["MAX_QUERY_CHARS"], app.config["MAX_BATCH"],
                                              ui.served_names())
    app.extensions["thresholds"] = parse_thresholds(app.config.get("THRESHOLDS", ""))
    storage = Storage(app.config["DATABASE_URL"], app.config["DATABASE_TIMEOUT"])
    accurate = load_accurate_tier(app.config["MODEL_DIR"], threads=app.config["ACCURATE_THREADS"],
                                  max_batch=app.config["ACCURATE_MAX_BATCH"], max_wait=app.config["ACCURATE_MAX_WAIT"],
                                  max_windows=app.config["ACCURATE_MAX_WINDOWS"])
    registry = ModelRegistry(load_models(app.config["MODEL_DIR"], list(MODELS)), storage,
                             app.config["SYNC_INTERVAL"], app.config["CHECKPOINT_EVERY"], accurate)
    policy = LearningPolicy.parse(app.config["FEEDBACK_RATE_LIMIT"], app.config["CLIENT_LEARNING_BUDGET"])
    services = app.extensions["sentiment_clf"] = Services(registry, storage, FeedbackService(registry, storage, policy))

    api = errors.ServiceApi(app, catch_all_404s=True)
    prediction_endpoints = add_routes(api, services)
    add_pages(app)
    CSRFProtect(app)
    ratelimit.install(app, prediction_endpoints)
    cors.install(app, cors_origins(app.config["CORS_ORIGINS"]))
    app.register_error_handler(HTTPException, errors.json_error)  # the routes outside the API's
    app.register_error_handler(ServiceError, errors.service_error)
    app.wsgi_app = middleware.empty_path_is_root(app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(middleware.start_request)
    app.after_request(middleware.security_headers)
    app.after_request(middleware.log_request)
    return app
