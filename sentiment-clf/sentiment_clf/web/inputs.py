"""Reading a request's input: the ``query``, yes/no flags and JSON bodies.

One rule says where a prediction's fields come from (:func:`given`): the URL
(``?query=...``), else a JSON body, else a form body, on GET or POST, field by field.
:func:`read_prediction` reads a prediction with it; batches and feedback are JSON
bodies. Everything is validated by the app's types (``schemas.py``); bad input
raises a werkzeug HTTPException whose message this module words, in one place
(:func:`input_error`, :func:`query_error`), and the app answers it as JSON.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import current_app, request
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from sentiment_clf.tasks import MODELS
from sentiment_clf.web.schemas import FLAG_WORDS, VARIANTS, FeedbackBody, Schemas, first_problem

QUERY_HELP = ("send the text as 'query': in the URL (?query=...), as a form field, "
              "or as a JSON body {\"query\": \"...\"}")
# What a missing 'query' means, by the body it is missing from.
_MISSING_QUERY = {"prediction": f"missing 'query' in the JSON body: {QUERY_HELP}",
                  "feedback": "missing 'query': the text the answer is about"}


try:  # what gunicorn's body reader raises for a malformed (chunked) body
    from gunicorn.http.errors import NoMoreData, ParseException  # type: ignore[import-untyped]

    _BODY_ERRORS: tuple[type[Exception], ...] = (ParseException, NoMoreData, ClientDisconnected)
except ImportError:  # not under gunicorn
    _BODY_ERRORS = (ClientDisconnected,)

_HIGH_ESCAPE = re.compile("%[89a-fA-F][0-9a-fA-F]")
JSON_ONLY = "send the body as JSON, with the header Content-Type: application/json"
# Bodies a single prediction reads besides JSON: a form (curl -d), or none at all.
_FORM_TYPES = frozenset(("application/x-www-form-urlencoded", ""))


def schemas() -> Schemas:
    """The current app's request and answer types (``create_app`` builds them once)."""
    return current_app.extensions["schemas"]


@dataclass(frozen=True)
class PredictionRequest:
    """What a prediction asks: the text, whether to explain the answer, and the tier."""

    query: str
    explain: bool
    variant: str


def read_prediction() -> PredictionRequest:
    """This request's prediction, each field validated; a 4xx HTTPException otherwise."""
    query, explain, variant = read_query(), read_flag("explain"), read_variant()
    if explain:
        check_explain(len(query))
    return PredictionRequest(query, explain, variant)


def given(name: str) -> tuple[Any, str] | None:
    """Where this request gives the field ``name``, by the one rule: the URL, else a JSON
    body, else a form body (read on GET too, ``curl -X GET -d query=...``, which Flask's
    ``request.values`` leaves out). ``(value, "url" | "json" | "form")``, or None when it
    is not given (a JSON null is not given)."""
    if request.args.get(name) is not None:
        return request.args[name], "url"
    if not _may_have_body():
        return None
    if request.is_json:
        if read_body() and json_body().get(name) is not None:
            return json_body()[name], "json"
        return None
    if (value := _form().get(name)) is not None:
        return value, "form"
    return None


def read_query() -> str:
    """The ``query`` of this request (:func:`given`), validated; raises a 4xx HTTPException
    otherwise. A body that is neither JSON nor a form is a 415."""
    if _may_have_body() and not request.is_json and request.mimetype not in _FORM_TYPES and _sends_body():
        raise UnsupportedMediaType("a prediction's body must be JSON (Content-Type: application/json) or a form "
                                   f"(application/x-www-form-urlencoded), not {request.mimetype!r}; or "
                                   "put the query in the URL")
    found = given("query")
    if found is None or found[1] == "json":
        if _may_have_body() and request.is_json and read_body():  # the whole body, for its exact error
            return validated(schemas().prediction_body, json_body(), "prediction").query
        raise BadRequest(f"missing 'query': {QUERY_HELP}")
    return validate_query(found[0])


def read_flag(name: str) -> bool:
    """A yes/no field (:func:`given`): ``1``/``true`` or ``0``/``false`` in the URL or a
    form, a boolean (or null) in a JSON body; absent is no. Anything else is a 400."""
    found = given(name)
    if found is None:
        return False
    value, where = found
    if where == "json":
        try:
            return bool(schemas().json_flag.validate_python(value))
        except ValidationError:
            raise BadRequest(_json_flag_message(name, value)) from None
    try:
        return FLAG_WORDS[schemas().flag.validate_python(value)]
    except ValidationError:
        raise BadRequest(f"'{name}' must be 1 or 0 (or true/false), not {value!r}") from None


def read_variant() -> str:
    """The tier asked for, ``variant`` (:func:`given`): ``fast`` or ``accurate``; absent (or
    null) is the service's DEFAULT_VARIANT. Anything else is a 400."""
    found = given("variant")
    if found is None:
        return current_app.config["DEFAULT_VARIANT"]
    if found[0] not in VARIANTS:
        raise BadRequest(f"'variant' must be one of {', '.join(VARIANTS)}, not {found[0]!r}")
    return found[0]


def read_batch() -> tuple[list[str], bool]:
    """A batch request's texts (validated, in order) and its ``explain`` flag.

    The work a batch asks for is bounded before any of it is done: its characters in
    all (MAX_BATCH_CHARS) and, with ``explain``, the characters explained
    (MAX_EXPLAIN_CHARS); over either it is a 413 that names the limit.
    """
    body = json_body()
    batch = validated(schemas().batch, body, "batch")
    # A flag in the URL (?explain=1) counts when the body has none, as for one query.
    explain = bool(batch.explain) if "explain" in body else read_flag("explain")
    chars, config = sum(map(len, batch.queries)), current_app.config
    if chars > config["MAX_BATCH_CHARS"]:
        raise RequestEntityTooLarge(f"the texts hold {chars:,} characters in all, the limit is "
                                    f"{config['MAX_BATCH_CHARS']:,} per request: send fewer or shorter texts")
    if explain:
        check_explain(chars)
    return batch.queries, explain


def check_explain(chars: int) -> None:
    """A 413 when ``explain`` is asked for more characters than one request may explain."""
    limit = current_app.config["MAX_EXPLAIN_CHARS"]
    if chars > limit:
        raise RequestEntityTooLarge(f"explain is limited to {limit:,} characters per request and these texts "
                                    f"hold {chars:,}: send fewer texts with explain, or leave explain out")


def read_feedback() -> tuple[FeedbackBody, str | None]:
    """A feedback body (``model``, ``query``, ``label``), validated, and its Idempotency-Key."""
    answer = validated(schemas().feedback, json_body(), "feedback")
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        try:
            schemas().idempotency_key.validate_python(key)
        except ValidationError:
            raise BadRequest("Idempotency-Key must be 1 to 200 letters, digits or . _ : -") from None
    return answer, key


def read_body() -> bytes:
    """The request's body (read once, then cached), within the request's size limit.

    A body that breaks off, or whose chunked encoding is malformed, is a 400; one
    over the limit, chunked or not, a 413 that names the limit.
    """
    limit = request.max_content_length
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    except _BODY_ERRORS:
        raise BadRequest("the request body is malformed or incomplete (a bad chunked encoding, or "
                         "fewer bytes than announced)") from None
    if request.content_length is not None and len(data) < request.content_length:
        raise BadRequest("the request body is malformed or incomplete (fewer bytes than announced)")
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise _too_large(limit)  # a chunked body is cut at the limit by werkzeug, silently
    return data


def _too_large(limit: int | None) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"the request body is over {limit:,} bytes, the limit for this endpoint")


def check_url() -> None:
    """A 400 for a URL whose percent-escapes are not UTF-8 (werkzeug would keep them as
    the literal text ``%FF``); cheap unless the path or the query holds non-ASCII bytes."""
    environ = request.environ
    path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    if _target_path(environ.get("RAW_URI", "")).startswith("//"):  # gunicorn reads //health as /health
        raise NotFound("no path begins with an empty segment (//)")
    try:
        if not path.isascii():  # WSGI gives the path's bytes as latin-1 characters
            path.encode("latin-1").decode("utf-8")
        # Only an escape of a byte over 0x7F (or a raw non-ASCII byte) can be bad UTF-8;
        # plain escapes such as %20 are on every request and need no decoding here.
        if not query.isascii() or _HIGH_ESCAPE.search(query):
            unquote_to_bytes(query).decode("utf-8")
    except UnicodeError:
        raise BadRequest("the URL is not valid: its percent-escapes are not UTF-8 text") from None


def _target_path(raw_uri: str) -> str:
    """The request target's path as the client sent it: an origin-form target (``/health``)
    as it is, an absolute-form one's (``http://host/health``) after its authority."""
    scheme, separator, rest = raw_uri.partition("://")
    if separator and scheme.isalpha() and "/" not in scheme:
        slash = rest.find("/")
        return "/" if slash < 0 else rest[slash:]
    return raw_uri


def _form():
    """The request's form fields, its body read by :func:`read_body` (which words its errors)."""
    read_body()
    return request.form


def _sends_body() -> bool:
    """Whether the request announces a body: a length over 0, or a chunked one."""
    return bool(request.content_length) or "chunked" in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _may_have_body() -> bool:
    """False when the request has no Content-Type: its body (if any) is read neither
    as JSON nor as a form, so a GET from a browser or curl skips both (they cost
    more than the rest of reading the query)."""
    return "CONTENT_TYPE" in request.environ


def validate_query(value: Any) -> str:
    """``value`` as a query (surrounding space stripped), or a 400/413 HTTPException."""
    try:
        return schemas().query.validate_python(value)
    except ValidationError as exc:
        raise query_error(exc.errors()[0], value) from None


def validated(schema: TypeAdapter, body: dict, kind: str) -> Any:
    """``body`` validated by ``schema``, or the HTTPException for its first problem;
    ``kind`` ("prediction", "batch" or "feedback") words it."""
    try:
        return schema.validate_python(body)
    except ValidationError as exc:
        raise input_error(exc, body, kind) from None


def json_body(any_type: bool = False) -> dict:
    """The request's body as a JSON object: a 415 for another type (unless ``any_type``: the
    Open Inference Protocol's clients may send none), a 400 for bad JSON (nested too deeply
    included), a 413 over the size limit."""
    if not any_type and not request.is_json:
        raise UnsupportedMediaType(f"this endpoint reads JSON only: {JSON_ONLY}")
    read_body()
    try:
        body = request.get_json(force=True)
    except BadRequest:
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the request body is not valid JSON here: it is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object such as {\"query\": \"...\"}")
    return body


def input_error(exc: ValidationError, body: dict, kind: str) -> HTTPException:
    """The HTTP error for the first problem of a JSON ``body`` of this ``kind``."""
    where, error = first_problem(exc, body)
    if kind == "inference":
        return _inference_error(where, error, body)
    field = where[0] if where else "model"  # a tagged union's tag is the model's name
    if field == "queries" and len(where) > 1:
        problem = query_error(error, body["queries"][where[1]])
        problem.description = f"queries[{where[1]}]: {problem.description}"
        return problem
    if field == "queries":
        if error["type"] == "too_long":
            return RequestEntityTooLarge(f"too many texts: {len(body['queries'])}, "
                                         f"the limit is {current_app.config['MAX_BATCH']} per request")
        return BadRequest("send a JSON body {\"queries\": [\"...\", ...]} with at least one text")
    if field == "query":
        if error["type"] == "missing":
            return BadRequest(_MISSING_QUERY[kind])
        problem = query_error(error, body["query"])
        # Feedback answers 400 for any bad text: the text is not too large to send.
        return BadRequest(problem.description) if kind == "feedback" else problem
    if field == "explain":
        return BadRequest(_json_flag_message("explain", body["explain"]))
    if field == "variant":
        return BadRequest(f"'variant' must be one of {', '.join(VARIANTS)}, not {body['variant']!r}")
    if field == "model":
        return BadRequest(f"unknown model {body.get('model')!r}: choose one of {sorted(MODELS)}")
    if field == "label":
        name = body["model"]
        return BadRequest(f"unknown label {body.get('label')!r} for {name}: "
                          f"choose one of {list(MODELS[name].labels)}")
    return BadRequest(f"{field!r} is not valid: {error['msg']}")


def _inference_error(where: tuple[str | int, ...], error: ErrorDetails, body: dict) -> HTTPException:
    """The HTTP error for the first problem of an Open Inference Protocol request."""
    place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in where).lstrip(".")
    if where[:3] == ("inputs", 0, "data") and len(where) > 3:
        problem = query_error(error, body["inputs"][0]["data"][where[3]])
        problem.description = f"{place}: " + (problem.description or "").replace("'query'", "the text")
        return problem
    if where == ("inputs", 0, "data") and error["type"] == "too_long":
        return RequestEntityTooLarge(f"too many texts: the limit is {current_app.config['MAX_BATCH']} per request")
    if where[:1] in ((), ("inputs",)):  # the input itself is missing or malformed: say what one looks like
        return BadRequest(f"{place or 'the body'}: {error['msg']}; send {{\"inputs\": [{{\"name\": \"text\", "
                          "\"datatype\": \"BYTES\", \"shape\": [n], \"data\": [n texts]}]}")
    return BadRequest(f"{place}: {error['msg']}")


def query_error(error: ErrorDetails, value: Any) -> HTTPException:
    """The HTTP error for a pydantic ``error`` about one query, ``value``."""
    if error["type"] == "string_too_long":
        return RequestEntityTooLarge(f"'query' is too long: {len(value)} characters, "
                                     f"the limit is {current_app.config['MAX_QUERY_CHARS']}")
    if error["type"] == "string_too_short":
        return BadRequest("'query' is empty: send some text to classify")
    if error["type"] == "string_type":
        return BadRequest("'query' must be a string")
    if error["type"] == "string_unicode":
        return BadRequest("'query' is not valid Unicode text (it holds a lone surrogate)")
    if error["type"] == "nul_character":
        return BadRequest(f"'query' {error['msg']}: remove it")
    return BadRequest(f"'query' is not valid: {error['msg']}")


def _json_flag_message(name: str, value: Any) -> str:
    return f"'{name}' must be true or false in a JSON body, not {value!r}"
