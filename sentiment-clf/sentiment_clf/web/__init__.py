"""The HTTP layer: Flask-RESTful resources, request parsing, middleware and the page.

``app.py`` (beside the package) lists the routes; everything they need is here.
Nothing below imports the model training code.
"""
