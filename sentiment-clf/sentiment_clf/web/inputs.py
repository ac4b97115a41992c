"""Reading a request's input: the ``query``, yes/no flags and JSON bodies.

A query may come in the URL (``?query=...``), a JSON body or a form body, on GET
or POST; bad input raises a werkzeug HTTPException with a clear message, which
the app answers as JSON.
"""
from __future__ import annotations

from typing import Annotated

from flask import current_app, request
from pydantic import Strict, StringConstraints, TypeAdapter, ValidationError
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

QUERY_HELP = ("send the text as 'query': in the URL (?query=...), as a form field, "
              "or as a JSON body {\"query\": \"...\"}")
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def query_validator(max_chars: int) -> TypeAdapter:
    """A query is a string of 1..max_chars characters once surrounding space is stripped."""
    return TypeAdapter(Annotated[str, Strict(), StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_chars)])


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
        body = json_body()
        if "query" not in body:
            raise BadRequest(f"missing 'query' in the JSON body: {QUERY_HELP}")
        value = body["query"]
    elif request.form.get("query") is not None:
        value = request.form["query"]
    else:
        raise BadRequest(f"missing 'query': {QUERY_HELP}")
    return validate_query(value)


def read_flag(name: str) -> bool:
    """A yes/no argument: ``1``/``true`` or ``0``/``false`` in the URL or a form, a
    boolean (or null) in a JSON body; absent is no. Anything else is a 400."""
    has_body = _may_have_body()
    if has_body and request.is_json and request.get_data(cache=True) and name in json_body():
        value = json_body()[name]
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


def json_body() -> dict:
    """The request's body as a JSON object, or a 400."""
    try:
        body = request.get_json(force=True)
    except BadRequest:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object such as {\"query\": \"...\"}")
    return body


def _query_error(error, value) -> HTTPException:
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
