"""Long texts: how each tier combines what it reads of a full review, on labelled reviews.

For choosing and reporting, never for training: the models learn from SST sentences.
By default the 1,000 IMDB reviews of ``../shared/data/imdb/reviews.csv`` (``--reviews``
takes any CSV with ``review`` and ``sentiment`` columns, ``positive``/``negative``).

- Fast tier (sentiment model): the review read whole as one bag of words, against read
  sentence by sentence (``documents.sentences``) with the sentences' log-probabilities
  averaged (served) or their probabilities averaged.
- Accurate tier: the first window only (what it read before windows), against every
  window (128 word pieces, overlapping by 0, 32 or 64) combined four ways: the mean of
  the windows' vectors weighted by their word pieces (served, with overlap 32), the mean
  of their log-probabilities, the mean of their probabilities, the most confident one.

Prints accuracy with a bootstrap 95% interval for each, and seconds per review.
Run from the repository root: ``python -m bench.long_texts``.
"""
from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np

from sentiment_clf.serving import documents
from sentiment_clf.serving.accurate import MAX_TOKENS, WINDOW_OVERLAP, load_accurate
from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.training.intervals import accuracy_interval

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "sentiment-clf" / "lib" / "models"
REVIEWS = ROOT.parent / "shared" / "data" / "imdb" / "reviews.csv"

logger = logging.getLogger("bench.long_texts")


def load_reviews(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["review"] for row in rows], np.array([row["sentiment"] == "positive" for row in rows], dtype=int)


def report(name: str, predicted, truth: np.ndarray, seconds: float | None = None) -> dict:
    right = np.asarray(predicted) == truth
    low, high = accuracy_interval(right)
    line = f"{name:<62} {right.mean():.2%} (95% interval {low:.1%}-{high:.1%})"
    if seconds is not None:
        line += f", {seconds * 1000:.1f} ms a review"
    print(line, flush=True)
    return {"name": name, "accuracy": float(right.mean()), "interval": [low, high]}


def fast_tier(texts: list[str], truth: np.ndarray) -> list[dict]:
    model = LinearTextModel.load(MODELS / "sentiment")
    started = time.perf_counter()
    whole = model.predict_proba(texts).argmax(axis=1)
    rows = [report("fast: whole review, one bag of words", whole, truth, (time.perf_counter() - started) / len(texts))]
    started = time.perf_counter()
    served = documents.read_many(model, texts, by_sentence=True)[0].argmax(axis=1)
    rows.append(report("fast: by sentence, mean log-probability (served)", served, truth,
                       (time.perf_counter() - started) / len(texts)))
    mean_p = [model.predict_proba(documents.sentences(text)).mean(axis=0).argmax() for text in texts]
    rows.append(report("fast: by sentence, mean probability", mean_p, truth))
    return rows


def accurate_tier(texts: list[str], truth: np.ndarray) -> list[dict]:
    head = load_accurate(MODELS / "accurate", threads=2, max_windows=1024)["sentiment"]
    encoder = head.encoder
    rows = []
    for overlap in (WINDOW_OVERLAP, 0, 64):
        encoder.tokenizer.enable_truncation(MAX_TOKENS, stride=overlap)
        found: dict[str, list[int]] = {"first": [], "vector": [], "log": [], "mean": [], "confident": []}
        started = time.perf_counter()
        for text in texts:
            windows, _ = encoder.windows(text)
            vectors = np.stack([encoder.forward(ids) for ids in windows])
            weights = np.array([len(ids) - 2 for ids in windows], dtype=np.float32)
            proba = head.proba(vectors, [text] * len(vectors))
            found["first"].append(int(proba[0].argmax()))
            found["vector"].append(int(head.proba((weights @ vectors / weights.sum())[None], [text])[0].argmax()))
            found["log"].append(int(softmax(np.log(proba).mean(axis=0, keepdims=True))[0].argmax()))
            found["mean"].append(int(proba.mean(axis=0).argmax()))
            found["confident"].append(int(proba[proba.max(axis=1).argmax()].argmax()))
        seconds = (time.perf_counter() - started) / len(texts)
        if overlap == WINDOW_OVERLAP:
            rows.append(report("accurate: first window only (128 word pieces)", found["first"], truth))
        served = " (served)" if overlap == WINDOW_OVERLAP else ""
        rows.append(report(f"accurate: overlap {overlap}, weighted mean of vectors{served}", found["vector"], truth,
                           seconds))
        rows.append(report(f"accurate: overlap {overlap}, mean log-probability", found["log"], truth))
        rows.append(report(f"accurate: overlap {overlap}, mean probability", found["mean"], truth))
        rows.append(report(f"accurate: overlap {overlap}, most confident window", found["confident"], truth))
    encoder.tokenizer.enable_truncation(MAX_TOKENS, stride=WINDOW_OVERLAP)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=Path, default=REVIEWS, help="CSV with review and sentiment columns")
    parser.add_argument("--no-accurate", action="store_true", help="the fast tier only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    texts, truth = load_reviews(args.reviews)
    print(f"{len(texts)} reviews from {args.reviews.name}, {truth.mean():.1%} positive")
    fast_tier(texts, truth)
    if not args.no_accurate:
        accurate_tier(texts, truth)


if __name__ == "__main__":
    main()
