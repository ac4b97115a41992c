"""Loading the training data: the treebank, the Kaggle TSV, the tweets and the questions.

Two formats carry the same movie-review phrases:

* the Stanford Sentiment Treebank (SST) in PTB trees, one sentence a line, every
  node ``(LABEL ...)`` with LABEL 0..4 (``train.txt``, ``dev.txt``, ``test.txt``);
* the Kaggle "Sentiment Analysis on Movie Reviews" ``train.tsv`` with the columns
  ``PhraseId, SentenceId, Phrase, Sentiment``.

Both SST loaders return a :class:`pandas.DataFrame` with at least the columns
``sentence_id``, ``phrase`` and ``label``; :func:`load_hatespeech` and
:func:`load_questions` read the tweets' and the questions' CSV files. Every loader
raises :class:`DataFormatError` naming the file and line when the input is not
what it expects.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import re
from pathlib import Path

import pandas as pd

from sentiment_clf.errors import DataFormatError

logger = logging.getLogger(__name__)

N_LABELS = 5
KAGGLE_COLUMNS = ["PhraseId", "SentenceId", "Phrase", "Sentiment"]
_TREE_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(text: str) -> list[tuple[int, list[str]]]:
    """Parse one PTB tree into ``(label, tokens)`` for every node, root first.

    ``(3 (2 It) (4 (2 's) (3 good)))`` gives
    ``[(3, ["It", "'s", "good"]), (2, ["It"]), (4, ["'s", "good"]), (2, ["'s"]), (3, ["good"])]``.
    Raises ``ValueError`` with a short description when the tree is malformed.
    """
    tokens = _TREE_TOKEN.findall(text)
    if not tokens:
        raise ValueError("empty line, expected a tree")
    nodes: list[tuple[int, list[str]]] = []
    # each open node: (index in nodes, its label, leaves collected so far)
    stack: list[tuple[int, int, list[str]]] = []
    pos = 0
    closed_root = False
    while pos < len(tokens):
        tok = tokens[pos]
        if closed_root:
            raise ValueError(f"unexpected {tok!r} after the end of the tree")
        if tok == "(":
            if pos + 1 >= len(tokens) or tokens[pos + 1] in "()":
                raise ValueError("'(' must be followed by a label")
            label_text = tokens[pos + 1]
            if not label_text.isdigit() or not 0 <= int(label_text) < N_LABELS:
                raise ValueError(f"label {label_text!r} is not one of 0..{N_LABELS - 1}")
            nodes.append((int(label_text), []))
            stack.append((len(nodes) - 1, int(label_text), []))
            pos += 2
        elif tok == ")":
            if not stack:
                raise ValueError("unbalanced ')'")
            index, label, leaves = stack.pop()
            if not leaves:
                raise ValueError("a node has no words")
            nodes[index] = (label, leaves)
            if stack:
                stack[-1][2].extend(leaves)
            else:
                closed_root = True
            pos += 1
        else:
            if not stack:
                raise ValueError(f"word {tok!r} outside the tree")
            stack[-1][2].append(tok)
            pos += 1
    if stack:
        raise ValueError("unbalanced '(': the tree is not closed")
    return nodes


def load_sst(path, *, roots_only: bool = False) -> pd.DataFrame:
    """Load an SST split (``train.txt``, ``dev.txt`` or ``test.txt``).

    Returns one row per node (or per sentence with ``roots_only``) with the
    columns ``sentence_id`` (1-based, in file order), ``phrase`` (the node's words
    joined by spaces), ``label`` (0..4) and ``is_root``.
    """
    path = Path(path)
    rows = []
    sentence_id = 0
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                nodes = parse_tree(line)
            except ValueError as exc:
                raise DataFormatError(path, line_no, str(exc)) from None
            sentence_id += 1
            for i, (label, words) in enumerate(nodes[:1] if roots_only else nodes):
                rows.append((sentence_id, " ".join(words), label, i == 0))
    if not rows:
        raise DataFormatError(path, 1, "no trees in the file")
    frame = pd.DataFrame(rows, columns=["sentence_id", "phrase", "label", "is_root"])
    logger.info("loaded %s: %d phrases from %d sentences", path, len(frame),
                frame["sentence_id"].nunique())
    return frame


def load_kaggle_tsv(path) -> pd.DataFrame:
    """Load the Kaggle ``train.tsv`` (``PhraseId, SentenceId, Phrase, Sentiment``).

    Returns the columns ``phrase_id``, ``sentence_id``, ``phrase``, ``label`` and
    ``is_root`` (the first, longest phrase of each sentence, as Kaggle orders them).
    """
    path = Path(path)
    rows = []
    with _open_text(path) as handle:
        # Phrases hold bare quote characters: the file is not CSV-quoted.
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != KAGGLE_COLUMNS:
            raise DataFormatError(path, 1, f"expected the header {chr(9).join(KAGGLE_COLUMNS)!r}, "
                                           f"found {chr(9).join(header or [])!r}")
        seen_sentences = set()
        for fields in reader:
            line_no = reader.line_num
            if not fields:
                continue
            if len(fields) != 4:
                raise DataFormatError(path, line_no, f"expected 4 tab-separated fields, found {len(fields)}")
            phrase_id, sentence_id, phrase, label = fields
            if not (phrase_id.isdigit() and sentence_id.isdigit()):
                raise DataFormatError(path, line_no, "PhraseId and SentenceId must be whole numbers")
            if not (label.isdigit() and 0 <= int(label) < N_LABELS):
                raise DataFormatError(path, line_no, f"Sentiment {label!r} is not one of 0..{N_LABELS - 1}")
            is_root = sentence_id not in seen_sentences
            seen_sentences.add(sentence_id)
            rows.append((int(phrase_id), int(sentence_id), phrase, int(label), is_root))
    if not rows:
        raise DataFormatError(path, 1, "no phrases in the file")
    return pd.DataFrame(rows, columns=["phrase_id", "sentence_id", "phrase", "label", "is_root"])


def _open_text(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file (see sentiment-clf/lib/data/README.md)")
    return path.open(encoding="utf-8", newline="")


def file_sha256(*paths) -> str:
    """SHA-256 over the bytes of the given files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_csv(path, required: list[str]) -> pd.DataFrame:
    """A CSV file with the ``required`` columns; DataFormatError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file (see sentiment-clf/lib/data/README.md)")
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise DataFormatError(path, int(line.group(1)) if line else 1, f"not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(path, 1, f"missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _check_values(path, frame: pd.DataFrame, column: str, allowed) -> None:
    bad = ~frame[column].isin(list(allowed))
    if bad.any():
        # +2: one line of header, and pandas counts from 0 (a tweet over several lines shifts this)
        row = int(bad.to_numpy().argmax())
        raise DataFormatError(path, row + 2, f"{column} {frame[column].iloc[row]!r} is not one of {sorted(allowed)}")


def load_hatespeech(path) -> pd.DataFrame:
    """Davidson et al. 2017 ``labeled_data.csv``: columns ``text`` (the raw tweet) and
    ``label`` (0 hate speech, 1 offensive language, 2 neither)."""
    frame = _read_csv(path, ["tweet", "class"])
    _check_values(path, frame, "class", {0, 1, 2})
    return pd.DataFrame({"text": frame["tweet"].astype(str), "label": frame["class"].astype(int)})


def load_questions(path) -> pd.DataFrame:
    """TREC question classification ``dataset.csv``: columns ``text``, ``coarse`` (ABBR,
    DESC, ENTY, HUM, LOC, NUM) and ``fine`` (47 classes such as ``city``)."""
    frame = _read_csv(path, ["Questions", "Category1", "Category2"])
    _check_values(path, frame, "Category1", {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"})
    return pd.DataFrame({"text": frame["Questions"].astype(str), "coarse": frame["Category1"],
                         "fine": frame["Category2"].astype(str)})


_PTB = [(re.compile(r"-LRB-"), "("), (re.compile(r"-RRB-"), ")"), (re.compile(r"-LSB-"), "["),
        (re.compile(r"-RSB-"), "]"), (re.compile(r"``|''"), '"'),
        (re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b"), r"\1"), (re.compile(r" ([.,!?;:%)\]])"), r"\1"),
        (re.compile(r"([(\[$]) "), r"\1")]


def sst_to_plain(phrase: str) -> str:
    """An SST phrase as a person writes it: brackets and quotes back, ``n't`` and
    punctuation attached to the word before (``it 's good .`` -> ``it's good.``)."""
    for pattern, replacement in _PTB:
        phrase = pattern.sub(replacement, phrase)
    return phrase
