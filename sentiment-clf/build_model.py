"""Train, evaluate and save the served models; retrain them with feedback.

The code is the package's (``sentiment_clf/training/build.py``), the same that
``sentiment-clf train``, ``finetune`` and ``retrain`` run; this file is the checkout's
entry point::

    python sentiment-clf/build_model.py --data-dir lib/data/sst
    python sentiment-clf/build_model.py retrain --model sentiment
    python sentiment-clf/build_model.py --help
"""
import sys

from sentiment_clf.training.build import main, make_parser, parse_args

__all__ = ["main", "make_parser", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
