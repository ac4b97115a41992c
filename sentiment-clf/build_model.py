"""Train, evaluate and save the sentiment and ratings models; retrain them with feedback.

Usage (from the repository root)::

    python sentiment-clf/build_model.py                      # data in sentiment-clf/lib/data/sst
    python sentiment-clf/build_model.py --data-dir ../shared/data/sst
    python sentiment-clf/build_model.py --kaggle-tsv lib/data/kaggle/train.tsv

    python sentiment-clf/build_model.py retrain [--model sentiment] [--tolerance 0.005]
    python sentiment-clf/build_model.py rollback --model sentiment
    python sentiment-clf/build_model.py versions [--model sentiment]

``retrain`` fits each model again on the base data plus the stored feedback (the
learned answers), with the serving model's settings, evaluates it on the SST test
sentences, and publishes it to the database as the new serving version only if
its test accuracy is at most ``--tolerance`` below the model serving now. The
service switches within a second, without dropping a request. ``rollback`` goes
back to the version served before. They use the service's database
(``DATABASE_URL`` or the SQLite file in ``SENTIMENT_CLF_DATA_DIR``).

Protocol (the standard SST evaluation): fit on every distinct labelled phrase of
the training trees, choose the settings on the dev sentences (roots), then report
root accuracy on the test split. The choice is by dev log-loss, not dev accuracy:
the service answers probabilities, and accuracy on ~1,000 sentences moves in
steps of 0.1% in which many settings tie. Each model is written to
``<models-dir>/<name>/`` with a ``report/`` folder: ``metrics.json``, the
settings search as ``selection.csv`` and a PNG plot.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import (accuracy_score, classification_report, f1_score, log_loss,
                             precision_recall_fscore_support, roc_auc_score)
from sklearn.model_selection import ParameterGrid, StratifiedKFold, cross_val_score, train_test_split
from tqdm import tqdm

import util
from model import NLPModel
from sentiment_clf.training.recipes import RECIPES, Recipe

SPLIT_SEED = 20261122  # the held-out split of the "holdout" models

logger = logging.getLogger("build_model")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE / "lib" / "data" / "sst"
DEFAULT_MODELS_DIR = HERE / "lib" / "models"

# Sentence-level test accuracy, Socher et al. 2013, Table 1.
PUBLISHED_BASELINES = {
    "sentiment": {"Naive Bayes": 0.818, "Bigram Naive Bayes": 0.831, "RNTN": 0.854},
    "ratings": {"Naive Bayes": 0.410, "Bigram Naive Bayes": 0.419, "RNTN": 0.457},
}

# The settings searched on dev; the vectorizer is fitted once per (ngram_range, sublinear_tf).
# Class priors: as fitted on the phrases (mostly neutral), uniform, or the label
# shares of the training sentences, which is what the model is asked to predict.
SEARCH_GRID = {
    "ngram_range": [(1, 1), (1, 2), (1, 3)],
    "sublinear_tf": [True, False],
    "alpha": [0.03, 0.1, 0.3, 1.0],
    "prior": ["phrases", "uniform", "sentences"],
}


@dataclass
class Splits:
    train: pd.DataFrame  # distinct labelled phrases of the training sentences
    train_roots: pd.DataFrame  # the training sentences themselves
    dev: pd.DataFrame  # dev sentences (roots)
    test: pd.DataFrame  # test sentences (roots)
    description: dict  # the files used and their hash


def load_splits(data_dir: Path, kaggle_tsv: Path | None) -> Splits:
    """Load the training phrases and the dev and test sentences."""
    files = [data_dir / "dev.txt", data_dir / "test.txt"]
    if kaggle_tsv:
        train = util.load_kaggle_tsv(kaggle_tsv)
        files.insert(0, kaggle_tsv)
    else:
        train = util.load_sst(data_dir / "train.txt")
        files.insert(0, data_dir / "train.txt")
    return Splits(
        # Each distinct labelled phrase once, as the Kaggle file lists them.
        train=train.drop_duplicates(["phrase", "label"]).reset_index(drop=True),
        train_roots=train[train["is_root"]],
        dev=util.load_sst(files[1], roots_only=True),
        test=util.load_sst(files[2], roots_only=True),
        description={"files": [p.name for p in files], "sha256": util.file_sha256(*files)},
    )


def prior_params(prior: str, task: Recipe, train_roots) -> dict:
    if prior == "phrases":
        return {"fit_prior": True, "class_prior": None}
    if prior == "uniform":
        return {"fit_prior": False, "class_prior": None}
    shares = train_roots["target"].value_counts(normalize=True)
    return {"fit_prior": True, "class_prior": [float(shares.get(label, 0.0)) for label in task.labels]}


def search_settings(task: Recipe, train, train_roots, dev, progress: bool) -> list[dict]:
    """Fit every setting of ``SEARCH_GRID`` on ``train``; score it on the ``dev`` sentences."""
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


# Other classifiers compared with the chosen naive Bayes on the same features (SST models).
SST_ALTERNATIVES = [("logreg", 1.0), ("logreg", 10.0), ("svm", 0.1), ("svm", 1.0)]


def compare_classifiers(task: Recipe, model: NLPModel, train, dev, path: Path) -> list[dict]:
    """Dev accuracy and log-loss of other classifiers on ``model``'s features, next to it.

    ``mcnemar_p`` is the exact McNemar test of each against ``model`` on the dev
    sentences (a small p: the two really differ). Written to ``path`` as CSV.
    """
    features = model.vectorizer_.transform(train["phrase"])
    y_dev = model._label_indices(dev["target"])
    labels = list(range(len(task.labels)))
    reference = model.predict_proba(dev["phrase"])
    rows = [{"classifier": "nb (served)", "C": "", "dev_accuracy": accuracy_score(y_dev, reference.argmax(1)),
             "dev_log_loss": log_loss(y_dev, reference, labels=labels), "mcnemar_p": 1.0}]
    nb_right = reference.argmax(1) == y_dev
    for classifier, C in SST_ALTERNATIVES:
        other = NLPModel(task.labels, **{**model.settings(), "classifier": classifier, "C": C})
        proba = other.fit_from_features(model.vectorizer_, features, train["target"]).predict_proba(dev["phrase"])
        right = proba.argmax(1) == y_dev
        only_nb, only_other = int((nb_right & ~right).sum()), int((~nb_right & right).sum())
        p_value = binomtest(min(only_nb, only_other), only_nb + only_other).pvalue if only_nb + only_other else 1.0
        rows.append({"classifier": classifier, "C": C, "dev_accuracy": accuracy_score(y_dev, proba.argmax(1)),
                     "dev_log_loss": log_loss(y_dev, proba, labels=labels), "mcnemar_p": float(p_value)})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["classifier", "C", "dev_accuracy", "dev_log_loss", "mcnemar_p_vs_nb"])
        for row in rows:
            writer.writerow([row["classifier"], row["C"], f"{row['dev_accuracy']:.4f}",
                             f"{row['dev_log_loss']:.4f}", f"{row['mcnemar_p']:.4f}"])
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()} for row in rows]


def evaluate(task: Recipe, model: NLPModel, test, report_dir: Path) -> dict:
    """Root-level test metrics, and the task's plot saved in ``report_dir``."""
    y_true = model._label_indices(test["target"])
    proba = model.predict_proba(test["phrase" if "phrase" in test else "text"].to_numpy())
    y_pred = proba.argmax(axis=1)
    metrics = {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "test_sentences" if task.protocol == "sst" else "test_texts": int(len(test)),
        "per_class": classification_report(y_true, y_pred, labels=list(range(len(task.labels))),
                                           target_names=list(task.labels), output_dict=True,
                                           zero_division=0),
    }
    if task.plot == "roc":
        metrics["test_roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        util.save_roc_curve(y_true, proba[:, 1], report_dir / "roc_curve.png", positive=task.labels[1],
                            title=f"{task.name}: ROC on SST test sentences (n={len(test)})")
    else:
        where = "SST test sentences" if task.protocol == "sst" else "held-out texts"
        util.save_confusion_matrix(y_true, y_pred, task.labels, report_dir / "confusion_matrix.png",
                                   title=f"{task.name}: {where} (n={len(test)})")
    return metrics


def build(task: Recipe, splits, models_dir: Path, progress: bool = True) -> dict:
    """Search settings on dev, fit the chosen model, evaluate it on test and save it.

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
        "evaluation": "sentence-level (root) accuracy on the SST test split; "
                      "settings chosen by root accuracy on the dev split",
        "selected_by": "lowest log-loss on the dev sentences",
        "prior": best["prior"],
        "dev_log_loss": best["dev_log_loss"],
        "dev_accuracy": best["dev_accuracy"],
        **evaluate(task, model, test, report_dir),
        "published_baselines_test_accuracy": PUBLISHED_BASELINES[task.name],
        "train_phrases": int(len(train)),
        "dev_sentences": int(len(dev)),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    write_selection_table(candidates, report_dir / "selection.csv")
    # Kept naive Bayes whatever this says: only it learns each user's answer exactly
    # online (learning.py); the README reports what the comparison found.
    metrics["classifier_comparison_on_dev"] = compare_classifiers(
        task, model, train, dev, report_dir / "classifier_comparison.csv")
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    data_description = {**splits.description, "train_phrases": int(len(train))}
    return model.save(target_dir, name=task.name, training_data=data_description,
                      metrics={k: v for k, v in metrics.items() if k != "build_seconds"})


def holdout_split(spec: Recipe, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The choosing part and the held-out part: stratified by label, fixed seed."""
    return train_test_split(frame, test_size=spec.test_size, stratify=frame["target"], random_state=SPLIT_SEED)


def describe_data(spec: Recipe, data_root: Path) -> dict:
    files = [data_root / f for f in spec.data_files]
    return {"files": [f.name for f in files], "sha256": util.file_sha256(*files)}


def build_holdout(spec: Recipe, data_root: Path, models_dir: Path, *, progress: bool = True,
                  sample: int | None = None, n_jobs: int = 2) -> dict:
    """Compare ``spec.candidates`` by cross-validation, refit the best, evaluate on held-out texts.

    The held-out split (``spec.test_size``, stratified by label, fixed seed) is drawn
    first and never used while comparing. ``sample`` keeps only that many texts
    (stratified), for quick runs. Returns the saved manifest.
    """
    frame = spec.load(data_root)
    if sample and sample < len(frame):
        frame, _ = train_test_split(frame, train_size=sample, stratify=frame["target"], random_state=SPLIT_SEED)
    train, test = holdout_split(spec, frame)
    texts, targets = train["text"].tolist(), train["target"].tolist()
    folds = StratifiedKFold(spec.cv_folds, shuffle=True, random_state=0)
    logger.info("%s: %d texts for selection (%d-fold CV), %d held out", spec.name, len(train),
                spec.cv_folds, len(test))
    started = time.perf_counter()
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
    fitted = [row for row in rows if row["mean"] == row["mean"]]  # not NaN
    best = max(fitted, key=lambda row: row["mean"])  # the first of equal scores
    logger.info("%s: chose %s (CV %s %.4f)", spec.name, best["params"], spec.metric, best["mean"])
    print(comparison_summary(spec, fitted))
    model = NLPModel(spec.labels, tokenizer=spec.tokenizer, **best["params"]).fit(texts, targets)

    target_dir = models_dir / spec.name
    report_dir = target_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    held_out = evaluate(spec, model, test, report_dir)
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
    write_comparison_table(rows, spec.metric, report_dir / "selection.csv")
    (report_dir / "metrics.json").write_text(json.dumps(
        {**metrics, "build_seconds": round(time.perf_counter() - started, 1)}, indent=2) + "\n", encoding="utf-8")
    training_data = {**describe_data(spec, data_root), "train_phrases": int(len(train))}
    return model.save(target_dir, name=spec.name, training_data=training_data, metrics=metrics)


def comparison_summary(spec: Recipe, rows: list[dict]) -> str:
    """The best candidate of each classifier, as printed after a comparison."""
    lines = [f"{spec.name}: best of each classifier by {spec.cv_folds}-fold CV {spec.metric}"]
    for classifier in ("nb", "logreg", "svm"):
        mine = [row for row in rows if row["params"]["classifier"] == classifier]
        if mine:
            top = max(mine, key=lambda row: row["mean"])
            settings = ", ".join(f"{k}={_cell(v)}" for k, v in sorted(top["params"].items()) if k != "classifier")
            lines.append(f"  {classifier:<7} {top['mean']:.4f} ± {top['std']:.4f}  ({settings})")
    return "\n".join(lines)


def write_comparison_table(rows: list[dict], metric: str, path: Path) -> None:
    """The candidates compared by cross-validation, best first, as CSV."""
    keys = sorted({k for row in rows for k in row["params"]})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, f"cv_{metric}_mean", f"cv_{metric}_std"])
        for row in sorted(rows, key=lambda r: -r["mean"] if r["mean"] == r["mean"] else float("inf")):
            scores = [f"{row['mean']:.4f}", f"{row['std']:.4f}"] if row["mean"] == row["mean"] \
                else ["could not be fitted", ""]
            writer.writerow([_cell(row["params"].get(k, "")) for k in keys] + scores)


def _cell(value) -> str:
    return "-".join(map(str, value)) if isinstance(value, tuple) else str(value)


def write_selection_table(candidates: list[dict], path: Path) -> None:
    """The settings search, best first, as CSV."""
    columns = ["ngram_range", "sublinear_tf", "alpha", "prior", "n_features", "dev_log_loss",
               "dev_accuracy"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in sorted(candidates, key=lambda r: (r["dev_log_loss"], -r["dev_accuracy"])):
            params = row["params"]
            writer.writerow(["-".join(map(str, params["ngram_range"])), params["sublinear_tf"],
                             params["alpha"], row["prior"], row["n_features"],
                             f"{row['dev_log_loss']:.4f}", f"{row['dev_accuracy']:.4f}"])


def summary(manifests: list[dict]) -> str:
    lines = [f"{'model':<15} {'version':<13} {'chosen on':>10} {'test acc':>9} {'macro-F1':>9}  "
             f"classifier / published (test acc)"]
    for manifest in manifests:
        m = manifest["metrics"]
        chosen = m.get("dev_accuracy", m.get("cv_score"))
        published = ", ".join(f"{k} {v:.1%}" for k, v in m.get("published_baselines_test_accuracy", {}).items())
        lines.append(f"{manifest['name']:<15} {manifest['version']:<13} {chosen:>10.2%} "
                     f"{m['test_accuracy']:>9.2%} {m['test_macro_f1']:>9.3f}  "
                     f"{manifest['params']['classifier']}  {published}")
    return "\n".join(lines)


def base_data(task: Recipe, data_dir: Path, data_root: Path, kaggle_tsv: Path | None = None):
    """The data a model was built from: ``(train texts, train targets, test frame, description)``.

    The test frame has ``text`` and ``target``: the SST test sentences, or the
    held-out split (drawn as :func:`build_holdout` draws it).
    """
    if task.protocol == "sst":
        splits = load_splits(data_dir, kaggle_tsv)
        train, test = task.relabel(splits.train), task.relabel(splits.test)
        return (list(train["phrase"]), list(train["target"]), test.rename(columns={"phrase": "text"}),
                splits.description)
    train, test = holdout_split(task, task.load(data_root))
    return list(train["text"]), list(train["target"]), test, describe_data(task, data_root)


def retrain(task: Recipe, data, storage, base: NLPModel, tolerance: float,
            report_root: Path) -> tuple[bool, dict]:
    """Fit base data + learned feedback; publish if not worse than serving by > ``tolerance``.

    ``data`` is what :func:`base_data` returns. Returns ``(published, summary)``.
    """
    from sentiment_clf.learning import ModelRegistry, learnable

    train_texts, train_targets, test, description = data
    serving = ModelRegistry({task.name: base}, storage, sync_interval=0).get(task.name)
    learned = learnable(storage.feedback_after(0, model=task.name, upto_id=serving.applied_upto), set())
    texts = train_texts + [row.text for row in learned]
    targets = train_targets + [row.label for row in learned]
    logger.info("%s: retraining on %d texts + %d answers (feedback up to id %d)",
                task.name, len(train_texts), len(learned), serving.applied_upto)
    candidate = NLPModel(task.labels, **base.settings()).fit(texts, targets)

    y_test = candidate._label_indices(test["target"])
    serving_accuracy = float(accuracy_score(y_test, serving.model.predict_proba(test["text"]).argmax(axis=1)))
    report_dir = report_root / task.name / "candidate"
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "evaluation": ("sentence-level (root) accuracy on the SST test split" if task.protocol == "sst"
                       else f"accuracy on the held-out {task.test_size:.0%} (seed {SPLIT_SEED})")
                      + "; retrained on the base training data plus the learned feedback",
        **evaluate(task, candidate, test, report_dir),
        "serving_version": serving.version,
        "serving_test_accuracy": serving_accuracy,
        "published_baselines_test_accuracy": PUBLISHED_BASELINES.get(task.name, {}),
    }
    summary = {"model": task.name, "serving_version": serving.version, "serving_accuracy": serving_accuracy,
               "candidate_accuracy": metrics["test_accuracy"], "feedback_learned": len(learned),
               "tolerance": tolerance}
    if metrics["test_accuracy"] < serving_accuracy - tolerance:
        return False, summary
    manifest, payload = candidate.dumps(
        name=task.name, metrics=metrics,
        training_data={**description, "train_phrases": len(train_texts),
                       "feedback_learned": len(learned), "feedback_upto": serving.applied_upto})
    storage.publish(task.name, manifest, payload, feedback_upto=serving.applied_upto)
    final_dir = report_root / task.name / manifest["version"]
    if final_dir.exists():
        import shutil

        shutil.rmtree(final_dir)
    report_dir.rename(final_dir)
    (final_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    summary["version"] = manifest["version"]
    return True, summary


def _storage(database_url: str | None):
    from sentiment_clf.config import Settings
    from sentiment_clf.storage import Storage

    settings = Settings()
    return Storage(database_url or settings.database()), settings


def retrain_main(argv) -> int:
    parser = argparse.ArgumentParser(prog="build_model.py retrain",
                                     description="Retrain with the stored feedback and publish if not worse.")
    parser.add_argument("--model", choices=sorted(RECIPES), action="append",
                        help="retrain only this model (repeatable; default: all)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with hatespeech/ and questions/ (default: the parent of --data-dir)")
    parser.add_argument("--kaggle-tsv", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                        help="the shipped base models (default: %(default)s)")
    parser.add_argument("--database-url", default=None, help="default: the service's database")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="largest drop in test accuracy still published (default: %(default)s)")
    args = parser.parse_args(argv)
    storage, settings = _storage(args.database_url)
    status = 0
    for name in args.model or list(RECIPES):
        try:
            data = base_data(RECIPES[name], args.data_dir, args.data_root or args.data_dir.parent, args.kaggle_tsv)
        except (FileNotFoundError, util.DataFormatError) as exc:
            logger.error("%s", exc)
            return 2
        base = NLPModel.load(args.models_dir / name)
        published, summary = retrain(RECIPES[name], data, storage, base, args.tolerance,
                                     settings.data_dir / "reports")
        line = (f"{name}: serving {summary['serving_version']} {summary['serving_accuracy']:.2%}, "
                f"retrained with {summary['feedback_learned']} answers {summary['candidate_accuracy']:.2%}")
        if published:
            print(f"{line}: published as version {summary['version']}")
        else:
            print(f"{line}: NOT published (more than {args.tolerance:.2%} worse)")
            status = 3
    return status


def rollback_main(argv) -> int:
    parser = argparse.ArgumentParser(prog="build_model.py rollback",
                                     description="Serve the version served before the current one.")
    parser.add_argument("--model", choices=sorted(RECIPES), required=True)
    parser.add_argument("--database-url", default=None, help="default: the service's database")
    args = parser.parse_args(argv)
    storage, _ = _storage(args.database_url)
    try:
        now = storage.rollback(args.model)
    except LookupError as exc:
        print(exc)
        return 1
    print(f"{args.model}: now serving {now or 'the base model shipped in lib/models'}")
    return 0


def versions_main(argv) -> int:
    parser = argparse.ArgumentParser(prog="build_model.py versions",
                                     description="List the published versions.")
    parser.add_argument("--model", choices=sorted(RECIPES), action="append")
    parser.add_argument("--database-url", default=None, help="default: the service's database")
    args = parser.parse_args(argv)
    storage, _ = _storage(args.database_url)
    for name in args.model or list(RECIPES):
        rows = storage.versions(name)
        active = any(row["active"] for row in rows)
        print(f"{name}: {'' if active else '* '}base model from lib/models")
        for row in rows:
            accuracy = row["metrics"].get("test_accuracy")
            accuracy_text = f"test accuracy {accuracy:.2%}" if accuracy is not None else ""
            print(f"{name}: {'* ' if row['active'] else ''}{row['version']}  {row['created_at']}  "
                  f"feedback up to id {row['feedback_upto']}  {accuracy_text}")
    return 0


COMMANDS = {"retrain": retrain_main, "rollback": rollback_main, "versions": versions_main}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder with the SST train.txt, dev.txt and test.txt (default: %(default)s)")
    parser.add_argument("--kaggle-tsv", type=Path, default=None,
                        help="train on the Kaggle train.tsv phrases instead of train.txt "
                             "(dev and test still come from --data-dir)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                        help="where to write the models (default: %(default)s)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with hatespeech/ and questions/ (default: the parent of --data-dir)")
    parser.add_argument("--model", choices=sorted(RECIPES), action="append",
                        help="build only this model (repeatable; default: all)")
    parser.add_argument("--sample", type=int, default=None,
                        help="held-out models: use only this many texts (a quick run)")
    parser.add_argument("--jobs", type=int, default=2, help="processes for cross-validation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    args = parse_args(argv)
    names = args.model or list(RECIPES)
    data_root = args.data_root or args.data_dir.parent
    manifests, splits = [], None
    try:
        for name in names:
            spec = RECIPES[name]
            if spec.protocol == "sst":
                splits = splits or load_splits(args.data_dir, args.kaggle_tsv)
                manifests.append(build(spec, splits, args.models_dir, progress=not args.no_progress))
            else:
                manifests.append(build_holdout(spec, data_root, args.models_dir, progress=not args.no_progress,
                                               sample=args.sample, n_jobs=args.jobs))
    except (FileNotFoundError, util.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    print(summary(manifests))
    print(f"models and reports written to {args.models_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
