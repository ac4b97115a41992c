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
``..._SYNC_INTERVAL``  ``0.5``                   seconds a worker may serve before it reads
                                                 new feedback and versions from the database
``..._FEEDBACK_RATE_LIMIT``  ``20 per minute``   answers one client may send (flask-limiter syntax)
``..._PREDICT_RATE_LIMIT``  empty (off)        requests one client may send to each prediction
                                                 endpoint, e.g. ``100 per second``
``..._RATELIMIT_STORAGE_URI``  ``memory://``     where rate-limit counters live (``redis://...``
                                                 to share them between workers and servers)
=====================  ========================  ==========================================
"""
from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
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
    feedback_rate_limit: str = "20 per minute"
    predict_rate_limit: str = ""  # off: predictions are cheap, and benchmarks measure the default
    ratelimit_storage_uri: str = "memory://"

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
            "FEEDBACK_RATE_LIMIT": self.feedback_rate_limit,
            "PREDICT_RATE_LIMIT": self.predict_rate_limit,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_HEADERS_ENABLED": True,
        }
