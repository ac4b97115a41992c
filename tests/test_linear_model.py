"""The served model (numpy only) against the scikit-learn estimator it was saved from.

Whole test splits of all five committed models to 1e-9 on each summing path,
online learning against ``partial_fit``, the compact vocabulary against a
dictionary, reading today's (format 2, memory-mapped) and the earlier format 1
files, and refusing altered or pickled files.
"""
import hashlib
import io
import json
import mmap
import zipfile

import numpy as np
import pytest

import util
from model import ModelFileError, NLPModel
from sentiment_clf.serving.linear_model import PYTHON_LIMIT, LinearTextModel
from sentiment_clf.serving.text import TOKENIZERS, word_ngrams
from sentiment_clf.training.holdout import holdout_split
from sentiment_clf.training.recipes import RECIPES

from conftest import MODELS_DIR, SHARED_DATA, need, replace_arrays_file

NAMES = sorted(RECIPES)
ODD = ["", "   ", "zzqx unknown words", "😀", "RT @x: &amp; http://t.co", "good " * 300]
LABELS = ["Positive", "Negative"]
TEXTS = ["a great , moving film", "great fun", "wonderful acting", "I loved it",
         "a boring , dull mess", "dull and tedious", "terrible acting", "I hated it"]
TARGETS = ["Positive"] * 4 + ["Negative"] * 4


def split_texts(name: str, sst_dir) -> list[str]:
    recipe = RECIPES[name]
    if recipe.protocol == "sst":
        return util.load_sst(sst_dir / "test.txt", roots_only=True)["phrase"].tolist() + \
            util.load_sst(sst_dir / "dev.txt")["phrase"].tolist()[:2000]
    need((SHARED_DATA / recipe.data_files[0]).is_file(), f"no {recipe.data_files[0]} in {SHARED_DATA}")
    return holdout_split(recipe, recipe.load(SHARED_DATA))[1]["text"].tolist()


@pytest.fixture(scope="module", params=NAMES)
def committed(request, sst_dir):
    name = request.param
    texts = split_texts(name, sst_dir) + ODD
    reference = NLPModel.load(MODELS_DIR / name)
    return name, texts, reference.predict_proba(texts)


# Short texts are summed in Python and long ones with numpy: each way must agree alone.
@pytest.mark.parametrize("python_limit", [PYTHON_LIMIT, 0, 10**9], ids=["default", "numpy-only", "python-only"])
def test_the_served_model_equals_scikit_learn_on_the_test_split(committed, python_limit):
    name, texts, expected = committed
    served = LinearTextModel.load(MODELS_DIR / name)
    served.python_limit = python_limit
    np.testing.assert_allclose([served.predict_one(text) for text in texts], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(served.predict_proba(texts), expected, rtol=0, atol=1e-9)
    assert len(texts) > 1000


def test_short_texts_are_summed_in_python_and_long_ones_with_numpy(monkeypatch):
    served = LinearTextModel.load(MODELS_DIR / "sentiment")
    calls = []
    numpy_scores = served._numpy_scores
    monkeypatch.setattr(served, "_numpy_scores", lambda counts: calls.append(counts) or numpy_scores(counts))
    served.predict_one("that movie was boring")
    assert calls == []
    words = [term for term in served.vocabulary.terms() if term.isalpha()][1000:1040]
    assert len(words) * len(served.labels) > served.python_limit
    served.predict_one(" ".join(words))
    assert len(calls) == 1


def test_the_vocabulary_finds_exactly_the_terms_a_dictionary_finds(sst_dir):
    reference = NLPModel.load(MODELS_DIR / "sentiment")
    served = LinearTextModel.load(MODELS_DIR / "sentiment")
    vocabulary, columns = served.vocabulary, reference.vectorizer_.vocabulary_
    assert vocabulary.terms() == sorted(columns, key=columns.get)
    tokenize = TOKENIZERS[reference.tokenizer]
    texts = util.load_sst(sst_dir / "test.txt")["phrase"].tolist()[:3000] + ODD
    for text in texts:
        tokens = tokenize(text)
        expected: dict[int, int] = {}
        for term in word_ngrams(tokens, reference.ngram_range):  # known and unknown n-grams alike
            if term in columns:
                expected[columns[term]] = expected.get(columns[term], 0) + 1
        assert vocabulary.term_counts(tokens) == expected, text
    assert all(vocabulary.term(column) == term for term, column in list(columns.items())[::97])


def test_the_arrays_are_memory_mapped_not_copied():
    served = LinearTextModel.load(MODELS_DIR / "questions-fine")
    for array in (served.weights, served.idf):
        assert not array.flags.writeable and not array.flags.owndata
        assert isinstance(array.base, mmap.mmap)


def test_learning_equals_partial_fit():
    fitted = NLPModel(LABELS, ngram_range=(1, 2), alpha=0.5, fit_prior=True).fit(TEXTS, TARGETS)
    served = fitted.served()
    before = served.predict_proba(TEXTS)
    texts, labels = ["great fun but dull", "never seen before", "terrible , terrible film"], ["Negative"] * 3
    learned = served.learn(texts, labels).learn(["wonderful"], ["Positive"])
    fitted.partial_fit(texts, labels).partial_fit(["wonderful"], ["Positive"])
    probes = TEXTS + texts + ["great", "dull film", "unknown"]
    np.testing.assert_allclose(learned.predict_proba(probes), fitted.predict_proba(probes), rtol=0, atol=1e-12)
    np.testing.assert_allclose([learned.predict_one(t) for t in probes], fitted.predict_proba(probes),
                               rtol=0, atol=1e-12)
    margin = fitted.explain("great fun but dull")["margin"]
    assert learned.explain("great fun but dull")["margin"] == pytest.approx(margin)
    np.testing.assert_array_equal(served.predict_proba(TEXTS), before)  # learning returns a new model


def test_only_naive_bayes_learns_online():
    served = NLPModel(LABELS, classifier="logreg").fit(TEXTS, TARGETS).served()
    assert not served.supports_partial_fit
    with pytest.raises(NotImplementedError, match="retraining"):
        served.learn(["great"], ["Positive"])


def save_format1(model: NLPModel, directory) -> None:
    """What ``NLPModel.save`` wrote before format 2: deflated classifier arrays."""
    terms = sorted(model.vectorizer_.vocabulary_, key=model.vectorizer_.vocabulary_.get)
    arrays = {**model._classifier_arrays(), "vocabulary": np.frombuffer("\n".join(terms).encode(), dtype=np.uint8)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, arrays[name], allow_pickle=False)
            archive.writestr(f"{name}.npy", member.getvalue())
    payload = buffer.getvalue()
    manifest, _ = model.dumps(name="toy")
    manifest.update(format_version=1, arrays_sha256=hashlib.sha256(payload).hexdigest())
    directory.mkdir()
    (directory / "model.npz").write_bytes(payload)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("classifier", ["nb", "logreg", "svm"])
def test_format_1_files_still_load(tmp_path, classifier):
    fitted = NLPModel(LABELS, classifier=classifier, ngram_range=(1, 2)).fit(TEXTS * 3, TARGETS * 3)
    save_format1(fitted, tmp_path / "old")
    probes = TEXTS + ["great dull", "unknown words"]
    expected = fitted.predict_proba(probes)
    np.testing.assert_allclose(LinearTextModel.load(tmp_path / "old").predict_proba(probes), expected, atol=1e-12)
    np.testing.assert_allclose(NLPModel.load(tmp_path / "old").predict_proba(probes), expected, atol=1e-12)
    assert LinearTextModel.load(tmp_path / "old").explain("great fun") == fitted.explain("great fun")


def test_the_committed_models_are_format_2():
    for name in NAMES:
        assert json.loads((MODELS_DIR / name / "manifest.json").read_text())["format_version"] == 2


def test_an_altered_or_pickled_file_is_refused_by_the_server(tmp_path):
    fitted = NLPModel(LABELS).fit(TEXTS, TARGETS)
    fitted.save(tmp_path, name="toy")
    data = bytearray((tmp_path / "model.npz").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "model.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        LinearTextModel.load(tmp_path)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        member = io.BytesIO()
        np.save(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        archive.writestr("idf.npy", member.getvalue())
    replace_arrays_file(tmp_path, buffer.getvalue())
    with pytest.raises(ModelFileError, match="object arrays are not allowed"):
        LinearTextModel.load(tmp_path)
