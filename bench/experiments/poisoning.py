"""How many opposite-label answers one client needs to flip a confident sentence.

Run as ``python -m bench.experiments.poisoning``: the sentiment model, the first 50 SST test
sentences (neutral ones left out) it gives a confidence of 0.9 or more, and three
attacks, each learning answers one at a time until the sentence flips (or 200):
numbered near-duplicates ("<sentence> 1", "<sentence> 2", ...), the sentence with
one word changed, and the sentence's two strongest terms alone. The smallest count
is what the default learning budget (CLIENT_LEARNING_BUDGET) must stay below.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench.harness import machine, save_results
from sentiment_clf.paths import MODELS_DIR
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.training import datasets

ROOT = Path(__file__).resolve().parents[2]


def confident(model: LinearTextModel, sst_dir: Path, count: int, confidence: float) -> list[tuple[str, int]]:
    test = datasets.load_sst(sst_dir / "test.txt", roots_only=True).query("label != 2")
    chosen = []
    for sentence in test["phrase"]:
        probabilities = model.predict_one(sentence)
        if probabilities.max() >= confidence:
            chosen.append((sentence, int(probabilities.argmax())))
        if len(chosen) == count:
            break
    return chosen


def flip_point(model: LinearTextModel, sentence: str, predicted: int, make: Callable[[str, int], str],
               limit: int) -> int | None:
    """Answers (``make(sentence, i)`` with the other label) learned until ``sentence`` flips."""
    other = model.labels[1 - predicted]
    for i in range(1, limit + 1):
        model = model.learn([make(sentence, i)], [other])
        if int(model.predict_one(sentence).argmax()) != predicted:
            return i
    return None


def attacks(model: LinearTextModel) -> dict[str, Callable[[str, int], str]]:
    def one_word_changed(sentence: str, i: int) -> str:
        words = sentence.split()
        at = i % len(words)
        return " ".join(words[:at] + [f"w{i}"] + words[at + 1:])

    def strongest_terms(sentence: str, i: int) -> str:
        terms = [t["term"] for t in model.explain(sentence, top=3)["toward"][:2]]
        return f"{' '.join(terms)} {i}"

    return {"numbered near-duplicates": lambda sentence, i: f"{sentence} {i}",
            "one word changed": one_word_changed,
            "the 2 strongest terms alone": strongest_terms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst", type=Path, default=ROOT.parent / "shared" / "data" / "sst")
    parser.add_argument("--sentences", type=int, default=50)
    parser.add_argument("--limit", type=int, default=200, help="answers tried per sentence")
    args = parser.parse_args(argv)

    model = LinearTextModel.load(MODELS_DIR / "sentiment")
    chosen = confident(model, args.sst, args.sentences, 0.9)
    results: dict = {"command": "python -m bench.experiments.poisoning", "machine": machine(), "sentences": len(chosen),
                     "limit": args.limit, "attacks": {}}
    print(f"{len(chosen)} SST test sentences of confidence >= 0.9; answers with the other label until each flips")
    print("| attack | fewest | median | most | never flipped |")
    print("|---|---:|---:|---:|---:|")
    for name, make in attacks(model).items():
        points = [flip_point(model, sentence, predicted, make, args.limit) for sentence, predicted in chosen]
        flipped = [p for p in points if p is not None]
        results["attacks"][name] = points
        print(f"| {name} | {min(flipped)} | {statistics.median(flipped):g} | {max(flipped)} | "
              f"{points.count(None)} |")
    save_results("poisoning.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
