"""Loading the served models from their folders (one per model in MODEL_DIR)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sentiment_clf.serving.accurate import MANIFEST_FILE, MAX_WINDOWS, AccurateHead, load_accurate
from sentiment_clf.serving.linear_model import LinearTextModel

ACCURATE_DIR = "accurate"  # the accurate tier's folder in MODEL_DIR

logger = logging.getLogger(__name__)


def load_models(model_dir: Path, names: Iterable[str]) -> dict[str, LinearTextModel]:
    """Load each named model from ``model_dir/<name>``, its arrays memory-mapped (shared by
    every worker); raises ModelFileError naming the file if one cannot load."""
    models = {}
    for name in names:
        models[name] = LinearTextModel.load(Path(model_dir) / name)
        logger.info("loaded model %s version %s", name, models[name].version)
    return models


def load_accurate_tier(model_dir: Path, *, threads: int = 1, max_batch: int = 32, max_wait: float = 0.0,
                       max_windows: int = MAX_WINDOWS) -> dict[str, AccurateHead]:
    """The accurate tier's heads from ``model_dir/accurate``, or none (with a warning) when
    that folder holds no model; raises ModelFileError if its files do not match the manifest."""
    directory = Path(model_dir) / ACCURATE_DIR
    if not (directory / MANIFEST_FILE).exists():
        logger.warning("no accurate model in %s: only the fast tier is served", directory)
        return {}
    heads = load_accurate(directory, threads=threads, max_batch=max_batch, max_wait=max_wait,
                          max_windows=max_windows)
    for name, head in heads.items():
        logger.info("loaded accurate model %s version %s", name, head.version)
    return heads


def card_path(model_dir: Path, name: str, variant: str) -> Path:
    """Where model ``name``'s card is written: in its folder (fast), or in the accurate
    model's ``cards/`` (``build_model.py cards`` writes both)."""
    if variant == "accurate":
        return Path(model_dir) / ACCURATE_DIR / "cards" / f"{name}.md"
    return Path(model_dir) / name / "MODEL_CARD.md"
