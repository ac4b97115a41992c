"""Retraining with the stored feedback, and publishing the result as the serving version.

:func:`retrain` fits a model again on the data it was built from (:func:`base_data`)
plus the stored answers, learned online or held, each distinct answer once, as far as
each client's learning budget lets it teach (``steering.within_budget``), with the
serving model's settings, and publishes it to the database only if (1) its test
accuracy is at most ``tolerance`` below the model serving now and (2) no family of
untrusted answers turns a confident serving prediction on its texts around
(``steering.steered_families``). Every server reading that database switches to it.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from sentiment_clf.config import Settings
from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.feedback.store import FeedbackRow, Storage
from sentiment_clf.training import reports
from sentiment_clf.training.holdout import SPLIT_SEED, augmented, describe_data, fit_data, holdout_split
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import Recipe
from sentiment_clf.training.sst import PUBLISHED_BASELINES, load_splits
from sentiment_clf.training.steering import steered_families, trusted, weightiest_clients, within_budget

logger = logging.getLogger(__name__)


# The command line reads every stored answer at once: its calls may take longer than a request's.
COMMAND_LINE_TIMEOUT = 300.0


def open_storage(database_url: str | None) -> tuple[Storage, Settings]:
    """The database at ``database_url``, else the service's own; and the service's settings."""
    settings = Settings()
    return Storage(database_url or settings.database(), max(settings.database_timeout, COMMAND_LINE_TIMEOUT)), settings


def base_data(task: Recipe, data_dir: Path, data_root: Path, kaggle_tsv: Path | None = None):
    """The data a model was built from: ``(train texts, train targets, test frame, description)``,
    the recipe's ``augment`` rows (clean text for the hate-speech model) included in the
    training part, as the build fits them, with ``description["weights"]`` their weights.

    ``data_dir`` holds the SST files, ``data_root`` the held-out models' folders.
    The test frame has ``text`` and ``target``: the SST test sentences, or the
    held-out split (drawn as :func:`holdout.build_holdout` draws it).
    """
    if task.protocol == "sst":
        splits = load_splits(data_dir, kaggle_tsv)
        train, test = task.relabel(splits.train), task.relabel(splits.test)
        return (list(train["phrase"]), list(train["target"]), test.rename(columns={"phrase": "text"}),
                splits.description)
    train, test = holdout_split(task, task.load_frame(data_root))
    texts, targets, weights = fit_data(task, list(train["text"]), list(train["target"]), augmented(task, data_root))
    return texts, targets, test, {**describe_data(task, data_root), "weights": weights}


def distinct_answers(rows: list[FeedbackRow]) -> list[FeedbackRow]:
    """Every answer given, once per (model, tokenized text, label), in id order; a trusted
    key's row stands for its answer when there is one (it vouches for it)."""
    first: dict[str, FeedbackRow] = {}
    for row in rows:
        if row.learn_key not in first or (trusted(row.client) and not trusted(first[row.learn_key].client)):
            first[row.learn_key] = row
    return list(first.values())


def answers_to_learn(rows: list[FeedbackRow], policy: LearningPolicy | None) -> tuple[list[FeedbackRow], dict]:
    """The stored answers a retrain learns (within each client's budget, each distinct one
    once) and the report's account of them: how many were left out, whose weigh most."""
    counted, left_out = within_budget(rows, policy.budget) if policy is not None else (list(rows), Counter())
    learned = distinct_answers(counted)
    return learned, {"answers_stored": len(rows), "answers_left_out_over_budget": sum(left_out.values()),
                     "clients": weightiest_clients(learned, left_out)}


def retrain(task: Recipe, data, storage: Storage, base: NLPModel, tolerance: float,
            report_root: Path, policy: LearningPolicy | None = None) -> tuple[bool, dict]:
    """Fit base data + stored answers; publish if not worse than serving by > ``tolerance``
    and not steered (see the module's docstring).

    ``data`` is what :func:`base_data` returns, ``base`` the model shipped in
    lib/models, ``policy`` the service's (its learning budget bounds each client's
    answers). The candidate's report goes to ``report_root/<name>/<version>/`` once
    published. Returns ``(published, summary)``; the summary holds both versions' test
    accuracy, the number of answers learned, the clients that weigh most and the
    families that would have been steered.
    """
    train_texts, train_targets, test, description = data
    serving = ModelRegistry({task.name: base.served()}, storage, sync_interval=0,
                            checkpoint_every=Settings().checkpoint_every).get(task.name)
    learned, account = answers_to_learn(storage.feedback_after(0, model=task.name, upto_id=serving.applied_upto),
                                        policy)
    texts = train_texts + [row.text for row in learned]
    targets = train_targets + [row.label for row in learned]
    logger.info("%s: retraining on %d texts + %d answers (feedback up to id %d)",
                task.name, len(train_texts), len(learned), serving.applied_upto)
    weights = description.get("weights")  # the augment rows' (None: every row weighs 1)
    if weights is not None:
        weights = np.concatenate([weights, np.ones(len(learned))])
    candidate = NLPModel(task.labels, **base.settings()).fit(texts, targets, sample_weight=weights)
    # The same data and settings, a few more texts: the base's temperature calibrates it.
    candidate.temperature_ = base.temperature_

    y_test = candidate._label_indices(test["target"])
    serving_accuracy = float(accuracy_score(y_test, serving.model.predict_proba(test["text"]).argmax(axis=1)))
    report_dir = report_root / task.name / "candidate"
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "evaluation": ("sentence-level (root) accuracy on the SST test split" if task.protocol == "sst"
                       else f"accuracy on the held-out {task.test_size:.0%} (seed {SPLIT_SEED})")
                      + "; retrained on the base training data plus the stored answers (each distinct one once)",
        **reports.evaluate(task, candidate, test, report_dir),
        "serving_version": serving.version,
        "serving_test_accuracy": serving_accuracy,
        "published_baselines_test_accuracy": PUBLISHED_BASELINES.get(task.name, {}),
    }
    steered = steered_families(learned, task.labels, serving.model.predict_proba, candidate.predict_proba,
                               base.predict_proba)
    summary = {"model": task.name, "serving_version": serving.version, "serving_accuracy": serving_accuracy,
               "candidate_accuracy": metrics["test_accuracy"], "feedback_learned": len(learned),
               "tolerance": tolerance, **account, "steered_families": steered}
    if metrics["test_accuracy"] < serving_accuracy - tolerance or steered:
        return False, summary
    manifest, payload = candidate.dumps(
        name=task.name, metrics=metrics,
        training_data={**{k: v for k, v in description.items() if k != "weights"}, "train_phrases": len(train_texts),
                       "feedback_learned": len(learned), "feedback_upto": serving.applied_upto, **account})
    storage.publish(task.name, manifest, payload, feedback_upto=serving.applied_upto)
    final_dir = report_root / task.name / manifest["version"]
    if final_dir.exists():  # a version published before, rolled back, and made again
        shutil.rmtree(final_dir)
    report_dir.rename(final_dir)
    reports.write_metrics(metrics, final_dir / "metrics.json")
    summary["version"] = manifest["version"]
    return True, summary
