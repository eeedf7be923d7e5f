"""Signed, expiring URLs for a task's files: ``/v3/files/<run key>/<name>?expires=<epoch s>&signature=<hex>``.

The signature is HMAC-SHA256 of the path and the expiry under the store's URL key
(:meth:`~wanlab.server.auth.ServerSecret.derive`), so a URL is valid for exactly its
``video_url_ttl`` seconds at every server on the store and cannot be altered to reach another
run or live longer. Only a run key (16 hex digits) and one of :data:`FILES` make a path: nothing
else on disk can be named.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from ..keys import KEY_RE
from ..video import RUN_LOSSLESS, RUN_MP4, RUN_RECORD
from .errors import ApiError

PREFIX = "/v3/files"
EXPIRES_RE = re.compile(r"[0-9]{1,12}")
SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
#: What a signed URL may name in a run folder, and the media type it is served as.
FILES: Mapping[str, str] = {RUN_MP4: "video/mp4", RUN_LOSSLESS: "video/x-matroska", RUN_RECORD: "application/json"}


def file_path(run_key: str, name: str) -> str:
    """The URL path of one run file (before signing)."""
    return f"{PREFIX}/{run_key}/{name}"


class UrlSigner:
    """Makes and checks signed file URLs valid ``ttl`` seconds.

    Example:
        >>> signer = UrlSigner(b"k" * 32, ttl=3600)
        >>> url = signer.url("http://127.0.0.1:8000", "0123456789abcdef", "video.mp4", now=0)
        >>> url.split("?")[0], signer.check("/v3/files/0123456789abcdef/video.mp4", "3600", url[-64:], now=10)
        ('http://127.0.0.1:8000/v3/files/0123456789abcdef/video.mp4', None)
    """

    def __init__(self, key: bytes, ttl: int) -> None:
        self._key = key
        self.ttl = int(ttl)

    def __repr__(self) -> str:
        return f"UrlSigner(ttl={self.ttl})"

    def signature(self, path: str, expires: int) -> str:
        """The HMAC-SHA256 (hex) of ``path`` and its expiry time, under this server's secret."""
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base: str, run_key: str, name: str, *, now: float | None = None) -> str:
        """The signed URL of one run file under ``base`` (the server's public address).

        Args:
            base: the server's public address.
            run_key: the run's key.
            name: a file of :data:`FILES`.
            now: the time it is signed at (None: now); it expires ``ttl`` seconds later.

        Returns:
            The URL with its ``expires`` and ``signature`` parameters.

        Raises:
            ValueError: not a run key, or a file a URL may not name.
        """
        if not KEY_RE.match(run_key) or name not in FILES:
            raise ValueError(f"signed URL: must name a run key and one of {', '.join(FILES)}; got {run_key}/{name}")
        path = file_path(run_key, name)
        expires = int(time.time() if now is None else now) + self.ttl
        return f"{base.rstrip('/')}{path}?{urlencode({'expires': expires, 'signature': self.signature(path, expires)})}"

    def check(self, path: str, expires: str | None, signature: str | None, *, now: float | None = None) -> None:
        """Return when the URL's signature is right and it has not expired.

        Args:
            path: the URL's path.
            expires: its ``expires`` parameter.
            signature: its ``signature`` parameter.
            now: the time to check against (None: now).

        Raises:
            ApiError: 403 ``INVALID_SIGNATURE`` for a missing or altered signature, ``URL_EXPIRED``
                once it has expired.
        """
        if not expires or not signature or not EXPIRES_RE.fullmatch(expires):
            raise ApiError(403, "INVALID_SIGNATURE", "signature: must come with expires, as in the video_url the "
                                                     "task result gave; got a URL without them", {"path": path})
        good = self.signature(path, int(expires))
        given = signature.lower() if SIGNATURE_RE.fullmatch(signature) else "x" * len(good)
        if not hmac.compare_digest(good, given):
            raise ApiError(403, "INVALID_SIGNATURE", "signature: must be the one this server made for this path and "
                                                     "expiry; got another (the URL was altered)", {"path": path})
        if int(expires) < (time.time() if now is None else now):
            raise ApiError(403, "URL_EXPIRED", f"expires: must be in the future; the URL expired at {expires} "
                                               "(poll task-result for a fresh video_url)", {"path": path})
