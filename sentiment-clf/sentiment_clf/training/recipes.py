"""How each served model (tasks.py) is trained: its data, protocol and candidates.

The ``"sst"`` protocol is the treebank's own train/dev/test split (see
``training/sst.py``) and uses ``from_sst`` to map the treebank's 0..4 labels to
the model's. The ``"holdout"`` protocol (``training/holdout.py``) loads a frame
with ``text`` and ``target`` (label names), draws a held-out split stratified by
``stratify_column`` that is never seen while ``candidates`` are compared by
``metric`` with stratified ``cv_folds``-fold cross-validation. ``augment``, when
set, adds rows to the choosing part only, after the split is drawn: texts from
elsewhere that the model should learn (the hate-speech model learns from clean
text that ordinary text is "neither"); the held-out split stays the data's own.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sentiment_clf.tasks import COARSE, HATE_LABELS, MODELS, RATING_LABELS, ModelSpec
from sentiment_clf.training import datasets, ordinary

# The features every candidate classifier is compared on: n-grams and tf weighting.
_VECTOR_GRID = {"ngram_range": [(1, 1), (1, 2)], "sublinear_tf": [True, False]}
LINEAR_CANDIDATES = [
    {**_VECTOR_GRID, "classifier": ["nb"], "alpha": [0.03, 0.3], "fit_prior": [True, False]},
    {**_VECTOR_GRID, "classifier": ["logreg"], "C": [1.0, 10.0], "class_weight": [None, "balanced"]},
    {**_VECTOR_GRID, "classifier": ["svm"], "C": [0.1, 1.0], "class_weight": [None, "balanced"]},
]


@dataclass(frozen=True)
class Recipe:
    """How to train one model. ``spec`` is what the service knows of it."""

    spec: ModelSpec
    protocol: str  # "sst" or "holdout"
    plot: str = "confusion"  # "roc" or "confusion"
    load: Callable[[Path], pd.DataFrame] | None = None
    data_files: tuple[str, ...] = ()
    candidates: list = field(default_factory=list)
    metric: str = "accuracy"  # a scikit-learn scoring name
    cv_folds: int = 5
    test_size: float = 0.2
    from_sst: tuple = ()  # SST label 0..4 -> label name, None drops the phrase
    # The frame's column the held-out split is stratified by: recipes on the same data
    # with the same column (and test_size) hold out the same rows.
    stratify_column: str = "target"
    # Rows (``text``, ``target``, optionally ``source``) added to the choosing part only,
    # after the held-out split is drawn: see holdout.build_holdout.
    augment: Callable[[Path], pd.DataFrame] | None = None
    # How much one added row weighs in fitting, against 1 for a row of the data's own.
    augment_weight: float = 1.0
    # With added rows from several sources: the largest share of one source's rows a
    # candidate trained without that source may get wrong (holdout.choose); None: no check.
    augment_max_error: float | None = None
    # More figures for the report: (fitted model, data_root) -> dict added to its metrics.
    measure: Callable[[Any, Path], dict] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def tokenizer(self) -> str:
        return self.spec.tokenizer

    def load_frame(self, data_root: Path) -> pd.DataFrame:
        """The held-out protocol's data, ``load(data_root)``: a frame with ``text`` and ``target``."""
        if self.load is None:
            raise ValueError(f"{self.name}: the {self.protocol!r} protocol has no data loader")
        return self.load(data_root)

    def augment_frame(self, data_root: Path) -> pd.DataFrame:
        """The rows ``augment(data_root)`` adds to the choosing part (none without it): ``text``,
        ``target`` (label names) and, if it gives one, ``source``."""
        if self.augment is None:
            return pd.DataFrame({"text": pd.Series(dtype=object), "target": pd.Series(dtype=object)})
        frame = self.augment(data_root)
        unknown = set(frame["target"]) - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: augment gave labels {sorted(unknown)} not among {self.labels}")
        return frame[[c for c in ("text", "target", "source") if c in frame]].reset_index(drop=True)

    def relabel(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SST rows this model keeps, with a ``target`` column of label names."""
        names = frame["label"].map(lambda i: self.from_sst[i])
        return frame.assign(target=names)[names.notna()]


def _hatespeech(root: Path) -> pd.DataFrame:
    frame = datasets.load_hatespeech(root / "hatespeech" / "labeled_data.csv")
    return frame.assign(target=frame["label"].map(dict(enumerate(HATE_LABELS))))


def _ordinary_flagged(model, root: Path) -> dict:
    """How much clean text no model trained on the hate-speech model flags (training/ordinary.py)."""
    return {"ordinary_text_flagged": ordinary.flag_rate(model.predict, ordinary.ordinary_texts(root))}


def _questions_coarse(root: Path) -> pd.DataFrame:
    frame = datasets.load_questions(root / "questions" / "dataset.csv")
    return frame.assign(target=frame["coarse"].map(COARSE))


def _questions_fine(root: Path) -> pd.DataFrame:
    frame = datasets.load_questions(root / "questions" / "dataset.csv")
    return frame.assign(target=frame["fine"])


_SST_FILES = ("sst/train.txt", "sst/dev.txt", "sst/test.txt")

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in [
    Recipe(MODELS["sentiment"], protocol="sst", plot="roc", data_files=_SST_FILES,
           from_sst=("Negative", "Negative", None, "Positive", "Positive")),
    Recipe(MODELS["ratings"], protocol="sst", data_files=_SST_FILES, from_sst=RATING_LABELS),
    # The tweets were all selected for holding a hate-lexicon word: clean text (the SST
    # training sentences, the questions of the choosing part) teaches it that ordinary
    # text is "neither", weighing 0.1 a text and checked on the source left out (3%).
    Recipe(MODELS["hatespeech"], protocol="holdout", load=_hatespeech,
           data_files=("hatespeech/labeled_data.csv", "sst/train.txt", "questions/dataset.csv"),
           candidates=LINEAR_CANDIDATES, metric="f1_macro", augment=ordinary.neither_texts,
           augment_weight=0.1, augment_max_error=0.03, measure=_ordinary_flagged),
    # Split as questions-fine is (by fine class), so both hold out the same questions.
    Recipe(MODELS["questions"], protocol="holdout", load=_questions_coarse, stratify_column="fine",
           data_files=("questions/dataset.csv",), candidates=LINEAR_CANDIDATES, metric="accuracy", cv_folds=3),
    Recipe(MODELS["questions-fine"], protocol="holdout", load=_questions_fine,
           data_files=("questions/dataset.csv",), candidates=LINEAR_CANDIDATES, metric="accuracy", cv_folds=3),
]}
