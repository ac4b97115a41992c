"""Configuration in one place: environment variables with safe defaults.

Every setting can be given as ``SENTIMENT_CLF_<NAME>`` in the environment:

=====================  ========================  ==========================================
variable               default                   meaning
=====================  ========================  ==========================================
``..._HOST``           ``127.0.0.1``             address gunicorn binds to
``..._PORT``           ``5000``                  port gunicorn binds to
``..._WORKERS``        ``2``                     gunicorn worker processes
``..._MODEL_DIR``      ``sentiment-clf/lib/models``  folder holding one sub-folder per model
``..._MAX_QUERY_CHARS``  ``10000``               longest query accepted (413 above it)
``..._MAX_BATCH``      ``1000``                  most texts in one batch request (413 above it)
``..._MAX_BATCH_BYTES``  ``8388608``             largest batch request body (413 above it)
``..._LOG_LEVEL``      ``INFO``                  level of the application's log
``..._ACCESS_LOG``     ``true``                  one JSON line per request (no query text)
``..._DATA_DIR``       ``sentiment-clf/instance``  where the default SQLite database lives
``DATABASE_URL``       SQLite in DATA_DIR        ``sqlite:///path`` or ``postgresql://user@host/db``
``..._SYNC_INTERVAL``  ``0.5``                   seconds between a worker's reads of new feedback
                                                 and versions from the database (in the background)
``..._DATABASE_TIMEOUT``  ``5``                  seconds one database call may take; past it the
                                                 request gets a JSON 503 (a hung or cut-off server)
``..._FEEDBACK_RATE_LIMIT``  ``20 per minute``   answers one client may send (flask-limiter syntax)
``..._PREDICT_RATE_LIMIT``  empty (off)        requests one client may send to each prediction
                                                 endpoint, e.g. ``100 per second``
``..._RATELIMIT_STORAGE_URI``  ``memory://``     where the prediction rate limit's counters live
                                                 (``redis://...`` to share them between workers)
``..._KEEPALIVE``      ``5``                     seconds an idle connection (or one that has not
                                                 sent a whole request head) stays open
``..._WORKER_CONNECTIONS``  ``1000``             connections one worker holds at most
``..._BALANCE_CONNECTIONS``  ``true``         new connections go to the gunicorn worker
                                                 holding the fewest (worker_balance.py)
``..._REQUEST_TIME_BUDGET``  ``10``              seconds of work one request may take (503 above)
``..._MAX_BATCH_CHARS``  ``1000000``             characters in one batch request (413 above)
``..._MAX_EXPLAIN_CHARS``  ``100000``            characters explained in one request (413 above)
``..._CLIENT_LEARNING_BUDGET``  ``1 per day``    answers from one client learned, at once or by a
                                                 retrain; the rest are stored, not learned (measured:
                                                 2 near-duplicates can flip a confident SST sentence)
``..._TRUSTED_API_KEYS``  empty                  ``name:sha256hex,...``: clients whose answers are
                                                 learned at once (``python -m sentiment_clf.trust``)
``..._TRUSTED_PROXIES``  empty                   proxy addresses (IPs or CIDRs) whose
                                                 ``X-Forwarded-For`` names the client
``..._SECRET_KEY``     random per start          signs the page's CSRF tokens; set it when
                                                 several servers share one address
``..._READY_PROBE_INTERVAL``  ``5``              seconds between /ready's database write probes
``..._CHECKPOINT_EVERY``  ``1000``               learned answers between checkpoints of the
                                                 learned state in the database
``..._DEFAULT_VARIANT``  ``fast``                the tier a request without ``variant`` gets:
                                                 ``fast`` (linear models) or ``accurate``
``..._ACCURATE_THREADS``  ``1``                  CPU threads of each worker's transformer
``..._ACCURATE_MAX_BATCH``  ``32``               texts one micro-batch holds at most (its texts
                                                 are read one after another, each alone)
``..._ACCURATE_MAX_WAIT_MS``  ``0``              how long a micro-batch stays open for more
                                                 requests (only when requests overlap)
``..._THRESHOLDS``     empty (most probable)    decision thresholds, ``model:label=0.3; ...``:
                                                 the label is the answer whenever its
                                                 probability reaches it (decisions.py)
``..._ACCURATE_MAX_WINDOWS``  ``32``             windows of 128 word pieces the transformer reads
                                                 of one text (about 3,000 word pieces); the
                                                 rest is not read, and the answer says so
=====================  ========================  ==========================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The folder holding app.py, lib/models/ and instance/.
APP_DIR = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_CLF_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    model_dir: Path = APP_DIR / "lib" / "models"
    max_query_chars: int = Field(10_000, ge=1)
    max_batch: int = Field(1_000, ge=1)
    max_batch_bytes: int = Field(8 * 2**20, ge=1024)
    log_level: str = "INFO"
    access_log: bool = True
    data_dir: Path = APP_DIR / "instance"
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("SENTIMENT_CLF_DATABASE_URL", "DATABASE_URL"))
    sync_interval: float = Field(0.5, ge=0)
    database_timeout: float = Field(5.0, gt=0, le=600)
    feedback_rate_limit: str = "20 per minute"
    predict_rate_limit: str = ""  # off: predictions are cheap, and benchmarks measure the default
    ratelimit_storage_uri: str = "memory://"
    keepalive: float = Field(5.0, gt=0)
    worker_connections: int = Field(1000, ge=1)
    balance_connections: bool = True
    request_time_budget: float = Field(10.0, gt=0)
    max_batch_chars: int = Field(1_000_000, ge=1)
    max_explain_chars: int = Field(100_000, ge=1)
    client_learning_budget: str = "1 per day"
    trusted_api_keys: str = ""
    trusted_proxies: str = ""
    secret_key: str | None = None
    ready_probe_interval: float = Field(5.0, ge=0)
    checkpoint_every: int = Field(1000, ge=1)
    default_variant: Literal["fast", "accurate"] = "fast"
    accurate_threads: int = Field(1, ge=1, le=64)
    accurate_max_batch: int = Field(32, ge=1, le=1024)
    accurate_max_wait_ms: float = Field(0.0, ge=0, le=1000)
    accurate_max_windows: int = Field(32, ge=1, le=1024)
    thresholds: str = ""

    @field_validator("feedback_rate_limit", "client_learning_budget")
    @classmethod
    def _a_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # "20 per minute"; a ValueError says what is wrong
        return value

    @field_validator("trusted_api_keys")
    @classmethod
    def _keys(cls, value: str) -> str:
        from sentiment_clf.trust import parse_trusted_keys

        parse_trusted_keys(value)
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        from sentiment_clf.decisions import parse_thresholds

        parse_thresholds(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        from sentiment_clf.trust import parse_trusted_proxies

        parse_trusted_proxies(value)
        return value

    def database(self) -> str:
        from sentiment_clf.storage import default_url

        return self.database_url or default_url(self.data_dir)

    def flask_config(self) -> dict:
        """The settings the Flask app reads, under Flask's upper-case names."""
        return {
            "MODEL_DIR": self.model_dir,
            "MAX_QUERY_CHARS": self.max_query_chars,
            # A bound on any body before it is read; a query of MAX_QUERY_CHARS
            # characters fits with room for JSON escapes (up to 12 bytes each).
            "MAX_CONTENT_LENGTH": 16 * self.max_query_chars + 1024,
            "LOG_LEVEL": self.log_level,
            "ACCESS_LOG": self.access_log,
            "MAX_BATCH": self.max_batch,
            "MAX_BATCH_BYTES": self.max_batch_bytes,
            "DATABASE_URL": self.database(),
            "SYNC_INTERVAL": self.sync_interval,
            "DATABASE_TIMEOUT": self.database_timeout,
            "FEEDBACK_RATE_LIMIT": self.feedback_rate_limit,
            "PREDICT_RATE_LIMIT": self.predict_rate_limit,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_HEADERS_ENABLED": True,
            "REQUEST_TIME_BUDGET": self.request_time_budget,
            "MAX_BATCH_CHARS": self.max_batch_chars,
            "MAX_EXPLAIN_CHARS": self.max_explain_chars,
            "CLIENT_LEARNING_BUDGET": self.client_learning_budget,
            "TRUSTED_API_KEYS": self.trusted_api_keys,
            "TRUSTED_PROXIES": self.trusted_proxies,
            # None: create_app draws a random key (one per server start; workers share it)
            "SECRET_KEY": self.secret_key,
            "READY_PROBE_INTERVAL": self.ready_probe_interval,
            "CHECKPOINT_EVERY": self.checkpoint_every,
            "DEFAULT_VARIANT": self.default_variant,
            "ACCURATE_THREADS": self.accurate_threads,
            "ACCURATE_MAX_BATCH": self.accurate_max_batch,
            "ACCURATE_MAX_WAIT": self.accurate_max_wait_ms / 1000,
            "ACCURATE_MAX_WINDOWS": self.accurate_max_windows,
            "THRESHOLDS": self.thresholds,
        }
