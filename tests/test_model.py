"""NLPModel: tokenizing, fitting, predicting, and the safe saved format."""
import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest

from model import ModelFileError, NLPModel, tokenize

from conftest import replace_arrays_file

LABELS = ["Positive", "Negative"]  # deliberately not alphabetical: columns follow this order
TEXTS = ["a great , moving film", "great fun", "wonderful acting", "I loved it",
         "a boring , dull mess", "dull and tedious", "terrible acting", "I hated it"]
TARGETS = ["Positive"] * 4 + ["Negative"] * 4


@pytest.mark.parametrize("text, tokens", [
    ("That movie wasn't boring!", ["that", "movie", "was", "n't", "boring", "!"]),
    ("was n't", ["was", "n't"]),  # treebank tokens stay as they are
    ("It’s great", ["it", "'s", "great"]),
    ("It 's great", ["it", "'s", "great"]),
    ("can't won't I'm", ["ca", "n't", "wo", "n't", "i", "'m"]),
    ("-LRB- fun -RRB- `` quoted ''", ["(", "fun", ")", '"', "quoted", '"']),
    ("Jean-Claud ... 3.5 stars", ["jean-claud", "...", "3.5", "stars"]),
    ("café  😀\t\nok", ["café", "😀", "ok"]),
    ("   ", []),
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


@pytest.fixture()
def fitted():
    return NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5).fit(TEXTS, TARGETS)


def test_predict_and_predict_proba(fitted):
    proba = fitted.predict_proba(["a great film", "a dull film", "nothing known here"])
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba[0, 0] > 0.5 and proba[1, 1] > 0.5  # column 0 is "Positive"
    assert fitted.predict(["a great film", "a dull film"]).tolist() == ["Positive", "Negative"]
    assert fitted.classifier_.classes_.tolist() == [0, 1]


def test_fit_rejects_unknown_and_missing_labels():
    with pytest.raises(ValueError, match="unknown label 'Neutral'"):
        NLPModel(LABELS).fit(["x", "y"], ["Positive", "Neutral"])
    with pytest.raises(ValueError, match="no training examples for \\['Negative'\\]"):
        NLPModel(LABELS).fit(["x", "y"], ["Positive", "Positive"])


def test_save_and_load_give_the_same_model(fitted, tmp_path):
    manifest = fitted.save(tmp_path / "m", name="toy", training_data={"sha256": "abc"},
                           metrics={"test_accuracy": 1.0})
    loaded = NLPModel.load(tmp_path / "m")
    probe = TEXTS + ["unseen words only", "great , great , dull"]
    np.testing.assert_array_equal(loaded.predict_proba(probe), fitted.predict_proba(probe))
    assert loaded.labels == LABELS
    assert loaded.settings() == fitted.settings()
    for key in ("arrays_sha256", "labels", "training_data", "metrics", "library_versions",
                "created_at", "version", "params"):
        assert manifest[key], key
    assert manifest["arrays_sha256"] == hashlib.sha256((tmp_path / "m" / "model.npz").read_bytes()).hexdigest()
    assert loaded.manifest_ == json.loads((tmp_path / "m" / "manifest.json").read_text())


def test_class_prior_survives_saving(tmp_path):
    model = NLPModel(LABELS, class_prior=[0.9, 0.1]).fit(TEXTS, TARGETS)
    model.save(tmp_path, name="toy")
    loaded = NLPModel.load(tmp_path)
    np.testing.assert_array_equal(loaded.classifier_.class_log_prior_, model.classifier_.class_log_prior_)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))


def test_saving_is_deterministic(fitted, tmp_path):
    fitted.save(tmp_path / "a", name="toy")
    NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5).fit(TEXTS, TARGETS).save(tmp_path / "b", name="toy")
    assert (tmp_path / "a" / "model.npz").read_bytes() == (tmp_path / "b" / "model.npz").read_bytes()


def test_a_tampered_file_is_refused(fitted, tmp_path):
    fitted.save(tmp_path, name="toy")
    data = bytearray((tmp_path / "model.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "model.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        NLPModel.load(tmp_path)


def test_missing_or_broken_files_are_refused(fitted, tmp_path):
    with pytest.raises(ModelFileError, match="no model manifest"):
        NLPModel.load(tmp_path)
    fitted.save(tmp_path, name="toy")
    manifest = json.loads((tmp_path / "manifest.json").read_text())

    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "arrays_file": "../model.npz"}))
    with pytest.raises(ModelFileError, match="same folder"):
        NLPModel.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid JSON manifest"):
        NLPModel.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model.npz").unlink()
    with pytest.raises(ModelFileError, match="arrays file is missing"):
        NLPModel.load(tmp_path)


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.mkdir, (os.environ["MARKER_DIR"],))


def test_a_pickled_payload_never_runs(fitted, tmp_path, monkeypatch):
    """Even with a matching checksum, an object array (a pickle) is refused, not run."""
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("MARKER_DIR", str(marker))
    fitted.save(tmp_path, name="toy")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("vocabulary", "idf", "feature_count", "class_count"):
            member = io.BytesIO()
            np.save(member, np.array([RunsCodeWhenUnpickled()], dtype=object), allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())
    replace_arrays_file(tmp_path, buffer.getvalue())

    with pytest.raises(ModelFileError, match="inconsistent model content"):
        NLPModel.load(tmp_path)
    assert not marker.exists()


def test_inconsistent_shapes_are_refused(fitted, tmp_path):
    fitted.save(tmp_path, name="toy")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["labels"] = ["a", "b", "c"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="shapes do not match"):
        NLPModel.load(tmp_path)
