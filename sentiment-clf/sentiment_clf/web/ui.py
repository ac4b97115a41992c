"""The web page at /ui: type a text, see every model's answer on both tiers and the words
that decided it, say whether it is right.

Plain HTML forms (no JavaScript needed): the text is posted to /ui, an answer to
/ui/feedback, which stores it like POST /feedback and shows what the model says now.
"""
from __future__ import annotations

import math

from flask import Blueprint, current_app, render_template, request
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from pydantic import ValidationError
from werkzeug.exceptions import BadRequest, HTTPException

from sentiment_clf.errors import ServiceError
from sentiment_clf.serving import answers, budget
from sentiment_clf.tasks import MODELS
from sentiment_clf.web.answers import services
from sentiment_clf.web.clients import identify
from sentiment_clf.web.errors import http_error
from sentiment_clf.web.inputs import read_body, schemas
from sentiment_clf.web.schemas import MIN_REVIEW_CHARS, first_problem

blueprint = Blueprint("ui", __name__, url_prefix="/ui")

MODEL_TITLES = {"sentiment": "Sentiment", "ratings": "Rating", "hatespeech": "Hate speech",
                "questions": "Question type"}
# What the page asks for a model of more than two labels.
LABEL_PROMPTS = {"ratings": "The right rating", "hatespeech": "The right class", "questions": "The right type"}
VARIANT_TITLES = {"fast": "fast", "accurate": "accurate (transformer)"}
DECIDING_WORDS = 5  # the words shown for and against each answer


def served_names() -> list[str]:
    """The models the page shows: every model with an endpoint of its own."""
    return list(MODEL_TITLES)


@blueprint.app_template_filter()
def percent(probability: float) -> str:
    """A probability as a percentage that never says more than it is: whole percentages,
    but 0.9995 is "> 99.9%", not "100%", 0.996 "99.6%", and 0.0004 "< 0.1%"."""
    if 0.995 <= probability < 1:
        return "> 99.9%" if probability > 0.999 else f"{math.floor(probability * 1000) / 10:.1f}%"
    if 0 < probability < 0.005:
        return "< 0.1%" if probability < 0.001 else f"{math.ceil(probability * 1000) / 10:.1f}%"
    return f"{probability * 100:.0f}%"


@blueprint.app_template_global()
def deciding_words(answer: dict) -> dict[str, list[str]]:
    """The words (or terms) that pushed an answer toward its label, and away from it."""
    explanation = answer.get("explanation") or {}
    return {side: [term["term"] for term in explanation.get(side, [])
                   if any(character.isalnum() for character in term["term"])][:DECIDING_WORDS]  # not a comma
            for side in ("toward", "away")}


def review_problem(review: str) -> str | None:
    """Why ``review`` cannot be classified, in words for the page, or None."""
    try:
        schemas().review.validate_python(review)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "string_too_long":
            limit = current_app.config["MAX_QUERY_CHARS"]
            return f"That review is {len(review):,} characters long; the limit is {limit:,}."
        if exc.errors()[0]["type"] == "nul_character":
            return "That review holds a NUL character, which cannot be stored; please remove it."
        return f"Please type a review of at least {MIN_REVIEW_CHARS} characters."
    return None


def predictions(review: str) -> dict[str, dict[str, dict]]:
    """Each model's answer on each tier: ``{name: {"fast": answer, "accurate": answer}}``. The
    accurate answers of the models of one encoder come from one reading of the review."""
    found: dict[str, dict[str, dict]] = {name: {} for name in served_names()}
    lookup, thresholds = services().registry.serving, current_app.extensions["thresholds"]
    accurate = services().accurate
    with budget(current_app.config["REQUEST_TIME_BUDGET"]):  # explaining is the costly part
        for variant, names in (("fast", served_names()), ("accurate", [n for n in served_names() if n in accurate])):
            asked: dict = {n: n for n in names}
            asked.update({(n, key): other for n in names for key, other in MODELS[n].levels.items()})
            given = answers(lookup, asked, [review], variant, True, thresholds)
            for name in names:
                found[name][variant] = given[name][0]
            for (name, key), (answer,) in ((k, v) for k, v in given.items() if isinstance(k, tuple)):
                found[name][variant][key] = answer  # a level's answer, under its key ("fine")
    return found


@blueprint.before_request
def check_csrf() -> None:
    """A form posted to the page must carry the token the page gave it (a 400 otherwise)."""
    if request.method == "POST" and current_app.config.get("WTF_CSRF_ENABLED", True):
        read_body()  # a malformed body is a 400 in words, not an error inside the form parser
        current_app.extensions["csrf"].protect()


@blueprint.get("")
def index():
    return render_template("index.html", review="", titles=MODEL_TITLES)


@blueprint.post("")
def classify():
    review = request.form.get("review", "")
    problem = review_problem(review)
    if problem:
        return render_template("index.html", review=review, message=problem, titles=MODEL_TITLES)
    review = review.strip()
    return render_template("index.html", review=review, results=predictions(review),
                           labels={n: services().registry.get(n).model.labels for n in served_names()},
                           titles=MODEL_TITLES, variant_titles=VARIANT_TITLES, prompts=LABEL_PROMPTS)


@blueprint.post("/feedback")
def feedback():
    form = request.form.to_dict()  # the first value of each field
    try:
        given = schemas().answer_form.validate_python(form)
    except ValidationError as exc:
        where, _ = first_problem(exc, form)
        if where[:1] in ((), ("model",), ("review",)):  # not a form this page made
            raise BadRequest("This answer is incomplete; please classify the review again.") from None
        raise BadRequest("Please choose the right answer.") from None
    name, review = given.model, given.review
    label = given.right_label()
    variant = given.variant or current_app.config["DEFAULT_VARIANT"]
    if variant == "accurate" and name not in services().accurate:  # no accurate model loaded
        variant = "fast"
    stored = services().submit(name, review, label, variant, client=identify())
    now = services().answers(name, [review], variant, levels=False)[0]  # what the ``variant`` tier answers now
    return render_template("thanks.html", review=review, model=name, label=label, feedback_id=stored.id,
                           learned=stored.learned, before=given.prediction, now=now,
                           titles=MODEL_TITLES, variant=VARIANT_TITLES[variant])


@blueprint.errorhandler(ServiceError)
def service_error_page(error: ServiceError):
    return error_page(http_error(error))


@blueprint.errorhandler(HTTPException)
def error_page(error: HTTPException):
    """Errors on the page are pages, with the message in words."""
    message = error.description
    if error.code == 429:
        message = "You sent many answers in a short time; please wait a minute and try again."
    elif isinstance(error, CSRFError):
        message = "This form has expired or did not come from this page; please reload the page and try again."
    headers = {k: v for k, v in error.get_headers() if k.lower() in ("retry-after", "www-authenticate")}
    return render_template("index.html", review="", message=message, titles=MODEL_TITLES), error.code, headers
