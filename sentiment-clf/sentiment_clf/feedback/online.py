"""Learning from feedback: a served model is a base model plus the feedback stored since.

The database is the source of truth. Each process holds a :class:`ModelRegistry`
that reads what is new in the database every ``sync_interval`` seconds: a different
serving version (published by ``build_model.py retrain``, or a rollback) and feedback
rows it has not learned yet. In a served worker it does so in the background
(:meth:`ModelRegistry.start_background`, which the gunicorn hooks call: server/gunicorn_config.py), so no request
waits on the database for a model: while the database is down or hung the models serve
as they are, and catch up when it answers again. (A process without that loop, a test's
app, reads before a request when ``sync_interval`` has passed, but never writes then: a
request that only reads, a GET, writes nothing to the database; checkpoints are written
by the background loop, at start and after a stored answer.) Every worker of every
server that reads the same database therefore converges to the same models, and a
restart rebuilds them from the stored feedback.

The learning rule, applied in feedback-id order: an answer that was stored as
learned (``feedback.learned``, decided once when it was stored, see
:mod:`sentiment_clf.feedback.policy`) teaches the model one example: its text with the label
the user gave, added to the naive Bayes counts with the fitted vocabulary (exact,
see :meth:`LinearTextModel.learn <sentiment_clf.serving.linear_model.LinearTextModel.learn>`).
The decision learns a (model, tokenized text, label) once, whatever the number of
times it is sent (a flood of the same answer cannot outweigh the training data),
and only so many answers of one client (its learning budget); the rest wait for a
retrain. A process reads only the learned rows, and keeps none of their texts.

Bounded replay: a start does not replay every answer. The learned state (the
learned terms' counts, a few bytes a term, no texts) is checkpointed in the
database every ``checkpoint_every`` learned answers (:mod:`sentiment_clf.feedback.checkpoints`);
a process starts from the newest checkpoint of its base version and replays the
learned answers after it, a window of ids at a time.

Invariant (tested): replaying the stored feedback on the base model gives the
same predictions as fitting the classifier on the base data plus the feedback
stored as learned, with the base model's vectorizer and temperature.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

from sqlalchemy.exc import SQLAlchemyError

from sentiment_clf.errors import NotServed
from sentiment_clf.feedback import checkpoints
from sentiment_clf.feedback.store import FeedbackRow, Storage
from sentiment_clf.serving.accurate import PUBLISHED_PREFIX, AccurateHead
from sentiment_clf.serving.formats import ModelFileError
from sentiment_clf.serving.linear_model import LinearTextModel

logger = logging.getLogger(__name__)

# Learned answers between two checkpoints: the CHECKPOINT_EVERY setting's default (config.py).
CHECKPOINT_EVERY = 1000


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def learnable(rows) -> list[FeedbackRow]:
    """The rows the learning rule learns online, in order: those stored as learned."""
    return [row for row in rows if row.learned]


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
    # Every fold_every learned answers the model folds what it learned (the state a
    # checkpoint stores): at the same answers in every process, so all learn the same floats.
    fold_every: int = 1000
    folded_upto: int = 0  # the id of the last answer folded
    checkpointed: int = 0  # the answers learned in the newest checkpoint known

    @property
    def version(self) -> str:
        if not self.learned:
            return self.base_version
        return f"{self.base_version}+fb{self.last_learned_id}"

    def learn(self, rows: list[FeedbackRow], upto: int) -> OnlineModel:
        """Learn this model's ``rows`` (ids above ``applied_upto``); all ids to ``upto`` are seen."""
        new = learnable([r for r in rows if r.model == self.name and r.id > self.applied_upto])
        if not new or not self.model.supports_partial_fit:  # the others learn by retraining
            return replace(self, applied_upto=max(upto, self.applied_upto))
        model, learned, folded_upto = self.model, self.learned, self.folded_upto
        while new:
            room = self.fold_every - learned % self.fold_every  # answers until the next fold
            chunk, new = new[:room], new[room:]
            model, learned = model.learn([r.text for r in chunk], [r.label for r in chunk]), learned + len(chunk)
            if learned % self.fold_every == 0:
                model, folded_upto = model.fold(), chunk[-1].id
        return replace(self, model=model, applied_upto=max(upto, self.applied_upto), learned=learned,
                       last_learned_id=chunk[-1].id, folded_upto=folded_upto)

    @property
    def folded(self) -> int:
        """The answers learned up to the last fold."""
        return self.learned - self.learned % self.fold_every


class ModelRegistry:
    """The models a process serves, kept in step with the database."""

    # Feedback ids read at once while a start catches up (bounds what it holds in memory).
    REPLAY_WINDOW = 10_000

    def __init__(self, base_models: dict[str, LinearTextModel], storage: Storage, sync_interval: float = 0.5,
                 checkpoint_every: int = CHECKPOINT_EVERY, accurate: dict[str, AccurateHead] | None = None):
        self.base_models = base_models
        # The accurate tier's committed heads; a retrained head published to the database
        # (as "accurate:<name>") replaces one at the next sync, as a fast model's version does.
        self.accurate_base = dict(accurate or {})
        self._accurate = dict(self.accurate_base)
        self._refused: set[tuple[str, str | None]] = set()
        self.storage = storage
        self.sync_interval = sync_interval
        # Every process on one database must fold at the same answers (the app and the
        # commands pass the CHECKPOINT_EVERY setting): the same answers then give the same
        # floats everywhere.
        self.checkpoint_every = checkpoint_every
        self._served: dict[str, OnlineModel] = {}
        self._lock = threading.Lock()
        self._last_sync = float("-inf")
        self._background: threading.Thread | None = None
        self._failing = False  # the last sync failed (logged once until one succeeds)
        self.sync()

    def serving(self, name: str, variant: str = "fast") -> tuple[LinearTextModel | AccurateHead, str]:
        """The model that answers for ``name`` on tier ``variant`` now, and its version
        (``serving.predict``'s lookup); NotServed when that tier is not served here."""
        if variant == "accurate":
            try:
                head = self.accurate()[name]
            except KeyError:
                raise NotServed("the accurate tier is not served here (no accurate model was loaded)") from None
            return head, head.version
        online = self.get(name)
        return online.model, online.version

    def get(self, name: str) -> OnlineModel:
        """The model as of at most ``sync_interval`` seconds ago (KeyError if not served)."""
        self._sync_if_due()
        return self._served[name]

    def served(self) -> dict[str, OnlineModel]:
        self._sync_if_due()
        return dict(self._served)

    def accurate(self) -> dict[str, AccurateHead]:
        """The accurate tier's heads serving now, by model name (empty when none is loaded)."""
        self._sync_if_due()
        return self._accurate

    def _sync_if_due(self) -> None:
        if self._background is None and time.monotonic() - self._last_sync >= self.sync_interval:
            self.sync(checkpoint=False)  # on a request's path: read, never write

    def start_background(self) -> None:
        """Sync every ``sync_interval`` seconds from a thread of its own (a greenlet under
        gevent) from now on; requests no longer sync. Once per process (a forked worker
        starts its own)."""
        if self._background is None:
            self._background = threading.Thread(target=self._sync_forever, name="model-sync", daemon=True)
            self._background.start()

    def _sync_forever(self) -> None:
        while True:
            started = time.monotonic()
            self.sync()
            time.sleep(max(0.05, self.sync_interval - (time.monotonic() - started)))

    def sync(self, checkpoint: bool = True) -> None:
        """Read new versions and feedback from the database and learn them; then, with
        ``checkpoint``, store a checkpoint of what was learned when one is due.

        If the database cannot be reached (or does not answer within its timeout), the
        models stay as they are and the next sync tries again.
        """
        with self._lock:
            try:
                self._sync(checkpoint)
                if self._failing:
                    logger.warning("the database answers again; models synced")
                self._failing = False
            except (SQLAlchemyError, ModelFileError) as exc:
                if not self._failing:  # once per outage, not every half second
                    logger.error("could not sync models with the database; serving them as they are (%s: %s)",
                                 type(exc).__name__, _first_line(exc))
                self._failing = True
            self._last_sync = time.monotonic()

    def _sync(self, checkpoint: bool) -> None:
        active = self.storage.active_versions()
        for name, base in self.accurate_base.items():
            published = active.get(PUBLISHED_PREFIX + name)
            if self._accurate[name].published != published and (name, published) not in self._refused:
                try:
                    self._accurate = {**self._accurate, name: self._start_accurate(base, published)}
                except ModelFileError:  # the fast models sync on; this version is not tried again
                    logger.exception("accurate %s version %s refused; serving %s", name, published,
                                     self._accurate[name].version)
                    self._refused.add((name, published))
        for name in self.base_models:
            current = self._served.get(name)
            if current is None or current.published != active.get(name):
                self._served[name] = self._start(name, active.get(name))
        if not self._served:  # only accurate heads (a retrain of one)
            return
        after = min(m.applied_upto for m in self._served.values())
        upto = self.storage.last_feedback_id()  # first: a row committed later has a larger id
        if upto > after:
            rows = self.storage.feedback_after(after, upto_id=upto, learned_only=True)
            self._served = {name: m.learn(rows, upto) for name, m in self._served.items()}
        if checkpoint:
            self._served = {name: self._checkpoint_if_due(m) for name, m in self._served.items()}

    def _start_accurate(self, base: AccurateHead, published: str | None) -> AccurateHead:
        if published is None:
            logger.info("serving accurate %s version %s", base.name, base.version)
            return base
        stored = self.storage.load_version(PUBLISHED_PREFIX + base.name, published)
        head = base.retrained(stored.manifest, stored.arrays,
                              source=f"{self.storage.url}: accurate {base.name} version {published}")
        logger.info("serving accurate %s version %s", base.name, published)
        return head

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
        logger.info("serving %s version %s (feedback up to id %d included)", name, base_version, upto)
        return self._catch_up(OnlineModel(name, model, base_version, published, applied_upto=upto,
                                          fold_every=self.checkpoint_every))

    def _catch_up(self, online: OnlineModel) -> OnlineModel:
        """``online`` with what was learned since its base: the newest checkpoint, then
        the learned answers after it, a window of ids at a time."""
        end = self.storage.last_feedback_id()  # first: a row committed later has a larger id
        if not online.model.supports_partial_fit:  # it learns only by retraining
            return replace(online, applied_upto=max(end, online.applied_upto))
        found = checkpoints.load_newest(self.storage, online.name, online.base_version, online.model,
                                        after=online.applied_upto)
        if found is not None:
            online = replace(online, model=found.model, applied_upto=found.feedback_upto, learned=found.learned,
                             last_learned_id=found.last_learned_id, folded_upto=found.feedback_upto,
                             checkpointed=found.learned)
            logger.info("%s: started from a checkpoint of %d learned answers (feedback up to id %d)",
                        online.name, found.learned, found.feedback_upto)
        while online.applied_upto < end:
            upto = min(end, online.applied_upto + self.REPLAY_WINDOW)
            rows = self.storage.feedback_after(online.applied_upto, model=online.name, upto_id=upto,
                                               learned_only=True)
            online = online.learn(rows, upto)
        return online

    def _checkpoint_if_due(self, online: OnlineModel) -> OnlineModel:
        """Store a checkpoint of ``online``'s last fold (every ``checkpoint_every`` learned
        answers) unless one is stored already. A failure is logged: the model serves
        on, and a later sync tries again."""
        if online.folded <= online.checkpointed or checkpoints.base_identity(online.model) is None:
            return online
        try:
            stored = checkpoints.newest_learned(self.storage, online.name, online.base_version)
            if stored < online.folded:
                checkpoints.save(self.storage, online.name, online.base_version, online.model,
                                 feedback_upto=online.folded_upto, learned=online.folded,
                                 last_learned_id=online.folded_upto)
        except SQLAlchemyError:
            logger.exception("could not store a checkpoint of %s; it serves on", online.name)
            return online
        return replace(online, checkpointed=online.folded)
