"""The "sst" protocol: the Stanford Sentiment Treebank's own train/dev/test evaluation.

Fit on every distinct labelled phrase of the training trees, choose the settings
on the dev sentences (roots), then report root accuracy on the test split. The
choice is by dev log-loss (ties broken by dev accuracy), not dev accuracy alone:
the service answers probabilities, and accuracy on ~1,000 sentences moves in
steps of 0.1% in which many settings tie.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import accuracy_score, log_loss
from tqdm import tqdm

from sentiment_clf.training import datasets, reports
from sentiment_clf.training.comparison import compare_classifiers
from sentiment_clf.training.fast_calibration import calibrate_sst
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import Recipe

logger = logging.getLogger(__name__)

# Sentence-level test accuracy, Socher et al. 2013, Table 1.
PUBLISHED_BASELINES = {
    "sentiment": {"Naive Bayes": 0.818, "Bigram Naive Bayes": 0.831, "RNTN": 0.854},
    "ratings": {"Naive Bayes": 0.410, "Bigram Naive Bayes": 0.419, "RNTN": 0.457},
}

# The settings searched on dev; the vectorizer is fitted once per (ngram_range, sublinear_tf).
# Class priors: as fitted on the phrases (mostly neutral), uniform, or the label
# shares of the training sentences, which is what the model is asked to predict.
SEARCH_GRID: dict[str, list[Any]] = {
    "ngram_range": [(1, 1), (1, 2), (1, 3)],
    "sublinear_tf": [True, False],
    "alpha": [0.03, 0.1, 0.3, 1.0],
    "prior": ["phrases", "uniform", "sentences"],
}

EVALUATION = ("sentence-level (root) accuracy on the SST test split; settings chosen by lowest "
              "log-loss on the dev sentences (ties broken by dev accuracy)")


@dataclass
class Splits:
    train: pd.DataFrame  # distinct labelled phrases of the training sentences
    train_roots: pd.DataFrame  # the training sentences themselves
    dev: pd.DataFrame  # dev sentences (roots)
    test: pd.DataFrame  # test sentences (roots)
    description: dict  # the files used and their hash


def load_splits(data_dir: Path, kaggle_tsv: Path | None) -> Splits:
    """The training phrases (``data_dir/train.txt``, or ``kaggle_tsv`` when given) and the
    dev and test sentences (``data_dir/dev.txt``, ``test.txt``), with SST labels 0..4."""
    files = [data_dir / "dev.txt", data_dir / "test.txt"]
    if kaggle_tsv:
        train = datasets.load_kaggle_tsv(kaggle_tsv)
        files.insert(0, kaggle_tsv)
    else:
        train = datasets.load_sst(data_dir / "train.txt")
        files.insert(0, data_dir / "train.txt")
    return Splits(
        # Each distinct labelled phrase once, as the Kaggle file lists them.
        train=train.drop_duplicates(["phrase", "label"]).reset_index(drop=True),
        train_roots=train[train["is_root"]],
        dev=datasets.load_sst(files[1], roots_only=True),
        test=datasets.load_sst(files[2], roots_only=True),
        description={"files": [p.name for p in files], "sha256": datasets.file_sha256(*files)},
    )


def prior_params(prior: str, task: Recipe, train_roots) -> dict:
    """The naive Bayes prior settings named by ``prior`` (a ``SEARCH_GRID`` value)."""
    if prior == "phrases":
        return {"fit_prior": True, "class_prior": None}
    if prior == "uniform":
        return {"fit_prior": False, "class_prior": None}
    shares = train_roots["target"].value_counts(normalize=True)
    return {"fit_prior": True, "class_prior": [float(shares.get(label, 0.0)) for label in task.labels]}


def search_settings(task: Recipe, train, train_roots, dev, progress: bool) -> list[dict]:
    """Fit every setting of ``SEARCH_GRID`` on ``train``; score it on the ``dev`` sentences.

    Returns one row per setting: ``params`` (for :class:`NLPModel`), ``prior``,
    ``n_features``, ``dev_log_loss`` and ``dev_accuracy``.
    """
    results = []
    vector_settings = list(itertools.product(SEARCH_GRID["ngram_range"], SEARCH_GRID["sublinear_tf"]))
    nb_settings = list(itertools.product(SEARCH_GRID["alpha"], SEARCH_GRID["prior"]))
    with tqdm(total=len(vector_settings) * len(nb_settings), desc=f"{task.name}: search on dev",
              unit="fit", disable=not progress) as bar:
        for ngram_range, sublinear_tf in vector_settings:
            vectorizer = NLPModel(task.labels, ngram_range=ngram_range, sublinear_tf=sublinear_tf,
                                  tokenizer=task.tokenizer)._new_vectorizer()
            features = vectorizer.fit_transform(train["phrase"].to_numpy())
            dev_features = vectorizer.transform(dev["phrase"].to_numpy())
            for alpha, prior in nb_settings:
                params = {"ngram_range": ngram_range, "sublinear_tf": sublinear_tf, "alpha": alpha,
                          **prior_params(prior, task, train_roots)}
                model = NLPModel(task.labels, **params).fit_from_features(
                    vectorizer, features, train["target"])
                proba = model.classifier_.predict_proba(dev_features)
                y_dev = model._label_indices(dev["target"])
                results.append({"params": params, "prior": prior,
                                "n_features": len(vectorizer.vocabulary_),
                                "dev_log_loss": float(log_loss(y_dev, proba, labels=model.classifier_.classes_)),
                                "dev_accuracy": float(accuracy_score(y_dev, proba.argmax(axis=1)))})
                bar.update()
    return results


def build(task: Recipe, splits: Splits, models_dir: Path, progress: bool = True, compare: bool = True) -> dict:
    """Search settings on dev, fit the chosen model, evaluate it on test and save it.

    The model and its report are written to ``models_dir/<name>/``. With
    ``compare`` (the default) the report also compares other classifiers on the
    same features (four more fits on every phrase: most of a build's time).
    Returns the saved manifest.
    """
    train, dev, test = (task.relabel(f) for f in (splits.train, splits.dev, splits.test))
    logger.info("%s: %d training phrases, %d dev and %d test sentences",
                task.name, len(train), len(dev), len(test))
    started = time.perf_counter()
    candidates = search_settings(task, train, task.relabel(splits.train_roots), dev, progress)
    # min() keeps the first of equal scores: the choice is deterministic.
    best = min(candidates, key=lambda row: (row["dev_log_loss"], -row["dev_accuracy"]))
    params = best["params"]
    logger.info("%s: chose %s, %s prior (dev log-loss %.4f, accuracy %.4f)", task.name,
                {k: v for k, v in params.items() if k != "class_prior"}, best["prior"],
                best["dev_log_loss"], best["dev_accuracy"])

    model = NLPModel(task.labels, **params).fit(train["phrase"].to_numpy(), train["target"])
    target_dir = models_dir / task.name
    report_dir = target_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "evaluation": EVALUATION,
        "selected_by": "lowest log-loss on the dev sentences",
        "prior": best["prior"],
        "dev_log_loss": best["dev_log_loss"],
        "dev_accuracy": best["dev_accuracy"],
        **reports.evaluate(task, model, test, report_dir),
        "published_baselines_test_accuracy": PUBLISHED_BASELINES[task.name],
        "train_phrases": int(len(train)),
        "dev_sentences": int(len(dev)),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    # Last: the temperature changes only the confidence, which the figures above do not read.
    metrics["calibration"] = calibrate_sst(task, model, dev, test, report_dir)
    metrics["test_ece"] = metrics["calibration"]["test_ece"]
    metrics["test_accuracy_interval"] = metrics["calibration"]["test_accuracy_interval"]
    reports.write_selection_table(candidates, report_dir / "selection.csv")
    if compare:
        # Kept naive Bayes whatever this says (see comparison.py); the README reports what it found.
        metrics["classifier_comparison_on_dev"] = compare_classifiers(task, model, train, dev)
        reports.write_classifier_comparison(metrics["classifier_comparison_on_dev"],
                                            report_dir / "classifier_comparison.csv")
    reports.write_metrics(metrics, report_dir / "metrics.json")
    data_description = {**splits.description, "train_phrases": int(len(train))}
    return model.save(target_dir, name=task.name, training_data=data_description,
                      metrics={k: v for k, v in metrics.items() if k != "build_seconds"})
