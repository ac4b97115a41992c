"""Benchmark: one prediction in-process, and the service under load over HTTP.

    .venv/bin/python -m bench.bench_predict            # or: make bench

1. In-process: the time of one prediction on one phrase, through scikit-learn's
   ``NLPModel.predict_proba``, through the served model the service uses
   (``LinearTextModel``, numpy only, arrays memory-mapped), and through a plain
   dictionary-lookup-and-dot-product version of the same model (the yardstick:
   the served model should be within 1.5x of it); phrases/s for a batch.
2. The service started with the README's command (gunicorn, 2 workers by
   default), loaded by wrk (Debian package ``wrk``) with single GET predictions:
   requests/s and p50/p99 latency at each concurrency.

Not a test: it prints figures for BENCHMARKS.md and writes them as JSON to
bench/results/.
"""
from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from bench.harness import LiveServer, machine, run_wrk, run_wrk_batch, save_results
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.training.model import NLPModel

ROOT = Path(__file__).resolve().parents[1]

PHRASES = ["that movie was boring", "a gorgeous , witty , seductive movie",
           "it 's not a bad film , but it is n't a good one either",
           "The acting is superb and the story kept me guessing until the very end."]
QUERY = "that movie was boring"


def time_one(predict, repeats: int) -> dict:
    for text in PHRASES * 50:  # warm-up
        predict(text)
    timings = []
    for i in range(repeats):
        text = PHRASES[i % len(PHRASES)]
        started = time.perf_counter_ns()
        predict(text)
        timings.append(time.perf_counter_ns() - started)
    timings.sort()
    return {"repeats": repeats, "median_ms": statistics.median(timings) / 1e6,
            "p99_ms": timings[int(0.99 * len(timings))] / 1e6}


class PlainDictModel:
    """The yardstick for the served model: a plain dictionary lookup and dot product.

    One dictionary maps each term of the fitted vocabulary to its IDF and its
    per-label weights; a prediction tokenizes with the model's own analyzer,
    looks each term up, and sums weights in Python. The same model, so the same
    probabilities (checked before timing), written as simply as it can be.
    """

    def __init__(self, model: NLPModel):
        vectorizer = model.vectorizer_
        weights, bias = model.class_scores()
        columns, idf = np.asarray(weights).T.tolist(), vectorizer.idf_.tolist()  # Python floats
        self.analyze, self.sublinear_tf = vectorizer.build_analyzer(), vectorizer.sublinear_tf
        self.bias = np.asarray(bias).tolist()
        self.table = {term: (idf[column], columns[column]) for term, column in vectorizer.vocabulary_.items()}

    def predict_proba(self, text: str) -> list[float]:
        found = []  # (TF-IDF value, per-label weights) of each known term
        for term, count in Counter(self.analyze(text)).items():
            entry = self.table.get(term)
            if entry is not None:
                idf, weights = entry
                found.append(((math.log(count) + 1 if self.sublinear_tf else count) * idf, weights))
        norm = math.sqrt(sum(value * value for value, _ in found)) or 1.0
        scores = [b + sum(value * weights[k] for value, weights in found) / norm for k, b in enumerate(self.bias)]
        top = max(scores)
        exps = [math.exp(score - top) for score in scores]
        total = sum(exps)
        return [e / total for e in exps]


def in_process(model_dir: Path, repeats: int) -> dict:
    """One prediction: scikit-learn's predict_proba, the served model the service
    uses, and a plain dictionary-lookup-and-dot-product version of the same model."""
    model = NLPModel.load(model_dir / "sentiment")
    served = LinearTextModel.load(model_dir / "sentiment")
    plain = PlainDictModel(model)
    for text in PHRASES:  # the same model three ways: the same answer
        np.testing.assert_allclose(plain.predict_proba(text), model.predict_proba([text])[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(served.predict_one(text), model.predict_proba([text])[0], rtol=0, atol=1e-9)
    return {"sklearn": time_one(lambda text: model.predict_proba([text]), repeats),
            "served": time_one(served.predict_one, repeats),
            "plain dictionary and dot product": time_one(plain.predict_proba, repeats)}


def batch_texts(size: int) -> list[str]:
    return [f"{PHRASES[i % len(PHRASES)]} ({i})" for i in range(size)]


def in_process_batch(model_dir: Path, size: int, rounds: int = 5) -> dict:
    """Phrases per second scoring a batch in-process: the served model in one call (what
    the batch endpoint does) and one text at a time, and scikit-learn in one call."""
    model = NLPModel.load(model_dir / "sentiment")
    served = LinearTextModel.load(model_dir / "sentiment")
    texts = batch_texts(size)
    results = {}
    for path, run in (("served", lambda: served.predict_proba(texts)),
                      ("served, one text at a time", lambda: [served.predict_one(t) for t in texts]),
                      ("sklearn", lambda: model.predict_proba(texts))):
        run()
        started = time.perf_counter()
        for _ in range(rounds):
            run()
        results[path] = size * rounds / (time.perf_counter() - started)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="wrk run length per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5000, help="in-process predictions timed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": machine(),
                               "command": " ".join(["python -m bench.bench_predict", *(argv or sys.argv[1:])])}
    results["in_process"] = in_process(ROOT / "sentiment-clf" / "lib" / "models", args.repeats)
    results["in_process_batch_phrases_per_s"] = in_process_batch(ROOT / "sentiment-clf" / "lib" / "models", 1000)
    for path, timing in results["in_process"].items():
        print(f"in-process, one prediction, {path}: median {timing['median_ms']:.4f} ms, "
              f"p99 {timing['p99_ms']:.4f} ms ({args.repeats} calls)")
    timings = results["in_process"]
    plain = timings["plain dictionary and dot product"]["median_ms"]
    results["served_vs_plain"] = timings["served"]["median_ms"] / plain
    print(f"served / plain dictionary and dot product: {results['served_vs_plain']:.2f}x (floor: within 1.5x)")

    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk): skipping the HTTP figures", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "server.log", workers=args.workers)
        try:
            server.wait_ready()
            url = f"{server.url}/?query={quote(QUERY)}"
            run_wrk(url, 8, 3)  # warm-up
            results["http"] = {"workers": args.workers, "url": "/?query=" + quote(QUERY),
                               "runs": [run_wrk(url, c, args.seconds) for c in args.concurrency]}
            results["batch"] = run_wrk_batch(f"{server.url}/batch", batch_texts(1000), 2, args.seconds, Path(tmp))
        finally:
            server.stop()

    print(f"\nservice, gunicorn {args.workers} workers, GET /?query=..., wrk 1 thread, {args.seconds} s each")
    print("| concurrency | requests/s | p50 ms | p99 ms | errors |")
    print("|---:|---:|---:|---:|---:|")
    for run in results["http"]["runs"]:
        print(f"| {run['connections']} | {run['requests_per_s']:,.0f} | {run['p50_ms']:.2f} | "
              f"{run['p99_ms']:.2f} | {run['non_2xx']} non-2xx, socket {run['socket_errors']} |")
    batch, limit = results["batch"], results["in_process_batch_phrases_per_s"]
    print(f"\nbatch: POST /batch with 1,000 phrases, 2 connections: {batch['phrases_per_s']:,.0f} phrases/s "
          f"({batch['non_2xx']} non-2xx); in-process, one worker: served model {limit['served']:,.0f} phrases/s "
          f"(one call for the batch), scikit-learn {limit['sklearn']:,.0f} phrases/s")
    save_results("bench_predict.json", results)
    print(f"\nmachine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
