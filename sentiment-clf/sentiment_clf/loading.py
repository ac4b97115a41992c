"""Loading the served models from their folders (one per model in MODEL_DIR)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sentiment_clf.linear_model import LinearTextModel

logger = logging.getLogger(__name__)


def load_models(model_dir: Path, names: Iterable[str]) -> dict[str, LinearTextModel]:
    """Load each named model from ``model_dir/<name>``, its arrays memory-mapped (shared by
    every worker); raises ModelFileError naming the file if one cannot load."""
    models = {}
    for name in names:
        models[name] = LinearTextModel.load(Path(model_dir) / name)
        logger.info("loaded model %s version %s", name, models[name].version)
    return models
