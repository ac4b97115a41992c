"""Ways to make the accurate tier's answers a function of the text, side by side.

int8 *dynamic* quantization computes each layer's activation scale over the whole input
tensor, so a text's answer moved with the other texts of its batch and with its padding.
The candidates, each built here from the committed encoder that serves sentiment:

1. ``dynamic int8, padded batches``: the committed encoder as it ran before, 32 texts a
   forward pass, padded to the longest.
2. ``dynamic int8, each text alone`` (served): the same file, one text a forward pass at
   its own length: nothing but the text is in the tensor the scales are computed over.
3. ``int8 weights, fp32 activations``: the same int8 weights, dequantized in the graph
   (``DequantizeLinear``), every activation in fp32; batched.
4. ``fp32``: the weights stored dequantized in fp32; batched.
5. ``static int8``: activation scales fixed at export, calibrated on 256 SST training
   sentences (onnxruntime's ``quantize_static``, QDQ, per-channel weights) from the fp32
   graph of 4; batched.

For each: SST test accuracy (binary, fine-grained), file size, sentences per second on
one thread (the test sentences in order of length, as a server sees them), and the
largest difference in any head's probabilities between a text asked alone and inside
batches of 32 random other sentences (100 texts, 3 mixes each). Needs onnx (the
fine-tuning requirements). Run from the repository root: ``python -m bench.determinism``.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from sentiment_clf.serving import accurate
from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.formats import unpack_arrays
from sentiment_clf.serving.text import for_encoder

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sentiment-clf" / "lib" / "models" / "accurate"
DATA = ROOT.parent / "shared" / "data"
HEADS = ("sentiment", "ratings", "hatespeech", "questions", "questions-fine")


def weight_only(source: Path, target: Path, *, fp32: bool, which=None) -> None:
    """The dynamic-int8 graph with each MatMulInteger (and its activation quantization)
    replaced by a float MatMul: on dequantized weights in the graph, or in fp32 storage.
    ``which(output_name)``, when given, picks the MatMulIntegers to replace (others stay)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {i.name: i for i in graph.initializer}
    dropped, added, new_initializers = set(), [], []
    for node in graph.node:
        if node.op_type != "MatMulInteger" or (which is not None and not which(node.output[0])):
            continue
        quantized_x, weight, _, weight_zero = node.input
        x = producer[quantized_x].input[0]
        cast = consumers[node.output[0]][0]
        scale_mul = consumers[cast.output[0]][0]
        scales = producer[next(i for i in scale_mul.input if i != cast.output[0])]
        weight_scale = next(i for i in scales.input if i in initializers)
        dropped |= {id(node), id(cast), id(scale_mul), id(scales)}
        if fp32:
            values = (numpy_helper.to_array(initializers[weight]).astype(np.float32)
                      - numpy_helper.to_array(initializers[weight_zero]).astype(np.float32)) \
                * numpy_helper.to_array(initializers[weight_scale]).astype(np.float32)
            new_initializers.append(numpy_helper.from_array(values.astype(np.float32), weight + "_fp32"))
            added.append(helper.make_node("MatMul", [x, weight + "_fp32"], [scale_mul.output[0]]))
        else:
            added.append(helper.make_node("DequantizeLinear", [weight, weight_scale, weight_zero],
                                          [weight + "_dq"], axis=1))
            added.append(helper.make_node("MatMul", [x, weight + "_dq"], [scale_mul.output[0]]))
    nodes = [n for n in graph.node if id(n) not in dropped] + added
    used = {name for n in nodes for name in n.input}
    nodes = [n for n in nodes if not (n.op_type == "DynamicQuantizeLinear" and not set(n.output) & used)]
    graph.initializer.extend(new_initializers)
    used = {name for n in nodes for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    ready = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    ordered: list = []
    while nodes:  # topological order
        waiting = []
        for n in nodes:
            if all(name in ready for name in n.input):
                ordered.append(n)
                ready |= set(n.output)
            else:
                waiting.append(n)
        if len(waiting) == len(nodes):
            raise RuntimeError("the graph has a cycle")
        nodes = waiting
    graph.ClearField("node")
    graph.node.extend(ordered)
    onnx.save(model, str(target))


def static_int8(fp32: Path, target: Path, tokenizer_json: str, texts: list[str]) -> None:
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.enable_truncation(accurate.MAX_TOKENS)
    tokenizer.no_padding()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(tokenizer.encode_batch([for_encoder(t) for t in texts]))

        def get_next(self):
            row = next(self.rows, None)
            if row is None:
                return None
            ids = np.array([row.ids], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    quantize_static(str(fp32), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


class Candidate:
    def __init__(self, name: str, path: Path, tokenizer_json: str, alone: bool):
        self.name, self.path, self.alone = name, path, alone
        self.encoder = accurate.Encoder(path.read_bytes(), tokenizer_json, threads=1, max_windows=1)
        self.encoder.tokenizer.enable_padding(pad_id=accurate.PAD_ID, pad_token=accurate.PAD_TOKEN)

    def padded(self, texts: list[str]) -> np.ndarray:
        """One forward pass over ``texts`` padded to the longest (how batches ran before)."""
        rows = self.encoder.tokenizer.encode_batch([for_encoder(t) for t in texts])
        ids = np.array([r.ids for r in rows], dtype=np.int64)
        mask = np.array([r.attention_mask for r in rows], dtype=np.int64)
        return self.encoder.session().run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def vectors(self, texts: list[str]) -> np.ndarray:
        """Vectors as this candidate serves them: each text alone, or in length-sorted batches of 32."""
        if self.alone:
            return np.stack([self.encoder.forward(self.encoder.windows(t)[0][0]) for t in texts])
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), 32):
            index = order[start:start + 32]
            out[index] = self.padded([texts[i] for i in index])
        return out


def proba(arrays: dict, name: str, vectors: np.ndarray) -> np.ndarray:
    return softmax(vectors @ arrays[f"{name}.weight"].T + arrays[f"{name}.bias"])


def measure(candidate: Candidate, arrays: dict, texts: list[str], binary: np.ndarray, fine: np.ndarray) -> dict:
    candidate.vectors(texts[:8])  # the session made, caches warm
    started = time.perf_counter()
    vectors = candidate.vectors(texts)
    per_second = len(texts) / (time.perf_counter() - started)
    keep = binary >= 0
    binary_accuracy = float((proba(arrays, "sentiment", vectors[keep]).argmax(axis=1) == binary[keep]).mean())
    fine_accuracy = float((proba(arrays, "ratings", vectors).argmax(axis=1) == fine).mean())
    rng = random.Random(0)
    alone = candidate.vectors(texts[:100])
    worst = 0.0
    for i, text in enumerate(texts[:100]):
        for _ in range(3):
            others = rng.sample(texts, 31)
            place = rng.randrange(32)
            batch = others[:place] + [text] + others[place:]
            found = np.stack([candidate.encoder.forward(candidate.encoder.windows(t)[0][0]) for t in batch]) \
                if candidate.alone else candidate.padded(batch)
            for name in HEADS:
                worst = max(worst, float(np.abs(proba(arrays, name, found[place:place + 1])
                                                - proba(arrays, name, alone[i:i + 1])).max()))
    return {"name": candidate.name, "binary": binary_accuracy, "fine": fine_accuracy,
            "mb": candidate.path.stat().st_size / 1e6, "per_second": per_second, "worst": worst}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from sentiment_clf.training.finetune import sst_frames
    from sentiment_clf.training.shared_weights import inlined

    frames = sst_frames(DATA)
    test = frames["test"]
    texts = test["text"].tolist()
    binary, fine = test["sentiment"].to_numpy(), test["ratings"].to_numpy()
    tokenizer_json = (MODEL / accurate.TOKENIZER_FILE).read_text(encoding="utf-8")
    manifest = json.loads((MODEL / accurate.MANIFEST_FILE).read_text(encoding="utf-8"))
    served = next(f for f, heads in accurate.encoder_files(manifest).items() if "sentiment" in heads)
    arrays = unpack_arrays((MODEL / accurate.HEADS_FILE).read_bytes())
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        encoder = scratch / "served.onnx"  # the served encoder with its shared weights inside
        encoder.write_bytes(inlined(MODEL, served).SerializeToString())
        weight_only(encoder, scratch / "dq.onnx", fp32=False)
        weight_only(encoder, scratch / "fp32.onnx", fp32=True)
        calibration = random.Random(1).sample(frames["train"]["text"].tolist(), 256)
        static_int8(scratch / "fp32.onnx", scratch / "static.onnx", tokenizer_json, calibration)
        candidates = [
            Candidate("dynamic int8, padded batches (before)", encoder, tokenizer_json, False),
            Candidate("dynamic int8, each text alone (served)", encoder, tokenizer_json, True),
            Candidate("int8 weights, fp32 activations, batches", scratch / "dq.onnx", tokenizer_json, False),
            Candidate("fp32, batches", scratch / "fp32.onnx", tokenizer_json, False),
            Candidate("static int8 (calibrated), batches", scratch / "static.onnx", tokenizer_json, False),
        ]
        print(f"{'candidate':<42} {'binary':>7} {'fine':>6} {'MB':>6} {'texts/s':>8} {'max |dp| alone vs batch':>24}")
        for candidate in candidates:
            row = measure(candidate, arrays, texts, binary, fine)
            print(f"{row['name']:<42} {row['binary']:>7.2%} {row['fine']:>6.2%} {row['mb']:>6.1f} "
                  f"{row['per_second']:>8.0f} {row['worst']:>24.2e}", flush=True)


if __name__ == "__main__":
    main()
