"""Where the package finds its models and keeps its files, in a checkout and installed."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# An installed package carries the committed models inside it (sentiment_clf/models/); a
# checkout keeps them where the design card puts them, beside the package: sentiment-clf/
# holds app.py, lib/models/, lib/data/ and instance/.
INSTALLED = (PACKAGE_DIR / "models").is_dir()
CHECKOUT_DIR = PACKAGE_DIR.parent
MODELS_DIR = PACKAGE_DIR / "models" if INSTALLED else CHECKOUT_DIR / "lib" / "models"
# Installed, the service's own files go where Flask puts an installed package's instance
# folder (<prefix>/var/<name>-instance), never into site-packages.
INSTANCE_DIR = Path(sys.prefix) / "var" / "sentiment-clf-instance" if INSTALLED else CHECKOUT_DIR / "instance"
# Training reads its data from, and writes its models to, lib/: the checkout's, or for an
# installed package the current folder's (never the package's own models).
LIB_DIR = Path("lib") if INSTALLED else CHECKOUT_DIR / "lib"
