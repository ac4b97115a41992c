"""Fitting a head's partner (sentiment_clf/partners.py) and choosing its weight on dev.

The partner is a logistic regression (C=1, balanced class weights, as Davidson et al.'s
and the fast tier's hate-speech models) over two TF-IDF blocks, each L2-normalised on its
own: the tweet tokenizer's words and word pairs, and each word's character 2- to
5-grams; terms in fewer than 3 training texts are left out. It learns from the texts
the head's encoder learned from (never the dev or held-out ones), and is stored in
float32 (a few hundred kilobytes).

Its weight in the blend ``(1 - w) * log p(head) + w * log p(partner)`` is chosen on the
dev texts by the head's dev score (macro-F1 for hate speech, accuracy otherwise), over
w = 0, 0.05, ..., 0.6, each w scored by the mean of its own and its neighbours' dev
scores: a dev set of a few thousand texts moves by a few thousandths from one w to the
next, and a lone peak is more likely luck than a lone plateau. w = 0 means no partner.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from sentiment_clf.serving.classifiers import log_softmax
from sentiment_clf.serving.partners import BLOCKS, TextPartner
from sentiment_clf.serving.text import TOKENIZERS
from sentiment_clf.serving.vocabulary import join_terms

MIN_DF = 3
C = 1.0
WEIGHTS = [round(float(w), 2) for w in np.arange(0.0, 0.61, 0.05)]
SETTINGS = {"blocks": BLOCKS, "sublinear_tf": True, "min_df": MIN_DF,
            "classifier": f"logistic regression (C={C:g}, balanced class weights)"}


def fit_partner(texts: list[str], targets: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """The partner's arrays (partners.py's layout), fitted on ``texts`` and their label
    indices ``targets`` (every label among them)."""
    vectorizers = {name: TfidfVectorizer(tokenizer=TOKENIZERS[reading["tokenizer"]], lowercase=False,
                                         token_pattern=None, ngram_range=tuple(reading["ngram_range"]),
                                         sublinear_tf=True, min_df=MIN_DF, dtype=np.float64)
                   for name, reading in BLOCKS.items()}
    blocks = [vectorizer.fit_transform(texts) for vectorizer in vectorizers.values()]
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(hstack(blocks).tocsr(), targets)
    if len(model.classes_) != n_labels:
        raise ValueError(f"a partner needs examples of all {n_labels} labels")
    coef, intercept = model.coef_, model.intercept_
    if n_labels == 2:  # one row of scores, for the second label; the first label's are zeros
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    arrays: dict[str, np.ndarray] = {}
    start = 0
    for (name, vectorizer), block in zip(vectorizers.items(), blocks, strict=True):
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        end = start + block.shape[1]
        arrays.update({f"{name}.vocabulary": join_terms(terms),
                       f"{name}.idf": vectorizer.idf_.astype(np.float32),
                       f"{name}.coef": coef[:, start:end].astype(np.float32),
                       # one intercept, with the first block
                       f"{name}.intercept": (intercept if start == 0 else np.zeros(n_labels)).astype(np.float32)})
        start = end
    return arrays


def log_probabilities(partner: TextPartner, texts: list[str]) -> np.ndarray:
    """The partner's log-probabilities of each text (texts x labels), as served."""
    return np.stack([partner.log_proba(text) for text in texts]) if texts else np.zeros((0, len(partner.labels)))


def choose_weight(head_scores: np.ndarray, partner_log_p: np.ndarray, truth: np.ndarray,
                  score) -> tuple[float, list[list[float]]]:
    """The weight of the blend with the best smoothed dev score (see the module's docstring),
    and the curve it was chosen from: ``[w, dev score, smoothed]`` rows. ``score(truth,
    predicted)`` is the head's dev score; ``head_scores`` its logits on the dev texts."""
    head = log_softmax(np.asarray(head_scores, dtype=np.float64))
    found = [score(truth, ((1 - w) * head + w * partner_log_p).argmax(axis=1)) for w in WEIGHTS]
    smoothed = [float(np.mean(found[max(i - 1, 0):i + 2])) for i in range(len(found))]
    rows = [[w, float(f), s] for w, f, s in zip(WEIGHTS, found, smoothed, strict=True)]
    best = max(rows, key=lambda row: (row[2], -row[0]))  # the smaller weight among equals
    return best[0], rows
