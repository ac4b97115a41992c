"""Calibrating saved fast models in place (``build_model.py calibrate``): the temperature a
build fits (fast_calibration.py), for models already built."""
from __future__ import annotations

import json
from pathlib import Path

from sentiment_clf.training import holdout
from sentiment_clf.training.fast_calibration import calibrate_holdout, calibrate_sst
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import Recipe
from sentiment_clf.training.sst import load_splits


def calibrate_saved(task: Recipe, models_dir: Path, data_root: Path, data_dir: Path) -> dict:
    """Calibrate the saved model ``models_dir/<task>`` in place; returns its new manifest."""
    directory = models_dir / task.name
    model = NLPModel.load(directory)
    manifest = model.manifest_
    report_dir = directory / "report"
    report_dir.mkdir(exist_ok=True)
    if task.protocol == "sst":
        splits = load_splits(data_dir, None)
        figures = calibrate_sst(task, model, task.relabel(splits.dev), task.relabel(splits.test), report_dir)
    else:
        choosing, test = holdout.holdout_split(task, task.load_frame(data_root))
        added = holdout.augmented(task, data_root)
        texts, targets = choosing["text"].tolist(), choosing["target"].tolist()
        figures = calibrate_holdout(task, model, holdout.fit_data(task, texts, targets, added),
                                    holdout.cv_splits(task, targets, len(added)), len(texts), test, report_dir)
    metrics = {**manifest.get("metrics", {}), "calibration": figures, "test_ece": figures["test_ece"],
               "test_accuracy_interval": figures["test_accuracy_interval"]}
    saved = model.save(directory, name=task.name, training_data=manifest.get("training_data"), metrics=metrics)
    report = report_dir / "metrics.json"
    if report.is_file():
        stored = json.loads(report.read_text(encoding="utf-8"))
        report.write_text(json.dumps({**stored, "calibration": figures, "test_ece": figures["test_ece"]}, indent=2)
                          + "\n", encoding="utf-8")
    return saved
