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
  regression), its settings chosen by 3-fold cross-validation on the training tweets.

Run from the repository root: ``python -m bench.hate_blend [--data-root ../shared/data]``.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
HATE = 0  # "hate speech" is the first of HATE_LABELS


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


def chars_model(fit, dev, test) -> tuple[np.ndarray, np.ndarray]:
    words = TfidfVectorizer(ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True)
    fit_x = hstack([words.fit_transform(fit.text), chars.fit_transform(fit.text)]).tocsr()
    model = LogisticRegression(C=1, max_iter=3000, class_weight="balanced").fit(fit_x, fit.hatespeech)
    return tuple(model.predict_proba(hstack([words.transform(f.text), chars.transform(f.text)]).tocsr())
                 for f in (dev, test))


def words_model(fit, dev, test) -> tuple[np.ndarray, np.ndarray]:
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
    return model.predict_proba(dev.text.tolist()), model.predict_proba(test.text.tolist())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    from sentiment_clf.accurate import load_accurate
    from sentiment_clf.training.finetune_data import hate_frames

    frames = hate_frames(args.data_root)
    fit, dev, test = frames["train"], frames["dev"], frames["test"]
    head = load_accurate(ROOT / "sentiment-clf" / "lib" / "models" / "accurate", threads=2)["hatespeech"]
    head_dev, head_test = (head.proba_from_vectors(head.encoder.embed_many(f.text.tolist())) for f in (dev, test))
    truth_dev, truth_test = dev.hatespeech.to_numpy(), test.hatespeech.to_numpy()
    hate_f1, macro_f1 = _scores(truth_test, np.log(head_test))
    # How much the held-out figure moves with the draw of tweets: 2,000 bootstrap resamples.
    rng, predicted = np.random.default_rng(0), head_test.argmax(axis=1)
    resampled = [f1_score(truth_test[rows], predicted[rows], labels=[HATE], average="macro")
                 for rows in (rng.integers(0, len(truth_test), len(truth_test)) for _ in range(2000))]
    low, high = np.percentile(resampled, [2.5, 97.5])
    print(f"the head alone, held out: hate-class F1 {hate_f1:.3f} (bootstrap 95% interval {low:.2f}-{high:.2f}), "
          f"macro-F1 {macro_f1:.3f}")
    for name, make in (("chars", chars_model), ("words", words_model)):
        other_dev, other_test = make(fit, dev, test)
        kind, weight, offset = choose_on_dev(head_dev, other_dev, truth_dev)
        dev_scores = _scores(truth_dev, _blend(kind, weight, offset, head_dev, other_dev))
        hate_f1, macro_f1 = _scores(truth_test, _blend(kind, weight, offset, head_test, other_test))
        print(f"{name}: chosen on dev {kind} mean, weight {weight:.1f}, offset {offset:+.3f} (dev hate-class F1 "
              f"{dev_scores[0]:.3f}, macro-F1 {dev_scores[1]:.3f}); held out: hate-class F1 {hate_f1:.3f}, "
              f"macro-F1 {macro_f1:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
