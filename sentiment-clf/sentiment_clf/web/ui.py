"""The web page at /ui: type a review, see both models' answers, say whether they are right.

Plain HTML forms (no JavaScript needed): the review is posted to /ui, an answer
to /ui/feedback, which stores it like POST /feedback and shows what the model
says now.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException

from sentiment_clf.web.answers import predict_one, services, store_feedback
from sentiment_clf.web.inputs import validate_query

blueprint = Blueprint("ui", __name__, url_prefix="/ui")

MIN_CHARS = 3
MODEL_TITLES = {"sentiment": "Sentiment", "ratings": "Rating"}


def served_names() -> list[str]:
    """The page is about movie reviews: it shows these models."""
    return list(MODEL_TITLES)


def review_problem(review: str) -> str | None:
    """Why ``review`` cannot be classified, in words for the page, or None."""
    limit = current_app.config["MAX_QUERY_CHARS"]
    if len(review.strip()) < MIN_CHARS:
        return f"Please type a review of at least {MIN_CHARS} characters."
    if len(review) > limit:
        return f"That review is {len(review):,} characters long; the limit is {limit:,}."
    return None


def predictions(review: str) -> dict[str, dict]:
    return {name: predict_one(services().registry.get(name).model, review) for name in served_names()}


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
                           titles=MODEL_TITLES)


@blueprint.post("/feedback")
def feedback():
    form = request.form
    name, review = form.get("model", ""), form.get("review", "")
    if name not in served_names() or review_problem(review):
        raise BadRequest("This answer is incomplete; please classify the review again.")
    review = validate_query(review)
    labels = services().registry.get(name).model.labels
    predicted = form.get("prediction", "")
    if form.get("verdict") == "correct" and predicted in labels:
        label = predicted
    elif form.get("verdict") == "incorrect" and predicted in labels and len(labels) == 2:
        label = next(other for other in labels if other != predicted)
    elif form.get("label") in labels:
        label = form["label"]
    else:
        raise BadRequest("Please choose the right answer.")
    feedback_id = store_feedback(services().registry, services().storage, name, review, label)
    return render_template("thanks.html", review=review, model=name, label=label, feedback_id=feedback_id,
                           before=predicted, now=predict_one(services().registry.get(name).model, review),
                           titles=MODEL_TITLES)


@blueprint.errorhandler(HTTPException)
def error_page(error: HTTPException):
    """Errors on the page are pages, with the message in words."""
    message = error.description
    if error.code == 429:
        message = "You sent many answers in a short time; please wait a minute and try again."
    return render_template("index.html", review="", message=message, titles=MODEL_TITLES), error.code
