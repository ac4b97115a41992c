"""The served naive Bayes next to other classifiers on the same features (SST models).

Naive Bayes is kept whatever this finds: only it learns each user's answer exactly
online (feedback/online.py). The comparison says what that choice costs.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, log_loss

from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import Recipe

# (classifier, C) fitted on the served model's features.
SST_ALTERNATIVES = [("logreg", 1.0), ("logreg", 10.0), ("svm", 0.1), ("svm", 1.0)]


def mcnemar_p(a_right: np.ndarray, b_right: np.ndarray) -> float:
    """Exact McNemar test of two classifiers' right (True) / wrong answers on the same texts.

    A small p: the two really differ. 1.0 when they are right on exactly the same texts.
    """
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    return float(binomtest(min(only_a, only_b), only_a + only_b).pvalue) if only_a + only_b else 1.0


def compare_classifiers(task: Recipe, model: NLPModel, train, dev) -> list[dict]:
    """Dev accuracy and log-loss of the ``SST_ALTERNATIVES`` on ``model``'s features, after its own.

    ``train`` holds the training phrases (``phrase``, ``target``), ``dev`` the dev
    sentences. Each row: ``classifier``, ``C`` ("" for the served model),
    ``dev_accuracy``, ``dev_log_loss`` and ``mcnemar_p`` (of it against ``model``).
    """
    features = model.vectorizer_.transform(train["phrase"])
    y_dev = model._label_indices(dev["target"])
    labels = list(range(len(task.labels)))
    reference = model.predict_proba(dev["phrase"])
    rows = [{"classifier": "nb (served)", "C": "", "dev_accuracy": accuracy_score(y_dev, reference.argmax(1)),
             "dev_log_loss": log_loss(y_dev, reference, labels=labels), "mcnemar_p": 1.0}]
    nb_right = reference.argmax(1) == y_dev
    for classifier, C in SST_ALTERNATIVES:
        other = NLPModel(task.labels, **{**model.settings(), "classifier": classifier, "C": C})
        proba = other.fit_from_features(model.vectorizer_, features, train["target"]).predict_proba(dev["phrase"])
        rows.append({"classifier": classifier, "C": C, "dev_accuracy": accuracy_score(y_dev, proba.argmax(1)),
                     "dev_log_loss": log_loss(y_dev, proba, labels=labels),
                     "mcnemar_p": mcnemar_p(nb_right, proba.argmax(1) == y_dev)})
    # Plain floats, for the JSON metrics.
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()} for row in rows]
