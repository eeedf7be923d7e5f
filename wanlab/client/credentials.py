"""API keys for a service: where one comes from, and a holder that never shows it.

A key comes from the ``api_key`` argument, else ``$WANLAB_API_KEY``, else the hosted API's usual
variable ``$NOVITA_API_KEY`` (or from a file: ``wanlab ... --api-key-file F``). :class:`ApiKey`
keeps it out of every ``repr``, ``str``, record, log line and exception message: only the
``Authorization`` header it builds holds the value.
"""
from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Any

from ..errors import ParamError

#: Environment variables read for a key, in this order: wanlab's own, then the hosted API's usual one.
ENV_VARS = ("WANLAB_API_KEY", "NOVITA_API_KEY")


class ApiKey:
    """A secret API key: ``headers()`` gives the Bearer header; nothing else ever shows the value.

    It is never pickled, and its repr and str name where it came from, not the key.

    Args:
        value: the key (surrounding whitespace is dropped).
        source: where it came from, for messages (``"$WANLAB_API_KEY"``, a file's path, ...).

    Raises:
        ParamError: an empty key, one with spaces or control characters, or one that is not ASCII
            (the message shows its length and source, never the key).

    Example:
        >>> ApiKey("sk-123", "the api_key argument")
        ApiKey(from the api_key argument, hidden)
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: Any, source: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ParamError("api_key", "a non-empty string",
                             "<empty>" if isinstance(value, str) else type(value).__name__)
        value = value.strip()
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ParamError("api_key", "one token without spaces, line breaks or control characters",
                             f"<{len(value)} characters from {source}, hidden>")
        if not value.isascii():  # an HTTP header carries ASCII only (a byte-order mark, a pasted quote...)
            where = "a byte-order mark at its start" if value.startswith("\ufeff") else "a character that is not ASCII"
            raise ParamError("api_key", "ASCII characters only (HTTP headers carry no others)",
                             f"<{len(value)} characters from {source} with {where}, hidden>")
        self._value = value
        self.source = source

    def __repr__(self) -> str:
        return f"ApiKey(from {self.source}, hidden)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an ApiKey is not pickled (it would write the key out); pass it again where it is needed")

    def headers(self) -> dict[str, str]:
        """The request header that carries the key.

        Returns:
            ``{"Authorization": "Bearer KEY"}``.
        """
        return {"Authorization": f"Bearer {self._value}"}

    def scrub(self, text: str) -> str:
        """``text`` with the key replaced by ``***`` (for a server's error message that echoes it).

        Args:
            text: any text.

        Returns:
            The text without the key.

        Example:
            >>> ApiKey("sk-123", "test").scrub("bad key sk-123")
            'bad key ***'
        """
        return text.replace(self._value, "***") if self._value in text else text


def find_key(api_key: Any = None) -> ApiKey | None:
    """The key to send.

    Args:
        api_key: a string or an :class:`ApiKey` (None: the first of :data:`ENV_VARS` that is set).

    Returns:
        The key, or None when none is given or set (a server started with ``--no-auth`` needs none).

    Raises:
        ParamError: a key that is not one token of ASCII characters.

    Example:
        >>> find_key("sk-123").source
        'the api_key argument'
    """
    if isinstance(api_key, ApiKey):
        return api_key
    if api_key is not None:
        return ApiKey(api_key, "the api_key argument")
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value and value.strip():
            return ApiKey(value, f"${name}")
    return None


def read_key_file(path: str | os.PathLike[str]) -> ApiKey:
    """The key in a file.

    Its first line that is neither blank nor a ``#`` comment. Warns when other users may read the
    file (``chmod 600`` it).

    Args:
        path: the key file (``~`` is expanded).

    Returns:
        The :class:`ApiKey`, its source the file's path.

    Raises:
        ParamError: the file cannot be read as text, or holds no key.

    Example:
        >>> read_key_file("~/.config/wanlab/key")  # doctest: +SKIP
        ApiKey(from /root/.config/wanlab/key, hidden)
    """
    file = Path(path).expanduser()
    try:
        lines = file.read_bytes().decode("utf-8-sig").splitlines()  # a byte-order mark is not the key's
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ParamError("api_key_file", "a readable text file with the key on its first line", f"{file} ({reason})") \
            from None
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ParamError("api_key_file", "a file with the key on a line of its own", f"{file} (no key in it)")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(f"{file} may be read by other users (mode {stat.S_IMODE(mode):o}): chmod 600 {file}",
                      stacklevel=2)
    return ApiKey(keys[0], str(file))
