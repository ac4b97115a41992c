"""Published versions, as the commands list them and roll them back (``sentiment-clf
versions`` and ``rollback``, and ``build_model.py``'s): the database only, no training
library, so they run where the service runs.
"""
from __future__ import annotations

from sentiment_clf.feedback import Storage


def version_lines(storage: Storage, models: list[str], variant: str) -> list[str]:
    """What ``versions`` prints: each model's versions, the serving one marked with ``*``."""
    from sentiment_clf.serving import PUBLISHED_PREFIX

    lines = []
    for name in models:
        stored = PUBLISHED_PREFIX + name if variant == "accurate" else name
        rows = storage.versions(stored)
        lines.append(f"{stored}: {'' if any(row['active'] for row in rows) else '* '}base model from lib/models")
        for row in rows:
            accuracy = row["metrics"].get("test_accuracy")
            lines.append(f"{stored}: {'* ' if row['active'] else ''}{row['version']}  {row['created_at']}  "
                         f"feedback up to id {row['feedback_upto']}"
                         + (f"  test accuracy {accuracy:.2%}" if accuracy is not None else ""))
    return lines


def roll_back(storage: Storage, model: str, variant: str) -> tuple[int, str]:
    """Serve the version served before; (exit code, the line to print)."""
    from sentiment_clf.serving import PUBLISHED_PREFIX

    try:
        now = storage.rollback(PUBLISHED_PREFIX + model if variant == "accurate" else model)
    except LookupError as exc:
        return 1, str(exc)
    return 0, f"{model}: now serving {now or 'the base model shipped in lib/models'}"
