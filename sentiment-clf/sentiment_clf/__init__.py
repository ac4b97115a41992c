"""sentiment-clf: text classifiers served over a JSON REST API.

The package holds everything behind the design card's files (``app.py``,
``model.py``, ``build_model.py``, ``util.py`` beside it). Serving modules import
numpy but never pandas, scikit-learn, scipy or matplotlib; ``training`` does.
"""
