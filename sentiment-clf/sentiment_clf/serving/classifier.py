"""The service's models in a Python process: the HTTP API's answers without a server.

    from sentiment_clf import Classifier

    classifier = Classifier.load()                    # the committed models, both tiers
    classifier.predict(["that movie was boring"])     # [{"prediction": "Negative", ...}]
    classifier.predict(texts, model="questions", variant="accurate")

Each answer is the dictionary an item of the HTTP batch answer's ``results`` holds
(``POST /batch``, ``/ratings/batch``, ...): the same labels, probabilities, version and
``read``, with a model's levels under their keys. It is the same code (``tiers.py``), so
an answer is the same to the last bit. Nothing here imports Flask or gunicorn, and the
fast models learn nothing: answers stored by users are the service's.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sentiment_clf.errors import NotServed
from sentiment_clf.paths import MODELS_DIR
from sentiment_clf.serving.accurate import AccurateHead
from sentiment_clf.serving.decisions import Thresholds, parse_thresholds
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.serving.loading import load_accurate_tier, load_models
from sentiment_clf.serving.tiers import VARIANTS, predict
from sentiment_clf.tasks import MODELS, endpoint_models


class Classifier:
    """The served models, fast and (when loaded) accurate, answering as the API does.

    ``thresholds``: decision thresholds, as the THRESHOLDS setting writes them
    (``"hatespeech:hate speech=0.3"``); none by default.
    """

    def __init__(self, fast: dict[str, LinearTextModel], accurate: dict[str, AccurateHead] | None = None,
                 thresholds: Thresholds | None = None):
        self.fast = dict(fast)
        self.accurate = dict(accurate or {})
        self.thresholds = dict(thresholds or {})

    @classmethod
    def load(cls, folder: str | Path | None = None, *, accurate: bool = True, thresholds: str = "",
             threads: int = 1) -> Classifier:
        """The models in ``folder`` (one sub-folder per model, ``accurate/`` for the accurate
        tier; the packaged models by default), each file checked against its manifest.
        ``accurate=False`` loads the fast tier only (no ONNX sessions: less memory, a faster
        start); ``threads`` is each accurate encoder's."""
        folder = Path(folder) if folder is not None else MODELS_DIR
        heads = load_accurate_tier(folder, threads=threads) if accurate else {}
        return cls(load_models(folder, list(MODELS)), heads, parse_thresholds(thresholds))

    @property
    def models(self) -> list[str]:
        """The models asked for by name: those with an endpoint of their own."""
        return [spec.name for spec in endpoint_models()]

    def predict(self, texts: Iterable[str], model: str = "sentiment", variant: str = "fast",
                explain: bool = False) -> list[dict[str, Any]]:
        """One answer for each text, in order: model ``model`` on tier ``variant`` (``"fast"``
        or ``"accurate"``), with the terms behind it when ``explain``. A ValueError names a
        model or tier that is not here; a text must be a string."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings; for one text, pass [text]")
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("every text must be a string")
        if model not in self.models:
            raise ValueError(f"no model {model!r}: the models are {', '.join(self.models)}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if not texts:
            return []
        try:
            return predict(self._lookup, model, texts, variant, explain, self.thresholds, batch=True)
        except NotServed as exc:
            raise ValueError(exc.message) from None

    def _lookup(self, name: str, variant: str) -> tuple[LinearTextModel | AccurateHead, str]:
        if variant == "accurate":
            if name not in self.accurate:
                raise NotServed("the accurate tier is not loaded here (Classifier.load(accurate=True) "
                                "with a folder that holds one)")
            head = self.accurate[name]
            return head, head.version
        found = self.fast[name]
        return found, found.version
