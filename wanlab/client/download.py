"""Downloading a finished task's files, verified before anything uses them.

A file on the service's own address (a wanlab server's signed URLs) comes through the client's
connections; a file elsewhere (the hosted API's video URLs, on a CDN) through
:mod:`wanlab.netguard` under a :class:`~wanlab.netguard.NetPolicy` (https to public addresses by
default), never with the API key. Each file is written to a temporary name and renamed when whole:
its size must match ``Content-Length``, stay under a limit, and its sha256 match the one the
service gives (when it gives one).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, UnsafeURLError
from ..fsutil import atomic_file
from ..netguard import NetPolicy, stream
from .transport import Transport, shown_url

#: The largest file accepted (an 81-frame 1280x720 mp4 is tens of MB; a lossless copy a few hundred).
MAX_BYTES = 4 << 30
CHUNK = 1 << 20


@dataclass(frozen=True)
class Downloaded:
    """A file that arrived whole.

    Attributes:
        path: where it is.
        size: its size in bytes.
        sha256: its sha256 (hex).
        seconds: how long the download took.
    """

    path: Path
    size: int
    sha256: str
    seconds: float


def fetch(transport: Transport, url: str, target: Path, *, policy: NetPolicy | None = None,
          sha256: str | None = None, max_bytes: int = MAX_BYTES) -> Downloaded:
    """Download ``url`` to ``target`` (atomically), verified as the module docstring says.

    Args:
        transport: the service's connection (used when ``url`` is on the service's address).
        url: the file's URL.
        target: where to write it.
        policy: where URLs on other hosts may be fetched from (None: https to public addresses).
        sha256: the digest the file must have (None: not checked).
        max_bytes: the largest file accepted.

    Returns:
        The :class:`Downloaded` file.

    Raises:
        DownloadError: refused by the policy, a non-200 answer, too large, broken off, shorter than
            promised, or another sha256.

    Example:
        >>> fetch(transport, result["videos"][0]["video_url"], Path("video.mp4"))  # doctest: +SKIP
    """
    start = time.perf_counter()
    digest = hashlib.sha256()
    size = 0
    with _response(transport, url, policy) as response:
        promised = response.headers.get("content-length")
        expected = int(promised) if promised and promised.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise DownloadError(f"{shown_url(url)}: {expected} bytes is more than the {max_bytes} accepted")
        with atomic_file(target) as tmp, open(tmp, "wb") as out:
            try:
                for chunk in response.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{shown_url(url)}: more than the {max_bytes} bytes accepted")
                    digest.update(chunk)
                    out.write(chunk)
            except _transport_errors() as exc:
                raise DownloadError(f"{shown_url(url)}: the download broke off after {size} bytes "
                                    f"({type(exc).__name__})") from None
            if expected is not None and size != expected:
                raise DownloadError(f"{shown_url(url)}: {size} bytes arrived of the {expected} promised")
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                raise DownloadError(f"{shown_url(url)}: the file's sha256 {digest.hexdigest()[:16]}... is not the "
                                    f"{sha256[:16]}... the service gives")
    transport.count("bytes", size)
    return Downloaded(target, size, digest.hexdigest(), time.perf_counter() - start)


def fetch_json(transport: Transport, url: str, *, policy: NetPolicy | None = None) -> Any:
    """A small JSON document (a run's record) from ``url``.

    Args:
        transport: the service's connection.
        url: the document's URL.
        policy: where URLs on other hosts may be fetched from.

    Returns:
        The parsed JSON.

    Raises:
        DownloadError: the download failed or is not JSON.
    """
    import json

    with _response(transport, url, policy) as response:
        data = response.read()
    transport.count("bytes", len(data))
    try:
        return json.loads(data)
    except ValueError:
        raise DownloadError(f"{shown_url(url)}: not a JSON document ({len(data)} bytes)") from None


@contextlib.contextmanager
def _response(transport: Transport, url: str, policy: NetPolicy | None) -> Iterator[Any]:
    """An open response for ``url``.

    Through the service's connections when it is on the service's address, else through the
    network guard (no key, every hop checked).
    """
    if transport.same_origin(url):
        response = transport.send("GET", url, stream=True, what=f"download {shown_url(url)}")
        try:
            yield response
        finally:
            response.close()
        return
    try:
        with stream("GET", url, policy or NetPolicy()) as response:
            if response.status_code != 200:
                response.read()
                raise DownloadError(f"download {shown_url(url)}: the host answered {response.status_code} "
                                    f"{response.reason_phrase}", response.status_code)
            yield response
    except UnsafeURLError as exc:
        raise DownloadError(f"download refused: {exc} (pass connect(..., net_policy=NetPolicy(...)) to allow "
                            "that host)") from None
    except (OSError, *_transport_errors()) as exc:  # type: ignore[misc]  # mypy reads no star in except
        raise DownloadError(f"download {shown_url(url)}: {type(exc).__name__}: {exc}") from None


def _transport_errors() -> tuple[type[Exception], ...]:
    import httpx

    return (httpx.TransportError, httpx.StreamError)
