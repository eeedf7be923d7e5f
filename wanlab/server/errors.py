"""Errors as a client of the service sees them: an HTTP status and one JSON body shape for all.

::

    {"code": 400, "reason": "INVALID_REQUEST_BODY",
     "message": "steps: must be an integer in 1..40; got 50",
     "metadata": {"field": "steps", "rule": "an integer in 1..40", "value": 50}}

``code`` is the HTTP status, ``reason`` a stable upper-case word for programs, ``message`` one
sentence for people (wanlab's ``NAME: must be RULE; got VALUE`` for invalid fields) and
``metadata`` the details (for 400: ``field``, ``rule``, ``value``). The hosted API documents its
status codes but no error body; this is the shape its other endpoints answer with.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import ParamError

#: Values longer than this (as JSON) are shown by their type and length, not echoed back whole.
MAX_ECHO = 200


class ApiError(Exception):
    """An answer other than success, with its HTTP status and the one error body shape.

    Args:
        status: the HTTP status.
        reason: a stable upper-case word for programs (``INVALID_REQUEST_BODY``, ``QUEUE_FULL``, ...).
        message: one sentence for people.
        metadata: the details (for 400: ``field``, ``rule``, ``value``).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).

    Example:
        >>> error = ApiError.invalid(ParamError("steps", "an integer in 1..40", 50))
        >>> error.status, error.body()["message"]
        (400, 'steps: must be an integer in 1..40; got 50')
    """

    def __init__(self, status: int, reason: str, message: str, metadata: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The documented error body: ``code``, ``reason``, ``message`` and ``metadata``."""
        return {"code": self.status, "reason": self.reason, "message": self.message, "metadata": self.metadata}

    @classmethod
    def invalid(cls, exc: ParamError | ValueError, field: str | None = None) -> ApiError:
        """400 for a field that broke its rule (a :class:`ParamError` carries field, rule and value).

        Args:
            exc: the error; a ValueError's message is used as it is.
            field: the field's name as the body spells it (None: the error's own).

        Returns:
            The :class:`ApiError` (``INVALID_REQUEST_BODY``).
        """
        if isinstance(exc, ParamError):
            name = field or exc.field
            meta = {"field": name, "rule": exc.rule, "value": echo(exc.value)}
            message = f"{name}: must be {exc.rule}; got {short(exc.value)}"
        else:
            meta = {"field": field or "body"}
            message = str(exc)
        return cls(400, "INVALID_REQUEST_BODY", message, meta)


def short(value: Any) -> str:
    """``repr(value)``, or its type and length when that is long.

    Args:
        value: anything a client sent.

    Returns:
        At most :data:`MAX_ECHO` characters of repr, else ``<type of N characters>``.

    Example:
        >>> short("fox"), short("x" * 300)
        ("'fox'", '<str of 302 characters>')
    """
    text = repr(value)
    return text if len(text) <= MAX_ECHO else f"<{type(value).__name__} of {len(text)} characters>"


def echo(value: Any) -> Any:
    """A JSON-able value to echo in ``metadata.value``: the value itself when short, else a description.

    Args:
        value: anything a client sent.

    Returns:
        The value, or a description of it.

    Example:
        >>> echo(50), echo(float("nan"))
        (50, 'nan')
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return short(value)
    return value if len(text) <= MAX_ECHO else f"<{type(value).__name__} of {len(text)} characters as JSON>"


def unauthorized(message: str) -> ApiError:
    """401 with ``message`` and the Bearer challenge header."""
    return ApiError(401, "INVALID_API_KEY", message, headers={"WWW-Authenticate": 'Bearer realm="wanlab"'})


def not_found(task_id: Any) -> ApiError:
    """The one answer for an unknown task id, a malformed one, and another key's task (indistinguishable).

    Args:
        task_id: the id asked for.

    Returns:
        A 404 :class:`ApiError` (``TASK_NOT_FOUND``).
    """
    return ApiError(404, "TASK_NOT_FOUND", f"task_id: must be the id of a task submitted with this API key; got "
                                           f"{short(task_id)}", {"field": "task_id"})


def unavailable(reason: str, message: str, retry_after: int) -> ApiError:
    """503 for ``reason`` (e.g. the model still loading), saying when to retry (``Retry-After``)."""
    return ApiError(503, reason, message, {"retry_after": retry_after}, headers={"Retry-After": str(retry_after)})


#: Words for statuses raised by the framework itself (unknown route, wrong method, ...).
REASONS = {400: "INVALID_REQUEST", 401: "INVALID_API_KEY", 403: "FORBIDDEN", 404: "NOT_FOUND",
           405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 413: "REQUEST_TOO_LARGE",
           415: "UNSUPPORTED_MEDIA_TYPE", 416: "RANGE_NOT_SATISFIABLE", 429: "QUEUE_FULL",
           500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}
