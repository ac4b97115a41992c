"""A model's vocabulary (term <-> column) in arrays a server can memory-map.

A fitted TF-IDF vocabulary is a Python dictionary of a few hundred thousand
n-grams: about 100 bytes a term, in every worker. Here it is arrays instead,
read in place from the model file and shared by every worker:

* ``vocabulary``: the terms, UTF-8, joined by newlines, in column order, and
  ``vocabulary_offsets`` where each starts (for explanations, which name terms);
* ``vocabulary_tokens``: the distinct tokens the terms are made of, sorted.
  A token's id is its place in this list plus one; each process keeps these in
  a small dictionary (a tenth of the terms or fewer);
* an open-addressing hash table, ``vocabulary_keys`` and ``vocabulary_columns``.
  An n-gram's key is its token ids written as digits in base ``tokens + 1``:
  exact (two n-grams never share a key, so a lookup never confuses terms) and
  computed by a multiplication and an addition per token. The slot is the
  key's Fibonacci hash; collisions probe the next slots.

The terms of a text are found in scikit-learn's order (all unigrams, then all
bigrams, ...), so sums over them run in the same order as with its vectorizer.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_FIBONACCI = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads structured keys over the table
_MASK64 = (1 << 64) - 1
ARRAY_NAMES = ("vocabulary", "vocabulary_offsets", "vocabulary_tokens", "vocabulary_keys",
               "vocabulary_columns")


def join_terms(words: Sequence[str]) -> np.ndarray:
    """Terms as one array of UTF-8 bytes, joined by newlines (a term never holds one)."""
    if any("\n" in word for word in words):
        raise ValueError("a vocabulary term holds a newline; cannot save it")
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def split_terms(blob: np.ndarray) -> list[str]:
    """The terms :func:`join_terms` joined."""
    return blob.tobytes().decode("utf-8").split("\n") if len(blob) else []


def build_arrays(terms: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays for ``terms`` (in column order). Terms are space-joined tokens."""
    tokens = sorted({token for term in terms for token in term.split(" ")})
    token_ids = {token: i + 1 for i, token in enumerate(tokens)}
    base = len(tokens) + 1
    longest = max((term.count(" ") + 1 for term in terms), default=1)
    if base ** longest >= 2 ** 64:
        raise ValueError(f"{len(tokens)} tokens in n-grams of up to {longest}: keys would not fit 64 bits")
    bits = max(1, (2 * len(terms) - 1).bit_length())  # at least twice as many slots as terms
    shift, size = 64 - bits, 1 << bits
    keys, columns = [0] * size, [-1] * size
    for column, term in enumerate(terms):
        key = 0
        for token in term.split(" "):
            key = key * base + token_ids[token]
        slot = ((key * _FIBONACCI) & _MASK64) >> shift
        while keys[slot]:
            if keys[slot] == key:
                raise ValueError(f"the term {term!r} is in the vocabulary twice")
            slot = (slot + 1) & (size - 1)
        keys[slot], columns[slot] = key, column
    encoded = [term.encode("utf-8") for term in terms]
    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum([len(e) + 1 for e in encoded], out=offsets[1:])
    return {"vocabulary": join_terms(terms), "vocabulary_offsets": offsets, "vocabulary_tokens": join_terms(tokens),
            "vocabulary_keys": np.array(keys, dtype=np.uint64),
            "vocabulary_columns": np.array(columns, dtype=np.int32)}


class Vocabulary:
    """Term lookups over the arrays of :func:`build_arrays` (which may be memory-mapped).

    ``ngram_range`` is the vectorizer's: the terms of a text are its n-grams for
    n in that range.
    """

    def __init__(self, arrays: dict[str, np.ndarray], ngram_range: tuple[int, int]):
        if "vocabulary_keys" not in arrays:  # a format 1 file: only the terms were saved
            arrays = build_arrays(split_terms(arrays["vocabulary"]))
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self._terms = arrays["vocabulary"]
        self._offsets = arrays["vocabulary_offsets"].data  # a memoryview of the array, no copy
        self.size = len(self._offsets) - 1
        tokens = split_terms(arrays["vocabulary_tokens"])
        self._token_ids = {token: i + 1 for i, token in enumerate(tokens)}
        self._base = len(tokens) + 1
        self._keys = arrays["vocabulary_keys"].data
        self._columns = arrays["vocabulary_columns"].data
        self._shift = 64 - (len(self._keys).bit_length() - 1)
        if len(self._columns) != len(self._keys) or len(self._keys) & (len(self._keys) - 1):
            raise ValueError("the vocabulary's hash table is malformed")

    def __len__(self) -> int:
        return self.size

    def term(self, column: int) -> str:
        """The term of ``column``."""
        start, end = self._offsets[column], self._offsets[column + 1] - 1
        return self._terms[start:end].tobytes().decode("utf-8")

    def terms(self) -> list[str]:
        """Every term, in column order."""
        return split_terms(self._terms)

    def term_counts(self, tokens: list[str]) -> dict[int, int]:
        """``{column: count}`` of the n-grams of ``tokens`` that are in the vocabulary."""
        get = self._token_ids.get
        ids = [get(token) for token in tokens]
        low, high = self.ngram_range
        counts: dict[int, int] = {}
        keys = ids  # the keys of the n-grams of the current length, None for unknown ones
        for n in range(1, min(high, len(ids)) + 1):
            if n > 1:
                base = self._base
                keys = [None if key is None or (last := ids[i + n - 1]) is None else key * base + last
                        for i, key in enumerate(keys[:len(ids) - n + 1])]
            if n >= low:
                self._count(keys, counts)
        return counts

    def _count(self, keys: list, counts: dict[int, int]) -> None:
        table, columns, shift = self._keys, self._columns, self._shift
        last = len(table) - 1
        for key in keys:
            if key is None:
                continue
            slot = ((key * _FIBONACCI) & _MASK64) >> shift
            while True:
                found = table[slot]
                if found == key:
                    column = columns[slot]
                    counts[column] = counts.get(column, 0) + 1
                    break
                if not found:
                    break
                slot = (slot + 1) & last
