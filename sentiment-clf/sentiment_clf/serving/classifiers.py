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


def softmax(scores: np.ndarray) -> np.ndarray:
    """Scores -> probabilities along the last axis (a new array; the scores are kept)."""
    scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """The logarithm of :func:`softmax`, computed without underflow."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


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
        return softmax(scores)


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


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities (rows x labels): each row's log-probabilities
    divided by ``temperature``, normalised again. For a softmax link it is the softmax of
    the scores divided by ``temperature``; no label changes, only the confidence."""
    if temperature == 1.0:
        return probabilities
    logs = np.log(np.maximum(probabilities, 1e-300)) / temperature
    exps = np.exp(logs - logs.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


class Tempered:
    """A link followed by temperature scaling (``temperature`` fitted on dev data when the
    model was built, so that its confidence means what it says)."""

    def __init__(self, link: Softmax | SigmoidCalibration, temperature: float):
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"a temperature must be positive, not {temperature}")
        self.link, self.temperature = link, temperature

    def probabilities(self, scores: list[float]) -> np.ndarray:
        return temper(self.link.probabilities(scores)[np.newaxis, :], self.temperature)[0]

    def probabilities_2d(self, scores: np.ndarray) -> np.ndarray:
        return temper(self.link.probabilities_2d(scores), self.temperature)


_NO_TERMS = np.zeros(0, dtype=np.int64)
_NO_TERMS.flags.writeable = False


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _with_terms(terms: np.ndarray, counts: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``terms`` with the distinct ``columns`` they lack, sorted, and ``counts`` with a
    row of zeros for each (a new array either way)."""
    distinct = np.unique(columns)
    found = np.searchsorted(terms, distinct)
    known = found < len(terms)
    known[known] = terms[found[known]] == distinct[known]
    if known.all():
        return terms, counts.copy()
    return (_frozen(np.insert(terms, found[~known], distinct[~known])),
            np.insert(counts, found[~known], 0.0, axis=0))


@dataclass(frozen=True)
class LearnedCounts:
    """Counts added by learning, for the terms that got some: ``terms`` (columns,
    sorted, distinct) and ``counts`` ``(len(terms), labels)``. About
    ``8 * (1 + labels)`` bytes a term, whatever the number of answers."""

    terms: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls, n_labels: int) -> LearnedCounts:
        return cls(_NO_TERMS, _frozen(np.zeros((0, n_labels))))

    def add(self, columns: np.ndarray, labels: np.ndarray, values: np.ndarray) -> LearnedCounts:
        """These counts plus ``values`` at ``(columns, labels)``, added one at a time, in order."""
        terms, counts = _with_terms(self.terms, self.counts, columns)
        np.add.at(counts, (np.searchsorted(terms, columns), labels), values)
        return LearnedCounts(terms, _frozen(counts))

    def merged(self, other: LearnedCounts) -> LearnedCounts:
        """Both counts added: a term's count is this one's plus the other's."""
        if not len(other.terms):
            return self
        terms, counts = _with_terms(self.terms, self.counts, other.terms)
        counts[np.searchsorted(terms, other.terms)] += other.counts
        return LearnedCounts(terms, _frozen(counts))


@dataclass(frozen=True)
class NaiveBayesCounts:
    """Multinomial naive Bayes' counts: the saved ones, plus what was learned since.

    ``feature_count`` is ``(terms, labels)``, usually memory-mapped and never
    written. What was learned is kept compact, in two layers of
    :class:`LearnedCounts`: ``folded``, everything learned up to the last
    :meth:`fold` (with the labels' added totals and the class counts then, what a
    checkpoint stores), and ``recent``, what was learned since. A new answer copies
    only the recent layer, so the folded one stays shared (by the workers a server
    forks, when it was learned or read from a checkpoint before the fork).
    ``added_total`` is the counts added to each label in all.

    The weights are ``log(count + alpha) - log(total of the label's smoothed
    counts)``, as scikit-learn's ``MultinomialNB`` computes them; a learned term's
    are computed when a text needs them (:meth:`learned_rows`), its count being
    ``saved + (folded + recent)``: the same floats before and after a fold, so the
    same answers learned with the same folds give the same model.
    """

    alpha: float
    fit_prior: bool
    class_prior: tuple[float, ...] | None
    feature_count: np.ndarray
    class_count: np.ndarray
    folded: LearnedCounts | None = None
    recent: LearnedCounts | None = None
    added_total: np.ndarray | None = None
    folded_totals: tuple[np.ndarray, np.ndarray] | None = None  # (added_total, class_count) at the fold
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
        """These counts plus examples: each a TF-IDF row ``(columns, values)`` and its label.

        Each count is added in the examples' order, so learning the same examples
        in one call or in several gives the same floats.
        """
        n_labels = len(self.class_count)
        class_count = self.class_count.copy()
        for target in targets:
            class_count[target] += 1.0
        lengths = [len(columns) for columns, _ in rows]
        columns = np.concatenate([_NO_TERMS, *(np.asarray(c, dtype=np.int64) for c, _ in rows)])
        values = np.concatenate([np.zeros(0), *(v for _, v in rows)])
        labels = np.repeat(np.asarray(targets, dtype=np.intp), lengths)
        total = np.zeros(n_labels) if self.added_total is None else self.added_total.copy()
        np.add.at(total, labels, values)  # in order, one value at a time
        recent = (self.recent or LearnedCounts.empty(n_labels)).add(columns, labels, values)
        return replace(self, class_count=_frozen(class_count), recent=recent, added_total=_frozen(total))

    def fold(self) -> NaiveBayesCounts:
        """The same counts with the recent layer folded into the folded one."""
        if self.added_total is None:
            return self
        n_labels = len(self.class_count)
        folded = (self.folded or LearnedCounts.empty(n_labels)).merged(self.recent or LearnedCounts.empty(n_labels))
        return replace(self, folded=folded, recent=None, folded_totals=(self.added_total, self.class_count))

    def with_folded(self, terms: np.ndarray, counts: np.ndarray, added_total: np.ndarray,
                    class_count: np.ndarray, base_totals: np.ndarray) -> NaiveBayesCounts:
        """These saved counts with a folded state read back (a checkpoint); ValueError
        when it does not fit them. ``base_totals`` are :meth:`base_totals`, as saved with
        it (so a start need not read every saved count to add them up)."""
        n_terms, n_labels = self.feature_count.shape
        terms = np.asarray(terms)
        if terms.dtype != np.int64 or terms.ndim != 1 or counts.shape != (len(terms), n_labels) \
                or any(a.shape != (n_labels,) for a in (added_total, class_count, base_totals)):
            raise ValueError("the learned counts do not match the model's labels")
        if len(terms) and (terms[0] < 0 or terms[-1] >= n_terms or not (terms[1:] > terms[:-1]).all()):
            raise ValueError("the learned terms are not distinct columns of the vocabulary, in order")
        arrays = [np.asarray(a, dtype=np.float64) for a in (counts, added_total, class_count, base_totals)]
        if not all(np.isfinite(a).all() and (a >= 0).all() for a in arrays) or not (arrays[3] > 0).all():
            raise ValueError("the learned counts are not finite and non-negative")
        counts, added_total, class_count, base_totals = arrays
        return replace(self, folded=LearnedCounts(terms, counts), recent=None, added_total=added_total,
                       class_count=class_count, folded_totals=(added_total, class_count),
                       _base_totals=[base_totals])

    def base_totals(self) -> np.ndarray:
        """The saved smoothed totals of each label (computed once: it reads every saved count)."""
        if not self._base_totals:
            self._base_totals.append((self.feature_count + self.alpha).sum(axis=0))
        return self._base_totals[0]

    def totals_after_learning(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(log of the smoothed totals now, shift of every unlearned term's row)``,
        None when nothing was learned.

        The saved weights are ``log(count + alpha) - log(T)``, ``T`` the saved
        smoothed totals; after learning the totals are ``T'``, so an unchanged
        term's weights move by ``log(T) - log(T')`` and a learned term's are
        computed anew from its counts (:meth:`learned_rows`).
        """
        if self.added_total is None:
            return None
        base = self.base_totals()
        log_totals = np.log(base + self.added_total)
        return log_totals, np.log(base) - log_totals

    def learned_rows(self, columns: np.ndarray, log_totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(which columns are learned terms, as booleans; the weight rows of every column
        as a learned term)``: the rows of the others are meaningless."""
        found = []  # (in the layer, the layer's row where it is) of each layer with terms
        for layer in (self.folded, self.recent):
            if layer is not None and len(layer.terms):
                places = np.minimum(layer.terms.searchsorted(columns), len(layer.terms) - 1)
                found.append((layer.terms[places] == columns, layer.counts[places]))
        if not found:
            return np.zeros(len(columns), dtype=bool), np.zeros((len(columns), len(log_totals)))
        if len(found) == 1:
            hit, delta = found[0]
        else:  # folded + recent, each a row of zeros where it lacks the term
            (in_folded, folded), (in_recent, recent) = found
            hit = in_folded | in_recent
            delta = folded * in_folded[:, np.newaxis] + recent * in_recent[:, np.newaxis]
        return hit, np.log(self.feature_count[columns] + delta + self.alpha) - log_totals


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
