"""How the fast tier reads a long text: sentence by sentence, for the models trained on sentences.

The fast sentiment and ratings models learned from single sentences (SST). A whole
review weighed as one bag of words is an average of many sentences' terms, most of
them plot and neutral description: on 1,000 full IMDB reviews the fast sentiment
model was right 79.4% of the time read whole and 81.4% read by sentence, the
sentences' log-probabilities averaged (``bench/long_texts.py``, which compares the
combinations). A text of one sentence is read as before, exactly.

The models trained on whole tweets and whole questions read a text whole, as they
learned. Nothing is cut: the fast tier reads every word of a query.
"""
from __future__ import annotations

import re

import numpy as np

# A sentence ends at . ! ? (or …) followed by white space and a capital letter, a digit
# or an opening quote, unless the word before the full stop is a title or an initial
# ("Ms. Fulford", "J. K. Rowling"). A blank line or an HTML <br> also ends one (reviews
# pasted from the web are full of them). A lone line break does not: text wrapped by
# hand breaks lines inside sentences.
_ABBREVIATION = "".join(rf"(?<!\b{word}\.)" for word in ("Mr", "Ms", "Mrs", "Dr", "St", "Jr", "Sr", "vs", "[A-Z]"))
_SENTENCE_END = re.compile(
    _ABBREVIATION + r"(?<=[.!?\u2026])\s+(?=[A-Z0-9\"'\u201c\u2018(])|\s*<[bB][rR]\s*/?>\s*|\n\s*\n")
_WORD = re.compile(r"\w")
_MAYBE_SEVERAL = re.compile(r"[.!?\u2026]\s|<br|\n\s*\n", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, in order, each with a letter or digit (a lone "..." is
    no sentence); ``[text]`` when it has one."""
    if not _MAYBE_SEVERAL.search(text):  # most queries: one sentence, decided in well under a microsecond
        return [text]
    parts = [part for part in _SENTENCE_END.split(text) if _WORD.search(part)]
    return parts if len(parts) > 1 else [text]


def combine(probabilities: np.ndarray) -> np.ndarray:
    """One distribution from the rows of ``probabilities`` (sentences x labels): the
    normalised geometric mean, i.e. the mean of the log-probabilities (for two labels,
    the mean log-odds)."""
    if len(probabilities) == 1:
        return probabilities[0]
    logs = np.log(np.maximum(probabilities, 1e-300)).mean(axis=0)
    logs -= logs.max()
    combined = np.exp(logs)
    return combined / combined.sum()


def _read(tokens: int, windows: int) -> dict:
    return {"tokens": tokens, "text_tokens": tokens, "windows": windows, "truncated": False}


def read(model, text: str, by_sentence: bool) -> tuple[np.ndarray, dict]:
    """``model``'s probabilities for ``text`` and what it read (the answers' ``"read"``):
    ``{"tokens", "text_tokens", "windows", "truncated"}``, a window being a sentence."""
    parts = sentences(text) if by_sentence else [text]
    if len(parts) == 1:
        probabilities, tokens = model.read_one(text)
        return probabilities, _read(tokens, 1)
    found, counts = model.read_many(parts)
    return combine(found), _read(sum(counts), len(parts))


def read_many(model, texts: list[str], by_sentence: bool) -> tuple[np.ndarray, list[dict]]:
    """:func:`read` of each text, every sentence of the batch weighed in one call:
    probabilities (texts x labels) and what was read of each."""
    parts = [sentences(text) if by_sentence else [text] for text in texts]
    if all(len(part) == 1 for part in parts):  # the common case: one row per text as it is
        found, counts = model.read_many(texts)
        return found, [_read(tokens, 1) for tokens in counts]
    found, counts = model.read_many([sentence for part in parts for sentence in part])
    rows, reads, start = [], [], 0
    for part in parts:
        rows.append(combine(found[start:start + len(part)]))
        reads.append(_read(sum(counts[start:start + len(part)]), len(part)))
        start += len(part)
    return np.array(rows).reshape(len(texts), found.shape[1]), reads
