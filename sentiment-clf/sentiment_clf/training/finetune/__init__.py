"""The accurate tier, fine-tuned here on CPU and released (needs requirements-finetune.txt).

The front door: :func:`build_accurate` (``train.py``) fine-tunes one encoder with a head
per served model, exports it to ONNX and quantizes it; :func:`release` (``release_model.py``)
makes the served model from one or more fine-tuned encoders: calibrated, measured, the
weights they share stored once. ``data.py`` is the three data sets as frames (numpy and
pandas only, so retraining a head uses it without torch); ``network.py`` the network and
its tokenizer; ``export.py`` the ONNX export and the reports. The helpers these modules
share stay inside the package.
"""
from sentiment_clf.training.finetune.data import (
           IGNORE,
           hate_frames,
           question_frames,
           sst_frames,
           sst_to_plain,
           text_frame,
)
from sentiment_clf.training.finetune.export import ordinary_texts
from sentiment_clf.training.finetune.release_model import release
from sentiment_clf.training.finetune.train import Settings, build_accurate

__all__ = ["IGNORE", "Settings", "build_accurate", "hate_frames", "ordinary_texts", "question_frames", "release",
           "sst_frames", "sst_to_plain", "text_frame"]
