"""Who may teach the models how much: trusted API keys, and the per-client limits.

A client is either an operator's API key (``TRUSTED_API_KEYS``, stored as the
sha256 of the key, never the key) or an address (``web/clients.py``). Every
answer is stored; whether it is learned online is decided once, when it is stored
(:meth:`Storage.add_feedback <sentiment_clf.feedback.store.Storage.add_feedback>`):

* a client may send ``FEEDBACK_RATE_LIMIT`` answers (more: 429, nothing stored);
* an answer already learned, or folded into the serving retrained version, is not
  learned again;
* a trusted key's answers are learned at once;
* any other client's answers are learned while its learned answers within
  ``CLIENT_LEARNING_BUDGET``'s window are fewer than its amount; the rest wait for
  a retrain (whose accuracy gate decides) or a trusted client's confirmation.

Make a key with ``sentiment-clf new-key NAME`` (``cli.py``).
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass

from limits import RateLimitItem, parse

KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def hash_key(key: str) -> str:
    """What the settings hold for an API key: its sha256, in hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_trusted_keys(setting: str) -> dict[str, str]:
    """``"name:sha256hex,..."`` as ``{sha256hex: name}``; a malformed entry is a ValueError
    (which names the entry's position, never its content)."""
    keys: dict[str, str] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in setting.split(","))), start=1):
        name, _, digest = entry.partition(":")
        digest = digest.strip().lower()
        if not KEY_NAME.fullmatch(name.strip()) or not _SHA256.fullmatch(digest):
            raise ValueError(f"TRUSTED_API_KEYS entry {position} is not name:sha256hex "
                             "(make one with: python -m sentiment_clf.trust new-key NAME)")
        keys[digest] = name.strip()
    return keys


def parse_trusted_proxies(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.1,192.168.0.0/16,..."`` as networks; a malformed entry is a ValueError."""
    return tuple(ipaddress.ip_network(entry, strict=False)
                 for entry in filter(None, (e.strip() for e in setting.split(","))))


@dataclass(frozen=True)
class LearningPolicy:
    """The two per-client limits, as ``limits`` items (``"20 per minute"``)."""

    rate_limit: RateLimitItem | None
    budget: RateLimitItem

    @classmethod
    def parse(cls, rate_limit: str, budget: str) -> LearningPolicy:
        return cls(parse(rate_limit) if rate_limit.strip() else None, parse(budget))


# Why an answer is stored but not learned online (the API's "reason").
NOT_LEARNED = {
    "duplicate": "the same answer was learned before (or is part of the serving retrained version)",
    "budget": "this client's answers beyond its learning budget are stored but not learned, now or by a "
              "retrain; a trusted client's same answer is learned at once",
    "retrain": "this model learns answers only when it is retrained",
}


def new_key(name: str) -> tuple[str, str]:
    """A new random API key and its TRUSTED_API_KEYS entry."""
    if not KEY_NAME.fullmatch(name):
        raise ValueError("a key's name is 1 to 64 letters, digits or . _ -")
    key = secrets.token_urlsafe(32)
    return key, f"{name}:{hash_key(key)}"
