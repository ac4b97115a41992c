"""What differs between the three classifiers once they are fitted, in numpy only.

Every classifier ranks labels by linear scores ``bias + x @ W`` (see
``linear_model.py``). What differs is

* the link from scores to probabilities: a softmax for naive Bayes and logistic
  regression, per-label sigmoids for the calibrated SVM (:data:`LINKS`);
* what naive Bayes keeps to learn new examples exactly: its counts
  (:class:`NaiveBayesCounts`).

:func:`arrays_from_format1` turns the arrays the classifiers were saved as
before format 2 (naive Bayes counts, or coefficients and intercepts) into the
served form: one weight row per term.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


class Softmax:
    """Naive Bayes' joint log likelihood or logistic regression's logits -> probabilities."""

    def __init__(self, arrays: dict[str, np.ndarray], n_labels: int):
        self.n_labels = n_labels

    def probabilities(self, scores: list[float]) -> np.ndarray:
        top = max(scores)
        exps = [math.exp(score - top) for score in scores]
        total = sum(exps)
        return np.array([e / total for e in exps])

    def probabilities_2d(self, scores: np.ndarray) -> np.ndarray:
        exps = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exps / exps.sum(axis=1, keepdims=True)


class SigmoidCalibration:
    """A linear SVM's decision values -> probabilities, as scikit-learn's
    ``CalibratedClassifierCV(method="sigmoid", ensemble=False)`` computes them.

    Per label ``1 / (1 + exp(a * d + b))``, normalised over the labels (for two
    labels, one score for the second label and ``1 - p`` for the first).
    """

    def __init__(self, arrays: dict[str, np.ndarray], n_labels: int):
        self.a = np.asarray(arrays["calibration_a"], dtype=np.float64)
        self.b = np.asarray(arrays["calibration_b"], dtype=np.float64)
        self.n_labels = n_labels
        if self.a.shape != self.b.shape or self.a.shape != ((1,) if n_labels == 2 else (n_labels,)):
            raise ValueError("calibration arrays do not match the labels")

    def probabilities(self, scores: list[float]) -> np.ndarray:
        return self.probabilities_2d(np.asarray(scores)[np.newaxis, :])[0]

    def probabilities_2d(self, scores: np.ndarray) -> np.ndarray:
        decision = scores[:, 1:] if self.n_labels == 2 else scores  # the first label's score is 0
        calibrated = np.exp(-np.logaddexp(0.0, decision * self.a + self.b))  # expit, never overflows
        if self.n_labels == 2:
            return np.column_stack([1.0 - calibrated[:, 0], calibrated[:, 0]])
        total = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / self.n_labels)
        proba = np.divide(calibrated, total, out=uniform, where=total != 0)
        proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


LINKS: dict[str, type[Softmax | SigmoidCalibration]] = {"nb": Softmax, "logreg": Softmax, "svm": SigmoidCalibration}


@dataclass(frozen=True)
class NaiveBayesCounts:
    """Multinomial naive Bayes' counts: the saved ones, plus what was learned since.

    ``feature_count`` is ``(terms, labels)``, usually memory-mapped and never
    written; ``added`` holds the learned counts of the terms that changed. The
    weights are ``log(count + alpha) - log(total of the label's smoothed counts)``,
    as scikit-learn's ``MultinomialNB`` computes them.
    """

    alpha: float
    fit_prior: bool
    class_prior: tuple[float, ...] | None
    feature_count: np.ndarray
    class_count: np.ndarray
    added: dict[int, np.ndarray] = field(default_factory=dict)
    added_total: np.ndarray | None = None
    _base_totals: list = field(default_factory=list)  # shared by every copy: computed once

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict, n_labels: int) -> NaiveBayesCounts:
        prior = params.get("class_prior")
        counts = cls(float(params["alpha"]), bool(params.get("fit_prior", True)),
                     None if prior is None else tuple(float(p) for p in prior),
                     arrays["feature_count_by_term"], np.asarray(arrays["class_count"], dtype=np.float64))
        if counts.class_count.shape != (n_labels,) or counts.feature_count.shape[1:] != (n_labels,):
            raise ValueError("naive Bayes counts do not match the labels")
        if prior is not None and len(prior) != n_labels:
            raise ValueError("class_prior does not have one value per label")
        return counts

    def class_log_prior(self) -> np.ndarray:
        n_labels = len(self.class_count)
        if self.class_prior is not None:
            return np.log(np.asarray(self.class_prior))
        if self.fit_prior:
            return np.log(self.class_count) - np.log(self.class_count.sum())
        return np.full(n_labels, -np.log(n_labels))

    def add(self, rows: list[tuple[np.ndarray, np.ndarray]], targets: list[int]) -> NaiveBayesCounts:
        """These counts plus examples: each a TF-IDF row ``(columns, values)`` and its label."""
        added = dict(self.added)
        total = np.zeros(len(self.class_count)) if self.added_total is None else self.added_total.copy()
        class_count = self.class_count.copy()
        copied: set[int] = set()  # rows this call owns (the others are shared with self)
        for (columns, values), target in zip(rows, targets, strict=True):
            class_count[target] += 1.0
            for column, value in zip(columns.tolist(), values.tolist(), strict=True):
                if column not in copied:
                    row = added.get(column)
                    added[column] = np.zeros(len(class_count)) if row is None else row.copy()
                    copied.add(column)
                added[column][target] += value
                total[target] += value
        return replace(self, class_count=class_count, added=added, added_total=total)

    def weights_after_learning(self) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        """``(rows of the learned terms, shift of every other term's row)``.

        The saved weights are ``log(count + alpha) - log(T)``, ``T`` the saved
        smoothed totals; after learning the totals are ``T'``, so an unchanged
        term's weights move by ``log(T) - log(T')`` and a learned term's are
        computed anew from its counts.
        """
        if self.added_total is None:
            return {}, None
        if not self._base_totals:
            self._base_totals.append((self.feature_count + self.alpha).sum(axis=0))
        base = self._base_totals[0]
        log_totals = np.log(base + self.added_total)
        rows = {column: np.log(self.feature_count[column] + delta + self.alpha) - log_totals
                for column, delta in self.added.items()}
        return rows, np.log(base) - log_totals


def arrays_from_format1(arrays: dict[str, np.ndarray], params: dict, n_labels: int) -> dict[str, np.ndarray]:
    """The served arrays from the classifier's own (format 1): weights ``(terms, scores)``
    and ``bias``; naive Bayes also keeps its counts by term.

    Binary logistic regression and SVM have one weight row, for the second label;
    the first label's score is then 0, so its weights are a column of zeros.
    """
    n_terms = len(arrays["idf"])
    converted = {name: value for name, value in arrays.items()
                 if name not in ("feature_count", "coef", "intercept")}
    if params.get("classifier", "nb") == "nb":
        feature_count = np.asarray(arrays["feature_count"], dtype=np.float64)
        class_count = np.asarray(arrays["class_count"], dtype=np.float64)
        if feature_count.shape != (n_labels, n_terms) or class_count.shape != (n_labels,):
            raise ValueError("array shapes do not match the labels and vocabulary")
        # The same formulas MultinomialNB.fit applies to its counts.
        smoothed = feature_count + float(params["alpha"])
        log_prob = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
        counts = NaiveBayesCounts.from_arrays({"feature_count_by_term": feature_count.T,
                                               "class_count": class_count}, params, n_labels)
        converted.update(weights=np.ascontiguousarray(log_prob.T), bias=counts.class_log_prior(),
                         feature_count_by_term=np.ascontiguousarray(feature_count.T), class_count=class_count)
        return converted
    coef = np.asarray(arrays["coef"], dtype=np.float64)
    intercept = np.asarray(arrays["intercept"], dtype=np.float64)
    rows = 1 if n_labels == 2 else n_labels
    if coef.shape != (rows, n_terms) or intercept.shape != (rows,):
        raise ValueError("array shapes do not match the labels and vocabulary")
    if rows == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    converted.update(weights=np.ascontiguousarray(coef.T), bias=intercept)
    return converted
