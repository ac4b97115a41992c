"""The served model: TF-IDF features and a linear classifier's weights, in numpy only.

:class:`LinearTextModel` computes what ``model.NLPModel`` (the scikit-learn
estimator that training fits) computes, from the arrays it saved: the same
probabilities to 1e-9 (tested on whole test splits and on recorded answers),
without scikit-learn's per-call validation and sparse-matrix plumbing, and with
the arrays read in place from a memory-mapped file (``formats.py``).

A text's probabilities are the classifier's per-label scores ``bias + x @ W``
(``x`` the L2-normalised TF-IDF row, ``W`` one weight row per term), turned
into probabilities by the classifier's link: a softmax for naive Bayes (its
joint log likelihood) and logistic regression (its logits), per-label sigmoids
for the calibrated SVM (:mod:`sentiment_clf.serving.classifiers`).

A short text touches a handful of rows, where numpy's per-call cost outweighs
the arithmetic: such texts are summed in Python floats read through memoryviews
of the arrays; longer ones and batches go through numpy. Both give the same
numbers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_clf.serving import formats as model_files
from sentiment_clf.serving.classifiers import (
    LINKS,
    NaiveBayesCounts,
    SigmoidCalibration,
    Softmax,
    Tempered,
    arrays_from_format1,
)
from sentiment_clf.serving.text import TOKENIZERS
from sentiment_clf.serving.vocabulary import Vocabulary

# Up to about this many (term, label) products a Python loop beats numpy (measured
# on the sentiment, ratings and 47-label question models alike).
PYTHON_LIMIT = 64


class LinearTextModel:
    """A saved model, ready to predict; read-only (learning returns a new one).

    Attributes: ``labels`` (in answer order), ``classifier`` (``"nb"``, ``"logreg"``
    or ``"svm"``), ``params`` (the vectorizer and classifier settings),
    ``manifest_`` (as saved), ``vocabulary``.
    """

    def __init__(self, manifest: dict, arrays: dict[str, np.ndarray], python_limit: int = PYTHON_LIMIT):
        params = manifest["params"]
        self.manifest_ = manifest
        self.params = params
        self.labels = tuple(manifest["labels"])
        self.classifier = params.get("classifier", "nb")
        if params.get("tokenizer") not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {params.get('tokenizer')!r}")
        if self.classifier not in LINKS:
            raise ValueError(f"unknown classifier {self.classifier!r}")
        if "weights" not in arrays:  # format 1: the classifier's own arrays
            arrays = arrays_from_format1(arrays, params, len(self.labels))
        self._tokenize = TOKENIZERS[params["tokenizer"]]
        self.vocabulary = Vocabulary(arrays, tuple(params["ngram_range"]))
        self.sublinear_tf = bool(params["sublinear_tf"])
        self.idf = arrays["idf"]
        self.weights = arrays["weights"]  # (terms, scores): one row of per-label scores per term
        self.bias = np.asarray(arrays["bias"], dtype=np.float64)
        n_terms = len(self.vocabulary)
        if self.idf.shape != (n_terms,) or self.weights.shape != (n_terms, len(self.bias)):
            raise ValueError("array shapes do not match the labels and vocabulary")
        self.link: Softmax | SigmoidCalibration | Tempered = LINKS[self.classifier](arrays, len(self.labels))
        # Fitted on dev data when the model was built (absent: 1, the classifier's own).
        self.temperature = float(arrays["temperature"][0]) if "temperature" in arrays else 1.0
        if self.temperature != 1.0:
            self.link = Tempered(self.link, self.temperature)
        self.counts = NaiveBayesCounts.from_arrays(arrays, params, len(self.labels)) \
            if self.classifier == "nb" else None
        self.python_limit = python_limit
        self.log_totals: np.ndarray | None = None  # naive Bayes' smoothed totals after learning
        self.shift: np.ndarray | None = None  # added to every unlearned term's weights after learning
        self._refresh()

    def _refresh(self) -> None:
        """Python-side copies of what the per-text loop reads (no copies of the arrays)."""
        self._bias_list = self.bias.tolist()
        self._idf_view = self.idf.data  # a memoryview of the array, no copy
        self._weights_view = np.ascontiguousarray(self.weights).data.cast("B").cast("d")
        self._shift_list = None if self.shift is None else self.shift.tolist()

    # -- loading ----------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> LinearTextModel:
        """Load a model folder written by ``NLPModel.save``, memory-mapping its arrays.

        Raises :class:`model_files.ModelFileError` when a file is missing, altered
        or inconsistent.
        """
        manifest = model_files.read_manifest(directory)
        mapped = model_files.map_arrays_file(directory, manifest)
        return cls._build(manifest, mapped, str(Path(directory) / model_files.ARRAYS_FILE))

    @classmethod
    def loads(cls, manifest: dict, payload: bytes, *, source: str = "model") -> LinearTextModel:
        """A model from a manifest and arrays bytes (a version stored in the database)."""
        model_files.check(manifest, payload, source)
        return cls._build(manifest, payload, source)

    @classmethod
    def _build(cls, manifest: dict, payload: Any, source: str) -> LinearTextModel:
        try:
            return cls(manifest, model_files.unpack_arrays(payload))
        except (KeyError, ValueError, TypeError) as exc:
            raise model_files.ModelFileError(f"{source}: inconsistent model content ({exc})") from None

    @property
    def version(self) -> str:
        return str(self.manifest_.get("version", "unsaved"))

    @property
    def supports_partial_fit(self) -> bool:
        """Naive Bayes learns new examples exactly, by adding counts; the others by retraining."""
        return self.counts is not None

    # -- predicting -------------------------------------------------------------

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's L2-normalised TF-IDF row: ``(columns ascending, values)``."""
        counts = self.vocabulary.term_counts(self._tokenize(text))
        return self._tfidf({column: counts[column] for column in sorted(counts)})

    def _tfidf(self, counts: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, L2-normalised TF-IDF values)`` of term counts, in the dict's order."""
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear_tf and len(values):
            values = np.log(values) + 1.0
        values *= self.idf[columns]
        norm = math.sqrt(float(values @ values))
        return columns, (values / norm if norm else values)

    def predict_one(self, text: str) -> np.ndarray:
        """Probabilities of the labels for one text, in label order."""
        return self.read_one(text)[0]

    def read_one(self, text: str) -> tuple[np.ndarray, int]:
        """:meth:`predict_one`, and how many tokens the text has (tokenized once)."""
        tokens = self._tokenize(text)
        counts = self.vocabulary.term_counts(tokens)
        if len(counts) * len(self._bias_list) <= self.python_limit:
            return self.link.probabilities(self._python_scores(counts)), len(tokens)
        return self.link.probabilities_2d(self._numpy_scores(counts)[np.newaxis, :])[0], len(tokens)

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(labels))``, columns in label order."""
        return self.link.probabilities_2d(self.scores(texts))

    def read_many(self, texts) -> tuple[np.ndarray, list[int]]:
        """:meth:`predict_proba`, and how many tokens each text has (tokenized once)."""
        tokens: list[int] = []
        return self.link.probabilities_2d(self.scores(texts, tokens)), tokens

    def predict(self, texts) -> np.ndarray:
        """The most probable label of each text (an array of label names)."""
        return np.asarray(self.labels, dtype=object)[self.predict_proba(texts).argmax(axis=1)]

    def scores(self, texts, tokens: list[int] | None = None) -> np.ndarray:
        """The classifier's per-label scores, shape ``(len(texts), scores)``, with numpy;
        each text's number of tokens is appended to ``tokens`` when it is given.

        The texts' terms are counted in Python, then the whole batch is weighed in a
        few array operations (no numpy call per text).
        """
        columns_list: list[int] = []
        counts_list: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.intp)
        tokenize, term_counts = self._tokenize, self.vocabulary.term_counts
        for i, text in enumerate(texts):
            found = tokenize(text)
            if tokens is not None:
                tokens.append(len(found))
            counts = term_counts(found)
            columns_list.extend(counts)
            counts_list.extend(counts.values())
            lengths[i] = len(counts)
        result = np.tile(self.bias, (len(texts), 1))
        if not columns_list:
            return result
        columns = np.array(columns_list, dtype=np.intp)
        values = np.array(counts_list, dtype=np.float64)
        if self.sublinear_tf:
            values = np.log(values) + 1.0
        values *= self.idf[columns]
        filled = lengths > 0
        starts = (np.cumsum(lengths) - lengths)[filled]
        norms = np.sqrt(np.add.reduceat(values * values, starts))
        values /= np.repeat(norms, lengths[filled])
        result[filled] += np.add.reduceat(self.term_weights(columns) * values[:, np.newaxis], starts, axis=0)
        return result

    def term_weights(self, columns: np.ndarray) -> np.ndarray:
        """The weight rows of ``columns``, with what the model learned since it was saved."""
        rows = self.weights[columns]
        if self.shift is not None:
            rows = rows + self.shift
            hit, learned = self._learned_rows(columns)
            rows[hit] = learned[hit]
        return rows

    def _learned_rows(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(which columns are terms learned since saving, their weight rows as such)``."""
        assert self.counts is not None and self.log_totals is not None  # only a model that learned
        return self.counts.learned_rows(columns, self.log_totals)

    def _numpy_scores(self, counts: dict[int, int]) -> np.ndarray:
        """The per-label scores of one text's term counts, with numpy."""
        columns, values = self._tfidf(counts)
        return self.bias + values @ self.term_weights(columns)

    def _python_scores(self, counts: dict[int, int]) -> list[float]:
        """The per-label scores in Python floats: TF-IDF, L2 norm, weighted rows."""
        if not counts:
            return list(self._bias_list)
        shift = self._shift_list
        if shift is None:
            return self._python_scores_as_saved(counts)
        idf, weights, n_scores = self._idf_view, self._weights_view, len(self._bias_list)
        hits, rows = self._learned_rows(np.fromiter(counts, dtype=np.intp, count=len(counts)))
        sums = [0.0] * n_scores
        squares = shifted = 0.0
        for (column, count), hit, row in zip(counts.items(), hits.tolist(), rows.tolist(), strict=True):
            value = ((math.log(count) + 1.0) if self.sublinear_tf else count) * idf[column]
            squares += value * value
            if not hit:
                start = column * n_scores
                for k in range(n_scores):
                    sums[k] += value * weights[start + k]
                shifted += value
            else:
                for k in range(n_scores):
                    sums[k] += value * row[k]
        sums = [total + delta * shifted for total, delta in zip(sums, shift, strict=True)]
        norm = math.sqrt(squares)
        return [bias + total / norm for bias, total in zip(self._bias_list, sums, strict=True)]

    def _python_scores_as_saved(self, counts: dict[int, int]) -> list[float]:
        """:meth:`_python_scores` for a model that has learned nothing since it was saved
        (the common case, on every request: no lookups of learned rows)."""
        idf, weights, log, sublinear = self._idf_view, self._weights_view, math.log, self.sublinear_tf
        n_scores = len(self._bias_list)
        squares = 0.0
        if n_scores == 2:  # sentiment: two sums, unrolled
            first = second = 0.0
            for column, count in counts.items():
                value = ((log(count) + 1.0) if sublinear else count) * idf[column]
                squares += value * value
                first += value * weights[2 * column]
                second += value * weights[2 * column + 1]
            sums = [first, second]
        else:
            sums = [0.0] * n_scores
            for column, count in counts.items():
                value = ((log(count) + 1.0) if sublinear else count) * idf[column]
                squares += value * value
                start = column * n_scores
                for k in range(n_scores):
                    sums[k] += value * weights[start + k]
        norm = math.sqrt(squares)
        return [bias + total / norm for bias, total in zip(self._bias_list, sums, strict=True)]

    # -- explaining -------------------------------------------------------------

    def explain(self, text: str, top: int = 10) -> dict:
        """Why ``text`` got its label rather than the runner-up (the next most probable).

        Each term's weight is its share of ``score(predicted) - score(runner_up)``,
        exactly: ``bias + sum(weight of every term)`` equals that ``margin``.
        Positive weights push toward the predicted label, negative ones toward the
        runner-up. (For the calibrated SVM the probabilities rank the labels, so its
        margin can be negative.) Returns ``{"versus", "margin", "bias", "toward",
        "away"}``; each list holds ``{"term", "weight"}``, largest first, at most ``top``.
        """
        columns, values = self.features(text)
        rows = self.term_weights(columns)
        scores = self.bias + values @ rows
        order = np.argsort(-self.link.probabilities_2d(scores[np.newaxis, :])[0], kind="stable")
        predicted, runner_up = int(order[0]), int(order[1])
        contributions = values * (rows[:, predicted] - rows[:, runner_up]) if len(columns) else values
        ranked = sorted(zip(columns.tolist(), contributions.tolist(), strict=True), key=lambda pair: -abs(pair[1]))
        term = self.vocabulary.term
        return {"versus": self.labels[runner_up],
                "margin": float(scores[predicted] - scores[runner_up]),
                "bias": float(self.bias[predicted] - self.bias[runner_up]),
                "toward": [{"term": term(j), "weight": w} for j, w in ranked if w > 0][:top],
                "away": [{"term": term(j), "weight": w} for j, w in ranked if w < 0][:top]}

    # -- learning ---------------------------------------------------------------

    def learn(self, texts: list[str], labels: list[str]) -> LinearTextModel:
        """A new model that has also learned ``texts`` with ``labels`` (naive Bayes only).

        Exact: the same as refitting the classifier on the training data plus these
        examples with this vocabulary (what scikit-learn's ``partial_fit`` does).
        The saved arrays stay shared; what was learned is kept as the learned terms'
        counts (:class:`~sentiment_clf.serving.classifiers.NaiveBayesCounts`), their weights
        computed when a text needs them.
        """
        if self.counts is None:
            raise NotImplementedError(f"a {self.classifier} model learns new examples only by retraining")
        index = {label: i for i, label in enumerate(self.labels)}
        try:
            targets = [index[label] for label in labels]
        except KeyError as exc:
            raise ValueError(f"unknown label {exc.args[0]!r}; expected one of {list(self.labels)}") from None
        return self.with_counts(self.counts.add([self.features(text) for text in texts], targets))

    def fold(self) -> LinearTextModel:
        """The same model, what it learned recently folded into what it learned before
        (the state a checkpoint stores; the same answers either way)."""
        return self if self.counts is None else self.with_counts(self.counts.fold())

    def with_counts(self, counts: NaiveBayesCounts) -> LinearTextModel:
        """A new model with these naive Bayes counts (what it learned, or a checkpoint of it)."""
        learned = self._copy()
        learned.counts = counts
        learned.bias = counts.class_log_prior()
        after = counts.totals_after_learning()
        learned.log_totals, learned.shift = (None, None) if after is None else after
        learned._refresh()
        return learned

    def _copy(self) -> LinearTextModel:
        copy = object.__new__(LinearTextModel)
        copy.__dict__.update(self.__dict__)
        return copy
