"""The OpenAPI 3.0 document of the service, generated from the request and answer
types (``schemas.py``) and the routes listed here.

``GET /openapi.json`` serves it; ``GET /docs`` shows it with Swagger UI (4.x, which
reads OpenAPI 3.0, not 3.1). A test checks it against the app's real routes and
schemathesis fuzzes the running server from it. Limits, model names and labels
come from the types; none is written here.
"""
from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from sentiment_clf.tasks import MODELS, endpoint_models
from sentiment_clf.web.schemas import (
    Error,
    FeedbackId,
    Health,
    ModelList,
    Ready,
    Schemas,
    V2Error,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2Ready,
    V2ServerMetadata,
)

_ERRORS = {400: "Bad input: the message says what is wrong", 409: "Conflict",
           401: "An API key that is not trusted (leave it out to answer anonymously)",
           404: "No such model or card: the message says what there is",
           413: "Too large: the message gives the limit",
           415: "The body is not of a type this endpoint reads (send application/json)",
           422: "The Idempotency-Key was used before for another answer",
           429: "Too many requests from this client (Retry-After says when to try again)",
           503: "The database does not answer; nothing was stored"}
_HTML = {"type": "string"}


class OpenAPI30(GenerateJsonSchema):
    """Pydantic's JSON Schema as OpenAPI 3.0 spells it: ``enum`` for one literal,
    ``nullable`` for ``X | None``; and no title on every property."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def literal_schema(self, schema: Any) -> dict:
        result = super().literal_schema(schema)
        if "const" in result:
            result["enum"] = [result.pop("const")]
        return result

    def nullable_schema(self, schema: Any) -> dict:
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:
            return {"allOf": [inner], "nullable": True}
        if "enum" in inner:  # an enum holds null itself, or validators refuse it despite nullable
            return {**inner, "enum": [*inner["enum"], None], "nullable": True}
        return {**inner, "nullable": True}


def _reply(schema: dict, description: str, media: str = "application/json") -> dict:
    return {"description": description, "content": {media: {"schema": schema}}}


# The groups /docs shows the operations in, in this order.
TAGS = [{"name": "predict", "description": "A model's answers for one text or many"},
        {"name": "feedback", "description": "Users' answers, which the models learn from"},
        {"name": "models and health", "description": "What is served, and whether it is up"},
        {"name": "open inference protocol", "description": "The v2 protocol KServe, Triton and MLServer speak"},
        {"name": "pages", "description": "Pages for people: the classifier, this document, the metrics"}]
EXAMPLE_TEXT = "that movie was boring"
V2 = "open inference protocol"


def _operation(operation_id: str, summary: str, responses: dict, body: dict | None = None,
               parameters: list | None = None, body_required: bool = True, tag: str = "pages",
               examples: dict | None = None) -> dict:
    """An operation in the group ``tag``; ``body`` maps media types to schemas, ``examples``
    media types to an example body."""
    operation = {"summary": summary, "operationId": operation_id, "tags": [tag], "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": body_required, "content": {
            media: {"schema": s, **({"example": examples[media]} if examples and media in examples else {})}
            for media, s in body.items()}}
    return operation


def build(types: Schemas, version: str = "1") -> dict:
    """The document of an app whose requests and answers are ``types``."""
    named: dict[Any, Any] = {
        "args": types.prediction_args, "json_body": types.prediction_body, "batch": types.batch,
        "feedback": types.feedback, "key": types.idempotency_key, "review_form": types.review_form,
        "answer_form": types.answer_form, "error": Error, "id": FeedbackId, "health": Health,
        "ready": Ready, "models": ModelList, "v2_infer": types.v2_infer, "v2_error": V2Error,
        "v2_server": V2ServerMetadata, "v2_model": V2ModelMetadata, "v2_ready": V2Ready, "v2_live": V2Live,
        "v2_answer": V2InferResponse,
        **{("answer", name): answer for name, answer in types.predictions.items()},
        **{("results", name): results for name, results in types.batch_results.items()}}
    refs, definitions = TypeAdapter.json_schemas(
        [(key, "validation", t if isinstance(t, TypeAdapter) else TypeAdapter(t)) for key, t in named.items()],
        ref_template="#/components/schemas/{model}", schema_generator=OpenAPI30)
    components = definitions.get("$defs", {})

    def schema(key: Any) -> dict:
        return refs[(key, "validation")]

    def errors(*codes: int) -> dict:
        return {str(code): _reply(schema("error"), _ERRORS[code]) for code in codes}

    def html(description: str) -> dict:
        return _reply(_HTML, description, "text/html")

    # The URL parameters of a prediction are the fields of its form.
    args = components[schema("args")["$ref"].rsplit("/", 1)[1]]
    url_parameters = [{"name": name, "in": "query", "required": name in args.get("required", []),
                       "description": field.get("description", ""), "schema": field,
                       **({"example": EXAMPLE_TEXT} if name == "query" else {})}
                      for name, field in args["properties"].items()]
    first = endpoint_models()[0]  # the examples' model and label
    key = schema("key")
    paths: dict[str, dict] = {}
    for spec in endpoint_models():
        endpoint, batch_endpoint = spec.endpoint, spec.batch_endpoint
        assert endpoint is not None and batch_endpoint is not None  # endpoint_models() has only these
        answers = {"200": _reply(schema(("answer", spec.name)), "The answer"), **errors(400, 413, 415, 429)}
        paths[endpoint] = {
            "get": _operation(f"get_{spec.name}", f"Predict with the {spec.name} model", answers,
                              parameters=url_parameters, tag="predict"),
            "post": _operation(f"post_{spec.name}", f"Predict with the {spec.name} model (text in the body)",
                               answers, body={"application/json": schema("json_body"),
                                              "application/x-www-form-urlencoded": schema("args")},
                               tag="predict", examples={
                                   "application/json": {"query": EXAMPLE_TEXT, "explain": True},
                                   "application/x-www-form-urlencoded": {"query": EXAMPLE_TEXT}})}
        paths[batch_endpoint] = {"post": _operation(
            f"batch_{spec.name}", f"Predict many texts with the {spec.name} model",
            {"200": _reply(schema(("results", spec.name)), "One answer per text, in order"),
             **errors(400, 413, 415, 429), "503": _reply(schema("error"), "Stopped at the request's time budget "
                                                          "(Retry-After says when to try again)")},
            body={"application/json": schema("batch")}, tag="predict", examples={"application/json": {
                "queries": [EXAMPLE_TEXT, "a gorgeous, witty and moving film"], "variant": "fast"}})}
    paths["/feedback"] = {"post": _operation(
        "post_feedback", "A user's answer: the right label for a text",
        {"201": _reply(schema("id"), "Stored durably: the record's id, and whether it is learned online "
                                     "(a client's answers beyond its learning budget are kept, not learned)"),
         **errors(400, 401, 413, 415, 422, 429, 503)},
        body={"application/json": schema("feedback")}, tag="feedback",
        examples={"application/json": {"model": first.name, "query": EXAMPLE_TEXT, "label": first.labels[0]}},
        parameters=[{"name": "Idempotency-Key", "in": "header", "required": False, "example": "answer-42",
                     "description": key.get("description", ""), "schema": key}])}
    # Anonymous, or a trusted API key (TRUSTED_API_KEYS) whose answers are learned at once.
    paths["/feedback"]["post"]["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    paths["/models"] = {"get": _operation("get_models", "The models served", {"200": _reply(
        schema("models"), "Every model with its version, labels and metrics")}, tag="models and health")}
    paths["/models/{name}/card"] = {"get": _operation(
        "get_model_card", "A model's card: data, intended use, figures with intervals, slices, failure modes",
        {"200": _reply({"type": "string"}, "The card, in Markdown", "text/markdown"), **errors(404)},
        tag="models and health",
        parameters=[{"name": "name", "in": "path", "required": True, "example": first.name,
                     "schema": {"type": "string", "enum": list(MODELS)}},
                    {"name": "variant", "in": "query", "required": False,
                     "description": "the tier (default: fast)",
                     "schema": {"type": "string", "enum": ["fast", "accurate"]}}])}
    paths["/health"] = {"get": _operation("get_health", "Alive", {"200": _reply(
        schema("health"), "The service is up, with each model's version")}, tag="models and health")}
    paths["/ready"] = {"get": _operation("get_ready", "Ready for traffic", {"200": _reply(
        schema("ready"), "The models are loaded and the database answers"), **errors(503)}, tag="models and health")}
    paths["/metrics"] = {"get": _operation("get_metrics", "Prometheus metrics of all workers", {
        "200": _reply({"type": "string"}, "Prometheus text format", "text/plain")})}
    paths["/openapi.json"] = {"get": _operation("get_openapi", "This document", {
        "200": _reply({"type": "object"}, "OpenAPI 3")})}
    paths["/docs"] = {"get": _operation("get_docs", "This document, to read and try", {
        "200": html("Swagger UI")})}
    paths["/ui"] = {
        "get": _operation("get_ui", "The web page", {"200": html("The form")}),
        "post": _operation("post_ui", "Classify a review on the page", {
            "200": html("The answers, or a message about the review"),
            "400": html("The form carries no valid CSRF token (reload the page)"),
            "413": html("The form is too large")},
            body={"application/x-www-form-urlencoded": schema("review_form")}, body_required=False)}
    paths["/ui/feedback"] = {"post": _operation(
        "post_ui_feedback", "An answer given on the page (Correct/Incorrect, or the right label)", {
            "200": html("Thank you"), "400": html("The answer is incomplete"),
            "401": html("An API key that is not trusted"), "413": html("The form is too large"),
            "429": html("Too many answers from this client"),
            "503": html("The database does not answer")},
        body={"application/x-www-form-urlencoded": schema("answer_form")})}
    paths.update(_inference_paths(schema))
    return {
        "openapi": "3.0.3",
        "info": {"title": "sentiment-clf", "version": version,
                 "description": f"Text classifiers over JSON ({', '.join(spec.name for spec in endpoint_models())}), "
                                "with feedback that the models learn from. Every error is {\"message\": \"...\"}."},
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a trusted API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "a trusted API key"}}},
    }


def _inference_paths(schema) -> dict[str, dict]:
    """The Open Inference Protocol's (v2) routes, whose errors are ``{"error": "..."}``."""
    def errors(*codes: int) -> dict:
        return {str(code): _reply(schema("v2_error"), _ERRORS[code]) for code in codes}

    names = [spec.name for spec in endpoint_models()]
    name = [{"name": "name", "in": "path", "required": True, "example": names[0],
             "schema": {"type": "string", "enum": names}}]
    return {
        "/v2": {"get": _operation("v2_server", "Open Inference Protocol: the server", {
            "200": _reply(schema("v2_server"), "Its name, version and protocol extensions")}, tag=V2)},
        "/v2/health/live": {"get": _operation("v2_live", "Open Inference Protocol: alive", {
            "200": _reply(schema("v2_live"), "Alive")}, tag=V2)},
        "/v2/health/ready": {"get": _operation("v2_ready", "Open Inference Protocol: ready for inference", {
            "200": _reply(schema("v2_ready"), "The models are loaded")}, tag=V2)},
        "/v2/models/{name}": {"get": _operation("v2_model", "Open Inference Protocol: a model's metadata", {
            "200": _reply(schema("v2_model"), "Inputs, outputs, version, and the label order of its probabilities"),
            **errors(404)}, parameters=name, tag=V2)},
        "/v2/models/{name}/ready": {"get": _operation("v2_model_ready", "Open Inference Protocol: a model is ready", {
            "200": _reply(schema("v2_ready"), "Ready"), **errors(404)}, parameters=name, tag=V2)},
        "/v2/models/{name}/infer": {"post": _operation(
            "v2_infer", "Open Inference Protocol: predict many texts (a BYTES input named text, JSON data)",
            {"200": _reply(schema("v2_answer"), "The outputs label and probabilities, one row per text"),
             **errors(400, 404, 413, 429),
             "503": _reply(schema("v2_error"), "Stopped at the request's time budget (Retry-After says when "
                                               "to try again)")},
            body={"application/json": schema("v2_infer")}, parameters=name, tag=V2, examples={"application/json": {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                            "data": [EXAMPLE_TEXT, "a gorgeous, witty and moving film"]}],
                "parameters": {"variant": "fast"}}})},
    }
