"""Loading the served models from their folders (one per model in MODEL_DIR)."""
from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def load_models(model_dir: Path, names) -> dict:
    """Load each named model from ``model_dir/<name>``; fails loudly if one cannot load."""
    from model import NLPModel  # temporary: replaced by the serving model

    models = {}
    for name in names:
        models[name] = NLPModel.load(Path(model_dir) / name)
        logger.info("loaded model %s version %s", name, models[name].manifest_["version"])
    return models
