"""Calibrating the fast models: a temperature fitted on data each model was not fitted on.

- SST models (sentiment, ratings): the dev sentences.
- Held-out models (hate speech, questions): out-of-fold probabilities on the choosing
  part (the model's settings refitted on each of its cross-validation folds' rest, the
  added rows included, as the build fits it), so every text is scored by a model that
  never saw it. The held-out texts are never used.

The temperature goes into the model's arrays (so its version changes with it), the
held-out expected calibration error before and after into its metrics, and a
reliability diagram into its report. ``build_model.py build`` calibrates every model
it builds; ``build_model.py calibrate`` calibrates saved models in place (recalibrate.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sentiment_clf.serving.classifiers import temper
from sentiment_clf.training.intervals import bootstrap_interval
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.operating_points import curve
from sentiment_clf.training.plots import save_precision_recall, save_reliability
from sentiment_clf.training.recipes import Recipe
from sentiment_clf.training.temperature import expected_calibration_error, fit_temperature, reliability

logger = logging.getLogger(__name__)


def _untempered(model: NLPModel, texts) -> np.ndarray:
    return model.classifier_.predict_proba(model.vectorizer_.transform(list(texts)))


def out_of_fold(model: NLPModel, n_texts: int, fit_data: tuple[list, list, np.ndarray | None],
                folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Untempered probabilities of the first ``n_texts`` rows of ``fit_data`` (texts, label
    names, weights), each from ``model``'s settings fitted on the rows of the other folds."""
    texts, targets, weights = fit_data
    found = np.zeros((n_texts, len(model.labels)))
    for fit, scored in folds:
        fold = NLPModel(**model.get_params()).fit([texts[i] for i in fit], [targets[i] for i in fit],
                                                  sample_weight=None if weights is None else weights[fit])
        found[scored] = _untempered(fold, [texts[i] for i in scored])
    return found


def calibrate(task: Recipe, model: NLPModel, dev: np.ndarray, dev_labels, test_texts, test_labels,
              report_dir: Path, fitted_on: str) -> dict:
    """Fit ``model.temperature_`` on ``dev`` (untempered probabilities of texts the model was
    not fitted on, with their label names); measure it on the held-out texts. Returns the
    figures for the model's metrics (``"calibration"``)."""
    temperature = fit_temperature(np.log(np.maximum(dev, 1e-300)), model._label_indices(dev_labels))
    truth = model._label_indices(test_labels)
    before = _untempered(model, test_texts)
    after = temper(before, temperature)
    model.temperature_ = temperature
    model._served = None
    right = after.argmax(axis=1) == truth
    save_reliability(reliability(before, truth), reliability(after, truth), report_dir / "reliability.png",
                     title=f"{task.name}: held-out reliability (T={temperature:.2f})")
    if "hate speech" in task.labels:  # the moderation setting's data (decisions.py)
        hate = task.labels.index("hate speech")
        figures_curve = curve("hate speech", model._label_indices(dev_labels), temper(dev, temperature)[:, hate],
                              truth, after[:, hate], hate)
        save_precision_recall(figures_curve, report_dir / "precision_recall.png",
                              title=f"{task.name}: 'hate speech' by threshold")
    figures = {"temperature": temperature, "fitted_on": fitted_on,
               "test_ece_before": expected_calibration_error(before, truth),
               "test_ece": expected_calibration_error(after, truth),
               "test_accuracy_interval": bootstrap_interval(lambda i: float(right[i].mean()), len(right)),
               "reliability": reliability(after, truth)}
    if "hate speech" in task.labels:
        figures["operating_points"] = figures_curve
    logger.info("%s: temperature %.3f, held-out ECE %.4f -> %.4f", task.name, temperature,
                figures["test_ece_before"], figures["test_ece"])
    return figures


def calibrate_sst(task: Recipe, model: NLPModel, dev, test, report_dir: Path) -> dict:
    """:func:`calibrate` on SST's dev sentences, measured on its test sentences (relabelled frames)."""
    return calibrate(task, model, _untempered(model, dev["phrase"].to_numpy()), dev["target"],
                     test["phrase"].to_numpy(), test["target"], report_dir, f"{len(dev)} SST dev sentences")


def calibrate_holdout(task: Recipe, model: NLPModel, fit_data: tuple[list, list, np.ndarray | None],
                      folds: list, n_texts: int, test, report_dir: Path) -> dict:
    """:func:`calibrate` on out-of-fold probabilities of the choosing part's own ``n_texts``
    texts (the first rows of ``fit_data``, the build's fit data), measured held out."""
    return calibrate(task, model, out_of_fold(model, n_texts, fit_data, folds), fit_data[1][:n_texts],
                     test["text"].to_numpy(), test["target"], report_dir,
                     f"out-of-fold probabilities of the {n_texts} choosing texts")
