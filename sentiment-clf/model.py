"""NLPModel: the estimator training fits and saves (TF-IDF features and a linear
classifier). It lives in the package (``sentiment_clf/training/model.py``); this file
keeps the name a checkout's users and notebooks import::

    from model import NLPModel
"""
from sentiment_clf.training.model import (
    CLASSIFIERS,
    CalibratedLinear,
    ModelFileError,
    NLPModel,
    clean_tweet,
    tokenize,
    tokenize_tweet,
)

__all__ = ["CLASSIFIERS", "CalibratedLinear", "ModelFileError", "NLPModel", "clean_tweet", "tokenize",
           "tokenize_tweet"]
