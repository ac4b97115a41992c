"""Data loaders and helpers: the treebank, the Kaggle TSV, the tweets and the questions.
They live in the package (``sentiment_clf/training/datasets.py``); this file keeps the
name a checkout's users import::

    import util
    train = util.load_sst("lib/data/sst/train.txt")
"""
from sentiment_clf.training.datasets import (
    KAGGLE_COLUMNS,
    N_LABELS,
    DataFormatError,
    file_sha256,
    load_hatespeech,
    load_kaggle_tsv,
    load_questions,
    load_sst,
    parse_tree,
    sst_to_plain,
)

__all__ = ["KAGGLE_COLUMNS", "N_LABELS", "DataFormatError", "file_sha256", "load_hatespeech", "load_kaggle_tsv",
           "load_questions", "load_sst", "parse_tree", "sst_to_plain"]
