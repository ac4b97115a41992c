"""The "holdout" protocol: choose by cross-validation, evaluate once on a held-out split.

The held-out split (``recipe.test_size``, stratified by ``recipe.stratify_column``,
fixed seed) is drawn first and never used while the recipe's candidates are compared
by stratified cross-validation on the rest; the best is refitted on all of the rest.

A recipe's ``augment`` rows (text from elsewhere: the hate-speech model's clean
"neither" text) join the choosing part only, after the split: they are added to every
training fold with the recipe's ``augment_weight`` and never scored, so the
cross-validated score and the held-out figures are the data's own. Where they come
from several sources, :func:`choose` also checks the candidates on each source left
out of their training (``augment_max_error``), a stand-in for text the model never saw.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import ParameterGrid, StratifiedKFold, cross_val_score, train_test_split
from tqdm import tqdm

from sentiment_clf.training import datasets, reports
from sentiment_clf.training.fast_calibration import calibrate_holdout
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import Recipe
from sentiment_clf.training.splits import SPLIT_SEED

logger = logging.getLogger(__name__)


def holdout_split(spec: Recipe, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` cut into the part to choose on and the held-out part, stratified by its
    ``spec.stratify_column`` (``target`` unless the recipe says otherwise)."""
    return train_test_split(frame, test_size=spec.test_size, stratify=frame[spec.stratify_column],
                            random_state=SPLIT_SEED)


def describe_data(spec: Recipe, data_root: Path) -> dict:
    """The recipe's data files under ``data_root``: their names and one SHA-256 over them."""
    files = [data_root / f for f in spec.data_files]
    return {"files": [f.name for f in files], "sha256": datasets.file_sha256(*files)}


def augmented(spec: Recipe, data_root: Path, sample: int | None = None) -> pd.DataFrame:
    """The rows ``spec.augment`` adds to the choosing part (none without it); with ``sample``,
    at most that many of them (a quick run)."""
    added = spec.augment_frame(data_root)
    if sample and sample < len(added):
        added = added.sample(sample, random_state=SPLIT_SEED)
    return added.reset_index(drop=True)


def _sample(frame: pd.DataFrame, size: int) -> pd.DataFrame:
    """``size`` rows of ``frame``, stratified by ``target``."""
    return frame if size >= len(frame) else train_test_split(
        frame, train_size=size, stratify=frame["target"], random_state=SPLIT_SEED)[0]


def fit_data(spec: Recipe, texts: list, targets: list, added: pd.DataFrame) -> tuple[list, list, np.ndarray | None]:
    """The data's own texts followed by the added ones, with the added ones' weight (None if there are none)."""
    if added.empty:
        return list(texts), list(targets), None
    weights = np.concatenate([np.ones(len(texts)), np.full(len(added), spec.augment_weight)])
    return list(texts) + added["text"].tolist(), list(targets) + added["target"].tolist(), weights


def cv_splits(spec: Recipe, targets: list, n_added: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit, scored)`` row numbers of each fold: stratified folds over the data's own rows
    (``0 .. len(targets) - 1``); the ``n_added`` rows numbered after them join every ``fit``."""
    folds = StratifiedKFold(spec.cv_folds, shuffle=True, random_state=0)
    always = np.arange(len(targets), len(targets) + n_added)
    return [(np.concatenate([fit, always]), scored) for fit, scored in folds.split(np.zeros(len(targets)), targets)]


def cross_validate(spec: Recipe, texts: list, targets: list, *, progress: bool, n_jobs: int,
                   added: pd.DataFrame | None = None) -> list[dict]:
    """Every candidate of ``spec`` scored by ``spec.metric`` over ``spec.cv_folds`` folds.

    The folds are drawn over the data's own ``texts``; the ``added`` rows (``augment``),
    if any, join every training fold with their weight and are never scored, so the
    score is the data's own. Returns rows ``{"params", "mean", "std"}`` in the
    candidates' order; a candidate that cannot be fitted has NaN scores.
    """
    added = pd.DataFrame({"text": [], "target": []}) if added is None else added
    splits = cv_splits(spec, targets, len(added))
    all_texts, all_targets, weights = fit_data(spec, texts, targets, added)
    rows = []
    for params in tqdm(list(ParameterGrid(spec.candidates)), desc=f"{spec.name}: compare on CV",
                       unit="candidate", disable=not progress):
        estimator = NLPModel(spec.labels, tokenizer=spec.tokenizer, **params)
        try:
            scores = cross_val_score(estimator, all_texts, all_targets, cv=splits, scoring=spec.metric,
                                     n_jobs=n_jobs, error_score="raise",
                                     params=None if weights is None else {"sample_weight": weights})
        except ValueError as exc:  # e.g. a label too rare for this classifier: it drops out
            logger.warning("%s: %s could not be fitted: %s", spec.name, params, str(exc).splitlines()[-1])
            rows.append({"params": params, "mean": float("nan"), "std": float("nan")})
            continue
        rows.append({"params": params, "mean": float(scores.mean()), "std": float(scores.std())})
    return rows


def unseen_source_errors(spec: Recipe, params: dict, texts: list, targets: list,
                         added: pd.DataFrame) -> dict[str, float]:
    """How the candidate ``params`` does on added text unlike any it was trained on.

    For each ``source`` of the ``added`` rows: a model fitted on the data's own texts and
    the *other* sources gets that share of this source's rows wrong (not their target).
    The service is asked about text from no source at all; this estimates that.
    """
    errors = {}
    for source in sorted(added["source"].unique()):
        mine = (added["source"] == source).to_numpy()
        fit_texts, fit_targets, weights = fit_data(spec, texts, targets, added[~mine])
        model = NLPModel(spec.labels, tokenizer=spec.tokenizer, **params).fit(fit_texts, fit_targets,
                                                                            sample_weight=weights)
        wrong = model.predict(added["text"][mine].tolist()) != added["target"][mine].to_numpy()
        errors[source] = float(wrong.mean())
    return errors


def choose(spec: Recipe, rows: list[dict], texts: list, targets: list, added: pd.DataFrame) -> dict:
    """The candidate to refit: the best cross-validated one (the first of equal scores).

    With ``spec.augment_max_error`` and added rows from two sources or more, candidates
    are checked in the order of their score by :func:`unseen_source_errors`, and the first
    whose worst source is within it is chosen (the one with the least error if none is).
    The checked rows get ``unseen_source_error``.
    """
    fitted = sorted((row for row in rows if row["mean"] == row["mean"]), key=lambda row: -row["mean"])
    if spec.augment_max_error is None or "source" not in added or added["source"].nunique() < 2:
        return fitted[0]
    for row in fitted:
        row["unseen_source_error"] = unseen_source_errors(spec, row["params"], texts, targets, added)
        logger.info("%s: %s, CV %.4f, error on unseen sources %s", spec.name, row["params"], row["mean"],
                    row["unseen_source_error"])
        if max(row["unseen_source_error"].values()) <= spec.augment_max_error:
            return row
    best = min(fitted, key=lambda row: max(row["unseen_source_error"].values()))
    logger.warning("%s: no candidate is within %.1f%% on unseen sources; chose the closest, %s", spec.name,
                   100 * spec.augment_max_error, best["params"])
    return best


def build_holdout(spec: Recipe, data_root: Path, models_dir: Path, *, progress: bool = True,
                  sample: int | None = None, n_jobs: int = 2) -> dict:
    """Compare ``spec.candidates`` by cross-validation, refit the best, evaluate on held-out texts.

    ``spec.load_frame(data_root)`` gives the data; the held-out split is drawn from it
    before anything else, and ``spec.augment``'s rows join only the choosing part.
    ``sample`` keeps only that many texts (from each part of the split in proportion,
    stratified by label), and at most that many added ones, for quick runs. The model and its report are written to
    ``models_dir/<name>/``. Returns the saved manifest.
    """
    frame = spec.load_frame(data_root)
    train, test = holdout_split(spec, frame)
    if sample and sample < len(frame):  # the same share of each part, stratified by label
        train = _sample(train, round(sample * (1 - spec.test_size)))
        test = _sample(test, sample - len(train))
    added = augmented(spec, data_root, sample)
    texts, targets = train["text"].tolist(), train["target"].tolist()
    logger.info("%s: %d texts for selection (%d-fold CV) and %d added, %d held out", spec.name, len(train),
                spec.cv_folds, len(added), len(test))
    started = time.perf_counter()
    rows = cross_validate(spec, texts, targets, progress=progress, n_jobs=n_jobs, added=added)
    logger.info("%s", reports.comparison_summary(spec, [row for row in rows if row["mean"] == row["mean"]]))
    best = choose(spec, rows, texts, targets, added)
    logger.info("%s: chose %s (CV %s %.4f)", spec.name, best["params"], spec.metric, best["mean"])
    fit_texts, fit_targets, weights = fit_data(spec, texts, targets, added)
    model = NLPModel(spec.labels, tokenizer=spec.tokenizer, **best["params"]).fit(fit_texts, fit_targets,
                                                                                sample_weight=weights)

    target_dir = models_dir / spec.name
    report_dir = target_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    held_out = reports.evaluate(spec, model, test, report_dir)
    y_true, y_pred = model._label_indices(test["target"]), model._label_indices(model.predict(test["text"]))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    stratified_by = "label" if spec.stratify_column == "target" else spec.stratify_column
    metrics = {
        "evaluation": (f"held-out {spec.test_size:.0%} of the data, stratified by {stratified_by} (seed "
                       f"{SPLIT_SEED}), never seen while choosing; candidates compared by {spec.cv_folds}-fold "
                       f"stratified cross-validation on the rest, by {spec.metric}"),
        "selected_by": f"mean {spec.metric} over {spec.cv_folds} folds",
        "cv_score": best["mean"],
        **held_out,
        "test_weighted_precision": float(precision), "test_weighted_recall": float(recall),
        "test_weighted_f1": float(f1),
        "train_texts": int(len(train)),
    }
    if not added.empty:
        metrics.update(_augment_metrics(spec, added, best))
    if spec.measure is not None:
        metrics.update(spec.measure(model, data_root))
    # Last: the temperature changes only the confidence, which the figures above do not read.
    metrics["calibration"] = calibrate_holdout(spec, model, (fit_texts, fit_targets, weights),
                                               cv_splits(spec, targets, len(added)), len(texts), test, report_dir)
    metrics["test_ece"] = metrics["calibration"]["test_ece"]
    metrics["test_accuracy_interval"] = metrics["calibration"]["test_accuracy_interval"]
    reports.write_cv_table(rows, spec.metric, report_dir / "selection.csv")
    if "unseen_source_error" in best:
        reports.write_unseen_source_table(rows, spec.metric, report_dir / "unseen_sources.csv")
    reports.write_metrics({**metrics, "build_seconds": round(time.perf_counter() - started, 1)},
                          report_dir / "metrics.json")
    training_data = {**describe_data(spec, data_root), "train_phrases": int(len(train))}
    if not added.empty:
        training_data["added_texts"] = int(len(added))
    return model.save(target_dir, name=spec.name, training_data=training_data, metrics=metrics)


def _augment_metrics(spec: Recipe, added: pd.DataFrame, best: dict) -> dict:
    """What the metrics say of the added rows: how many, their weight, how they were used."""
    sources = added["source"].value_counts().sort_index() if "source" in added else pd.Series(dtype=int)
    figures = {
        "added_texts": int(len(added)),
        "added_by_source": {str(k): int(v) for k, v in sources.items()},
        "added_weight": spec.augment_weight,
        "augmentation": ("rows added to the choosing part only, after the held-out split was drawn, each "
                         f"weighing {spec.augment_weight:g} in fitting; in cross-validation they join every "
                         "training fold and are never scored"),
    }
    if "unseen_source_error" in best:
        figures["unseen_source_error"] = best["unseen_source_error"]
        figures["selected_by"] = (f"mean {spec.metric} over {spec.cv_folds} folds, among the candidates whose "
                                  f"error on each added source, trained without it, is at most "
                                  f"{spec.augment_max_error:.0%} (checked in the order of that score)")
    return figures
