"""Who may call the service: the operator's API keys, checked in constant time and never kept.

- The key file (``--api-keys FILE``) holds one key per line; ``#`` starts a comment, blank lines
  are skipped. Keys are 16 to 512 printable characters without spaces. The file is read again
  when it changes, so a lab member is added or removed without a restart.
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
import os
import secrets
import threading
from pathlib import Path

from ..errors import ParamError
from ..fsutil import fsync_dir
from .errors import unauthorized

SECRET_FILE = Path("server") / "secret.key"
SECRET_BYTES = 32
KEY_CHARS = (16, 512)


class ServerSecret:
    """The store's server secret; :meth:`derive` gives one independent key per purpose."""

    def __init__(self, key: bytes) -> None:
        if len(key) < SECRET_BYTES:
            raise ValueError(f"server secret: must be at least {SECRET_BYTES} bytes; got {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "ServerSecret(<hidden>)"

    @classmethod
    def of_store(cls, store: str | os.PathLike[str]) -> "ServerSecret":
        """The secret of the store at ``store``, made (atomically, 0600) when it has none yet.

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
        """A key for one purpose (``"urls"``, ``"owners"``): HMAC-SHA256 of the purpose."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).digest()


def read_keys(path: str | os.PathLike[str]) -> list[str]:
    """The keys of a key file (see the module docstring); ParamError naming the line, never the key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError("api_keys", "a readable UTF-8 file of API keys, one per line", str(file)) from exc
    keys = []
    lo, hi = KEY_CHARS
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split("#", 1)[0].strip()
        if not key:
            continue
        if not (lo <= len(key) <= hi) or not key.isprintable() or any(c.isspace() for c in key):
            raise ParamError("api_keys", f"one key of {lo}..{hi} printable characters without spaces per line",
                             f"line {number} of {file} ({len(key)} characters; the key itself is not shown)")
        keys.append(key)
    if not keys:
        raise ParamError("api_keys", "a file with at least one key (one per line, # comments)", str(file))
    return keys


class ApiKeys:
    """The keys of ``path``, held as digests (see the module docstring).

    >>> keys = ApiKeys("keys.txt", ServerSecret.of_store("runs/serve"))  # doctest: +SKIP
    >>> keys.owner("Bearer " + key)  # doctest: +SKIP
    '3f5a...'
    """

    def __init__(self, path: str | os.PathLike[str], secret: ServerSecret) -> None:
        self.path = Path(path)
        self._hash_key = secret.derive("owners")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._digests: tuple[bytes, ...] = ()
        self._reload()
        if self.path.stat().st_mode & 0o077:
            import warnings

            warnings.warn(f"{self.path}: the API key file can be read by other users; chmod 600 it", stacklevel=2)

    def __repr__(self) -> str:
        return f"ApiKeys({str(self.path)!r}, {len(self._digests)} keys)"

    def __len__(self) -> int:
        return len(self._digests)

    def digest(self, key: str) -> bytes:
        return hmac.new(self._hash_key, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def _reload(self) -> None:
        """Read the file again when its size or modification time changed (a broken edit keeps the old keys)."""
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        digests = tuple(self.digest(k) for k in read_keys(self.path))
        with self._lock:
            self._digests, self._stamp = digests, stamp

    def owner(self, authorization: str | None) -> str:
        """The owner id (hex digest) of the key in an ``Authorization: Bearer KEY`` header; 401 otherwise."""
        if not authorization:
            raise unauthorized("Authorization: must be 'Bearer <API key>'; got no Authorization header")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise unauthorized("Authorization: must be 'Bearer <API key>'; got another form (not shown)")
        try:
            self._reload()
        except (OSError, ValueError):
            pass  # a file being rewritten or a broken edit: the keys read last stay in force
        presented = self.digest(key)
        match = False
        for digest in self._digests:  # every entry, whatever matched: the time says nothing
            match |= hmac.compare_digest(presented, digest)
        if not match:
            raise unauthorized("Authorization: must carry an API key of this server; got an unknown key")
        return presented.hex()
