"""Text in, probabilities out: the fast and accurate tiers' models, read from their saved
files. numpy, onnxruntime and tokenizers; no HTTP, no SQL.

The front door: :func:`predict` (``tiers.py``) answers for a model and its levels on a
tier; :class:`Classifier` (``classifier.py``) gives the same answers in any Python
process; ``loading.py`` reads the saved models; ``cooperative.py`` bounds a request's
work in time and lets the worker's other requests run.
"""
from sentiment_clf.serving.accurate import PUBLISHED_PREFIX, AccurateHead, load_accurate
from sentiment_clf.serving.classifier import Classifier
from sentiment_clf.serving.cooperative import budget, take_turn
from sentiment_clf.serving.decisions import Thresholds, parse_thresholds
from sentiment_clf.serving.loading import card_path, load_accurate_tier, load_models
from sentiment_clf.serving.tiers import VARIANTS, Lookup, answer, answers, predict

__all__ = ["PUBLISHED_PREFIX", "VARIANTS", "AccurateHead", "Classifier", "Lookup", "Thresholds", "answer",
           "answers", "budget", "card_path", "load_accurate", "load_accurate_tier", "load_models",
           "parse_thresholds", "predict", "take_turn"]
