"""The fixed held-out splits, drawn the same way everywhere (no training imports, so any
module may use them).

``SPLIT_SEED`` seeds every held-out split of the "holdout" models
(training/holdout.py); :func:`questions_split` is the one split of the TREC questions
that both question models and the accurate tier choose on and hold out.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiment_clf.training import datasets

SPLIT_SEED = 20261122
TEST_SIZE = 0.2


def questions_split(data_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(choosing part, held-out part)`` of ``data_root/questions/dataset.csv``: 20% held
    out, stratified by fine class (the ``questions-fine`` recipe's split)."""
    frame = datasets.load_questions(data_root / "questions" / "dataset.csv")
    return train_test_split(frame, test_size=TEST_SIZE, stratify=frame["fine"], random_state=SPLIT_SEED)
