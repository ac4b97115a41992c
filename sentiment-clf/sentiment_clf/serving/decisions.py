"""How an answer's label is chosen from its probabilities: the most probable one, unless the
operator set a decision threshold for a label.

Moderators trade precision for recall: ``SENTIMENT_CLF_THRESHOLDS="hatespeech:hate
speech=0.3"`` makes ``/hatespeech`` answer "hate speech" whenever its probability is at
least 0.3, on both tiers (both are calibrated, so 0.3 means the same on each). Several
entries are separated by ``;``. When labels with thresholds reach them, the most probable
of those is the answer; when none does, the most probable of the labels without a
threshold. The precision and recall of the hate-speech class at each threshold, on dev
and held-out tweets, are in each hate-speech model's report and in ``/models``.
"""
from __future__ import annotations

import math

from sentiment_clf.tasks import MODELS

Thresholds = dict[str, dict[str, float]]  # model -> label -> threshold


def parse_thresholds(setting: str) -> Thresholds:
    """``"model:label=0.3; model:label=0.5"`` as ``{model: {label: 0.3}}``; a ValueError that
    says which entry is wrong and why."""
    found: Thresholds = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in setting.split(";"))), start=1):
        name, _, rest = entry.partition(":")
        label, _, value = rest.rpartition("=")
        name, label = name.strip(), label.strip()
        if name not in MODELS:
            raise ValueError(f"THRESHOLDS entry {position}: no model {name!r} (models: {', '.join(MODELS)}); "
                             "write model:label=threshold")
        if label not in MODELS[name].labels:
            raise ValueError(f"THRESHOLDS entry {position}: {name} has no label {label!r} "
                             f"(labels: {', '.join(MODELS[name].labels)})")
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(f"THRESHOLDS entry {position}: {value.strip()!r} is not a number") from None
        if not (math.isfinite(threshold) and 0 < threshold < 1):
            raise ValueError(f"THRESHOLDS entry {position}: a threshold is between 0 and 1, not {threshold}")
        found.setdefault(name, {})[label] = threshold
    return found


def decide(labels: tuple[str, ...], probabilities: list[float], thresholds: dict[str, float] | None) -> int:
    """The index of the answer's label (the first of equals, as argmax)."""
    if not thresholds:  # every request without THRESHOLDS: the plain argmax, first of equals
        return max(range(len(probabilities)), key=probabilities.__getitem__)

    def best(indices: list[int]) -> int:
        return max(indices, key=lambda i: (probabilities[i], -i))

    reached = [i for i, label in enumerate(labels) if label in thresholds and probabilities[i] >= thresholds[label]]
    if reached:
        return best(reached)
    free = [i for i, label in enumerate(labels) if label not in thresholds]
    return best(free or list(range(len(labels))))
