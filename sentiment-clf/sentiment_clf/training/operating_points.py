"""A label's precision and recall at each decision threshold: the data a moderator picks an
operating point from (``SENTIMENT_CLF_THRESHOLDS``), on dev for choosing and held out for
reporting."""
from __future__ import annotations

import numpy as np

THRESHOLDS = [round(float(t), 2) for t in np.arange(0.01, 1.0, 0.01)]


def operating_points(truth: np.ndarray, probability: np.ndarray, label: int) -> list[dict]:
    """Precision and recall of ``label`` when it is the answer whenever ``probability >= t``,
    for t = 0.01, 0.02, ... 0.99 (``flagged``: how many texts that makes it)."""
    rows = []
    actual = np.asarray(truth) == label
    for threshold in THRESHOLDS:
        flagged = np.asarray(probability) >= threshold
        hits = int((flagged & actual).sum())
        rows.append({"threshold": threshold, "precision": hits / max(int(flagged.sum()), 1),
                     "recall": hits / max(int(actual.sum()), 1), "flagged": int(flagged.sum())})
    return rows


def best_f1(rows: list[dict]) -> dict:
    """The row with the highest F1 (the lowest threshold among equals)."""
    def f1(row: dict) -> float:
        p, r = row["precision"], row["recall"]
        return 2 * p * r / (p + r) if p + r else 0.0

    return max(rows, key=lambda row: (f1(row), -row["threshold"]))


def curve(label_name: str, dev_truth, dev_probability, test_truth, test_probability, label: int) -> dict:
    """The report's curve for one label: dev and held-out rows, and the threshold with the
    best F1 on dev (a starting point; never chosen on the held-out texts)."""
    dev = operating_points(dev_truth, dev_probability, label)
    return {"label": label_name, "dev": dev, "held_out": operating_points(test_truth, test_probability, label),
            "best_dev_f1_threshold": best_f1(dev)["threshold"]}
