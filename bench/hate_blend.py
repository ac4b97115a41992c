"""An experiment, not adopted (README, "The accurate tier"): does blending the accurate
tier's hate-speech head with a TF-IDF logistic regression lift the held-out hate-class F1?

The logistic regression is trained on the accurate tier's training tweets (the choosing
part less its dev tenth, ``finetune_data.hate_frames``); the blend (geometric or
arithmetic mean of the probabilities, with a weight on the regression) and an offset on
the hate-class log-score are chosen on the dev tweets by the mean of hate-class F1 and
macro-F1, as ``finetune.hate_offset`` chooses the head's offset; the held-out tweets are
scored once, with that choice (and the head's own held-out figure is bootstrapped, to
show how much it moves with the draw of tweets). Two regressions:

- ``chars``: word 1-3-grams and character 2-5-grams (``char_wb``), as Davidson et al.;
- ``words``: the fast tier's model kind (``NLPModel``, tweet tokenizer, logistic
  regression), its settings chosen by 3-fold cross-validation on the training tweets;
- ``specialist``: a second all-MiniLM-L6-v2, fine-tuned here on the training tweets
  alone (plus SST's training sentences as "neither", as the shared encoder learns
  them), fp32 torch, one set of settings fixed before it ran (``SPECIALIST``). Serving
  it would mean a second encoder: 23 MB more, over the tier's 40 MB. Needs
  requirements-finetune.txt; about 15 minutes on 2 cores.

For each blend the share of SST's dev and test sentences flagged (hate speech or
offensive language) is printed too: ordinary text must stay under 3%.

Run from the repository root: ``python -m bench.hate_blend [--data-root ../shared/data]
[--only chars words specialist]``.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
HATE, NEITHER = 0, 2  # indexes in HATE_LABELS: "hate speech", "offensive language", "neither"


def _scores(truth: np.ndarray, log_scores: np.ndarray) -> tuple[float, float]:
    predicted = log_scores.argmax(axis=1)
    return (float(f1_score(truth, predicted, labels=[HATE], average="macro")),
            float(f1_score(truth, predicted, average="macro")))


def _blend(kind: str, weight: float, offset: float, head: np.ndarray, other: np.ndarray) -> np.ndarray:
    if kind == "geometric":
        scores = (1 - weight) * np.log(head + 1e-9) + weight * np.log(other + 1e-9)
    else:
        scores = np.log((1 - weight) * head + weight * other + 1e-9)
    scores[:, HATE] += offset
    return scores


def choose_on_dev(head_dev, other_dev, truth_dev) -> tuple[str, float, float]:
    best: tuple = (-1.0, "", 0.0, 0.0)
    for kind, weight, offset in itertools.product(("geometric", "arithmetic"), np.arange(0, 1.01, 0.1),
                                                  np.arange(-1.5, 1.51, 0.125)):
        hate_f1, macro_f1 = _scores(truth_dev, _blend(kind, weight, offset, head_dev, other_dev))
        if (hate_f1 + macro_f1) / 2 > best[0]:
            best = ((hate_f1 + macro_f1) / 2, kind, float(weight), float(offset))
    return best[1], best[2], best[3]


def chars_model(fit, dev, test, extra: list) -> tuple[np.ndarray, ...]:
    words = TfidfVectorizer(ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True)
    fit_x = hstack([words.fit_transform(fit.text), chars.fit_transform(fit.text)]).tocsr()
    model = LogisticRegression(C=1, max_iter=3000, class_weight="balanced").fit(fit_x, fit.hatespeech)
    return tuple(model.predict_proba(hstack([words.transform(f.text), chars.transform(f.text)]).tocsr())
                 for f in (dev, test, *extra))


def words_model(fit, dev, test, extra: list) -> tuple[np.ndarray, ...]:
    from model import NLPModel
    from sentiment_clf.tasks import HATE_LABELS

    texts, labels = fit.text.tolist(), np.array([HATE_LABELS[i] for i in fit.hatespeech])
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(texts, labels))
    rows = []
    for ngram_range, c, class_weight in itertools.product([(1, 2), (1, 3)], [1.0, 4.0, 10.0], ["balanced", None]):
        settings = {"tokenizer": "tweet-v1", "classifier": "logreg", "ngram_range": ngram_range, "C": c,
                    "class_weight": class_weight}
        found = []
        for train, held in folds:
            candidate = NLPModel(HATE_LABELS, **settings).fit([texts[i] for i in train], labels[train])
            predicted = candidate.predict([texts[i] for i in held])
            found.append((f1_score(labels[held], predicted, labels=["hate speech"], average="macro")
                          + f1_score(labels[held], predicted, average="macro")) / 2)
        rows.append((float(np.mean(found)), settings))
    settings = max(rows, key=lambda row: row[0])[1]
    print(f"words: chosen by cross-validation: {settings}")
    model = NLPModel(HATE_LABELS, **settings).fit(texts, labels)
    return tuple(model.predict_proba(f.text.tolist()) for f in (dev, test, *extra))


SPECIALIST = {"epochs": 2, "batch_size": 32, "learning_rate": 5e-5, "head_learning_rate": 3e-4,
              "weight_decay": 0.01, "warmup_share": 0.06, "dropout": 0.1, "hate_weight": 3.0, "seed": 20261130}


def specialist_model(fit, dev, test, data_root: Path, extra: list) -> tuple[np.ndarray, ...]:
    """A MiniLM-L6 fine-tuned on ``fit`` (and SST's training sentences as "neither");
    its probabilities on ``dev``, ``test`` and each frame of ``extra``."""
    import random
    import time

    import torch
    from tqdm import tqdm

    from sentiment_clf.training.finetune import _step, warmup_then_linear
    from sentiment_clf.training.finetune_data import HEADS, IGNORE, _proba, sst_frames
    from sentiment_clf.training.finetune_export import head_arrays
    from sentiment_clf.training.finetune_network import _batches, build_network, load_tokenizer, vectors

    settings = SPECIALIST
    torch.manual_seed(settings["seed"])
    torch.set_num_threads(2)
    rng = random.Random(settings["seed"])
    sst = sst_frames(data_root)["train"]
    ordinary = sst[sst["hatespeech"] >= 0].drop_duplicates("text")
    frame = pd.concat([fit, ordinary], ignore_index=True)
    for name in HEADS:  # only the hate-speech head learns here
        if name != "hatespeech":
            frame[name] = IGNORE
    network, tokenizer = build_network(settings["dropout"]), load_tokenizer()
    batches = _batches(frame, tokenizer, int(settings["batch_size"]), rng, int(settings["epochs"]), "hate")
    rng.shuffle(batches)
    encoder_parameters = [p for p in network.encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": encoder_parameters, "lr": settings["learning_rate"]},
                                   {"params": network.heads["hatespeech"].parameters(),
                                    "lr": settings["head_learning_rate"]}],
                                  weight_decay=settings["weight_decay"])
    scheduler = warmup_then_linear(optimizer, len(batches), settings["warmup_share"])
    weights = torch.ones(3)
    weights[HATE] = settings["hate_weight"]
    losses = {"hatespeech": torch.nn.CrossEntropyLoss(ignore_index=IGNORE, weight=weights)}
    started = time.monotonic()
    network.train()
    for _, rows in tqdm(batches, desc="specialist", unit="batch"):
        _step(network, tokenizer, frame.iloc[rows], losses, None, optimizer, scheduler)
    print(f"specialist: {len(batches)} steps in {time.monotonic() - started:.0f} s, settings {settings}")
    arrays = head_arrays(network)
    return tuple(_proba(vectors(network, tokenizer, f.text.tolist()), arrays, "hatespeech")
                 for f in (dev, test, *extra))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", nargs="+", choices=["chars", "words", "specialist"],
                        default=["chars", "words", "specialist"])
    args = parser.parse_args(argv)
    from sentiment_clf.accurate import load_accurate
    from sentiment_clf.training.finetune_data import hate_frames, sst_frames

    frames = hate_frames(args.data_root)
    sst = sst_frames(args.data_root)
    sentences = pd.concat([sst["dev"], sst["test"]], ignore_index=True)  # ordinary text, neither tier trained on
    fit, dev, test = frames["train"], frames["dev"], frames["test"]
    head = load_accurate(ROOT / "sentiment-clf" / "lib" / "models" / "accurate", threads=2)["hatespeech"]
    head_dev, head_test, head_ordinary = (head.proba_from_vectors(head.encoder.embed(f.text.tolist()))
                                          for f in (dev, test, sentences))
    truth_dev, truth_test = dev.hatespeech.to_numpy(), test.hatespeech.to_numpy()
    hate_f1, macro_f1 = _scores(truth_test, np.log(head_test))
    # How much the held-out figure moves with the draw of tweets: 2,000 bootstrap resamples.
    rng, predicted = np.random.default_rng(0), head_test.argmax(axis=1)
    resampled = [f1_score(truth_test[rows], predicted[rows], labels=[HATE], average="macro")
                 for rows in (rng.integers(0, len(truth_test), len(truth_test)) for _ in range(2000))]
    low, high = np.percentile(resampled, [2.5, 97.5])
    print(f"the head alone, held out: hate-class F1 {hate_f1:.3f} (bootstrap 95% interval {low:.2f}-{high:.2f}), "
          f"macro-F1 {macro_f1:.3f}")
    makers = {"chars": lambda: chars_model(fit, dev, test, [sentences]),
              "words": lambda: words_model(fit, dev, test, [sentences]),
              "specialist": lambda: specialist_model(fit, dev, test, args.data_root, [sentences])}
    for name in args.only:
        other_dev, other_test, other_ordinary = makers[name]()
        kind, weight, offset = choose_on_dev(head_dev, other_dev, truth_dev)
        dev_scores = _scores(truth_dev, _blend(kind, weight, offset, head_dev, other_dev))
        hate_f1, macro_f1 = _scores(truth_test, _blend(kind, weight, offset, head_test, other_test))
        flagged = float(np.mean(_blend(kind, weight, offset, head_ordinary, other_ordinary).argmax(axis=1) != NEITHER))
        print(f"{name}: chosen on dev {kind} mean, weight {weight:.1f}, offset {offset:+.3f} (dev hate-class F1 "
              f"{dev_scores[0]:.3f}, macro-F1 {dev_scores[1]:.3f}); held out: hate-class F1 {hate_f1:.3f}, "
              f"macro-F1 {macro_f1:.3f}; SST dev and test sentences flagged: {flagged:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
