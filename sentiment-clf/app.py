"""The service, as a checkout serves it: ``create_app`` and its routes live in the package
(``sentiment_clf/app.py``); this file is what gunicorn's README command names::

    gunicorn --chdir sentiment-clf 'app:create_app()'
"""
from sentiment_clf.app import add_pages, add_routes, create_app

__all__ = ["add_pages", "add_routes", "create_app"]
