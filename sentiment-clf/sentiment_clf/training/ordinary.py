"""Ordinary text: how much of it a hate-speech model calls hate speech or offensive language.

Davidson et al.'s tweets were all selected for holding a word of a hate lexicon, so a
model trained on them alone never sees ordinary text as "neither". These are clean
texts that no hate-speech model is trained on, to measure that:

- ``sst_dev_test_sentences``: the SST dev and test sentences (movie reviews), written
  back as plain text (the hate-speech recipe learns from the *training* sentences);
- ``trec_held_out_questions``: the held-out part of the ``questions-fine`` split
  (training/holdout.py), the questions no model trains on;
- ``ordinary_sentences``: ``tests/data/ordinary_sentences.txt``, everyday sentences
  written for this (reviews, thanks, news, instructions, small talk, complaints), one
  a line; left out where the file is not there (an installed package).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from sentiment_clf.training import datasets
from sentiment_clf.training.splits import questions_split

ORDINARY_SENTENCES = Path(__file__).resolve().parents[3] / "tests" / "data" / "ordinary_sentences.txt"
FLAGGED = ("hate speech", "offensive language")


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sst_sentences(path: Path) -> list[str]:
    """The sentences of an SST split as a person writes them (no PTB escapes)."""
    return [datasets.sst_to_plain(p) for p in datasets.load_sst(path, roots_only=True)["phrase"]]


def neither_texts(data_root: Path) -> pd.DataFrame:
    """Clean text a hate-speech model may learn as "neither", none of it measured here:
    the SST *training* sentences and the TREC questions of the choosing part of the
    ``questions-fine`` split, with their ``source``."""
    sources = {"sst_train_sentences": sst_sentences(data_root / "sst" / "train.txt"),
               "trec_choosing_questions": questions_split(data_root)[0]["text"].tolist()}
    return pd.DataFrame({"text": [t for texts in sources.values() for t in texts], "target": "neither",
                         "source": [name for name, texts in sources.items() for _ in texts]})


def ordinary_texts(data_root: Path, sentences: Path | None = ORDINARY_SENTENCES) -> dict[str, list[str]]:
    """The clean texts no model trains on, by set (see the module's docstring). The data
    sets repeat a few texts (23 questions stand on both sides of the split, 3 short SST
    sentences in train and dev or test): those in :func:`neither_texts` are left out."""
    trained = set(neither_texts(data_root)["text"])
    texts = {
        "sst_dev_test_sentences": [*sst_sentences(data_root / "sst" / "dev.txt"),
                                   *sst_sentences(data_root / "sst" / "test.txt")],
        "trec_held_out_questions": questions_split(data_root)[1]["text"].tolist(),
    }
    if sentences is not None and sentences.is_file():
        texts["ordinary_sentences"] = read_lines(sentences)
    return {name: [t for t in group if t not in trained] for name, group in texts.items()}


def flag_rate(predict_labels: Callable[[list[str]], Sequence[str]], texts: dict[str, list[str]]) -> dict:
    """For each set of ``texts``: how many there are, how many ``predict_labels`` (texts ->
    label names) calls hate speech or offensive language, and that share."""
    rates = {}
    for name, group in texts.items():
        flagged = sum(label in FLAGGED for label in predict_labels(list(group)))
        rates[name] = {"texts": len(group), "flagged": int(flagged), "rate": flagged / len(group)}
    return rates
