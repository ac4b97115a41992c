"""The accurate tier's saved model (sentiment_clf/accurate.py) as committed.

Its heads and labels, probabilities from both paths, the int8 encoder against the
fp32 labels recorded when it was built, refusal of altered files, leave-one-word-out
explanations, two sentences any sentiment model gets right, and serving without torch.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sentiment_clf.serving.accurate import (
    HEADS_FILE,
    MANIFEST_FILE,
    PARTNER_FILE,
    SHARED_FILE,
    TOKENIZER_FILE,
    encoder_files,
    load_accurate,
    partner_files,
)
from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.formats import ModelFileError
from sentiment_clf.serving.text import for_encoder
from sentiment_clf.tasks import MODELS

from conftest import ROOT

TEXTS = ["a wonderful, moving film", "a dull, tedious mess", "What is the capital of Peru?",
         "RT @someone: you are a wonderful person http://t.co/x &amp; thanks", "",
         "   ", "😀 🎬", "It's not bad at all.\tReally\nnot bad.", "great " * 300]


def test_every_served_model_has_a_head_with_its_labels(accurate_heads, accurate_dir):
    assert sorted(accurate_heads) == sorted(MODELS)
    manifest = json.loads((accurate_dir / MANIFEST_FILE).read_text())
    for name, head in accurate_heads.items():
        assert head.labels == MODELS[name].labels
        assert tuple(manifest["heads"][name]) == MODELS[name].labels
        assert head.weight.shape[0] == len(head.labels) == head.bias.shape[0]
        assert len(head.version) == 12
    # Each encoder the manifest names serves its heads, one shared object per encoder.
    for heads in encoder_files(manifest).values():
        assert len({id(accurate_heads[name].encoder) for name in heads}) == 1
    assert len({id(head.encoder) for head in accurate_heads.values()}) == len(encoder_files(manifest)) == 3
    assert len({head.version for head in accurate_heads.values()}) == len(accurate_heads)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_probabilities_have_the_right_shape_and_sum_to_one(accurate_heads, name):
    head = accurate_heads[name]
    proba = head.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(head.labels))
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    for text in TEXTS:
        one = head.predict_one(text)
        assert one.shape == (len(head.labels),)
        assert one.sum() == pytest.approx(1, abs=1e-5)
        # Through the queue or not, alone or in a batch: each text runs alone, the same numbers.
        np.testing.assert_array_equal(one, proba[TEXTS.index(text)])


def test_the_int8_encoders_agree_with_the_recorded_fp32_labels(accurate_heads, accurate_dir):
    """Each encoder's heads against the fp32 labels recorded when it was fine-tuned (its
    part's report), less 0.02 for int8 kernels that differ between CPUs (and texts now read
    alone, not in the batches the recording used)."""
    manifest = json.loads((accurate_dir / MANIFEST_FILE).read_text())
    checked = set()
    for part, described in manifest["parts"].items():
        recorded = json.loads((accurate_dir / "report" / part / "agreement.json").read_text())
        texts = recorded["texts"]
        assert len(texts) >= 100
        for name in described["heads"]:
            head = accurate_heads[name]
            fp32 = np.array(recorded["fp32_labels"][name])
            assert fp32.shape == (len(texts),)
            int8 = head.predict_proba(texts).argmax(axis=1)
            agreement = float((int8 == fp32).mean())
            assert agreement >= recorded["agreement"][name] - 0.02, (name, agreement, recorded["agreement"][name])
            checked.add(name)
    assert checked == set(accurate_heads)


@pytest.fixture()
def copied(accurate_dir, tmp_path):
    target = tmp_path / "accurate"
    shutil.copytree(accurate_dir, target, ignore=shutil.ignore_patterns("report"))
    return target


HATE_PARTNER = PARTNER_FILE.format("hatespeech")


@pytest.mark.parametrize("kind", ["encoder", TOKENIZER_FILE, HEADS_FILE, SHARED_FILE, HATE_PARTNER])
def test_an_altered_file_is_refused(copied, kind):
    manifest = json.loads((copied / MANIFEST_FILE).read_text())
    encoders = encoder_files(manifest)
    # every file is checksummed
    assert set(manifest["sha256"]) == {*encoders, TOKENIZER_FILE, HEADS_FILE, SHARED_FILE, HATE_PARTNER}
    name = next(iter(encoders)) if kind == "encoder" else kind
    assert sorted(load_accurate(copied)) == sorted(MODELS)  # the copy itself loads
    path = copied / name
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(ModelFileError, match=f"{name}: checksum mismatch"):
        load_accurate(copied)


@pytest.mark.parametrize("change", [
    lambda m: {**m, "format": "sentiment-clf/model"},
    lambda m: {**m, "format_version": 2},
    lambda m: {k: v for k, v in m.items() if k != "format"},
    lambda m: [m],
], ids=["other-format", "other-version", "no-format", "not-an-object"])
def test_a_manifest_of_another_format_is_refused(copied, change):
    path = copied / MANIFEST_FILE
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(ModelFileError, match=f"{MANIFEST_FILE}: not a sentiment-clf/accurate-model"):
        load_accurate(copied)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: {**m, "sha256": "abc"}, "checksum mismatch"),
    (lambda m: {**m, "heads": {**m["heads"], "sarcasm": ["no", "yes"]},
                "encoders": {f: [*h, "sarcasm"] for f, h in m["encoders"].items()}}, "no arrays for the head sarcasm"),
    (lambda m: {**m, "heads": {**m["heads"], "sarcasm": ["no", "yes"]}}, "no encoder serves the head sarcasm"),
    (lambda m: {**m, "encoders": {"../encoder.onnx": ["sentiment"]}}, "'encoders' must map .onnx file names"),
    (lambda m: {**m, "heads": None}, "no heads listed"),
    (lambda m: {**m, "partners": {"hatespeech": {**m["partners"]["hatespeech"], "file": "../partner.npz"}}},
     "'partners' must map heads to"),
    (lambda m: {**m, "partners": {"hatespeech": {**m["partners"]["hatespeech"], "weight": 1.5}}},
     "a partner's weight is between 0 and 1"),
], ids=["checksums-not-a-mapping", "a-head-without-arrays", "a-head-without-an-encoder", "an-encoder-elsewhere",
        "no-heads", "a-partner-elsewhere", "a-partner-weight-past-one"])
def test_a_manifest_that_does_not_match_its_files_is_refused(copied, change, message):
    path = copied / MANIFEST_FILE
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(ModelFileError, match=message):
        load_accurate(copied)


def test_a_partner_of_a_head_there_is_not_is_refused(copied):
    path = copied / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    other = PARTNER_FILE.format("sarcasm")
    shutil.copyfile(copied / HATE_PARTNER, copied / other)
    path.write_text(json.dumps({**manifest, "partners": {"sarcasm": {**manifest["partners"]["hatespeech"],
                                                                     "file": other}},
                                "sha256": {**manifest["sha256"], other: manifest["sha256"][HATE_PARTNER]}}))
    with pytest.raises(ModelFileError, match="partner-sarcasm.npz: a partner of a head the manifest does not list"):
        load_accurate(copied)


def test_a_missing_or_unreadable_manifest_is_refused(copied):
    path = copied / MANIFEST_FILE
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid JSON manifest"):
        load_accurate(copied)
    path.unlink()
    with pytest.raises(ModelFileError, match="no accurate model manifest"):
        load_accurate(copied)


@pytest.mark.parametrize("name", [HEADS_FILE, SHARED_FILE, HATE_PARTNER])
def test_a_missing_file_is_refused(copied, name):
    (copied / name).unlink()
    with pytest.raises(ModelFileError, match=f"{name}: missing"):
        load_accurate(copied)


def test_shared_weights_come_from_the_shared_file_only(copied):
    """The encoders' common weights are read from shared.npz and nowhere else a manifest
    could point (the name is fixed)."""
    path = copied / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "shared": "../elsewhere.npz"}))
    with pytest.raises(ModelFileError, match="'shared' names shared.npz or nothing"):
        load_accurate(copied)


def test_the_hate_speech_head_blends_its_partner_as_the_manifest_says(accurate_heads, accurate_dir):
    """Hate speech: the head's log-probabilities and its partner's, weighed as the manifest
    says, then the temperature; no other head has a partner. The blend moves answers (a
    head without its partner answers otherwise), and the version covers the partner."""
    manifest = json.loads((accurate_dir / MANIFEST_FILE).read_text())
    assert list(partner_files(manifest)) == ["hatespeech"]
    head = accurate_heads["hatespeech"]
    assert head.partner is not None and head.partner.weight == manifest["partners"]["hatespeech"]["weight"]
    assert all(other.partner is None for name, other in accurate_heads.items() if name != "hatespeech")
    texts = [t for t in TEXTS if t.strip()] + ["u r such a stupid b!tch lmaooo", "I hate those people so much"]
    vectors = head.encoder.embed(texts)
    found = head.proba(vectors, texts)
    w = head.partner.weight
    for row, vector, text in zip(found, vectors, texts, strict=True):
        logits = (vector @ head.weight.T + head.bias).astype(np.float64)
        own = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        blended = (1 - w) * own + w * head.partner.log_proba(for_encoder(text))
        np.testing.assert_allclose(row, softmax(blended[np.newaxis, :] / head.temperature)[0], atol=1e-6)
    alone = softmax((vectors @ head.weight.T + head.bias) / np.float32(head.temperature))
    assert np.abs(found - alone).max() > 0.01
    from sentiment_clf.serving.accurate import head_version

    assert head.version == head_version(head.encoder_sha, "hatespeech", head.weight, head.bias, head.temperature,
                                        head.partner)
    assert head.version != head_version(head.encoder_sha, "hatespeech", head.weight, head.bias, head.temperature)


@pytest.mark.parametrize(("text", "expected"), [
    ("a wonderful, moving film", "Positive"),
    ("a dull, tedious mess", "Negative"),
])
def test_plain_sentences_get_the_obvious_sentiment(accurate_heads, text, expected):
    head = accurate_heads["sentiment"]
    assert head.labels[int(head.predict_one(text).argmax())] == expected
    assert head.labels[int(head.predict_proba([text])[0].argmax())] == expected


# Texts where one word decides: with two strong words the model is saturated (a
# probability of 0.9995 does not drop when either is left out alone).
@pytest.mark.parametrize("text", ["a moving film", "a dull film", "the film is good",
                                  "the acting is good but the plot is dull"])
def test_explain_weighs_the_words_of_the_text_in_the_right_direction(accurate_heads, text):
    head = accurate_heads["sentiment"]
    found = head.explain(text, top=len(text.split()))  # every word
    assert found["method"] == "leave-one-word-out"
    assert len(head.explain(text, top=2)["toward"]) <= 2
    # What it measures: the text and each variant without one word, in one forward pass
    # (one batch, so one int8 scaling: the probabilities are comparable).
    words = text.split()
    variants = [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    proba = head.predict_proba([text, *variants])
    predicted = int(proba[0].argmax())
    assert found["predicted_probability"] == pytest.approx(float(proba[0, predicted]), abs=1e-6)
    drops = sorted((word, float(proba[0, predicted] - proba[1 + i, predicted])) for i, word in enumerate(words))
    entries = sorted((entry["term"], entry["weight"]) for entry in found["toward"] + found["away"])
    assert len(entries) == sum(1 for _, drop in drops if drop != 0)
    for (term, weight), (word, drop) in zip(entries, [pair for pair in drops if pair[1] != 0], strict=True):
        assert term == word and weight == pytest.approx(drop, abs=1e-6)
    assert found["toward"], found  # some word pushes toward the predicted label
    assert all(entry["weight"] > 0 for entry in found["toward"])
    assert all(entry["weight"] < 0 for entry in found["away"])
    for side in ("toward", "away"):
        magnitudes = [abs(entry["weight"]) for entry in found[side]]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_explain_names_the_deciding_word(accurate_heads):
    found = accurate_heads["sentiment"].explain("a dull film")
    assert found["toward"][0]["term"] == "dull", found
    found = accurate_heads["sentiment"].explain("a moving film")
    assert found["toward"][0]["term"] == "moving", found


SERVING_ONLY = """
import sys
from sentiment_clf.serving.accurate import load_accurate
heads = load_accurate(sys.argv[1])
heads["sentiment"].predict_one("a wonderful, moving film")
heads["ratings"].predict_proba(["a dull, tedious mess", "fine"])
heads["hatespeech"].explain("you are a wonderful person")
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_serving_the_accurate_tier_imports_no_torch(accurate_dir):
    result = subprocess.run([sys.executable, "-c", SERVING_ONLY, str(accurate_dir)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {"onnxruntime", "tokenizers", "numpy"} <= loaded  # the check sees what it ran
    assert loaded.isdisjoint({"torch", "transformers", "onnx", "sklearn", "pandas", "scipy", "matplotlib"}), \
        loaded & {"torch", "transformers", "onnx", "sklearn", "pandas", "scipy", "matplotlib"}
