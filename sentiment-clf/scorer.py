"""A compact scorer: one text's probabilities without scikit-learn's per-call overhead.

scikit-learn spends most of a single prediction (about 1.2 ms here) on input
validation and sparse-matrix plumbing around a tiny dot product. The scorer does
the same arithmetic directly: the fitted vectorizer's analyzer gives the terms, a
dictionary gives their columns, and the class scores are a weighted sum of a few
rows of the weight matrix. Its probabilities equal the model's ``predict_proba``
to 1e-9 (tested on whole test splits).
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax


class Scorer:
    """Built from a fitted :class:`model.NLPModel`; read-only afterwards."""

    def __init__(self, model):
        vectorizer = model.vectorizer_
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.sublinear_tf = vectorizer.sublinear_tf
        weights, bias = model.class_scores()
        self.weights_by_term = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).T)  # (terms, classes)
        self.bias = np.asarray(bias, dtype=np.float64)
        self.kind = model.classifier
        self.classifier = model.classifier_

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's TF-IDF vector as (columns, values), L2-normalized like the vectorizer's."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        for term in self.analyze(text):
            column = vocabulary.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if not counts:
            return np.empty(0, dtype=np.intp), np.empty(0)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear_tf:
            values = np.log(values) + 1.0
        values *= self.idf[columns]
        norm = np.sqrt(values @ values)
        return columns, values / norm if norm else values

    def scores(self, text: str) -> np.ndarray:
        columns, values = self.features(text)
        return self.bias + values @ self.weights_by_term[columns]

    def predict_proba(self, text: str) -> np.ndarray:
        """Probabilities of the labels, in the model's label order."""
        scores = self.scores(text)
        if self.kind != "svm":  # naive Bayes' joint log likelihood, or logits
            return softmax(scores)
        # The calibrated SVM: with two labels its one decision value is the second's score.
        decision = scores[1:] if len(scores) == 2 else scores
        return self.classifier.calibrate(decision[np.newaxis, :])[0]
