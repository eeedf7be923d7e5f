"""Who may call the service: the operator's API keys, checked in constant time and never kept.

- The key file (``--api-keys FILE``) holds one key per line; ``#`` at the start of a line or after
  a space starts a comment, blank lines are skipped. Keys are 16 to 512 printable ASCII characters
  without spaces; other lines are logged (by line number, never their text) and skipped. The file is
  read again every second and its content compared, so a lab member is added or removed without a
  restart, and a removed key stops working within a second, whatever the edit. A deleted or empty
  key file: no key is valid.
- A key comes as ``Authorization: Bearer KEY`` or, as the provider's JavaScript SDK sends it, as
  the bare ``Authorization: KEY``.
- In memory a key exists only as its HMAC-SHA256 under the store's server secret; a presented key
  is hashed the same way and compared with every entry by :func:`hmac.compare_digest` (no early
  exit). A task's ``owner`` is that digest in hex: task files say which key, never the key, and
  another key's task looks unknown.
- The server secret (``STORE/server/secret.key``, 32 random bytes, mode 0600) is made once per
  store and shared by every server on it: owners and signed video URLs agree between them.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

from ..errors import ParamError
from ..fsutil import fsync_dir
from .errors import unauthorized

SECRET_FILE = Path("server") / "secret.key"
SECRET_BYTES = 32
KEY_CHARS = (16, 512)
#: Seconds between two reads of the key file (a removed key stops working within this time).
RELOAD_S = 1.0
#: A comment: ``#`` at the start of a line or after a space, to the end of the line (a key may hold ``#``).
COMMENT = re.compile(r"(^|\s)#.*$")
log = logging.getLogger("wanlab.server")


class ServerSecret:
    """The store's server secret; :meth:`derive` gives one independent key per purpose."""

    def __init__(self, key: bytes) -> None:
        if len(key) < SECRET_BYTES:
            raise ValueError(f"server secret: must be at least {SECRET_BYTES} bytes; got {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "ServerSecret(<hidden>)"

    @classmethod
    def of_store(cls, store: str | os.PathLike[str]) -> ServerSecret:
        """The secret of the store at ``store``, made (atomically, 0600) when it has none yet.

        Example:
            >>> ServerSecret.of_store("runs/serve").derive("urls")  # doctest: +SKIP
        """
        file = Path(store) / SECRET_FILE
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(SECRET_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, file)  # fails when another server made it first: theirs is kept
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            fsync_dir(file.parent)
        key = file.read_bytes()
        if len(key) < SECRET_BYTES:
            raise ParamError("store", f"a store whose {SECRET_FILE} holds {SECRET_BYTES} random bytes (delete the "
                             "damaged file: signed URLs and task owners start afresh)", str(file))
        return cls(key)

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose (``"urls"``, ``"owners"``): HMAC-SHA256 of the purpose.

        Args:
            purpose: what the key is for.

        Returns:
            32 bytes, independent of every other purpose's key.
        """
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).digest()


def parse_keys(text: str) -> tuple[list[str], list[str]]:
    r"""The keys of a key file's text, and one sentence per line that is not a valid key.

    Each sentence names the line and what is wrong, never the line's text: such lines are skipped,
    every other key counts.

    Args:
        text: the key file's text.

    Returns:
        ``(keys, problems)``.

    Example:
        >>> keys, problems = parse_keys("# lab\nalice-key-0123456789abcdef\nshort\n")
        >>> keys
        ['alice-key-0123456789abcdef']
        >>> problems  # doctest: +NORMALIZE_WHITESPACE
        ['line 3: not a key of 16..512 printable ASCII characters without spaces (5 characters;
          not shown); ignored']
    """
    keys: list[str] = []
    problems: list[str] = []
    lo, hi = KEY_CHARS
    for number, line in enumerate(text.splitlines(), 1):
        key = COMMENT.sub("", line).strip()
        if not key:
            continue
        if is_key(key):
            keys.append(key)
        else:
            problems.append(f"line {number}: not a key of {lo}..{hi} printable ASCII characters without spaces "
                            f"({len(key)} characters; not shown); ignored")
    return keys, problems


def is_key(key: str) -> bool:
    """Whether ``key`` has the form of an API key: 16..512 printable ASCII characters, no spaces.

    Args:
        key: a candidate key.

    Returns:
        Whether it has that form.

    Example:
        >>> is_key("alice-key-0123456789abcdef"), is_key("short"), is_key("has a space in it, so no")
        (True, False, False)
    """
    lo, hi = KEY_CHARS
    return lo <= len(key) <= hi and all(33 <= ord(c) <= 126 for c in key)


def read_keys(path: str | os.PathLike[str]) -> list[str]:
    """The keys of a key file (UTF-8, a byte-order mark allowed).

    Lines that are not keys are logged and skipped (:func:`parse_keys`).

    Args:
        path: the key file.

    Returns:
        The keys.

    Raises:
        ParamError: the file cannot be read or holds no valid key.

    Example:
        >>> read_keys("keys.txt")  # doctest: +SKIP
        ['alice-key-0123456789abcdef']
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8-sig", errors="replace")  # other bytes spoil their own line only
    except OSError as exc:
        raise ParamError("api_keys", "a readable UTF-8 file of API keys, one per line", str(file)) from exc
    keys, problems = parse_keys(text)
    if not keys:
        lo, hi = KEY_CHARS
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise ParamError("api_keys", f"a file with at least one key of {lo}..{hi} printable ASCII characters "
                         "(one per line, # comments)", f"{file}{detail}")
    return keys


class ApiKeys:
    """The keys of ``path``, held as digests (see the module docstring).

    The file is read again at most every :data:`RELOAD_S` seconds and its content compared (an edit
    that keeps the size and the modification time is seen too): a key removed from it stops working
    within that time. Lines that are not keys are logged and skipped; a key file that is deleted,
    unreadable, empty or all comments means no key is valid (logged once, until it changes).

    Example:
        >>> keys = ApiKeys("keys.txt", ServerSecret.of_store("runs/serve"))  # doctest: +SKIP
        >>> keys.owner("Bearer " + key)  # doctest: +SKIP
        '3f5a...'
    """

    def __init__(self, path: str | os.PathLike[str], secret: ServerSecret, *, reload_s: float = RELOAD_S) -> None:
        self.path = Path(path)
        self.reload_s = reload_s
        self._hash_key = secret.derive("owners")
        self._lock = threading.Lock()
        self._content: bytes | None = None
        self._checked = 0.0
        self._digests: tuple[bytes, ...] = ()
        read_keys(self.path)  # a server does not start on a key file without a valid key
        self._reload(force=True)
        if self.path.stat().st_mode & 0o077:
            import warnings

            warnings.warn(f"{self.path}: the API key file can be read by other users; chmod 600 it", stacklevel=2)

    def __repr__(self) -> str:
        return f"ApiKeys({str(self.path)!r}, {len(self._digests)} keys)"

    def __len__(self) -> int:
        return len(self._digests)

    def digest(self, key: str) -> bytes:
        """The keyed hash a key is kept and compared as (the key itself is never kept)."""
        return hmac.new(self._hash_key, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def _reload(self, force: bool = False) -> None:
        """Read the file again when :attr:`reload_s` has passed, and take its keys when its content changed."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < self.reload_s:
                return
            self._checked = now
            try:
                content: bytes | None = self.path.read_bytes()
            except OSError as exc:
                content, why = None, f"cannot be read ({exc.strerror or type(exc).__name__})"
            if content == self._content and not force:
                return
            self._content = content
            keys: list[str] = []
            if content is not None:
                # bytes that are not UTF-8 (a Latin-1 comment) spoil their own line only: it is not a key
                keys, problems = parse_keys(content.decode("utf-8-sig", errors="replace"))
                why = "holds no valid key"
                for problem in problems:
                    log.warning("API key file %s, %s", self.path, problem)
            self._digests = tuple(self.digest(k) for k in keys)
            if not keys:
                log.error("API key file %s %s: no API key is valid until it holds one", self.path, why)
            elif not force:
                log.info("API key file %s changed: %d key(s) in force", self.path, len(keys))

    def owner(self, authorization: str | None) -> str:
        """The owner id (hex digest) of the key in an ``Authorization`` header.

        Args:
            authorization: the header's value: ``Bearer KEY``, or the bare ``KEY`` as the provider's
                JavaScript SDK sends it.

        Returns:
            The owner id of the key.

        Raises:
            ApiError: 401 for a missing header, another form, or a key not in force.
        """
        if not authorization:
            raise unauthorized("Authorization: must be 'Bearer <API key>'; got no Authorization header")
        text = authorization.strip()
        scheme, _, rest = text.partition(" ")
        if scheme.lower() == "bearer":
            key = rest.strip()
        elif rest:
            key = ""  # another scheme (Basic ...), or a value with spaces: no key of this server
        else:
            key = scheme  # a bare key
        if not key:
            raise unauthorized("Authorization: must be 'Bearer <API key>' (or the bare key); got another form "
                               "(not shown)")
        self._reload()
        presented = self.digest(key)
        match = False
        for digest in self._digests:  # every entry, whatever matched: the time says nothing
            match |= hmac.compare_digest(presented, digest)
        if not match:
            raise unauthorized("Authorization: must carry an API key of this server; got an unknown key")
        return presented.hex()
