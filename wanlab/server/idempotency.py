"""Submits that are never paid twice: the ``Idempotency-Key`` header of ``POST /v3/async/wan-t2v``.

A client that lost the answer to a submit sends it again with the same key and gets the task the
server accepted the first time; :class:`Idempotency` keeps that index in the store (its docstring has
the rules).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from ..fsutil import file_lock, write_json
from .errors import ApiError

HEADER = "Idempotency-Key"
MAX_CHARS = 255
FOLDER = Path("tasks") / "idempotency"
#: What a key may hold, said in 400 answers and in the OpenAPI schema.
RULE = f"1 to {MAX_CHARS} visible ASCII characters (no spaces), e.g. a uuid"
PATTERN = f"^[!-~]{{1,{MAX_CHARS}}}$"


def check_key(value: str) -> str:
    """The header's value, checked.

    Args:
        value: the ``Idempotency-Key`` header's value.

    Returns:
        The value.

    Raises:
        ApiError: 400 naming the header and the rule (a long or unprintable value is not echoed back).

    Example:
        >>> check_key("0b7e3c5e-8c3a-4f0e-9a57-3f1f0c2a9d11")
        '0b7e3c5e-8c3a-4f0e-9a57-3f1f0c2a9d11'
    """
    if not (1 <= len(value) <= MAX_CHARS) or any(not "!" <= c <= "~" for c in value):
        shown = value if len(value) <= 40 and value.isascii() and value.isprintable() else f"{len(value)} characters"
        raise ApiError(400, "INVALID_REQUEST", f"{HEADER}: must be {RULE}; got {shown!r}",
                       {"field": HEADER, "rule": RULE})
    return value


def request_digest(body: Any) -> str:
    """The sha256 of a request body as canonical JSON (the same request, however its keys are ordered).

    Args:
        body: the parsed request body.

    Returns:
        The hex digest.

    Example:
        >>> request_digest({"prompt": "a fox", "seed": 1}) == request_digest({"seed": 1, "prompt": "a fox"})
        True
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Idempotency:
    """The idempotency index of one store.

    Keys are per API key: the index maps ``HMAC(server secret, owner + key)`` to the task id and a digest
    of the request body, in ``STORE/tasks/idempotency/<digest>.json`` (on disk: it holds across restarts,
    and between servers on one store). The same key with another body is a 409 naming the header, never a
    second task. Lookups and accepts of keyed submits are serialised by a lock file (``flock``: threads
    and processes), and the index entry is written when the task is accepted, before its task file: an
    entry whose task file is missing (the server died in between, or the file could not be written)
    names no task and is replaced by the next submit under that key.

    Args:
        store: the store's folder.
        secret: the key the index names are made with (the server secret's ``"idempotency"`` key).

    Example:
        >>> import tempfile
        >>> index = Idempotency(tempfile.mkdtemp(), b"s" * 32)
        >>> name = index.digest("alice", "key-1")
        >>> index.record(name, "task-1", request_digest({"prompt": "a fox"}))
        >>> index.find(name, request_digest({"prompt": "a fox"}), lambda task_id: True)
        'task-1'
    """

    def __init__(self, store: str | os.PathLike[str], secret: bytes) -> None:
        self.folder = Path(store) / FOLDER
        self._secret = secret

    def __repr__(self) -> str:
        return f"Idempotency({str(self.folder)!r})"

    def digest(self, owner: str | None, key: str) -> str:
        """The index name of ``key`` sent with ``owner``'s API key (keys of two API keys never meet).

        Args:
            owner: the caller's owner id (None without keys).
            key: the header's value.

        Returns:
            The hex name.
        """
        return hmac.new(self._secret, f"{owner or ''}\0{key}".encode(), hashlib.sha256).hexdigest()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the index's lock (every thread and process on this store) while looking up and accepting.

        Returns:
            A context manager.
        """
        return file_lock(self.folder / ".lock", mode=0o600)

    def find(self, digest: str, request: str, task_exists: Any) -> str | None:
        """The task accepted under ``digest``.

        Args:
            digest: the index name (:meth:`digest`).
            request: the body's :func:`request_digest`.
            task_exists: ``task_exists(task_id)`` says whether a task file is there.

        Returns:
            The task id, or None (none yet, a damaged entry, or its task file is missing).

        Raises:
            ApiError: 409 ``IDEMPOTENCY_KEY_REUSED`` when it was accepted for another request body.
        """
        try:
            entry = json.loads((self.folder / f"{digest}.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry names no task: the next accept writes it afresh
        task_id = entry.get("task_id") if isinstance(entry, dict) else None
        if not isinstance(task_id, str) or not task_exists(task_id):
            return None
        if entry.get("request") != request:
            raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", f"{HEADER}: must name one request; got a key already used "
                           "with another request body (send a new key for a new request)",
                           {"field": HEADER, "rule": "the same request body for the same key"})
        return task_id

    def record(self, digest: str, task_id: str, request: str) -> None:
        """Write the index entry of an accepted task (atomically).

        Args:
            digest: the index name.
            task_id: the accepted task.
            request: the body's :func:`request_digest`.
        """
        write_json(self.folder / f"{digest}.json", {"task_id": task_id, "request": request})
