"""Confidence intervals for held-out figures, by the bootstrap (texts drawn with replacement)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

RESAMPLES = 2000


def bootstrap_interval(metric: Callable[[np.ndarray], float], n: int, *, resamples: int = RESAMPLES,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of ``metric(index)`` over ``resamples`` draws of
    ``n`` row indices with replacement (``metric`` scores the rows it is given)."""
    rng = np.random.default_rng(seed)
    values = [metric(rng.integers(0, n, n)) for _ in range(resamples)]
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def accuracy_interval(right: np.ndarray, **options) -> tuple[float, float]:
    """The interval of the accuracy of ``right`` (one boolean per text)."""
    right = np.asarray(right, dtype=np.float64)
    return bootstrap_interval(lambda index: float(right[index].mean()), len(right), **options)
