"""The front door of serving: a model's answers for texts on a tier, with its levels'.

Every caller asks here: one query, a batch, the web page and the answer a user's
feedback is stored with. A model with levels answers them too, under their keys
(``questions`` gives its coarse class and ``"fine"``). On the accurate tier the heads
of one encoder share one reading of each text: one forward pass serves them all.

Which model answers for a name on a tier is the caller's (``lookup``): the web asks
the feedback registry, which keeps the fast models in step with what users taught
them. An answer is a plain dictionary, the same one every caller shows::

    {"prediction": "Negative", "confidence": 0.87,
     "probabilities": {"Negative": 0.87, "Positive": 0.13},
     "variant": "fast", "version": "...", "read": {...}}

with ``"explanation"`` when asked, and ``"thresholds"`` when the operator set some.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sentiment_clf.errors import ModelFailed
from sentiment_clf.serving import documents
from sentiment_clf.serving.accurate import Reading
from sentiment_clf.serving.decisions import Thresholds, decide
from sentiment_clf.tasks import MODELS

logger = logging.getLogger(__name__)

VARIANTS = ("fast", "accurate")
# (model name, variant) -> (the model that answers, its version); NotServed when none does.
Lookup = Callable[[str, str], tuple[Any, str]]


def predict(lookup: Lookup, name: str, texts: list[str], variant: str = "fast", explain: bool = False,
            thresholds: Thresholds | None = None, levels: bool = True, batch: bool = False) -> list[dict]:
    """Model ``name``'s answer for each text on tier ``variant``, in order; with ``levels``,
    each answer holds its levels' answers under their keys.

    A query (one text, not ``batch``) on the accurate tier queues with the worker's other
    requests for the network (the micro-batcher); a batch's texts are read in one call, off
    the event loop, checking the request's time budget before each. Either way a text's
    answer is a function of the text alone.
    """
    names: dict[str | None, str] = {None: name}
    if levels:
        names.update(MODELS[name].levels)
    found = answers(lookup, names, texts, variant, explain, thresholds, batch)
    results = found.pop(None)
    if not found:  # most models have no levels
        return results
    for key, level_answers in found.items():
        for result, level in zip(results, level_answers, strict=True):
            result[key] = level
    return results


def answers(lookup: Lookup, names: Mapping[Any, str], texts: list[str], variant: str = "fast",
            explain: bool = False, thresholds: Thresholds | None = None,
            batch: bool = False) -> dict[Any, list[dict]]:
    """The answers of several models (``{key: model name}``) for each text, by key."""
    single = len(texts) == 1 and not batch
    found: dict[Any, list[dict]] = {}
    readings: dict[int, list[Reading]] = {}  # one reading per encoder serves its heads
    for key, other in names.items():
        model, version = lookup(other, variant)
        set_here = (thresholds or {}).get(other)
        if variant == "accurate":
            if id(model.encoder) not in readings:
                readings[id(model.encoder)] = [_read_one(model.encoder, texts[0])] if single \
                    else model.encoder.read_many(texts)
            read = readings[id(model.encoder)]
            rows = model.proba(np.stack([r.vector for r in read]), texts)
            reads = [r.read for r in read]
        elif single:  # the fast path of one query: no batch to build
            row, read_one = documents.read(model, texts[0], MODELS[other].by_sentence)
            found[key] = [answer(model, row, texts[0], variant, version, read_one, set_here, explain)]
            continue
        else:
            rows, reads = documents.read_many(model, texts, MODELS[other].by_sentence)
        found[key] = [answer(model, row, text, variant, version, read, set_here, explain)
                      for row, text, read in zip(rows, texts, reads, strict=True)]
    return found


def _read_one(encoder, text: str) -> Reading:
    try:
        return encoder.read_one(text)
    except Exception:  # the whole micro-batch failed: its requests (only) get this error
        logger.exception("the accurate model failed on a micro-batch")
        raise ModelFailed("the accurate model failed on the batch this request was part of; "
                          "nothing was stored, so retry (or use variant=fast)") from None


def answer(model, probabilities: np.ndarray, text: str, variant: str = "fast", version: str = "",
           read: dict | None = None, thresholds: Mapping[str, float] | None = None, explain: bool = False) -> dict:
    """One answer, from the text's probabilities in the model's label order; the label is the
    most probable one unless ``thresholds`` (label -> threshold) says otherwise."""
    values = probabilities.tolist()
    best = decide(model.labels, values, dict(thresholds) if thresholds else None)
    result = {
        "prediction": model.labels[best],
        "confidence": values[best],
        "probabilities": dict(zip(model.labels, values, strict=True)),
        "variant": variant,
        "version": version,
    }
    if read is not None:
        result["read"] = read
    if thresholds:
        result["thresholds"] = dict(thresholds)
    if explain:
        result["explanation"] = model.explain(text)
    return result
