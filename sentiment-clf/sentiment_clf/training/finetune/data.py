"""The accurate tier's data: the three data sets as frames with a ``text`` column and one
target column per head (IGNORE where a head learns nothing from a row), and scoring
vectors with the heads. numpy and pandas only (no torch): retraining a head uses it too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.text import for_encoder
from sentiment_clf.tasks import COARSE, FINE_LABELS, HATE_LABELS, MODELS
from sentiment_clf.training import datasets
from sentiment_clf.training.recipes import RECIPES
from sentiment_clf.training.splits import SPLIT_SEED, questions_split

# The heads each data set's dev and test texts score.
SOURCE_HEADS = {"sst": ("sentiment", "ratings"), "hate": ("hatespeech",), "questions": ("questions", "questions-fine")}
# Each head's labels, in the served model's order: the catalogue's (tasks.MODELS).
HEADS: dict[str, tuple[str, ...]] = {name: MODELS[name].labels for heads in SOURCE_HEADS.values() for name in heads}
NEITHER = HATE_LABELS.index("neither")
IGNORE = -1
sst_to_plain = datasets.sst_to_plain


def _targets(n: int, **given) -> dict[str, np.ndarray]:
    columns = {name: np.full(n, IGNORE, dtype=np.int64) for name in HEADS}
    for name, values in given.items():
        columns[name.replace("_", "-")] = np.asarray(values, dtype=np.int64)
    return columns


def text_frame(texts, **targets) -> pd.DataFrame:
    """``texts`` prepared for the encoder, in a ``text`` column, with one target column per
    head (IGNORE but for the ``targets`` given, by head name with ``_`` for ``-``)."""
    texts = [for_encoder(t) for t in texts]
    return pd.DataFrame({"text": texts, **_targets(len(texts), **targets)})


def sample_rows(frame: pd.DataFrame, sample: int | None, seed: int) -> pd.DataFrame:
    return frame if not sample or sample >= len(frame) else frame.sample(sample, random_state=seed)


def sst_frames(data_root: Path, sample: int | None = None) -> dict[str, Any]:
    """SST's training phrases (sentences twice), dev and test sentences, as frames with a
    ``text`` column and one target column per head (IGNORE where a head learns nothing)."""
    from sentiment_clf.training.sst import load_splits

    splits = load_splits(data_root / "sst", None)
    train = pd.concat([splits.train, splits.train[splits.train["is_root"]]], ignore_index=True)
    train = sample_rows(train, sample, 0)

    def frame(rows: pd.DataFrame, hate: bool) -> pd.DataFrame:
        labels = rows["label"].to_numpy()
        binary = np.where(labels < 2, 0, np.where(labels > 2, 1, IGNORE))
        neither = np.where(rows["is_root"].to_numpy(), NEITHER, IGNORE) if hate else np.full(len(rows), IGNORE)
        return text_frame([sst_to_plain(p) for p in rows["phrase"]], ratings=labels, sentiment=binary,
                      hatespeech=neither)

    roots = splits.train[splits.train["is_root"]]
    sentences = text_frame([sst_to_plain(p) for p in roots["phrase"]], hatespeech=np.full(len(roots), NEITHER))
    return {"train": frame(train, True), "dev": frame(splits.dev, False), "test": frame(splits.test, False),
            "sentences": sample_rows(sentences, sample, 0), "test_raw": splits.test, "description": splits.description}


def hate_frames(data_root: Path, sample: int | None = None, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Today's hate-speech split: the choosing part (less 10% kept for dev) and the held-out part."""
    from sentiment_clf.training.holdout import holdout_split

    recipe = RECIPES["hatespeech"]
    frame = recipe.load_frame(data_root)
    choosing, held_out = holdout_split(recipe, frame)
    fit, dev = train_test_split(choosing, test_size=0.1, stratify=choosing["target"], random_state=SPLIT_SEED)

    def to(rows):
        return text_frame(rows["text"], hatespeech=[HATE_LABELS.index(t) for t in rows["target"]])

    return {"train": sample_rows(to(fit), sample, seed), "dev": to(dev), "test": to(held_out)}


def question_frames(data_root: Path, sample: int | None = None, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The ``questions-fine`` split (both question models are evaluated on its held-out part)."""

    choosing, held_out = questions_split(data_root)
    fit, dev = train_test_split(choosing, test_size=0.1, stratify=choosing["coarse"], random_state=SPLIT_SEED)
    coarse_labels = list(HEADS["questions"])

    def to(rows, neither: bool):
        return text_frame(rows["text"], questions=[coarse_labels.index(COARSE[c]) for c in rows["coarse"]],
                      questions_fine=[FINE_LABELS.index(f) for f in rows["fine"]],
                      hatespeech=np.full(len(rows), NEITHER if neither else IGNORE))

    return {"train": sample_rows(to(fit, True), sample, seed), "dev": to(dev, False), "test": to(held_out, False)}


# -- the model -------------------------------------------------------------------

def head_proba(vectors_: np.ndarray, arrays: dict, name: str) -> np.ndarray:
    return softmax(vectors_ @ arrays[f"{name}.weight"].T + arrays[f"{name}.bias"])


def dev_score(name: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    """Head ``name``'s dev score: macro-F1 for hate speech (imbalanced), accuracy otherwise."""
    return float(f1_score(truth, predicted, average="macro") if name == "hatespeech"
                 else accuracy_score(truth, predicted))


def dev_scores(embed, arrays: dict, dev: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Each head's dev score (of the data sets in ``dev``): accuracy, macro-F1 for hate speech.
    ``embed(texts)`` gives vectors."""
    scores = {}
    for source, heads in SOURCE_HEADS.items():
        if source not in dev:  # a data set this encoder does not learn from
            continue
        frame = dev[source]
        found = embed(frame["text"].tolist())
        for name in heads:
            keep = frame[name].to_numpy() != IGNORE
            predicted = head_proba(found[keep], arrays, name).argmax(axis=1)
            truth = frame[name].to_numpy()[keep]
            scores[name] = dev_score(name, truth, predicted)
    return scores
