"""Learning from feedback: a served model is a base model plus the feedback stored since.

The database is the source of truth. Each process holds a :class:`ModelRegistry`
that, at most ``sync_interval`` seconds before it answers, reads what is new in
the database: a different serving version (published by ``build_model.py
retrain``, or a rollback) and feedback rows it has not learned yet. Every worker
of every server that reads the same database therefore converges to the same
models, and a restart rebuilds them from the stored feedback.

The learning rule, applied in feedback-id order:

* an answer teaches the model one example: its text with the label the user gave,
  added to the naive Bayes counts with the fitted vocabulary (exact, see
  :meth:`LinearTextModel.learn <sentiment_clf.linear_model.LinearTextModel.learn>`);
* a (text, label) pair is learned once per model, whatever the number of times it
  is sent: the text is compared after tokenizing, so case and spacing do not make
  a new one. A flood of the same answer cannot outweigh the training data.

Invariant (tested): replaying all stored feedback on the base model gives the
same predictions as fitting the classifier on the base data plus the learned
feedback, with the base model's vectorizer.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import SQLAlchemyError

from sentiment_clf.linear_model import LinearTextModel
from sentiment_clf.model_files import ModelFileError
from sentiment_clf.storage import FeedbackRow, Storage
from sentiment_clf.text import tokenize

logger = logging.getLogger(__name__)


def feedback_key(text: str, label: str) -> tuple[str, str]:
    """What makes two answers the same for learning: the tokenized text and the label."""
    return " ".join(tokenize(text)), label


def learnable(rows, seen: set) -> list[FeedbackRow]:
    """The rows the learning rule keeps, in order; adds their keys to ``seen``."""
    kept = []
    for row in rows:
        key = feedback_key(row.text, row.label)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


@dataclass(frozen=True)
class OnlineModel:
    """One served model. Never changed in place: :meth:`learn` returns a new one,
    so a request that holds it keeps a consistent model."""

    name: str
    model: LinearTextModel
    base_version: str  # the shipped or published version the feedback builds on
    published: str | None  # the published version serving, None for the shipped one
    applied_upto: int  # every feedback id up to this one has been considered
    learned: int = 0  # feedback rows learned on top of the base
    last_learned_id: int = 0
    seen: frozenset = field(default_factory=frozenset, repr=False)

    @property
    def version(self) -> str:
        if not self.learned:
            return self.base_version
        return f"{self.base_version}+fb{self.last_learned_id}"

    def learn(self, rows: list[FeedbackRow], upto: int) -> OnlineModel:
        """Learn this model's ``rows`` (ids above ``applied_upto``); all ids to ``upto`` are seen."""
        seen = set(self.seen)
        new = learnable([r for r in rows if r.model == self.name and r.id > self.applied_upto], seen)
        if not new or not self.model.supports_partial_fit:  # the others learn by retraining
            return replace(self, applied_upto=max(upto, self.applied_upto))
        updated = self.model.learn([r.text for r in new], [r.label for r in new])
        return replace(self, model=updated, applied_upto=max(upto, self.applied_upto),
                       learned=self.learned + len(new), last_learned_id=new[-1].id,
                       seen=frozenset(seen))


class ModelRegistry:
    """The models a process serves, kept in step with the database."""

    def __init__(self, base_models: dict[str, LinearTextModel], storage: Storage, sync_interval: float = 0.5):
        self.base_models = base_models
        self.storage = storage
        self.sync_interval = sync_interval
        self._served: dict[str, OnlineModel] = {}
        self._lock = threading.Lock()
        self._last_sync = float("-inf")
        self.sync()

    def get(self, name: str) -> OnlineModel:
        """The model as of at most ``sync_interval`` seconds ago (KeyError if not served)."""
        self._sync_if_due()
        return self._served[name]

    def served(self) -> dict[str, OnlineModel]:
        self._sync_if_due()
        return dict(self._served)

    def _sync_if_due(self) -> None:
        if time.monotonic() - self._last_sync >= self.sync_interval:
            self.sync()

    def sync(self) -> None:
        """Read new versions and feedback from the database and learn them.

        If the database cannot be reached, the models stay as they are and the
        next request tries again.
        """
        with self._lock:
            try:
                self._sync()
            except (SQLAlchemyError, ModelFileError):
                logger.exception("could not sync models with the database; serving them as they are")
            self._last_sync = time.monotonic()

    def _sync(self) -> None:
        active = self.storage.active_versions()
        for name in self.base_models:
            current = self._served.get(name)
            if current is None or current.published != active.get(name):
                self._served[name] = self._start(name, active.get(name))
        after = min(m.applied_upto for m in self._served.values())
        rows = self.storage.feedback_after(after)
        if rows:
            upto = rows[-1].id
            self._served = {name: m.learn(rows, upto) for name, m in self._served.items()}

    def _start(self, name: str, published: str | None) -> OnlineModel:
        """The base a model's feedback builds on: the shipped model, or a published version."""
        if published is None:
            model, upto = self.base_models[name], 0
            base_version = model.manifest_.get("version", "unsaved")
        else:
            stored = self.storage.load_version(name, published)
            model = LinearTextModel.loads(stored.manifest, stored.arrays,
                                          source=f"{self.storage.url}: {name} version {published}")
            upto, base_version = stored.feedback_upto, published
        # Feedback folded into a published version counts as learned already.
        seen: set = set()
        learnable(self.storage.feedback_after(0, model=name, upto_id=upto), seen)
        logger.info("serving %s version %s (feedback up to id %d included)", name, base_version, upto)
        return OnlineModel(name, model, base_version, published, applied_upto=upto, seen=frozenset(seen))
