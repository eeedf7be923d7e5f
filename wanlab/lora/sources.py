"""Where a LoRA path points (:func:`locate`), under which :class:`SourcePolicy`.

A local file, a Hugging Face repo (or a file in it) in the local hub cache, or an https URL
downloaded once into a cache keyed by the file's sha256.

A :class:`SourcePolicy` says which of these a caller accepts: the library default takes any local
path, the hub cache and public https URLs; the HTTP service uses :meth:`SourcePolicy.service`
(files only inside given folders, hub cache only, https to public addresses only, a size limit).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LoRAError, UnsafeURLError
from ..fsutil import fsync_dir, umask, write_json
from ..netguard import NetPolicy, stream

#: ``owner/repo``, ``owner/repo/file.safetensors`` or the same after ``hf://``
_HUB = re.compile(r"^(?:hf://)?(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:/(?P<file>[^\s]+))?$")
GIB = 1 << 30


def default_cache_dir() -> Path:
    """Where downloaded LoRA files are kept.

    Returns:
        ``$WANLAB_LORA_CACHE``, else ``~/.cache/wanlab/loras``.

    Example:
        >>> default_cache_dir()  # doctest: +SKIP
        PosixPath('/root/.cache/wanlab/loras')
    """
    return Path(os.environ.get("WANLAB_LORA_CACHE") or Path.home() / ".cache" / "wanlab" / "loras")


@dataclass(frozen=True)
class SourcePolicy:
    """Which LoRA path forms are accepted, and the limits of downloads.

    The library default takes any local path, the hub cache and public https URLs; the HTTP service
    uses :meth:`service`.

    Attributes:
        local_roots: None accepts any local path; a tuple accepts only files that resolve (symlinks
            followed) inside one of these folders, relative paths being taken inside them; ``()``
            accepts no local file.
        hub: Accept Hugging Face repo ids through the local hub cache.
        hub_download: Also fetch missing ones from the Hub.
        hub_cache: The hub cache (default huggingface_hub's).
        urls: Accept URLs, reached under ``net``.
        net: The network policy (https to public addresses by default).
        cache_dir: Where downloads are kept (default :func:`default_cache_dir`).
        max_bytes: The most bytes a download may have.
        max_seconds: The most seconds a download may take in all.

    Example:
        >>> SourcePolicy.service(["/srv/loras"], cache_dir="/srv/cache").local_roots
        ('/srv/loras',)
    """

    local_roots: tuple[str, ...] | None = None
    hub: bool = True
    hub_download: bool = False
    hub_cache: str | None = None
    urls: bool = True
    net: NetPolicy = field(default_factory=NetPolicy)
    cache_dir: str | None = None
    max_bytes: int = 4 * GIB
    max_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.local_roots is not None:
            object.__setattr__(self, "local_roots", tuple(str(Path(r).expanduser()) for r in self.local_roots))

    @classmethod
    def service(cls, local_roots: list[str] | tuple[str, ...] = (), *, cache_dir: str, max_bytes: int = 2 * GIB,
                max_seconds: float = 600.0, allow: tuple[str, ...] = ()) -> SourcePolicy:
        """The hosted API's policy.

        Files only inside ``local_roots``, hub ids from the local cache only, https URLs to public
        addresses only (plus ``allow``-listed networks), every redirect checked alike.

        Args:
            local_roots: The folders local LoRA files may be in.
            cache_dir: Where downloads are kept.
            max_bytes: The most bytes a download may have.
            max_seconds: The most seconds a download may take.
            allow: Networks or addresses allowed besides public addresses.

        Returns:
            The policy.
        """
        return cls(local_roots=tuple(local_roots), hub=True, hub_download=False, urls=True,
                   net=NetPolicy(schemes=("https",), allow=allow, max_redirects=5, timeout_s=30.0),
                   cache_dir=cache_dir, max_bytes=max_bytes, max_seconds=max_seconds)

    def cache(self) -> Path:
        """The download cache folder.

        Returns:
            ``cache_dir``, else :func:`default_cache_dir`.
        """
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


@dataclass(frozen=True)
class Source:
    """A LoRA path resolved to a local file (:func:`locate`).

    Attributes:
        text: The path as given.
        kind: ``"file"``, ``"hub"`` or ``"url"``.
        file: The local file.
        sha256: Set when known without reading the file (downloads are stored by it).

    Example:
        >>> locate("style.safetensors").kind  # doctest: +SKIP
        'file'
    """

    text: str
    kind: str
    file: Path
    sha256: str | None = None


def locate(text: str, policy: SourcePolicy | None = None) -> Source:
    """The local file a LoRA path means under ``policy``, downloading a URL once.

    Args:
        text: A local file, ``owner/repo`` or ``owner/repo/file.safetensors`` (also after ``hf://``),
            or a URL.
        policy: Which forms are accepted (default :class:`SourcePolicy`).

    Returns:
        The :class:`Source`.

    Raises:
        LoRAError: A form the policy refuses, a missing file, a repo not in the cache or with no
            (or several) .safetensors files, or a download that fails.

    Example:
        >>> locate("Remade-AI/Cyberpunk").file  # doctest: +SKIP
        PosixPath('/root/.cache/huggingface/hub/models--Remade-AI--Cyberpunk/snapshots/.../cyberpunk.safetensors')
    """
    policy = policy or SourcePolicy()
    if "\x00" in text:
        raise LoRAError(f"loras.path: must be a path, repo id or URL without NUL characters; got {text!r}")
    if "://" in text and not text.startswith("hf://"):
        if not policy.urls:
            raise LoRAError(f"loras.path: must be a local file or a Hugging Face repo id here (URLs are not "
                            f"allowed); got {text}")
        path, sha = download(text, policy)
        return Source(text, "url", path, sha)
    hub = _HUB.match(text)
    if hub is not None and hub.group("file") and ".." in Path(hub.group("file")).parts:
        raise LoRAError(f"loras.path: a Hugging Face file must be a path inside its repo, without '..'; got {text}")
    hf_uri = text.startswith("hf://")
    # "owner/repo", "owner/repo/file" or hf://...; a missing "dir/file.safetensors" stays a local path
    hub_like = hub is not None and (hf_uri or hub.group("file") is not None or not text.endswith(".safetensors"))
    local_allowed = policy.local_roots != ()
    if local_allowed and not hf_uri:
        local = _local(text, policy)
        if local is not None:
            return Source(text, "file", _safetensors(local, text))
    if hub is not None and hub_like and policy.hub:
        file = _hub(text, hub.group("repo"), hub.group("file"), policy, local_tried=local_allowed and not hf_uri)
        return Source(text, "hub", file)
    if not local_allowed:
        raise LoRAError(f"loras.path: must be a Hugging Face repo id or an https URL here (local files are not "
                        f"allowed); got {text}")
    raise LoRAError(f"loras.path: no such LoRA file: {text}")


def _local(text: str, policy: SourcePolicy) -> Path | None:
    """The existing local file ``text`` names (inside the allowed folders, if any), or None."""
    if policy.local_roots is None:
        path = Path(text).expanduser()
        return path if path.exists() else None
    roots = [Path(root).resolve() for root in policy.local_roots]
    given = Path(text)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    outside = False
    for candidate in candidates:
        real = candidate.resolve()  # symlinks and '..' resolved before the check
        if not any(real.is_relative_to(root) for root in roots):
            outside = outside or candidate.exists() or given.is_absolute() or ".." in given.parts
            continue
        if real.exists():
            return real
    if outside:
        folders = ", ".join(str(root) for root in roots)
        raise LoRAError(f"loras.path: must be a file inside the allowed LoRA folders ({folders}); got {text}")
    return None


def _safetensors(path: Path, text: str) -> Path:
    if not path.is_file():
        raise LoRAError(f"loras.path: must be a .safetensors file, not a folder; got {text}")
    if path.suffix != ".safetensors":
        raise LoRAError(f"loras.path: must be a .safetensors file; got {text}")
    return path


def _hub(text: str, repo: str, filename: str | None, policy: SourcePolicy, *, local_tried: bool) -> Path:
    """A LoRA file from a Hugging Face repo in the local cache (or the Hub, with ``hub_download``)."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = not policy.hub_download
    try:
        if filename:
            found = Path(hf_hub_download(repo, filename, cache_dir=policy.hub_cache, local_files_only=offline))
        else:
            found = Path(snapshot_download(repo, cache_dir=policy.hub_cache, local_files_only=offline,
                                           allow_patterns=["*.safetensors", "adapter_config.json"]))
    except (OSError, ValueError, HFValidationError) as exc:  # not cached, not on the Hub, or offline
        where = policy.hub_cache or constants.HF_HUB_CACHE
        what = "neither a local file nor a Hugging Face repo" if local_tried else "not a Hugging Face repo"
        fetch = f"huggingface-cli download {repo}" + (f" {filename}" if filename else "")
        raise LoRAError(f"loras.path: {text!r} is {what} in the local hub cache ({where}); download it first "
                        f"with `{fetch}` or give a local file ({type(exc).__name__})") from exc
    if filename:
        return _safetensors(found, text)
    files = sorted(p for p in found.rglob("*.safetensors") if p.is_file())
    if len(files) != 1:
        listed = ", ".join(str(p.relative_to(found)) for p in files[:6]) or "none"
        raise LoRAError(f"loras.path: the Hugging Face repo {repo} holds {len(files)} .safetensors files ({listed}); "
                        f"name one as {repo}/<file>")
    return files[0]


def download(url: str, policy: SourcePolicy) -> tuple[Path, str]:
    """The cached copy of ``url`` and its sha256, downloaded under ``policy`` if it is not cached yet.

    Nothing is written before the URL passed the policy and the server answered 200. The bytes go
    to a temporary file in the cache, hashed on the way, and are renamed to
    ``<cache>/sha256/<hash>.safetensors`` once complete and checked; an index entry per URL
    (``<cache>/urls/<sha256 of the URL>.json``) lets later calls work offline.

    Args:
        url: The URL.
        policy: The network policy and limits.

    Returns:
        The cached file and its sha256.

    Raises:
        LoRAError: A URL the network policy refuses, an answer other than 200, a file over
            ``max_bytes`` or a download over ``max_seconds``, no connection, or bytes that are not
            a safetensors file.

    Example:
        >>> download("https://example.org/style.safetensors", SourcePolicy())  # doctest: +SKIP
        (PosixPath('/root/.cache/wanlab/loras/sha256/5be1....safetensors'), '5be1...')
    """
    import httpx

    cache = policy.cache()
    index = cache / "urls" / f"{hashlib.sha256(url.encode()).hexdigest()}.json"
    cached = _cached(index, cache)
    if cached is not None:
        return cached
    try:
        with stream("GET", url, policy.net) as response:
            if response.status_code != 200:
                raise LoRAError(f"loras.path: could not download {url}: the server answered "
                                f"{response.status_code} {response.reason_phrase}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > policy.max_bytes:
                raise LoRAError(_too_big(url, declared, policy))
            tmp, sha, size = _save(response, url, policy, cache / "sha256")
            content_type = response.headers.get("content-type", "unknown type")
    except UnsafeURLError as exc:
        raise LoRAError(f"loras.path: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise LoRAError(f"loras.path: could not download {url}: the host did not answer within "
                        f"{policy.net.timeout_s:g} s ({type(exc).__name__})") from exc
    except (OSError, httpx.HTTPError) as exc:
        raise LoRAError(f"loras.path: could not download {url} ({type(exc).__name__}: {exc}); wanlab is offline "
                        f"or the host is unreachable, and the URL is not in the LoRA cache {cache}") from exc
    try:
        _check_safetensors(tmp, url, size, content_type)
        target = cache / "sha256" / f"{sha}.safetensors"
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    write_json(index, {"url": url, "sha256": sha, "bytes": size})
    return target, sha


def _save(response: Any, url: str, policy: SourcePolicy, folder: Path) -> tuple[Path, str, int]:
    """Stream a response into a temporary file in ``folder`` within the policy's limits: (file, sha256, bytes).

    Network errors propagate (the caller words them); the temporary file never outlives a failure.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".download-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise LoRAError(f"loras.path: could not store the download of {url} in {folder}: {exc}") from exc
    tmp = Path(name)
    digest = hashlib.sha256()
    size = 0
    started = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
                if size > policy.max_bytes:
                    raise LoRAError(_too_big(url, size, policy))
                if time.monotonic() - started > policy.max_seconds:
                    raise LoRAError(f"loras.path: could not download {url}: it took longer than the "
                                    f"{policy.max_seconds:g} s allowed")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), size


def _cached(index: Path, cache: Path) -> tuple[Path, str] | None:
    import json

    try:
        sha = json.loads(index.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    blob = cache / "sha256" / f"{sha}.safetensors"
    return (blob, sha) if blob.is_file() else None


def _too_big(url: str, size: int, policy: SourcePolicy) -> str:
    return (f"loras.path: {url} must be at most {policy.max_bytes} bytes to download as a LoRA; got "
            f"{size} bytes or more")


def _check_safetensors(path: Path, url: str, size: int, content_type: str) -> None:
    """Refuse a download that is not a safetensors file (a login page, say) before it enters the cache."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise LoRAError(f"loras.path: the download from {url} is not a safetensors file ({size} bytes of "
                        f"{content_type}: {exc})") from exc
