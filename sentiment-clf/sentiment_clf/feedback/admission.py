"""The storage side of the learning decision, made once per answer inside its write
transaction (:meth:`Storage.add_feedback <sentiment_clf.feedback.store.Storage.add_feedback>`):
the client's rate limit, its learning budget, duplicates and Idempotency-Keys.

Every worker of every server reads the decision from the database (the ``learned``
column), so they agree, and none keeps every answer in memory to make it.
"""
from __future__ import annotations

import hashlib
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from limits import RateLimitItem
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from sentiment_clf.errors import IdempotencyKeyReused, RateLimited
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.serving.text import tokenize

logger = logging.getLogger(__name__)


class Stored(NamedTuple):
    """What :meth:`Storage.add_feedback` did: the row's id, whether this call stored it
    (False for a retry), whether it is learned online and, if not, why (a key of
    ``trust.NOT_LEARNED``)."""

    id: int
    created: bool
    learned: bool
    reason: str | None = None


def learn_key(model: str, text: str, label: str) -> str:
    """What makes two answers the same for learning: the model, the tokenized text
    (case and spacing do not count) and the label, hashed."""
    return hashlib.sha256("\x1f".join((model, " ".join(tokenize(text)), label)).encode("utf-8")).hexdigest()


def scoped_request_key(client: str | None, request_key: str) -> str:
    """What is stored of an Idempotency-Key: a hash of it with the client that sent it, so a
    key names one client's answer only (another client's same key is another answer, and
    cannot reveal or block this one) and the key itself is never stored."""
    return hashlib.sha256(f"{client or ''}\x1f{request_key}".encode()).hexdigest()


def stored_before(conn: Connection, feedback: Table, request_key: str, client: str | None, model: str, text: str,
                  label: str) -> Stored | None:
    """The answer ``client`` stored with ``request_key`` (a retry), if any;
    IdempotencyKeyReused if it is another answer (as the IETF Idempotency-Key draft says: a 422)."""
    found = conn.execute(select(feedback.c.id, feedback.c.model, feedback.c.text, feedback.c.label,
                                feedback.c.learned).where(
        feedback.c.request_key == scoped_request_key(client, request_key))).one_or_none()
    if found is None:
        return None
    if (found.model, found.text, found.label) != (model, text, label):
        raise IdempotencyKeyReused(
            f"the Idempotency-Key {request_key!r} was already used for another answer (a different "
            "model, query or label); use a new key for a new answer")
    return Stored(int(found.id), False, bool(found.learned), None if found.learned else "duplicate")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite keeps no zone: UTC


def check_rate(conn: Connection, feedback: Table, client: str, now: datetime, limit: RateLimitItem) -> None:
    """RateLimited if ``client`` stored more than the limit's amount in its window, the row
    just inserted included (inserted first, so the count runs under the write lock)."""
    window = timedelta(seconds=limit.get_expiry())
    count, oldest = conn.execute(select(func.count(), func.min(feedback.c.created_at)).where(
        feedback.c.client == client, feedback.c.created_at > now - window)).one()
    if count > limit.amount:
        raise RateLimited(str(limit), max(1, math.ceil((_aware(oldest) + window - now).total_seconds())))


def why_not_learned(conn: Connection, feedback: Table, folded, new_id: int, model: str, key: str,
                    client: str | None, now: datetime, trusted: bool, online: bool,
                    policy: LearningPolicy | None) -> str | None:
    """None if the new row is learned online, else why not (a key of ``trust.NOT_LEARNED``).
    ``folded``: the last id the serving retrained version was trained on (0 for none)."""
    if not online:
        return "retrain"
    earlier = conn.execute(select(feedback.c.id).where(
        feedback.c.model == model, feedback.c.learn_key == key, feedback.c.id != new_id,
        feedback.c.learned.is_(True) | (feedback.c.id <= folded)).limit(1)).first()
    if earlier is not None:
        return "duplicate"
    if trusted or client is None or policy is None:
        return None
    window = timedelta(seconds=policy.budget.get_expiry())
    spent = conn.execute(select(func.count()).where(
        feedback.c.client == client, feedback.c.learned.is_(True),
        feedback.c.created_at > now - window)).scalar_one()
    return None if spent < policy.budget.amount else "budget"
