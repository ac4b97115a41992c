"""The front door of feedback: store a user's answer and learn it, and say whether the
database can take answers.

The web hands over what it knows of the request (the model, the text, the label, the
answer the user was shown, the client and its Idempotency-Key); everything between
that and a committed, learned answer happens here and below (``store.py`` writes it
and decides whether it is learned, ``online.py`` learns it). Failures come out as the
service's errors (``sentiment_clf.errors``), never as the database driver's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sentiment_clf.errors import StorageUnavailable
from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.feedback.store import Storage, Stored

logger = logging.getLogger(__name__)


def _first_line(exc: BaseException) -> str:
    # No traceback and one line: a database's message may quote what was sent.
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


@dataclass(frozen=True)
class Client:
    """Who sent an answer: an opaque id (``"key:<name>"`` or ``"ip:<hash>"``) and whether
    its answers are learned without a budget."""

    id: str
    trusted: bool = False


class FeedbackService:
    """Users' answers in, stored and learned; one per app."""

    def __init__(self, registry: ModelRegistry, storage: Storage, policy: LearningPolicy | None = None):
        self.registry = registry
        self.storage = storage
        self.policy = policy

    def submit(self, *, model: str, text: str, label: str, prediction: str, version: str,
               key: str | None = None, client: Client | None = None) -> Stored:
        """Store the answer ``label`` for ``text`` to ``model``, with the ``prediction`` of
        model ``version`` the user was shown; learn it here at once if it is to be learned
        online (the database decides, ``policy.py``).

        A retry with the same ``key`` from the same client returns the first answer's row.
        Raises IdempotencyKeyReused (the key with another answer), RateLimited (the client
        sent its limit) or StorageUnavailable (nothing was stored).
        """
        online = self.registry.get(model)
        try:
            stored = self.storage.add_feedback(
                model=model, text=text, label=label, prediction=prediction, model_version=version,
                request_key=key, client=client.id if client else None, trusted=bool(client and client.trusted),
                online=online.model.supports_partial_fit, policy=self.policy)
        except SQLAlchemyError as exc:
            logger.error("could not store feedback (%s)", _first_line(exc))
            raise StorageUnavailable("the feedback could not be stored; nothing was saved, try again") from None
        if stored.learned:
            self.registry.sync()
        return stored

    def stored_counts(self) -> dict[str, int]:
        """The answers stored for each model; StorageUnavailable when the database does not answer."""
        try:
            return self.storage.feedback_counts()
        except SQLAlchemyError as exc:
            logger.error("could not count the stored answers (%s)", _first_line(exc))
            raise StorageUnavailable("the database is not answering, so the stored answers cannot be counted; "
                                     "try again", retry_after=1) from None

    def ready_problem(self) -> str | None:
        """None when the database takes a write now (a probe: one row of ``health_probe``
        updated in its own transaction), else why answers cannot be stored."""
        for attempt in range(2):  # twice: two workers' first probes may race to insert the row
            try:
                self.storage.probe_write()
                return None
            except IntegrityError:
                if attempt:
                    break
            except SQLAlchemyError as exc:  # refused, unreachable or silent past its timeout: no second wait
                logger.error("readiness check: the database does not take writes (%s)", _first_line(exc))
                break
        return "the database does not take writes, so feedback cannot be stored"
