"""Users' answers: stored, admitted, learned online, checkpointed, retrained from. The
only package that speaks SQL.

The front door: :class:`FeedbackService` (``service.py``) takes an answer and says
whether the database takes answers; :class:`ModelRegistry` (``online.py``) is the models
a process serves, kept in step with the database; :class:`Storage` (``store.py``) is
the database, for the commands that retrain, list and roll back versions.
"""
from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.policy import (
    NOT_LEARNED,
    LearningPolicy,
    hash_key,
    new_key,
    parse_trusted_keys,
    parse_trusted_proxies,
)
from sentiment_clf.feedback.service import Client, FeedbackService
from sentiment_clf.feedback.store import Storage, Stored, default_url

__all__ = ["NOT_LEARNED", "Client", "FeedbackService", "LearningPolicy", "ModelRegistry", "Storage", "Stored",
           "default_url", "hash_key", "new_key", "parse_trusted_keys", "parse_trusted_proxies"]
