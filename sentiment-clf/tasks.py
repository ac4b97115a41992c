"""Every model the service can train and serve, described in one place.

A :class:`ModelSpec` names the model, its endpoint, its labels, how to load its
data, how it is evaluated, and the candidate settings ``build_model.py`` compares.
Adding a text classifier is a new entry in ``MODELS`` plus a data loader in
util.py; ``build_model.py --model NAME`` trains it and the app serves it at its
endpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

import util

# The features every candidate classifier is compared on: n-grams and tf weighting.
_VECTOR_GRID = {"ngram_range": [(1, 1), (1, 2)], "sublinear_tf": [True, False]}
LINEAR_CANDIDATES = [
    {**_VECTOR_GRID, "classifier": ["nb"], "alpha": [0.03, 0.3], "fit_prior": [True, False]},
    {**_VECTOR_GRID, "classifier": ["logreg"], "C": [1.0, 10.0], "class_weight": [None, "balanced"]},
    {**_VECTOR_GRID, "classifier": ["svm"], "C": [0.1, 1.0], "class_weight": [None, "balanced"]},
]


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    ``load`` takes the data root (the folder holding ``sst/``, ``hatespeech/``, ...)
    and returns a frame with ``text`` and ``target`` (label names) for the
    ``"holdout"`` protocol: a stratified held-out split, never seen while
    ``candidates`` are compared by ``metric`` with stratified ``cv_folds``-fold
    cross-validation. The ``"sst"`` protocol is the treebank's own train/dev/test
    split (see build_model.py) and uses ``from_sst`` instead.
    """

    name: str
    endpoint: str | None  # None: answered inside another model's endpoint (see ``levels``)
    labels: tuple[str, ...]
    protocol: str  # "sst" or "holdout"
    plot: str = "confusion"  # "roc" or "confusion"
    tokenizer: str = "ptb-lower-v1"
    load: Callable[[Path], pd.DataFrame] | None = None
    data_files: tuple[str, ...] = ()
    candidates: list = field(default_factory=list)
    metric: str = "accuracy"  # a scikit-learn scoring name
    cv_folds: int = 5
    test_size: float = 0.2
    levels: dict = field(default_factory=dict)  # key in the answer -> another model's name
    from_sst: tuple = ()  # SST label 0..4 -> label name, None drops the phrase

    def relabel(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SST rows this model keeps, with a ``target`` column of label names."""
        names = frame["label"].map(lambda i: self.from_sst[i])
        return frame.assign(target=names)[names.notna()]


HATE_LABELS = ("hate speech", "offensive language", "neither")
COARSE = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
          "LOC": "location", "NUM": "numeric"}
FINE_LABELS = ("abb", "animal", "body", "city", "code", "color", "count", "country", "cremat",
               "currency", "date", "def", "desc", "dismed", "dist", "event", "exp", "food", "gr",
               "ind", "instru", "lang", "letter", "manner", "money", "mount", "ord", "other", "perc",
               "period", "plant", "product", "reason", "religion", "speed", "sport", "state",
               "substance", "symbol", "techmeth", "temp", "termeq", "title", "veh", "volsize",
               "weight", "word")


def _hatespeech(root: Path) -> pd.DataFrame:
    frame = util.load_hatespeech(root / "hatespeech" / "labeled_data.csv")
    return frame.assign(target=frame["label"].map(dict(enumerate(HATE_LABELS))))


def _questions_coarse(root: Path) -> pd.DataFrame:
    frame = util.load_questions(root / "questions" / "dataset.csv")
    return frame.assign(target=frame["coarse"].map(COARSE))


def _questions_fine(root: Path) -> pd.DataFrame:
    frame = util.load_questions(root / "questions" / "dataset.csv")
    return frame.assign(target=frame["fine"])


MODELS = {spec.name: spec for spec in [
    ModelSpec("sentiment", "/", ("Negative", "Positive"), protocol="sst", plot="roc",
              data_files=("sst/train.txt", "sst/dev.txt", "sst/test.txt"),
              from_sst=("Negative", "Negative", None, "Positive", "Positive")),
    ModelSpec("ratings", "/ratings",
              ("negative", "somewhat negative", "neutral", "somewhat positive", "positive"),
              protocol="sst", data_files=("sst/train.txt", "sst/dev.txt", "sst/test.txt"),
              from_sst=("negative", "somewhat negative", "neutral", "somewhat positive", "positive")),
    ModelSpec("hatespeech", "/hatespeech", HATE_LABELS, protocol="holdout", tokenizer="tweet-v1",
              load=_hatespeech, data_files=("hatespeech/labeled_data.csv",),
              candidates=LINEAR_CANDIDATES, metric="f1_macro"),
    ModelSpec("questions", "/questions", tuple(COARSE.values()), protocol="holdout",
              load=_questions_coarse, data_files=("questions/dataset.csv",),
              candidates=LINEAR_CANDIDATES, metric="accuracy", cv_folds=3,
              levels={"fine": "questions-fine"}),
    ModelSpec("questions-fine", None, FINE_LABELS, protocol="holdout",
              load=_questions_fine, data_files=("questions/dataset.csv",),
              candidates=LINEAR_CANDIDATES, metric="accuracy", cv_folds=3),
]}
