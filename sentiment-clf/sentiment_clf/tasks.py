"""What the service serves, declared once: each model's name, endpoint, labels and tokenizer.

The HTTP layer, the OpenAPI document, the page and the training recipes
(``training/recipes.py``) all read these. Adding a text classifier is an entry
here plus a recipe; ``build_model.py --model NAME`` trains it and the app
serves it at its endpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TOKENIZER = "ptb-lower-v1"  # the treebank's tokenizer, lower-cased (serving/text.py)


@dataclass(frozen=True)
class ModelSpec:
    """One served model.

    ``endpoint`` is None for a model answered inside another's endpoint: ``levels``
    maps a key of that endpoint's answer to the model that answers it (``/questions``
    gives the coarse class and, under ``"fine"``, the ``questions-fine`` model's).
    ``by_sentence``: the fast model learned from single sentences and reads a longer
    text sentence by sentence (``documents.py``).
    """

    name: str
    endpoint: str | None
    labels: tuple[str, ...]
    tokenizer: str = TOKENIZER
    levels: dict[str, str] = field(default_factory=dict)
    by_sentence: bool = False

    @property
    def batch_endpoint(self) -> str | None:
        return None if self.endpoint is None else self.endpoint.rstrip("/") + "/batch"


SENTIMENT_LABELS = ("Negative", "Positive")
RATING_LABELS = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
HATE_LABELS = ("hate speech", "offensive language", "neither")
COARSE = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
          "LOC": "location", "NUM": "numeric"}
FINE_LABELS = ("abb", "animal", "body", "city", "code", "color", "count", "country", "cremat",
               "currency", "date", "def", "desc", "dismed", "dist", "event", "exp", "food", "gr",
               "ind", "instru", "lang", "letter", "manner", "money", "mount", "ord", "other", "perc",
               "period", "plant", "product", "reason", "religion", "speed", "sport", "state",
               "substance", "symbol", "techmeth", "temp", "termeq", "title", "veh", "volsize",
               "weight", "word")

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("sentiment", "/", SENTIMENT_LABELS, by_sentence=True),
    ModelSpec("ratings", "/ratings", RATING_LABELS, by_sentence=True),
    ModelSpec("hatespeech", "/hatespeech", HATE_LABELS, tokenizer="tweet-v1"),
    ModelSpec("questions", "/questions", tuple(COARSE.values()), levels={"fine": "questions-fine"}),
    ModelSpec("questions-fine", None, FINE_LABELS),
]}


def endpoint_models() -> list[ModelSpec]:
    """The models with an endpoint of their own, in declaration order."""
    return [spec for spec in MODELS.values() if spec.endpoint]
