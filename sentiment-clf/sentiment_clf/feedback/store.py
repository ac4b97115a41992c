"""Durable storage: user feedback, published model versions and which version serves.

One SQL database, through SQLAlchemy Core: a SQLite file by default (WAL mode,
synchronous=FULL), PostgreSQL when the URL says so. The database is the source
of truth: every worker and every server rebuilds its models from it.

The tables, and the upgrades of an older schema, are in ``schema.py``; the decision
made inside an answer's write (rate, budget, duplicates, idempotency) in ``admission.py``.

Feedback ids grow in commit order (PostgreSQL inserts take a transaction lock),
so a reader that has seen every id up to N never misses a later commit below N.

Every call is bounded: it answers, or raises a ``SQLAlchemyError`` (the service's JSON
503), within ``timeout`` seconds. PostgreSQL gets a connect timeout, TCP keepalives and
a statement and lock timeout; under gevent a call still waiting after ``timeout``
seconds (a hung server or a partition keeps the socket open and silent) is cut
(:class:`DatabaseTimeout`) and its connection thrown away. SQLite waits for another
writer's lock in short C waits and cooperative sleeps between them, so a held lock
stalls the request that needs it and not the whole worker; a connection SQLite opened
read-only (the file was, for a moment) is thrown away at its first refused write, so
the next one opens the file as it is now. SQLAlchemy's errors never carry the
statement's parameters (an answer's text, a client, a key) into a log.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from sentiment_clf.feedback import admission
from sentiment_clf.feedback.admission import IdempotencyKeyReused, Stored  # noqa: F401 - the storage API names them
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.feedback.schema import (
    SCHEMA_VERSION,
    activations,
    feedback,
    health_probe,
    metadata,
    model_versions,
    schema_info,
    upgrade_to_2,
)
from sentiment_clf.serving.cooperative import time_bound

logger = logging.getLogger(__name__)

# Any constant: the key of the PostgreSQL advisory lock that orders feedback inserts.
_FEEDBACK_LOCK = 727_001
DEFAULT_TIMEOUT = 5.0  # seconds a database call may take (DATABASE_TIMEOUT)
# SQLite's own wait for a lock, in C (the worker's other requests wait with it); longer
# waits are these, repeated with cooperative sleeps between them.
SQLITE_BUSY_MS = 20
Result = TypeVar("Result")


class DatabaseTimeout(SQLAlchemyError):
    """The database did not answer a call within the storage's timeout."""

@dataclass(frozen=True)
class FeedbackRow:
    id: int
    model: str
    text: str
    label: str
    prediction: str
    model_version: str
    created_at: datetime
    learned: bool = True
    learn_key: str = ""
    client: str | None = None


@dataclass(frozen=True)
class PublishedVersion:
    model: str
    version: str
    manifest: dict
    arrays: bytes
    feedback_upto: int


def default_url(data_dir) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'feedback.sqlite'}"


def _now() -> datetime:
    return datetime.now(UTC)


class Storage:
    """The feedback database. ``url`` is a SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``);
    ``timeout``: the seconds any one call may take (the service's DATABASE_TIMEOUT; the
    command line's retrain reads more and allows more)."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT):
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.dialect = parsed.get_backend_name()
        self.timeout = float(timeout)
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = _postgresql_bounds(self.timeout) if self.dialect == "postgresql" else {}
        self.engine: Engine = create_engine(parsed, pool_pre_ping=True, hide_parameters=True,
                                            connect_args=connect_args)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "handle_error", _discard_read_only)
        self.url = parsed.render_as_string(hide_password=True)
        try:
            self._create_schema()
        except Exception:  # a database it must refuse, or cannot reach: no connection left open
            self.engine.dispose()
            raise
        # gunicorn forks its workers after the app (and this pool) is made: a child
        # must not use its parent's connections, so it starts with an empty pool.
        engine = weakref.ref(self.engine)

        def empty_pool() -> None:
            if (alive := engine()) is not None:
                alive.dispose(close=False)

        os.register_at_fork(after_in_child=empty_pool)

    # -- bounded calls ----------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self, write: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction when ``write``) for one call, cut after ``timeout``
        seconds; one the cut interrupted is thrown away, never returned to the pool."""
        with time_bound(self.timeout, DatabaseTimeout(
                f"the database did not answer within {self.timeout:g} s", None, None)):
            conn = self.engine.connect()
            try:
                if write:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
            except DatabaseTimeout:
                conn.invalidate()  # in the middle of the protocol: closed, not reused
                raise
            finally:
                conn.close()

    def call(self, work: Callable[[Connection], Result], write: bool = False) -> Result:
        """``work(connection)`` on a connection of its own (in a transaction when ``write``),
        bounded; on SQLite, a call that finds another writer holding the lock tries again
        after a cooperative sleep, until ``timeout`` seconds have passed. Every statement
        goes through here (the checkpoints' too)."""
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                with self._connection(write) as conn:
                    return work(conn)
            except OperationalError as exc:
                if not _locked(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # gevent: the worker serves others meanwhile
            pause = min(2 * pause, 0.05)

    def _create_schema(self) -> None:
        # Workers start together: on a new database several may try to create the
        # tables at once. PostgreSQL serializes them with a lock; on SQLite the
        # loser gets "already exists" (or waits for the lock) and tries again,
        # finding the tables made.
        def create(conn: Connection) -> int | None:
            if self.dialect == "postgresql":
                conn.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEEDBACK_LOCK + 1})
            metadata.create_all(conn)
            found = conn.execute(select(schema_info.c.version)).scalar()
            if found is None:
                conn.execute(insert(schema_info).values(id=1, version=SCHEMA_VERSION))
            elif found == 1:
                upgrade_to_2(conn, self.dialect, feedback)
                conn.execute(update(schema_info).values(version=SCHEMA_VERSION))
                found = SCHEMA_VERSION
            return found

        for attempt in range(5):
            try:
                return self._check_schema_version(self.call(create, write=True))
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _check_schema_version(self, found: int | None) -> None:
        if found is not None and found > SCHEMA_VERSION:
            raise RuntimeError(f"{self.url}: schema version {found} is newer than this code "
                               f"({SCHEMA_VERSION}); upgrade sentiment-clf")

    def dispose(self) -> None:
        self.engine.dispose()

    # -- feedback -------------------------------------------------------------

    def add_feedback(self, *, model: str, text: str, label: str, prediction: str, model_version: str,
                     request_key: str | None = None, client: str | None = None, trusted: bool = False,
                     online: bool = True, policy: LearningPolicy | None = None) -> Stored:
        """Store one answer durably and decide, once, whether it is learned online.

        With a ``request_key`` this ``client`` already stored (a retry of the same
        request), nothing is added and the first row comes back with ``created`` False;
        the same key with another model, text or label raises IdempotencyKeyReused. A
        key is the client's own: stored hashed with it (``admission.scoped_request_key``).
        With a ``client`` and a ``policy``, a client over its rate limit raises
        RateLimited (nothing stored) and its answers beyond its learning budget are
        stored unlearned, unless it is ``trusted``. ``online`` False: the model
        learns only by retraining. Decisions are serialized (an advisory lock on
        PostgreSQL, SQLite's write lock taken by the insert before any count).
        """
        key, now = admission.learn_key(model, text, label), _now()
        scoped_key = None if request_key is None else admission.scoped_request_key(client, request_key)
        row = {"model": model, "text": text, "label": label, "prediction": prediction,
               "model_version": model_version, "request_key": scoped_key, "created_at": now,
               "client": client, "learned": False, "learn_key": key}
        def store(conn: Connection) -> Stored:
            if self.dialect == "postgresql":
                conn.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEEDBACK_LOCK})
            primary_key = conn.execute(insert(feedback).values(**row)).inserted_primary_key
            assert primary_key is not None  # None only for an insert of several rows
            new_id = int(primary_key[0])
            if client is not None and policy is not None and policy.rate_limit is not None:
                admission.check_rate(conn, feedback, client, now, policy.rate_limit)  # raises: the insert is undone
            reason = admission.why_not_learned(conn, feedback, _folded_upto(model), new_id, model, key, client,
                                               now, trusted, online, policy)
            if reason is None:
                conn.execute(update(feedback).where(feedback.c.id == new_id).values(learned=True))
            return Stored(new_id, True, reason is None, reason)

        try:
            return self.call(store, write=True)
        except IntegrityError:
            if request_key is None:
                raise
            found = self.call(lambda conn: admission.stored_before(conn, feedback, request_key, client, model, text,
                                                                   label))
            if found is None:
                raise
            return found

    def feedback_after(self, after_id: int = 0, *, model: str | None = None,
                       upto_id: int | None = None, learned_only: bool = False) -> list[FeedbackRow]:
        """Feedback with ``after_id < id <= upto_id``, oldest first; only rows learned
        online with ``learned_only``."""
        query = select(feedback).where(feedback.c.id > after_id).order_by(feedback.c.id)
        if model is not None:
            query = query.where(feedback.c.model == model)
        if upto_id is not None:
            query = query.where(feedback.c.id <= upto_id)
        if learned_only:
            query = query.where(feedback.c.learned.is_(True))
        return self.call(lambda conn: [FeedbackRow(r.id, r.model, r.text, r.label, r.prediction, r.model_version,
                                                    r.created_at, r.learned, r.learn_key, r.client)
                                        for r in conn.execute(query)])

    def get_feedback(self, feedback_id: int) -> FeedbackRow | None:
        rows = self.feedback_after(feedback_id - 1, upto_id=feedback_id)
        return rows[0] if rows else None

    def feedback_counts(self) -> dict[str, int]:
        query = select(feedback.c.model, func.count()).group_by(feedback.c.model)
        return self.call(lambda conn: dict(conn.execute(query).all()))

    def last_feedback_id(self) -> int:
        return self.call(lambda conn: int(conn.execute(select(func.max(feedback.c.id))).scalar() or 0))

    def probe_write(self) -> None:
        """Write one row in a transaction of its own (and read feedback's last id); raises
        SQLAlchemyError when the database cannot take a write, as when its disk is full."""
        def probe(conn: Connection) -> None:
            conn.execute(select(func.max(feedback.c.id))).scalar()
            if not conn.execute(update(health_probe).where(health_probe.c.id == 1).values(checked_at=_now())).rowcount:
                conn.execute(insert(health_probe).values(id=1, checked_at=_now()))

        self.call(probe, write=True)

    # -- model versions -------------------------------------------------------

    def publish(self, model: str, manifest: dict, arrays: bytes, feedback_upto: int) -> None:
        """Store a version of ``model`` (unless stored already) and make it the serving one."""
        def store(conn: Connection) -> None:
            stored = conn.execute(select(model_versions.c.id).where(
                model_versions.c.model == model, model_versions.c.version == manifest["version"])).scalar()
            if stored is None:
                conn.execute(insert(model_versions).values(
                    model=model, version=manifest["version"], manifest=json.dumps(manifest),
                    arrays=arrays, feedback_upto=feedback_upto, created_at=_now()))
            conn.execute(insert(activations).values(model=model, version=manifest["version"],
                                                    rolled_back=False, created_at=_now()))

        self.call(store, write=True)

    def active_versions(self) -> dict[str, str]:
        """The serving version of each model that has a published one (cheap: no blobs)."""
        newest = (select(activations.c.model, func.max(activations.c.id).label("id"))
                  .where(activations.c.rolled_back.is_(False)).group_by(activations.c.model).subquery())
        query = select(activations.c.model, activations.c.version).join(
            newest, activations.c.id == newest.c.id)
        return self.call(lambda conn: dict(conn.execute(query).all()))

    def load_version(self, model: str, version: str) -> PublishedVersion:
        row = self.call(lambda conn: conn.execute(select(model_versions).where(
            model_versions.c.model == model, model_versions.c.version == version)).one())
        return PublishedVersion(row.model, row.version, json.loads(row.manifest), bytes(row.arrays),
                                int(row.feedback_upto))

    def versions(self, model: str) -> list[dict]:
        """Published versions of ``model``, oldest first, without their arrays."""
        active = self.active_versions().get(model)
        rows = self.call(lambda conn: conn.execute(
            select(model_versions.c.version, model_versions.c.manifest, model_versions.c.feedback_upto,
                   model_versions.c.created_at).where(model_versions.c.model == model)
            .order_by(model_versions.c.id)).all())
        return [{"version": r.version, "feedback_upto": int(r.feedback_upto),
                 "created_at": r.created_at.isoformat(), "active": r.version == active,
                 "metrics": json.loads(r.manifest).get("metrics", {})} for r in rows]

    def rollback(self, model: str) -> str | None:
        """Stop serving the current published version of ``model``.

        Returns the version that serves now, or None for the base model on disk.
        Raises ``LookupError`` when the base model already serves.
        """
        def roll_back(conn: Connection) -> None:
            current = conn.execute(select(activations.c.id).where(
                activations.c.model == model, activations.c.rolled_back.is_(False))
                .order_by(activations.c.id.desc()).limit(1).with_for_update()).scalar()
            if current is None:
                raise LookupError(f"{model}: the base model serves already; nothing to roll back")
            conn.execute(update(activations).where(activations.c.id == current).values(rolled_back=True))

        self.call(roll_back, write=True)
        return self.active_versions().get(model)


def _folded_upto(model: str):
    """The last feedback id the serving retrained version of ``model`` was trained on (0 for
    the base model), as a scalar subquery."""
    serving = (select(activations.c.version).where(activations.c.model == model, activations.c.rolled_back.is_(False))
               .order_by(activations.c.id.desc()).limit(1).scalar_subquery())
    return select(func.coalesce(func.max(model_versions.c.feedback_upto), 0)).where(
        model_versions.c.model == model, model_versions.c.version == serving).scalar_subquery()


def _postgresql_bounds(timeout: float) -> dict:
    """libpq's settings that bound a PostgreSQL connection: a connect timeout, TCP
    keepalives (a peer gone silent is noticed in about 10 s) and the server's statement
    and lock timeouts (a query or a lock wait longer than ``timeout`` is cancelled)."""
    milliseconds = max(1, math.ceil(timeout * 1000))
    return {"connect_timeout": max(1, math.ceil(timeout)), "keepalives": 1, "keepalives_idle": 5,
            "keepalives_interval": 2, "keepalives_count": 3,
            "options": f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"}


def _locked(exc: OperationalError) -> bool:
    """Whether SQLite refused for a lock another connection holds (worth another try)."""
    return isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)


def _discard_read_only(context) -> None:
    """SQLAlchemy's error hook: a connection SQLite opened read-only (the file could not be
    opened for writing at that moment) counts as lost, so the pool drops it, and every
    other pooled connection (opened at the same moment, likely the same), instead of
    refusing writes with it until a restart."""
    if isinstance(context.original_exception, sqlite3.OperationalError) \
            and "readonly" in str(context.original_exception):
        context.is_disconnect = True


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer 201, power loss included.
    cursor.execute("PRAGMA synchronous=FULL")
    # SQLite's wait for another writer's lock sleeps in C, and so would the whole worker:
    # short here, and Storage.call waits longer between tries, cooperatively.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()
