"""What a build writes and prints about a model: test metrics, plots, CSV tables, summaries.

Each model's ``report/`` folder holds ``metrics.json`` (:func:`write_metrics`),
the plot drawn by :func:`evaluate`, the settings search as ``selection.csv``
(:func:`write_selection_table` for the SST models, :func:`write_cv_table` for the
held-out ones) and, for the SST models, ``classifier_comparison.csv``
(:func:`write_classifier_comparison`); a held-out model with added text from several
sources also has ``unseen_sources.csv`` (:func:`write_unseen_source_table`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from sklearn.metrics import accuracy_score, classification_report, f1_score, roc_auc_score

from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.plots import save_confusion_matrix, save_roc_curve
from sentiment_clf.training.recipes import Recipe


def evaluate(task: Recipe, model: NLPModel, test, report_dir: Path) -> dict:
    """Test metrics of ``model`` on ``test``, and the task's plot saved in ``report_dir``.

    ``test`` has a ``target`` column (label names) and the texts in ``phrase`` (SST
    sentences) or ``text``. Returns accuracy, macro-F1, the number of texts and the
    per-class report; ``test_roc_auc`` too for a model whose plot is a ROC curve.
    """
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
        save_roc_curve(y_true, proba[:, 1], report_dir / "roc_curve.png", positive=task.labels[1],
                       title=f"{task.name}: ROC on SST test sentences (n={len(test)})")
    else:
        where = "SST test sentences" if task.protocol == "sst" else "held-out texts"
        save_confusion_matrix(y_true, y_pred, task.labels, report_dir / "confusion_matrix.png",
                              title=f"{task.name}: {where} (n={len(test)})")
    return metrics


def write_metrics(metrics: dict, path: Path) -> None:
    """``metrics`` as indented JSON."""
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def _write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_selection_table(candidates: list[dict], path: Path) -> None:
    """The SST settings search (rows of :func:`sst.search_settings`), best first, as CSV."""
    columns = ["ngram_range", "sublinear_tf", "alpha", "prior", "n_features", "dev_log_loss",
               "dev_accuracy"]
    _write_csv(path, columns, (
        [_cell(row["params"]["ngram_range"]), row["params"]["sublinear_tf"], row["params"]["alpha"],
         row["prior"], row["n_features"], f"{row['dev_log_loss']:.4f}", f"{row['dev_accuracy']:.4f}"]
        for row in sorted(candidates, key=lambda r: (r["dev_log_loss"], -r["dev_accuracy"]))))


def write_cv_table(rows: list[dict], metric: str, path: Path) -> None:
    """The candidates compared by cross-validation (``params``, ``mean``, ``std``; NaN for
    one that could not be fitted), best first, as CSV."""
    keys = sorted({k for row in rows for k in row["params"]})
    _write_csv(path, [*keys, f"cv_{metric}_mean", f"cv_{metric}_std"], (
        [_cell(row["params"].get(k, "")) for k in keys]
        + ([f"{row['mean']:.4f}", f"{row['std']:.4f}"] if row["mean"] == row["mean"]
           else ["could not be fitted", ""])
        for row in sorted(rows, key=lambda r: -r["mean"] if r["mean"] == r["mean"] else float("inf"))))


def write_unseen_source_table(rows: list[dict], metric: str, path: Path) -> None:
    """The candidates checked on the added sources left out of their training (rows with
    ``unseen_source_error``, holdout.choose), in the order they were checked, as CSV."""
    checked = sorted((row for row in rows if "unseen_source_error" in row), key=lambda r: -r["mean"])
    keys = sorted({k for row in checked for k in row["params"]})
    sources = sorted({s for row in checked for s in row["unseen_source_error"]})
    _write_csv(path, [*keys, f"cv_{metric}_mean", *(f"error_{s}" for s in sources)], (
        [_cell(row["params"].get(k, "")) for k in keys] + [f"{row['mean']:.4f}"]
        + [f"{row['unseen_source_error'][s]:.4f}" for s in sources] for row in checked))


def write_classifier_comparison(rows: list[dict], path: Path) -> None:
    """The rows of :func:`comparison.compare_classifiers` as CSV, in their order."""
    _write_csv(path, ["classifier", "C", "dev_accuracy", "dev_log_loss", "mcnemar_p_vs_nb"], (
        [row["classifier"], row["C"], f"{row['dev_accuracy']:.4f}", f"{row['dev_log_loss']:.4f}",
         f"{row['mcnemar_p']:.4f}"] for row in rows))


def comparison_summary(spec: Recipe, rows: list[dict]) -> str:
    """The best candidate of each classifier among the cross-validated ``rows``, as lines of text."""
    lines = [f"{spec.name}: best of each classifier by {spec.cv_folds}-fold CV {spec.metric}"]
    for classifier in ("nb", "logreg", "svm"):
        mine = [row for row in rows if row["params"]["classifier"] == classifier]
        if mine:
            top = max(mine, key=lambda row: row["mean"])
            settings = ", ".join(f"{k}={_cell(v)}" for k, v in sorted(top["params"].items()) if k != "classifier")
            lines.append(f"  {classifier:<7} {top['mean']:.4f} ± {top['std']:.4f}  ({settings})")
    return "\n".join(lines)


def summary(manifests: list[dict]) -> str:
    """One line per built model (its manifest): version, score it was chosen on, test results."""
    lines = [f"{'model':<15} {'version':<13} {'chosen on':>10} {'test acc':>9} {'macro-F1':>9}  "
             f"classifier / published (test acc)"]
    for manifest in manifests:
        m = manifest["metrics"]
        chosen = m.get("dev_accuracy", m.get("cv_score"))
        published = ", ".join(f"{k} {v:.1%}" for k, v in m.get("published_baselines_test_accuracy", {}).items())
        lines.append(f"{manifest['name']:<15} {manifest['version']:<13} {chosen:>10.2%} "
                     f"{m['test_accuracy']:>9.2%} {m['test_macro_f1']:>9.3f}  "
                     f"{manifest['params']['classifier']}  {published}")
    for manifest in manifests:
        for texts, figures in manifest["metrics"].get("ordinary_text_flagged", {}).items():
            lines.append(f"{manifest['name']}: flags {figures['flagged']} of {figures['texts']} {texts} "
                         f"({figures['rate']:.2%}) as hate speech or offensive language")
    return "\n".join(lines)


def _cell(value) -> str:
    # (1, 2) -> "1-2": an n-gram range in one CSV cell
    return "-".join(map(str, value)) if isinstance(value, tuple) else str(value)
