"""The service's errors, one family: each says what went wrong in words a user can act on.

A :class:`ServiceError` carries its message and the HTTP status it answers with
(and, where waiting helps, how long to wait); the rooms below the web raise them
and know nothing of HTTP, and the web maps every one to a JSON answer in one place
(``web/errors.py``). The errors of files and data (a damaged model file, a training
file in the wrong format) are not requests' errors: the commands and the start
report them.
"""
from __future__ import annotations


class ServiceError(Exception):
    """An error a request gets an answer for: ``message`` and ``status``, and for the
    statuses where it helps (429, 503), ``retry_after`` seconds."""

    status = 500
    message = "the service failed on this request"

    def __init__(self, message: str | None = None, *, retry_after: int | None = None):
        self.message = message or self.message
        self.retry_after = retry_after
        super().__init__(self.message)


class NotServed(ServiceError):
    """The model or tier asked for is not served here."""

    status = 404


class IdempotencyKeyReused(ServiceError):
    """An Idempotency-Key already names a stored answer with another model, text or label."""

    status = 422


class RateLimited(ServiceError):
    """A client sent its limit of answers; ``limit`` is the limit in words."""

    status = 429

    def __init__(self, limit: str, retry_after: int):
        self.limit = limit
        super().__init__(f"too many answers from this client: the limit is {limit}; try again in {retry_after} s",
                         retry_after=retry_after)


class ModelFailed(ServiceError):
    """A model failed on the work this request was part of; nothing was stored."""

    status = 500


class OverBudget(ServiceError):
    """The request ran past its time budget and was stopped."""

    status = 503
    message = "this request ran past its time budget and was stopped"


class StorageUnavailable(ServiceError):
    """The database did not take or give what the request needs (refused, down or too slow)."""

    status = 503


class ModelFileError(ValueError):
    """A saved model (or checkpoint) that cannot be loaded: missing, damaged, altered or
    of an unknown format. The message names the file and what is wrong."""


class DataFormatError(ValueError):
    """A training data file that cannot be read; names the file and the line."""

    def __init__(self, path, line_no: int, problem: str):
        self.path = str(path)
        self.line_no = line_no
        self.problem = problem
        super().__init__(f"{self.path}, line {line_no}: {problem}")
