"""sentiment-clf: text classifiers served over a JSON REST API.

The package holds everything behind the design card's files (``app.py``,
``model.py``, ``build_model.py``, ``util.py`` beside it). Serving modules import
numpy but never pandas, scikit-learn, scipy or matplotlib; ``training`` does.

``from sentiment_clf import Classifier``: the served models in a Python process, with
the HTTP API's answers (``serving/classifier.py``). It is imported on first use, so the
rest of the package does not pay for it.
"""
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Classifier":
        from sentiment_clf.serving.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'sentiment_clf' has no attribute {name!r}")
