"""A second opinion for an accurate head: a TF-IDF logistic regression over words and
character n-grams, whose log-probabilities are blended into the head's.

The transformer reads word pieces; the hate-speech tweets are full of spellings it splits
into pieces it rarely saw (elongations, slurs with letters swapped, words run together).
Character n-grams see those; on the dev tweets the blend of the two chose itself over
the head alone (``training/partners.py`` fits it and chooses its weight).

A partner is one arrays file in the accurate model's folder (``partner-<model>.npz``,
checksummed by the model's manifest, read with ``allow_pickle=False``), two blocks of
arrays: ``words.*`` (the tweet tokenizer's words and word pairs) and ``chars.*`` (each
word's character 2- to 5-grams). Each block holds its ``vocabulary`` (the terms, joined
by newlines, in column order), ``idf``, ``coef`` (labels x terms) and ``intercept``. A
block's TF-IDF row (sublinear term frequency) is L2-normalised on its own and the blocks'
scores add up: one logistic regression over the two rows side by side, as scikit-learn
fitted it (training/partners.py). A text is tokenized once for both blocks, and its
terms are looked up in a plain dictionary per block (a few thousand characters' n-grams
cost a few milliseconds; a tweet's, about 0.3 ms).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from sentiment_clf.serving.classifiers import log_softmax
from sentiment_clf.serving.text import character_ngrams, tokenize_tweet, word_ngrams
from sentiment_clf.serving.vocabulary import split_terms

# The blocks: how each turns a text's tokens into terms (the tokenizers of text.py, as
# training/partners.py hands them to scikit-learn).
BLOCKS: dict[str, dict] = {"words": {"tokenizer": "tweet-v1", "ngram_range": [1, 2]},
                           "chars": {"tokenizer": "tweet-chars-v1", "ngram_range": [1, 1]}}
_TERMS: dict[str, Callable[[list[str]], list[str]]] = {
    "words": lambda tokens: word_ngrams(tokens, (1, 2)), "chars": character_ngrams}
BLOCK_ARRAYS = ("vocabulary", "idf", "coef", "intercept")


class _Block:
    """One block: its terms' columns, IDF weights and per-term label weights."""

    def __init__(self, name: str, arrays: dict[str, np.ndarray]):
        terms = split_terms(arrays["vocabulary"])
        self.columns = {term: column for column, term in enumerate(terms)}
        self.idf = np.asarray(arrays["idf"], dtype=np.float64)
        self.weights = np.ascontiguousarray(np.asarray(arrays["coef"], dtype=np.float64).T)  # terms x labels
        self.bias = np.asarray(arrays["intercept"], dtype=np.float64)
        if self.idf.shape != (len(terms),) or self.weights.shape != (len(terms), len(self.bias)):
            raise ValueError(f"the {name} block's arrays do not match its vocabulary")
        self.terms = _TERMS[name]

    def scores(self, tokens: list[str]) -> np.ndarray:
        counts = Counter(filter(self.columns.__contains__, self.terms(tokens)))
        if not counts:
            return self.bias.copy()
        columns = np.array([self.columns[term] for term in counts], dtype=np.intp)
        values = (np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts))) + 1.0) * self.idf[columns]
        values /= np.sqrt(values @ values)
        return self.bias + values @ self.weights[columns]


class TextPartner:
    """A partner's blocks, ready to score one text at a time.

    ``weight`` is the partner's share of the blend (0 < weight < 1); ``sha256`` is its
    file's, which a head's version covers.
    """

    def __init__(self, labels: tuple[str, ...], arrays: dict[str, np.ndarray], weight: float, sha256: str):
        if not 0.0 < weight < 1.0:
            raise ValueError(f"a partner's weight is between 0 and 1, not {weight}")
        self.labels, self.weight, self.sha256 = tuple(labels), float(weight), sha256
        self.blocks = []
        for name in BLOCKS:
            missing = [f"{name}.{part}" for part in BLOCK_ARRAYS if f"{name}.{part}" not in arrays]
            if missing:
                raise ValueError(f"no arrays {', '.join(missing)}")
            self.blocks.append(_Block(name, {part: arrays[f"{name}.{part}"] for part in BLOCK_ARRAYS}))
        if any(len(block.bias) != len(self.labels) for block in self.blocks):
            raise ValueError(f"the partner's arrays do not match its {len(self.labels)} labels")

    def log_proba(self, text: str) -> np.ndarray:
        """The partner's log-probabilities of one text (labels,), float64. One text at a
        time, always by the same path, so a text's answer never depends on company."""
        tokens = tokenize_tweet(text)
        scores = self.blocks[0].scores(tokens)
        for block in self.blocks[1:]:
            scores = scores + block.scores(tokens)
        return log_softmax(scores)

    def blend(self, head_scores: np.ndarray, text: str) -> np.ndarray:
        """A head's scores of one text (labels,) blended with this partner's:
        ``(1 - weight) * log_softmax(head) + weight * log p(partner)``, float64."""
        return ((1.0 - self.weight) * log_softmax(np.asarray(head_scores, dtype=np.float64))
                + self.weight * self.log_proba(text))

    @property
    def identity(self) -> str:
        """What a head's version covers of its partner: the file and the weight."""
        return f"{self.sha256}:{self.weight!r}"
