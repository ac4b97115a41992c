"""build_model.py: its command line, the reports a build writes (on a small slice of the
treebank), and a full rebuild that reproduces the committed models, which clear the floors."""
import json

import numpy as np
import pytest

import build_model
import util
from model import NLPModel
from sentiment_clf.training import build
from sentiment_clf.training.holdout import holdout_split
from sentiment_clf.training.recipes import RECIPES
from sentiment_clf.training.splits import questions_split
from sentiment_clf.training.sst import SEARCH_GRID

from conftest import MODELS_DIR, SHARED_DATA, need, write_kaggle_tsv

# Socher et al. 2013 naive Bayes, sentence-level test accuracy: the floors.
FLOORS = {"sentiment": 0.818, "ratings": 0.410}
PNG = b"\x89PNG\r\n\x1a\n"


def manifest_in(models_dir, name):
    return json.loads((models_dir / name / "manifest.json").read_text())


def assert_same_metrics(fresh: dict, committed: dict) -> None:
    """Equal, but for the comparison with logistic regression and the SVM (models not
    served), which the rebuild skips (``--no-comparison``)."""
    committed = {k: v for k, v in committed.items() if k != "classifier_comparison_on_dev"}
    assert "classifier_comparison_on_dev" not in fresh
    assert fresh == committed


# The command line.

OPTIONS = {
    "build": ["--data-dir", "--data-root", "--kaggle-tsv", "--models-dir", "--model", "--sample", "--jobs",
              "--no-progress"],
    "retrain": ["--data-dir", "--data-root", "--kaggle-tsv", "--models-dir", "--model", "--database-url",
                "--tolerance"],
    "rollback": ["--model", "--database-url"],
    "versions": ["--model", "--database-url"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        build_model.main([command, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: build_model.py {command}")
    for option in OPTIONS[command]:
        assert option in out


def test_the_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_model.main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in OPTIONS)


@pytest.mark.parametrize("argv", [[], ["--data-dir", "x", "--model", "ratings"], ["build", "--data-dir", "x"]])
def test_build_is_the_default_command(argv):
    args = build_model.parse_args(argv)
    assert args.command == "build" and args.run is build.run_build
    assert args.jobs == 2 and args.sample is None and args.models_dir == build.DEFAULT_MODELS_DIR


def test_a_bad_option_exits_with_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_model.main(["rollback"])  # --model is required
    assert stopped.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, caplog):
    assert build_model.main(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m")]) == 2
    assert "no such data file" in caplog.text
    assert not (tmp_path / "m").exists()


# A build on a small slice: what it writes.

def build_sst_models(data_dir, models_dir, *options):
    """Both SST models built from ``data_dir`` by the command line into ``models_dir``."""
    assert build_model.main(["--data-dir", str(data_dir), "--models-dir", str(models_dir), "--no-progress",
                             "--model", "sentiment", "--model", "ratings", *options]) == 0
    return models_dir


@pytest.fixture(scope="module")
def small_build(small_sst, tmp_path_factory):
    return build_sst_models(small_sst, tmp_path_factory.mktemp("small_models"))


def test_the_build_writes_a_report(small_build):
    n_settings = np.prod([len(values) for values in SEARCH_GRID.values()])
    for name, plot in (("sentiment", "roc_curve.png"), ("ratings", "confusion_matrix.png")):
        report = small_build / name / "report"
        assert (report / plot).read_bytes()[:8] == PNG
        metrics = json.loads((report / "metrics.json").read_text())
        manifest = manifest_in(small_build, name)
        assert {k: v for k, v in metrics.items() if k != "build_seconds"} == manifest["metrics"]
        assert "lowest log-loss on the dev sentences" in metrics["evaluation"]
        rows = (report / "selection.csv").read_text().splitlines()
        assert rows[0].startswith("ngram_range,") and len(rows) == 1 + n_settings
        comparison = (report / "classifier_comparison.csv").read_text().splitlines()
        assert comparison[0] == "classifier,C,dev_accuracy,dev_log_loss,mcnemar_p_vs_nb"
        assert [row.split(",")[0] for row in comparison[1:]] == ["nb (served)", "logreg", "logreg", "svm", "svm"]
        assert NLPModel.load(small_build / name).labels == list(manifest["labels"])
    assert "test_roc_auc" in json.loads((small_build / "sentiment" / "report" / "metrics.json").read_text())


def test_training_on_the_kaggle_tsv_gives_the_same_model(small_build, small_sst, tmp_path):
    """Kaggle's train.tsv lists the training trees' phrases: the same data, the same model."""
    tsv = tmp_path / "train.tsv"
    write_kaggle_tsv(tsv, util.load_sst(small_sst / "train.txt"))
    assert build_model.main(["--data-dir", str(small_sst), "--kaggle-tsv", str(tsv), "--model", "ratings",
                             "--models-dir", str(tmp_path / "models"), "--no-progress"]) == 0
    fresh, from_trees = manifest_in(tmp_path / "models", "ratings"), manifest_in(small_build, "ratings")
    assert fresh["training_data"]["files"] == ["train.tsv", "dev.txt", "test.txt"]
    assert fresh["training_data"]["train_phrases"] == from_trees["training_data"]["train_phrases"]
    assert fresh["arrays_sha256"] == from_trees["arrays_sha256"]
    assert fresh["metrics"] == from_trees["metrics"]


# The committed models: their quality, and a full rebuild reproduces them.

@pytest.mark.parametrize("name", sorted(FLOORS))
def test_committed_models_clear_the_published_naive_bayes(name):
    manifest = manifest_in(MODELS_DIR, name)
    assert manifest["metrics"]["test_accuracy"] >= FLOORS[name]
    assert manifest["metrics"]["test_sentences"] == {"sentiment": 1821, "ratings": 2210}[name]
    # Uncompressed so that servers map it in place (format 2); git stores it compressed.
    assert (MODELS_DIR / name / "model.npz").stat().st_size < 32 * 2**20


@pytest.fixture(scope="module")
def rebuilt(sst_dir, tmp_path_factory):
    # Without the comparison with other classifiers (4 of a build's 5 minutes on 2 busy
    # cores): it is not part of the model, and the report test runs it on a slice.
    return build_sst_models(sst_dir, tmp_path_factory.mktemp("models"), "--no-comparison")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_a_rebuild_reproduces_the_committed_model(rebuilt, name):
    committed, fresh = manifest_in(MODELS_DIR, name), manifest_in(rebuilt, name)
    assert_same_metrics(fresh["metrics"], committed["metrics"])
    assert fresh["params"] == committed["params"]
    assert fresh["training_data"] == committed["training_data"]
    # The same arrays to the last bit or two. On the kind of CPU that built the committed
    # files the bytes, and so the version (a checksum prefix), are the same; another kind
    # may add in another order (on an AVX2-only host 17 of the sentiment model's 442,936
    # weights came out one unit in the last place apart), so the arrays are compared
    # within a few such units rather than by checksum.
    with np.load(MODELS_DIR / name / "model.npz", allow_pickle=False) as want, \
            np.load(rebuilt / name / "model.npz", allow_pickle=False) as got:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            if want[key].dtype.kind == "f":
                np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, err_msg=key)
            else:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    texts = ["that movie was boring", "a gorgeous , witty film", "it 's not bad at all"]
    np.testing.assert_allclose(NLPModel.load(rebuilt / name).predict_proba(texts),
                               NLPModel.load(MODELS_DIR / name).predict_proba(texts), rtol=1e-12, atol=0)


def test_both_question_models_hold_out_the_same_questions():
    """The accurate tier trains one encoder on both: one split, stratified by fine class."""
    need((SHARED_DATA / "questions" / "dataset.csv").is_file(), f"no questions in {SHARED_DATA}")
    coarse = RECIPES["questions"]
    choosing, held_out = holdout_split(coarse, coarse.load_frame(SHARED_DATA))
    fine_choosing, fine_held_out = questions_split(SHARED_DATA)
    assert held_out.index.equals(fine_held_out.index) and choosing.index.equals(fine_choosing.index)
    assert len(held_out) == 1091
    # The committed coarse model was measured on those questions.
    metrics = manifest_in(MODELS_DIR, "questions")["metrics"]
    assert "stratified by fine" in metrics["evaluation"] and metrics["test_texts"] == 1091
    support = held_out["target"].value_counts().to_dict()
    assert {label: metrics["per_class"][label]["support"] for label in coarse.labels} == support
