"""Configuration in one place: environment variables with safe defaults.

Every setting is a field of :class:`Settings`, declared once, with its description;
``SENTIMENT_CLF_<NAME>`` in the environment sets it (``DATABASE_URL`` too). The
documentation's configuration table is generated from these fields (``python -m
sentiment_clf.config`` prints it; a test holds the documentation to it), and the Flask app's
configuration is derived from them (:meth:`Settings.flask_config`).

A ``SENTIMENT_CLF_*`` variable that names no setting stops the start with a message
that names it and the closest setting (:func:`unknown_variables`): an operator's typo
is not silently ignored. ``SENTIMENT_CLF_TEST_*`` belongs to the test suite.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiment_clf.paths import INSTANCE_DIR, MODELS_DIR

PREFIX = "SENTIMENT_CLF_"
TEST_PREFIX = PREFIX + "TEST_"  # the test suite's variables, not the service's


def _setting(default: Any, description: str, *, shown: str | None = None, server: bool = False, **bounds) -> Any:
    """A field with its README description; ``shown``: its default as the README says it
    (when the value itself is not what a reader should see); ``server``: read by gunicorn
    (server/gunicorn_config.py), not by the Flask app."""
    extra: dict[str, Any] = {"server": server}
    if shown is not None:
        extra["shown_default"] = shown
    return Field(default, description=description, json_schema_extra=extra, **bounds)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    host: str = _setting("127.0.0.1", "address to bind (set `0.0.0.0` deliberately to expose it)", server=True)
    port: int = _setting(5000, "port", server=True, ge=1, le=65535)
    workers: int = _setting(2, "gunicorn worker processes", server=True, ge=1, le=64)
    model_dir: Path = _setting(MODELS_DIR, "folder with one sub-folder per model",
                               shown="the packaged models (a checkout's `sentiment-clf/lib/models`)")
    max_query_chars: int = _setting(10_000, "longest query accepted (413 above)", ge=1)
    max_batch: int = _setting(1_000, "most texts in one batch request (413 above)", ge=1)
    max_batch_bytes: int = _setting(8 * 2**20, "largest batch request body, in bytes (413 above)", ge=1024)
    log_level: str = _setting("INFO", "log level")
    access_log: bool = _setting(True, "one JSON line per request (method, path, status, duration, request id; "
                                      "never a query)")
    data_dir: Path = _setting(INSTANCE_DIR, "where the default SQLite database (and retraining reports) live",
                              shown="`sentiment-clf/instance` in a checkout, `<prefix>/var/sentiment-clf-instance` "
                                    "installed")
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("SENTIMENT_CLF_DATABASE_URL", "DATABASE_URL"),
        description="`sqlite:///path/to/file.sqlite` or `postgresql://user@host/db`",
        json_schema_extra={"server": False, "shown_default": "SQLite in the data dir", "variable": "DATABASE_URL"})
    sync_interval: float = _setting(0.5, "seconds between a worker's reads of new feedback and versions (in the "
                                         "background)", ge=0)
    database_timeout: float = _setting(5.0, "seconds one database call may take; past it the request gets a JSON "
                                            "`503`", gt=0, le=600)
    feedback_rate_limit: str = _setting(
        "20 per minute", "answers one client may send, counted in the database over all workers, servers and both "
                         "feedback routes")
    predict_rate_limit: str = _setting(
        "", "requests one client may send to each prediction endpoint, e.g. `100 per second`", shown="empty (off)")
    ratelimit_storage_uri: str = _setting(
        "memory://", "the prediction limit's counters; `redis://127.0.0.1:6379` shares them between workers and "
                     "servers")
    keepalive: float = _setting(5.0, "seconds a connection may stay idle, or take to send a request head, before "
                                     "the server closes it", server=True, gt=0)
    worker_connections: int = _setting(1000, "connections one worker holds at most", server=True, ge=1)
    balance_connections: bool = _setting(
        True, "new connections go to the worker holding the fewest (see [Slow and idle "
              "connections](../explanations/hardening.md#slow-and-idle-connections))", server=True)
    request_time_budget: float = _setting(10.0, "seconds of work one request may take; past it, a JSON 503", gt=0)
    max_batch_chars: int = _setting(1_000_000, "characters in one batch request (413 above)", ge=1)
    max_explain_chars: int = _setting(100_000, "characters explained in one request (413 above)", ge=1)
    client_learning_budget: str = _setting(
        "1 per day", "answers of one client learned, at once or by a retrain; the others are stored, not learned "
                     "(see [Who may teach the models]"
                     "(../explanations/learning.md#who-may-teach-the-models-and-how-much))")
    trusted_api_keys: str = _setting(
        "", "`name:sha256hex,...`: clients whose answers are learned at once (`sentiment-clf new-key NAME`)",
        shown="empty")
    trusted_proxies: str = _setting(
        "", "IPs or CIDRs of your reverse proxies, whose `X-Forwarded-For` names the client", shown="empty")
    secret_key: str | None = _setting(None, "signs the page's CSRF tokens; set it when several servers share one "
                                            "address", shown="random per start")
    ready_probe_interval: float = _setting(5.0, "seconds between `/ready`'s database write probes (per worker)", ge=0)
    checkpoint_every: int = _setting(1000, "learned answers between checkpoints of the learned state in the "
                                           "database", ge=1)
    default_variant: Literal["fast", "accurate"] = _setting(
        "fast", "the tier a request gets when it does not say: `fast` or `accurate`")
    accurate_threads: int = _setting(1, "CPU threads of each worker's transformer (workers x threads = cores is "
                                        "best)", ge=1, le=64)
    accurate_max_batch: int = _setting(32, "texts one micro-batch holds at most", ge=1, le=1024)
    accurate_max_wait_ms: float = _setting(
        0.0, "how long a micro-batch stays open for more requests (only when requests overlap; its texts are "
             "read one after another, so waiting gains nothing by default)", ge=0, le=1000)
    accurate_max_windows: int = _setting(
        32, "windows of 128 word pieces the transformer reads of one text (about 3,000 word pieces); the rest is "
            "not read, and the answer says so (`\"truncated\": true`)", ge=1, le=1024)
    cors_origins: str = _setting(
        "", "origins whose browser pages may call the API, comma-separated (`https://app.example.com`), or `*` "
            "for any; the page and /docs stay same-origin ([Browser front-ends]"
            "(../guides/api.md#browser-front-ends-cors))",
        shown="empty (same origin only)")
    thresholds: str = _setting(
        "", "decision thresholds, `model:label=0.3; ...`: the label is the answer whenever its probability reaches "
            "it ([Moderation](../guides/api.md#moderation-decision-thresholds))", shown="empty (most probable)")

    @field_validator("feedback_rate_limit", "client_learning_budget")
    @classmethod
    def _a_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # "20 per minute"; a ValueError says what is wrong
        return value

    @field_validator("trusted_api_keys")
    @classmethod
    def _keys(cls, value: str) -> str:
        from sentiment_clf.feedback import parse_trusted_keys

        parse_trusted_keys(value)
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        from sentiment_clf.serving import parse_thresholds

        parse_thresholds(value)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        cors_origins(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        from sentiment_clf.feedback import parse_trusted_proxies

        parse_trusted_proxies(value)
        return value

    def database(self) -> str:
        from sentiment_clf.feedback import default_url

        return self.database_url or default_url(self.data_dir)

    def flask_config(self) -> dict:
        """The settings the Flask app reads, under Flask's upper-case names (every field
        but gunicorn's), and those derived from them."""
        config = {name.upper(): getattr(self, name) for name, field in type(self).model_fields.items()
                  if not _extra(field).get("server")}
        config.update({
            # A bound on any body before it is read; a query of MAX_QUERY_CHARS
            # characters fits with room for JSON escapes (up to 12 bytes each).
            "MAX_CONTENT_LENGTH": 16 * self.max_query_chars + 1024,
            "DATABASE_URL": self.database(),
            "RATELIMIT_HEADERS_ENABLED": True,
            "ACCURATE_MAX_WAIT": self.accurate_max_wait_ms / 1000,
            # None: create_app draws a random key (one per server start; workers share it)
            "SECRET_KEY": self.secret_key,
        })
        return config


def _extra(field) -> dict:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def variable(name: str) -> str:
    """The environment variable that sets field ``name``."""
    return _extra(Settings.model_fields[name]).get("variable") or PREFIX + name.upper()


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A message for each ``SENTIMENT_CLF_*`` variable in ``environ`` (the process's) that
    names no setting, with the closest one."""
    known = {variable(name) for name in Settings.model_fields} | {PREFIX + "DATABASE_URL"}
    suffixes = {name.removeprefix(PREFIX): name for name in known}  # compared without the prefix all share
    found = []
    for name in sorted(environ if environ is not None else os.environ):
        if name.startswith(PREFIX) and not name.startswith(TEST_PREFIX) and name not in known:
            close = difflib.get_close_matches(name.removeprefix(PREFIX), sorted(suffixes), n=1, cutoff=0.6)
            found.append(f"{name} is not a setting" + (f" (did you mean {suffixes[close[0]]}?)" if close else
                                                       "; sentiment-clf config lists them"))
    return found


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """ValueError naming every unknown ``SENTIMENT_CLF_*`` variable (a typo would be ignored)."""
    problems = unknown_variables(environ)
    if problems:
        raise ValueError("; ".join(problems))


def markdown_table() -> str:
    """The documentation's configuration table (docs/reference/configuration.md), from the fields."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        shown = _extra(field).get("shown_default")
        if shown is None:
            value = field.default
            shown = f"`{str(value).lower() if isinstance(value, bool) else value:g}`" \
                if isinstance(value, float) else f"`{str(value).lower() if isinstance(value, bool) else value}`"
        rows.append(f"| `{variable(name)}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")


_ORIGIN = re.compile(r"https?://[^/\s:,]+(:\d{1,5})?")


def cors_origins(setting: str) -> list[str]:
    """The CORS_ORIGINS setting as a list: ``*``, or origins written as a browser sends them
    (``https://app.example.com``, ``http://127.0.0.1:8080``: a scheme, a host, a port, no
    path); a ValueError naming the first that is not."""
    origins = [origin.strip() for origin in setting.split(",") if origin.strip()]
    if origins == ["*"]:
        return origins
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(f"CORS_ORIGINS: {origin!r} is not an origin (write scheme://host[:port], no path, "
                             "no trailing slash), or '*' alone for any origin")
    return origins
