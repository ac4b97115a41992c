"""build_model.py: a rebuild reproduces the committed models, which clear the floors."""
import json

import numpy as np
import pytest

import build_model
import util
from conftest import MODELS_DIR, write_kaggle_tsv
from model import NLPModel

# Socher et al. 2013 naive Bayes, sentence-level test accuracy: the floors.
FLOORS = {"sentiment": 0.818, "ratings": 0.410}


def committed_manifest(name):
    return json.loads((MODELS_DIR / name / "manifest.json").read_text())


def assert_same_metrics(fresh: dict, committed: dict) -> None:
    """Equal, but for the comparison with logistic regression and the SVM (models not
    served): their iterative solvers' last digits follow the CPU's BLAS kernels, so
    on another machine that table differs slightly and is compared loosely."""
    fresh, committed = dict(fresh), dict(committed)
    comparison, committed_comparison = (m.pop("classifier_comparison_on_dev") for m in (fresh, committed))
    assert fresh == committed
    assert [(row["classifier"], row["C"]) for row in comparison] == \
        [(row["classifier"], row["C"]) for row in committed_comparison]
    for row, old in zip(comparison, committed_comparison):
        assert row["dev_accuracy"] == pytest.approx(old["dev_accuracy"], abs=0.01)
        assert row["dev_log_loss"] == pytest.approx(old["dev_log_loss"], abs=0.02)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_committed_models_clear_the_published_naive_bayes(name):
    manifest = committed_manifest(name)
    assert manifest["metrics"]["test_accuracy"] >= FLOORS[name]
    assert manifest["metrics"]["test_sentences"] == {"sentiment": 1821, "ratings": 2210}[name]
    assert (MODELS_DIR / name / "model.npz").stat().st_size < 5 * 2**20


@pytest.fixture(scope="module")
def rebuilt(sst_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    assert build_model.main(["--data-dir", str(sst_dir), "--models-dir", str(out), "--no-progress",
                             "--model", "sentiment", "--model", "ratings"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_a_rebuild_reproduces_the_committed_model(rebuilt, sst_dir, name):
    committed, fresh = committed_manifest(name), json.loads((rebuilt / name / "manifest.json").read_text())
    assert_same_metrics(fresh["metrics"], committed["metrics"])
    assert fresh["params"] == committed["params"]
    assert fresh["training_data"] == committed["training_data"]
    # Deterministic down to the bytes, so the version (a checksum prefix) is the same too.
    assert fresh["arrays_sha256"] == committed["arrays_sha256"]
    texts = ["that movie was boring", "a gorgeous , witty film", "it 's not bad at all"]
    np.testing.assert_array_equal(NLPModel.load(rebuilt / name).predict_proba(texts),
                                  NLPModel.load(MODELS_DIR / name).predict_proba(texts))


@pytest.mark.slow
def test_the_build_writes_a_report(rebuilt):
    for name, plot in (("sentiment", "roc_curve.png"), ("ratings", "confusion_matrix.png")):
        report = rebuilt / name / "report"
        assert (report / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        metrics = json.loads((report / "metrics.json").read_text())
        assert metrics["test_accuracy"] == json.loads((rebuilt / name / "manifest.json").read_text())[
            "metrics"]["test_accuracy"]
        rows = (report / "selection.csv").read_text().splitlines()
        assert rows[0].startswith("ngram_range,") and len(rows) == 1 + 3 * 2 * 4 * 3
    assert "test_roc_auc" in json.loads((rebuilt / "sentiment" / "report" / "metrics.json").read_text())


@pytest.mark.slow
def test_training_on_the_kaggle_tsv_gives_the_same_model(sst_dir, tmp_path):
    """Kaggle's train.tsv lists the training trees' phrases: the same data, the same model."""
    tsv = tmp_path / "train.tsv"
    write_kaggle_tsv(tsv, util.load_sst(sst_dir / "train.txt"))
    assert build_model.main(["--data-dir", str(sst_dir), "--kaggle-tsv", str(tsv), "--model", "ratings",
                             "--models-dir", str(tmp_path / "models"), "--no-progress"]) == 0
    fresh = json.loads((tmp_path / "models" / "ratings" / "manifest.json").read_text())
    assert fresh["training_data"]["files"] == ["train.tsv", "dev.txt", "test.txt"]
    assert fresh["arrays_sha256"] == committed_manifest("ratings")["arrays_sha256"]
    assert_same_metrics(fresh["metrics"], committed_manifest("ratings")["metrics"])


def test_missing_data_is_a_clear_error(tmp_path, caplog):
    assert build_model.main(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m")]) == 2
    assert "no such data file" in caplog.text
    assert not (tmp_path / "m").exists()
