"""The service's app plus one constant-JSON route, for bench/compare_mlserver.py.

Served with the same gunicorn settings as the service, ``GET /constant`` shows
what a request costs without any model work.
"""
from sentiment_clf.app import create_app as create_service


def create_app():
    app = create_service()
    app.add_url_rule("/constant", "constant", lambda: {"prediction": "Negative", "confidence": 0.9})
    return app
