"""The OpenAPI 3 document of the service, built from the model descriptions (tasks.py).

``GET /openapi.json`` serves it; ``GET /docs`` shows it with Swagger UI. A test
checks it against the app's real routes and schemathesis fuzzes the running
server from it.
"""
from __future__ import annotations

from sentiment_clf.tasks import MODELS

ERROR = {"$ref": "#/components/schemas/Error"}
# A query must hold something besides white space (surrounding space is stripped).
QUERY_PATTERN = r"\S"


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    texts = {400: "Bad input: the message says what is wrong", 404: "No such thing",
             409: "Conflict", 413: "Too large: the message gives the limit",
             429: "Too many requests from this client (Retry-After says when to try again)",
             503: "The database does not answer; nothing was stored"}
    return {str(code): _json(ERROR, texts[code]) for code in codes}


def _prediction_schema(name: str) -> dict:
    labels = list(MODELS[name].labels)
    schema = {
        "type": "object",
        "required": ["prediction", "confidence", "probabilities"],
        "properties": {
            "prediction": {"type": "string", "enum": labels},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "the probability of the predicted label"},
            "probabilities": {"type": "object", "required": labels, "additionalProperties": False,
                              "properties": {label: {"type": "number", "minimum": 0, "maximum": 1}
                                             for label in labels}},
            "explanation": {"$ref": "#/components/schemas/Explanation"},
        },
        "additionalProperties": False,
    }
    for key, other in MODELS[name].levels.items():
        schema["properties"][key] = _prediction_schema(other)
        schema["required"].append(key)
    return schema


def build(max_query_chars: int, max_batch: int, version: str = "1") -> dict:
    """The document, for the limits the app is configured with."""
    query = {"type": "string", "minLength": 1, "maxLength": max_query_chars, "pattern": QUERY_PATTERN,
             "description": f"the text to classify, 1 to {max_query_chars:,} characters"}
    explain = {"type": "string", "enum": ["0", "1", "true", "false"],
               "description": "1: also give the terms behind the answer"}
    paths: dict = {}
    for spec in MODELS.values():
        if not spec.endpoint:
            continue
        answer = _prediction_schema(spec.name)
        # Request bodies may carry other properties: they are ignored (clients can evolve).
        body = {"type": "object", "required": ["query"],
                "properties": {"query": query, "explain": {"type": "boolean", "nullable": True}}}
        form = {"type": "object", "required": ["query"],
                "properties": {"query": query, "explain": explain}}
        paths[spec.endpoint] = {
            "get": {"summary": f"Predict with the {spec.name} model", "operationId": f"get_{spec.name}",
                    "parameters": [{"name": "query", "in": "query", "required": True, "schema": query},
                                   {"name": "explain", "in": "query", "required": False, "schema": explain}],
                    "responses": {"200": _json(answer, "The answer"), **_errors(400, 413, 429)}},
            "post": {"summary": f"Predict with the {spec.name} model (text in the body)",
                     "operationId": f"post_{spec.name}",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": body},
                         "application/x-www-form-urlencoded": {"schema": form}}},
                     "responses": {"200": _json(answer, "The answer"), **_errors(400, 413, 429)}},
        }
        paths[spec.endpoint.rstrip("/") + "/batch"] = {
            "post": {"summary": f"Predict up to {max_batch:,} texts with the {spec.name} model",
                     "operationId": f"batch_{spec.name}",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["queries"],
                         "properties": {"queries": {"type": "array", "items": query, "minItems": 1,
                                                    "maxItems": max_batch},
                                        "explain": {"type": "boolean", "nullable": True}}}}}},
                     "responses": {"200": _json({"type": "object", "required": ["results"],
                                                 "additionalProperties": False,
                                                 "properties": {"results": {"type": "array", "items": answer}}},
                                                "One answer per text, in order"),
                                   **_errors(400, 413, 429)}},
        }
    served = sorted(MODELS)
    feedback_body = {"oneOf": [
        {"type": "object", "required": ["model", "query", "label"],
         "properties": {"model": {"type": "string", "enum": [name]}, "query": query,
                        "label": {"type": "string", "enum": list(MODELS[name].labels)}}}
        for name in served]}
    paths["/feedback"] = {"post": {
        "summary": "A user's answer: the right label for a text", "operationId": "post_feedback",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,200}$"},
                        "description": "a retry with the same key returns the first id"}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": feedback_body}}},
        "responses": {"201": _json({"type": "object", "required": ["id"], "additionalProperties": False,
                                    "properties": {"id": {"type": "integer", "minimum": 1}}},
                                   "Stored durably; the id of the record"),
                      **_errors(400, 409, 413, 429, 503)}}}
    model_entry = {"type": "object", "required": ["name", "endpoint", "version", "labels", "metrics"],
                   "properties": {"name": {"type": "string", "enum": served}, "endpoint": {"type": "string"},
                                  "version": {"type": "string"}, "base_version": {"type": "string"},
                                  "classifier": {"type": "string", "enum": ["nb", "logreg", "svm"]},
                                  "learns_online": {"type": "boolean"},
                                  "labels": {"type": "array", "items": {"type": "string"}},
                                  "training_data": {"type": "object"},
                                  "feedback_stored": {"type": "integer", "minimum": 0},
                                  "metrics": {"type": "object"}}}
    paths["/models"] = {"get": {"summary": "The models served", "operationId": "get_models",
                                "responses": {"200": _json({"type": "object", "required": ["models"],
                                                            "properties": {"models": {"type": "array",
                                                                                      "items": model_entry}}},
                                                           "Every model with its version, labels and metrics")}}}
    paths["/health"] = {"get": {"summary": "Alive", "operationId": "get_health", "responses": {"200": _json(
        {"type": "object", "required": ["status", "models"],
         "properties": {"status": {"type": "string", "enum": ["ok"]}, "models": {"type": "object"}}},
        "The service is up, with each model's version")}}}
    paths["/ready"] = {"get": {"summary": "Ready for traffic", "operationId": "get_ready", "responses": {
        "200": _json({"type": "object", "required": ["status", "models"],
                      "properties": {"status": {"type": "string", "enum": ["ready"]},
                                     "models": {"type": "array", "items": {"type": "string"}}}},
                     "The models are loaded and the database answers"),
        **_errors(503)}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics of all workers", "operationId": "get_metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "operationId": "get_openapi",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}}
    html = {"text/html": {"schema": {"type": "string"}}}
    review_form = {"type": "object", "properties": {"review": {"type": "string"}}}
    paths["/docs"] = {"get": {"summary": "This document, to read and try", "operationId": "get_docs",
                              "responses": {"200": {"description": "Swagger UI", "content": html}}}}
    paths["/ui"] = {
        "get": {"summary": "The web page", "operationId": "get_ui",
                "responses": {"200": {"description": "The form", "content": html}}},
        "post": {"summary": "Classify a review on the page", "operationId": "post_ui",
                 "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
                     "schema": review_form}}},
                 "responses": {"200": {"description": "The answers, or a message about the review",
                                       "content": html},
                               "413": {"description": "The form is too large", "content": html}}}}
    # The page's answer form: Correct/Incorrect for the two-label sentiment, a chosen
    # rating for ratings; the review as the page sent it (3 characters or more).
    review = {"type": "string", "maxLength": max_query_chars, "pattern": r"\S[\s\S]+\S"}
    answer_forms = {"oneOf": [
        {"type": "object", "required": ["model", "review", "prediction", "verdict"],
         "properties": {"model": {"type": "string", "enum": ["sentiment"]}, "review": review,
                        "prediction": {"type": "string", "enum": list(MODELS["sentiment"].labels)},
                        "verdict": {"type": "string", "enum": ["correct", "incorrect"]}}},
        {"type": "object", "required": ["model", "review", "label"],
         "properties": {"model": {"type": "string", "enum": ["ratings"]}, "review": review,
                        "prediction": {"type": "string"},
                        "label": {"type": "string", "enum": list(MODELS["ratings"].labels)}}},
    ]}
    paths["/ui/feedback"] = {"post": {
        "summary": "An answer given on the page", "operationId": "post_ui_feedback",
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": answer_forms}}},
        "responses": {"200": {"description": "Thank you", "content": html},
                      "400": {"description": "The answer is incomplete", "content": html},
                      "413": {"description": "The form is too large", "content": html},
                      "429": {"description": "Too many answers from this client", "content": html},
                      "503": {"description": "The database does not answer", "content": html}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "sentiment-clf", "version": version,
                 "description": "Text classifiers over JSON: sentiment, ratings, hate speech and question "
                                "types, with feedback that the models learn from. Every error is "
                                "{\"message\": \"...\"}."},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["message"], "additionalProperties": False,
                      "properties": {"message": {"type": "string"}}},
            "Explanation": {"type": "object", "required": ["versus", "margin", "bias", "toward", "away"],
                            "properties": {"versus": {"type": "string"}, "margin": {"type": "number"},
                                           "bias": {"type": "number"},
                                           "toward": {"type": "array", "items": {"$ref": "#/components/schemas/Term"}},
                                           "away": {"type": "array", "items": {"$ref": "#/components/schemas/Term"}}}},
            "Term": {"type": "object", "required": ["term", "weight"],
                     "properties": {"term": {"type": "string"}, "weight": {"type": "number"}}},
        }},
    }
