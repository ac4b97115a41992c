"""How long the largest request the limits allow takes, for the request time budget.

Run as ``python -m bench.experiments.time_budget``: per character of 100 texts of 10,000
characters (SST sentences joined, and punctuation, the slowest text found), the
in-process time of each batch endpoint's work without and with ``explain``
(``/questions`` answers with two models). From the slowest per-character cost, the
time of a batch at MAX_BATCH_CHARS without explain and at MAX_EXPLAIN_CHARS with it,
to compare with REQUEST_TIME_BUDGET.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.harness import machine, save_results
from sentiment_clf.config import Settings
from sentiment_clf.serving import answer
from sentiment_clf.serving.loading import load_models
from sentiment_clf.tasks import MODELS, endpoint_models
from sentiment_clf.training import datasets

ROOT = Path(__file__).resolve().parents[2]
TEXT_CHARS = 10_000


def texts(sst_dir: Path, count: int) -> dict[str, list[str]]:
    sentences = " ".join(datasets.load_sst(sst_dir / "test.txt", roots_only=True)["phrase"])
    prose = [sentences[i * 997:i * 997 + TEXT_CHARS] for i in range(count)]
    return {"SST text": prose, "punctuation": [("!?, ." * TEXT_CHARS)[:TEXT_CHARS]] * count}


def seconds(models: list, batch: list[str], explain: bool) -> float:
    started = time.perf_counter()
    for model in models:
        for row, text in zip(model.predict_proba(batch), batch, strict=True):
            answer(model, row, text, explain=explain)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst", type=Path, default=ROOT.parent / "shared" / "data" / "sst")
    parser.add_argument("--texts", type=int, default=100)
    args = parser.parse_args(argv)

    settings = Settings()
    served = load_models(settings.model_dir, list(MODELS))
    kinds = texts(args.sst, args.texts)
    rows, worst = [], {False: 0.0, True: 0.0}
    print(f"µs per character, {args.texts} texts of {TEXT_CHARS:,} characters, in-process")
    print("| endpoint | text | without explain | with explain |")
    print("|---|---|---:|---:|")
    for spec in endpoint_models():
        models = [served[spec.name]] + [served[other] for other in spec.levels.values()]
        for kind, batch in kinds.items():
            chars = sum(map(len, batch))
            cost = {explain: seconds(models, batch, explain) / chars * 1e6 for explain in (False, True)}
            worst = {explain: max(worst[explain], cost[explain]) for explain in worst}
            rows.append({"endpoint": spec.batch_endpoint, "text": kind, "us_per_char": cost[False],
                         "us_per_char_explain": cost[True]})
            print(f"| {spec.batch_endpoint} | {kind} | {cost[False]:.2f} | {cost[True]:.2f} |")
    largest = {"without explain": worst[False] * settings.max_batch_chars / 1e6,
               "with explain": worst[True] * settings.max_explain_chars / 1e6}
    print(f"largest allowed request, at the slowest cost: {settings.max_batch_chars:,} characters without explain "
          f"{largest['without explain']:.2f} s; {settings.max_explain_chars:,} explained "
          f"{largest['with explain']:.2f} s (budget {settings.request_time_budget:g} s)")
    save_results("time_budget.json", {"command": "python -m bench.experiments.time_budget", "machine": machine(),
                                      "rows": rows, "largest_request_s": largest})
    return 0


if __name__ == "__main__":
    sys.exit(main())
