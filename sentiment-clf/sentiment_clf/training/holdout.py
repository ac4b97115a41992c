"""The "holdout" protocol: choose by cross-validation, evaluate once on a held-out split.

The held-out split (``recipe.test_size``, stratified by label, fixed seed) is drawn
first and never used while the recipe's candidates are compared by stratified
cross-validation on the rest; the best is refitted on all of the rest.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import ParameterGrid, StratifiedKFold, cross_val_score, train_test_split
from tqdm import tqdm

import util
from model import NLPModel
from sentiment_clf.training import reports
from sentiment_clf.training.recipes import Recipe

SPLIT_SEED = 20261122  # the held-out split of the "holdout" models

logger = logging.getLogger(__name__)


def holdout_split(spec: Recipe, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` (with ``target``) cut into the part to choose on and the held-out part."""
    return train_test_split(frame, test_size=spec.test_size, stratify=frame["target"], random_state=SPLIT_SEED)


def describe_data(spec: Recipe, data_root: Path) -> dict:
    """The recipe's data files under ``data_root``: their names and one SHA-256 over them."""
    files = [data_root / f for f in spec.data_files]
    return {"files": [f.name for f in files], "sha256": util.file_sha256(*files)}


def cross_validate(spec: Recipe, texts: list, targets: list, *, progress: bool, n_jobs: int) -> list[dict]:
    """Every candidate of ``spec`` scored by ``spec.metric`` over ``spec.cv_folds`` folds.

    Returns rows ``{"params", "mean", "std"}`` in the candidates' order; a candidate
    that cannot be fitted has NaN scores.
    """
    folds = StratifiedKFold(spec.cv_folds, shuffle=True, random_state=0)
    rows = []
    for params in tqdm(list(ParameterGrid(spec.candidates)), desc=f"{spec.name}: compare on CV",
                       unit="candidate", disable=not progress):
        estimator = NLPModel(spec.labels, tokenizer=spec.tokenizer, **params)
        try:
            scores = cross_val_score(estimator, texts, targets, cv=folds, scoring=spec.metric,
                                     n_jobs=n_jobs, error_score="raise")
        except ValueError as exc:  # e.g. a label too rare for this classifier: it drops out
            logger.warning("%s: %s could not be fitted: %s", spec.name, params, str(exc).splitlines()[-1])
            rows.append({"params": params, "mean": float("nan"), "std": float("nan")})
            continue
        rows.append({"params": params, "mean": float(scores.mean()), "std": float(scores.std())})
    return rows


def build_holdout(spec: Recipe, data_root: Path, models_dir: Path, *, progress: bool = True,
                  sample: int | None = None, n_jobs: int = 2) -> dict:
    """Compare ``spec.candidates`` by cross-validation, refit the best, evaluate on held-out texts.

    ``spec.load_frame(data_root)`` gives the data. ``sample`` keeps only that many texts
    (stratified), for quick runs. The model and its report are written to
    ``models_dir/<name>/``. Returns the saved manifest.
    """
    frame = spec.load_frame(data_root)
    if sample and sample < len(frame):
        frame, _ = train_test_split(frame, train_size=sample, stratify=frame["target"], random_state=SPLIT_SEED)
    train, test = holdout_split(spec, frame)
    texts, targets = train["text"].tolist(), train["target"].tolist()
    logger.info("%s: %d texts for selection (%d-fold CV), %d held out", spec.name, len(train),
                spec.cv_folds, len(test))
    started = time.perf_counter()
    rows = cross_validate(spec, texts, targets, progress=progress, n_jobs=n_jobs)
    fitted = [row for row in rows if row["mean"] == row["mean"]]  # not NaN
    best = max(fitted, key=lambda row: row["mean"])  # the first of equal scores
    logger.info("%s: chose %s (CV %s %.4f)", spec.name, best["params"], spec.metric, best["mean"])
    logger.info("%s", reports.comparison_summary(spec, fitted))
    model = NLPModel(spec.labels, tokenizer=spec.tokenizer, **best["params"]).fit(texts, targets)

    target_dir = models_dir / spec.name
    report_dir = target_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    held_out = reports.evaluate(spec, model, test, report_dir)
    y_true, y_pred = model._label_indices(test["target"]), model._label_indices(model.predict(test["text"]))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    metrics = {
        "evaluation": (f"held-out {spec.test_size:.0%} of the data, stratified by label (seed {SPLIT_SEED}), "
                       f"never seen while choosing; candidates compared by {spec.cv_folds}-fold "
                       f"stratified cross-validation on the rest, by {spec.metric}"),
        "selected_by": f"mean {spec.metric} over {spec.cv_folds} folds",
        "cv_score": best["mean"],
        **held_out,
        "test_weighted_precision": float(precision), "test_weighted_recall": float(recall),
        "test_weighted_f1": float(f1),
        "train_texts": int(len(train)),
    }
    reports.write_cv_table(rows, spec.metric, report_dir / "selection.csv")
    reports.write_metrics({**metrics, "build_seconds": round(time.perf_counter() - started, 1)},
                          report_dir / "metrics.json")
    training_data = {**describe_data(spec, data_root), "train_phrases": int(len(train))}
    return model.save(target_dir, name=spec.name, training_data=training_data, metrics=metrics)
