"""gunicorn's settings for the service, read when gunicorn starts in the repository's root
(it looks for this file before it applies ``--chdir sentiment-clf``). They live in the
package, with the hooks they install: ``sentiment-clf/sentiment_clf/server/gunicorn_config.py``.
"""
from sentiment_clf.server.gunicorn_config import *  # noqa: F403 - gunicorn reads the names it holds
