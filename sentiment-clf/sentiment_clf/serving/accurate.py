"""The accurate tier: one fine-tuned transformer encoder with a linear head per model.

A saved accurate model is a folder (``lib/models/accurate/``) of:

``encoder.onnx``
    the encoder (all-MiniLM-L6-v2, fine-tuned here), int8 dynamically quantized; it
    takes ``input_ids`` and ``attention_mask`` and gives each text's mean-pooled
    vector, so one forward pass serves every head. It runs each text (each window of a
    long text) alone, so an answer depends on its text only (:class:`Encoder`).
``shared.npz`` (when the model has several encoders)
    the weights every encoder holds alike (the frozen word embeddings), stored once as
    ``.npy`` arrays by initializer name; each encoder names them as external data and
    gets them from here, so another encoder costs its layers only.
``tokenizer.json``
    the WordPiece tokenizer, read by the ``tokenizers`` library (no Python code).
``heads.npz``
    each served model's head, ``<name>.weight`` (labels x width), ``<name>.bias`` and
    ``<name>.temperature`` (the scores' divisor, fitted on dev data; 1 when absent), as
    ``.npy`` arrays read with ``allow_pickle=False`` (formats.py).
``partner-<model>.npz`` (for the heads the manifest's ``"partners"`` names)
    a TF-IDF logistic regression over words and character n-grams whose
    log-probabilities are blended into that head's (partners.py), with the weight the
    manifest gives it.
``manifest.json``
    the labels of each head, the SHA-256 of every file above, metrics and provenance.

Every file is checked against the manifest before anything in it is parsed; nothing
is unpickled. Serving needs onnxruntime, tokenizers and numpy only (no torch).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sentiment_clf.serving.batching import MicroBatcher
from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.cooperative import check_budget, deadline, off_loop
from sentiment_clf.serving.formats import (
    ACCURATE_HEAD,
    ACCURATE_MODEL,
    ModelFileError,
    read_manifest,
    unpack_arrays,
    verify,
)
from sentiment_clf.serving.partners import TextPartner
from sentiment_clf.serving.text import for_encoder

PUBLISHED_PREFIX = "accurate:"  # a retrained head's model name in the database: "accurate:sentiment"
ENCODER_FILE, TOKENIZER_FILE, HEADS_FILE, MANIFEST_FILE = "encoder.onnx", "tokenizer.json", "heads.npz", "manifest.json"
FILES = (ENCODER_FILE, TOKENIZER_FILE, HEADS_FILE)  # a model of one encoder; "encoders" in a manifest names more
SHARED_FILE = "shared.npz"  # weights the encoders share, when the manifest says "shared"
PARTNER_FILE = "partner-{}.npz"  # a head's partner, when the manifest's "partners" names one
MAX_TOKENS = 128  # a window's word pieces, [CLS] and [SEP] included, as in training
WINDOW_OVERLAP = 32  # word pieces each window repeats of the one before
MAX_WINDOWS = 32  # windows read of one text by default: about 3,000 word pieces
PAD_ID, PAD_TOKEN = 0, "[PAD]"
EXPLAIN_MAX_WORDS = 64  # leave-one-word-out explanations look at the first 64 words

def encoder_files(manifest: dict) -> dict[str, list[str]]:
    """Each encoder file of a manifest and the heads it serves: ``"encoders"`` when the
    model has several, else ``encoder.onnx`` serving every head."""
    listed = manifest.get("encoders")
    if listed is None:
        return {ENCODER_FILE: list(manifest.get("heads") or {})}
    if not isinstance(listed, dict) or not all(
            isinstance(name, str) and name.endswith(".onnx") and "/" not in name and isinstance(heads, list)
            for name, heads in listed.items()):
        raise ModelFileError(f"{MANIFEST_FILE}: 'encoders' must map .onnx file names to lists of heads")
    return listed


def partner_files(manifest: dict) -> dict[str, dict]:
    """Each head's partner entry (``{"file", "weight", ...}``) of a manifest; none when it names none."""
    listed = manifest.get("partners") or {}
    if not isinstance(listed, dict) or not all(
            isinstance(entry, dict) and entry.get("file") == PARTNER_FILE.format(head)
            and isinstance(entry.get("weight"), float) for head, entry in listed.items()):
        raise ModelFileError(f"{MANIFEST_FILE}: 'partners' must map heads to {{'file': "
                             f"'{PARTNER_FILE.format('<head>')}', 'weight': a number}}")
    return listed


def read_checked(directory: Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest of the accurate model in ``directory`` and its files' bytes, each
    checked against the manifest's SHA-256; ModelFileError naming what is wrong."""
    directory = Path(directory)
    manifest = read_manifest(directory, "no accurate model manifest here", ACCURATE_MODEL)
    try:
        encoders = encoder_files(manifest)
        partners = [entry["file"] for entry in partner_files(manifest).values()]
    except ModelFileError as exc:
        raise ModelFileError(f"{directory / str(exc)}") from None
    shared = manifest.get("shared")
    if shared not in (None, SHARED_FILE):
        raise ModelFileError(f"{directory / MANIFEST_FILE}: 'shared' names {SHARED_FILE} or nothing")
    payloads = {}
    for name in (*encoders, TOKENIZER_FILE, HEADS_FILE, *([SHARED_FILE] if shared else []), *partners):
        try:
            payload = (directory / name).read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f"{directory / name}: missing from the accurate model") from None
        checksums = manifest.get("sha256")
        verify(payload, checksums.get(name) if isinstance(checksums, dict) else None, str(directory / name),
               "rebuild it with build_model.py finetune or restore it from git")
        payloads[name] = payload
    return manifest, payloads


def _pieces(windows: list[list[int]]) -> int:
    """The word pieces ``windows`` cover: each holds [CLS] and [SEP], and each after the
    first repeats WINDOW_OVERLAP pieces of the one before it."""
    return sum(len(ids) - 2 for ids in windows) - WINDOW_OVERLAP * (len(windows) - 1)


class Reading(NamedTuple):
    """What the encoder read of one text: its pooled vector and how much of the text it covers."""

    vector: np.ndarray  # the windows' vectors combined (a mean weighted by their tokens)
    tokens: int  # word pieces read
    text_tokens: int  # word pieces in the text (more than ``tokens`` when the windows ran out)
    windows: int

    @property
    def read(self) -> dict:
        """How much of the text was read, as answers say it."""
        return {"tokens": self.tokens, "text_tokens": self.text_tokens, "windows": self.windows,
                "truncated": self.tokens < self.text_tokens}


class Encoder:
    """The shared encoder: texts in, one pooled vector per text out.

    Each text is a function of itself alone: it runs through the network on its own,
    at its own length (no padding, no other texts in the forward pass). int8 dynamic
    quantization scales each layer's activations over the whole input tensor, so in a
    batch a text's answer moved with its company and its padding (up to 0.27 in
    probability); alone, it cannot. On these CPUs a text alone costs what it costs in a
    padded batch (``bench/determinism.py``).

    A text longer than the encoder's MAX_TOKENS is read in windows of MAX_TOKENS word
    pieces that overlap by WINDOW_OVERLAP, at most ``max_windows`` of them from the
    start; the text's vector is the mean of the windows' vectors weighted by their word
    pieces (chosen on full movie reviews, ``bench/long_texts.py``).

    The ONNX session is made on first use, in the process that uses it (a session
    does not survive a fork, and gunicorn forks its workers after loading the app).
    ``read_one`` goes through a :class:`MicroBatcher`: the requests of a worker queue
    for the network and are read one after another.
    """

    def __init__(self, onnx_model: bytes, tokenizer_json: str, *, threads: int = 1,
                 max_batch: int = 32, max_wait: float = 0.0, max_windows: int = MAX_WINDOWS,
                 shared: dict[str, np.ndarray] | None = None):
        from tokenizers import Tokenizer

        if max_windows < 1:
            raise ValueError("max_windows must be at least 1")
        self._onnx_model: bytes | None = onnx_model
        self._shared = dict(shared or {})  # initializers the graph names as external data
        self._threads = threads
        self._session: Any = None
        self._session_lock = threading.Lock()
        self._embedded: tuple[list[str], np.ndarray] | None = None  # embed's last texts and vectors
        self.max_windows = max_windows
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS, stride=WINDOW_OVERLAP)
        self.batcher: MicroBatcher[str, Reading] = MicroBatcher(
            lambda texts: [self.read(text) for text in texts], max_batch=max_batch, max_wait=max_wait)

    def session(self):
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    import onnxruntime  # type: ignore[import-untyped]  # no type information shipped

                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = self._threads
                    options.inter_op_num_threads = 1
                    if self._shared:  # the values stay referenced here for the session's life
                        self._shared_values = [onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a))
                                               for a in self._shared.values()]
                        options.add_external_initializers(list(self._shared), self._shared_values)
                    self._session = onnxruntime.InferenceSession(
                        self._onnx_model, options, providers=["CPUExecutionProvider"])
                    self._onnx_model = None  # the session holds its own copy
        return self._session

    def windows(self, text: str) -> tuple[list[list[int]], int]:
        """The token ids of each window the encoder reads of ``text`` (each with its
        ``[CLS]`` and ``[SEP]``), and the number of word pieces in the whole text."""
        encoding = self.tokenizer.encode(for_encoder(text))
        every = [w.ids for w in (encoding, *encoding.overflowing)]
        return every[:self.max_windows], _pieces(every)

    def forward(self, ids: list[int]) -> np.ndarray:
        """One window's pooled vector: the network run on that window alone."""
        row = np.array([ids], dtype=np.int64)
        return self.session().run(None, {"input_ids": row, "attention_mask": np.ones_like(row)})[0][0]

    def read(self, text: str) -> Reading:
        """``text`` read whole (up to ``max_windows`` windows): its vector and coverage."""
        windows, pieces = self.windows(text)
        vectors = np.stack([self.forward(ids) for ids in windows])
        if len(windows) == 1:
            return Reading(vectors[0], pieces, pieces, 1)
        weights = np.array([len(ids) - 2 for ids in windows], dtype=np.float32)
        vector = (weights @ vectors) / max(float(weights.sum()), 1.0)
        return Reading(vector.astype(np.float32), _pieces(windows), pieces, len(windows))

    def read_one(self, text: str) -> Reading:
        """:meth:`read` through the worker's queue for the network (the micro-batcher)."""
        return self.batcher.submit(text)

    def read_many(self, texts: list[str]) -> list[Reading]:
        """:meth:`read` of each text, under gevent off the event loop (as the micro-batcher's
        batches are), checking the request's time budget before each (``OverBudget``)."""
        until = deadline()  # the calling request's: the pool's thread has no request

        def read_all() -> list[Reading]:
            readings = []
            for text in texts:
                check_budget(until)
                readings.append(self.read(text))
            return readings

        return off_loop(read_all) if texts else []

    def embed(self, texts: list[str]) -> np.ndarray:
        """One vector per text (rows in order), each text read alone, as :meth:`read_many`.
        The last few texts embedded (an explanation's variants) and their vectors are kept:
        the heads of one encoder explaining one request's text read its variants once."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        remembered = self._embedded
        if remembered is not None and remembered[0] == texts:
            return remembered[1]
        vectors = np.stack([reading.vector for reading in self.read_many(texts)])
        if len(texts) <= EXPLAIN_MAX_WORDS + 1:
            vectors.flags.writeable = False
            self._embedded = (list(texts), vectors)
        return vectors

    def warm(self) -> None:
        """Make the session and run it once, so a worker's first request does not pay for it."""
        self.read("warm up")


class AccurateHead:
    """One served model of the accurate tier: the shared encoder and this model's head,
    and the head's partner when it has one (partners.py).

    Answers like a fast model does (``labels``, ``predict_proba``, ``predict_one``,
    ``explain``), so the endpoints treat both tiers alike.
    """

    classifier = "transformer"
    supports_partial_fit = False

    def __init__(self, name: str, labels: tuple[str, ...], weight: np.ndarray, bias: np.ndarray,
                 encoder: Encoder, manifest: dict, version: str, temperature: float, encoder_sha: str,
                 partner: TextPartner | None = None):
        self.name, self.labels, self.encoder, self.partner = name, tuple(labels), encoder, partner
        # The SHA-256 of the encoder file this head reads (a retrained head must match it).
        self.encoder_sha = encoder_sha
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        # The head's scores are divided by it before the softmax (fitted on dev data, so that
        # a confidence of 0.9 is right about 90% of the time).
        self.temperature = float(temperature)
        self.manifest_, self.version = manifest, version
        self.base_version = version  # a retrained head (training/retrain_accurate.py) keeps the committed one's
        self.published: str | None = None  # the database version serving, None for the committed head
        self.feedback_learned = 0  # stored answers a retrained head was fitted with

    def retrained(self, manifest: dict, payload: bytes, source: str) -> AccurateHead:
        """This head's published version (``training/retrain_accurate.py``): the same encoder,
        the stored weights. ModelFileError if the payload does not match its manifest or the
        version was fitted on another encoder."""
        ACCURATE_HEAD.check(manifest, source)
        if manifest.get("model") != self.name:
            raise ModelFileError(f"{source}: not an accurate head for {self.name}")
        verify(payload, manifest.get("arrays_sha256"), source, "retrain it again")
        encoder_sha = self.encoder_sha
        if manifest.get("encoder_sha256") != encoder_sha:
            raise ModelFileError(f"{source}: fitted on another encoder than the one served "
                                 f"({manifest.get('encoder_sha256')} != {encoder_sha}); retrain it again")
        try:
            arrays = unpack_arrays(payload)
        except ValueError as exc:
            raise ModelFileError(f"{source}: {exc}") from None
        weight, bias = arrays["weight"], arrays["bias"]
        if weight.shape != self.weight.shape or bias.shape != self.bias.shape:
            raise ModelFileError(f"{source}: the head's shape does not match {self.name}'s labels")
        # It was fitted from and near this head's scores: the same temperature (and partner) serve it.
        head = AccurateHead(self.name, self.labels, weight, bias, self.encoder, self.manifest_, manifest["version"],
                            self.temperature, self.encoder_sha, self.partner)
        head.base_version, head.published = self.base_version, manifest["version"]
        head.feedback_learned = int(manifest.get("training_data", {}).get("feedback_learned", 0))
        return head

    def scores(self, vectors: np.ndarray, texts) -> list[np.ndarray]:
        """Each text's scores before the temperature (one row of labels each), from its pooled
        vector (rows of ``vectors``) and, when the head has a partner, its text: the head's
        logits, or their blend with the partner's log-probabilities. Row by row: a matrix
        product of many rows may sum in another order than one of one row, and an answer
        must not depend on the rows beside it, not even in the last bit."""
        rows = [vector[np.newaxis, :] @ self.weight.T + self.bias for vector in vectors]
        if self.partner is None:
            return rows
        return [self.partner.blend(row[0], for_encoder(text))[np.newaxis, :]
                for row, text in zip(rows, texts, strict=True)]

    def proba(self, vectors: np.ndarray, texts) -> np.ndarray:
        """Probabilities (rows x labels) of texts from their pooled vectors (rows x width)."""
        scale = np.float32(self.temperature)
        rows = [softmax(row / scale) for row in self.scores(vectors, texts)]
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities (texts x labels), each text read alone."""
        texts = list(texts)
        return self.proba(self.encoder.embed(texts), texts)

    def predict_one(self, text: str) -> np.ndarray:
        """One text's probabilities, read through the worker's queue for the network."""
        return self.proba(self.encoder.read_one(text).vector[np.newaxis, :], [text])[0]

    def explain(self, text: str, top: int = 10) -> dict:
        """Leave-one-word-out: how much the predicted label's probability drops when each
        word is removed, each variant read alone. A text of more than EXPLAIN_MAX_WORDS
        words is explained by its first EXPLAIN_MAX_WORDS words, read as a text of their own
        (``"words"`` says how many were explained).

        Returns ``{"method", "words", "predicted_probability", "toward", "away"}``;
        ``toward`` holds the words whose removal lowers the predicted label's probability
        (they push toward it), ``away`` those whose removal raises it; each ``{"term",
        "weight"}`` with the change in probability, largest first, at most ``top``.
        """
        words = text.split()
        if len(words) > EXPLAIN_MAX_WORDS:
            words = words[:EXPLAIN_MAX_WORDS]
            text = " ".join(words)
        variants = [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
        proba = self.predict_proba(variants)
        predicted = int(proba[0].argmax())
        changes = (proba[0, predicted] - proba[1:, predicted]).tolist()
        ranked = sorted(zip(words, changes, strict=True), key=lambda pair: -abs(pair[1]))
        return {"method": "leave-one-word-out", "words": len(words),
                "predicted_probability": float(proba[0, predicted]),
                "toward": [{"term": w, "weight": c} for w, c in ranked if c > 0][:top],
                "away": [{"term": w, "weight": c} for w, c in ranked if c < 0][:top]}


def encoder_identity(manifest: dict, file: str) -> str:
    """What identifies an encoder of ``manifest``: its file's SHA-256, with the shared
    weights' when it reads them (so a head's version covers every weight it answers with)."""
    own = manifest["sha256"][file]
    if not manifest.get("shared"):
        return own
    return hashlib.sha256(f"{own}+{manifest['sha256'][SHARED_FILE]}".encode()).hexdigest()


def head_version(encoder_sha: str, name: str, weight: np.ndarray, bias: np.ndarray,
                 temperature: float = 1.0, partner: TextPartner | None = None) -> str:
    """A head's version: 12 hex digits of a hash over the encoder, the head's arrays and its partner."""
    digest = hashlib.sha256(encoder_sha.encode())
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(bias, dtype=np.float32).tobytes())
    if temperature != 1.0:
        digest.update(np.float64(temperature).tobytes())
    if partner is not None:
        digest.update(partner.identity.encode())
    return digest.hexdigest()[:12]


def load_accurate(directory: Path, *, threads: int = 1, max_batch: int = 32, max_wait: float = 0.0,
                  max_windows: int = MAX_WINDOWS) -> dict[str, AccurateHead]:
    """Every head of the accurate model in ``directory``, by model name; the heads of one
    encoder share it (and its queue)."""
    manifest, payloads = read_checked(directory)
    tokenizer_json = payloads[TOKENIZER_FILE].decode("utf-8")
    try:
        arrays = unpack_arrays(payloads[HEADS_FILE])
    except ValueError as exc:
        raise ModelFileError(f"{Path(directory) / HEADS_FILE}: {exc}") from None
    listed = manifest.get("heads")
    if not isinstance(listed, dict):
        raise ModelFileError(f"{Path(directory) / MANIFEST_FILE}: no heads listed")
    served_by = {head: file for file, heads in encoder_files(manifest).items() for head in heads}
    shared: dict[str, np.ndarray] = {}
    if SHARED_FILE in payloads:
        try:
            shared = unpack_arrays(payloads[SHARED_FILE])
        except ValueError as exc:
            raise ModelFileError(f"{Path(directory) / SHARED_FILE}: {exc}") from None
    encoders = {file: Encoder(payloads[file], tokenizer_json, threads=threads, max_batch=max_batch,
                              max_wait=max_wait, max_windows=max_windows, shared=shared)
                for file in set(served_by.values())}
    partners = {head: _partner(directory, entry, tuple(listed.get(head) or ()), payloads[entry["file"]],
                               manifest["sha256"][entry["file"]])
                for head, entry in partner_files(manifest).items()}
    heads = {}
    for name, labels in listed.items():
        if name not in served_by:
            raise ModelFileError(f"{Path(directory) / MANIFEST_FILE}: no encoder serves the head {name}")
        if f"{name}.weight" not in arrays or f"{name}.bias" not in arrays:
            raise ModelFileError(f"{Path(directory) / HEADS_FILE}: no arrays for the head {name}")
        weight, bias = arrays[f"{name}.weight"], arrays[f"{name}.bias"]
        if weight.shape[0] != len(labels) or bias.shape != (len(labels),):
            raise ModelFileError(f"{Path(directory) / HEADS_FILE}: head {name} does not match its labels")
        stored = np.asarray(arrays.get(f"{name}.temperature", [1.0]), dtype=np.float64).reshape(-1)
        temperature = float(stored[0]) if stored.size == 1 else float("nan")
        if not np.isfinite(temperature) or temperature <= 0:
            raise ModelFileError(f"{Path(directory) / HEADS_FILE}: head {name} has a temperature of {temperature}")
        file = served_by[name]
        encoder_sha = encoder_identity(manifest, file)
        partner = partners.get(name)
        heads[name] = AccurateHead(name, tuple(labels), weight, bias, encoders[file], manifest,
                                   head_version(encoder_sha, name, weight, bias, temperature, partner), temperature,
                                   encoder_sha, partner)
    return heads


def _partner(directory: Path, entry: dict, labels: tuple[str, ...], payload: bytes, sha256: str) -> TextPartner:
    source = Path(directory) / entry["file"]
    if not labels:
        raise ModelFileError(f"{source}: a partner of a head the manifest does not list")
    try:
        return TextPartner(labels, unpack_arrays(payload), entry["weight"], sha256)
    except (ValueError, KeyError) as exc:
        raise ModelFileError(f"{source}: {exc}") from None
