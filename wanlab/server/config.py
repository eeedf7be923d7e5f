"""What an operator decides when starting ``wanlab serve``: one validated, frozen :class:`ServerConfig`.

Checked before anything loads or listens, with wanlab's messages (``port: must be ...; got ...``):
a server without ``api_keys`` starts only on a loopback address with ``no_auth``; webhook
destinations must be ``HOST[:PORT]`` entries; LoRA folders must exist. Nothing here imports
FastAPI, uvicorn or torch.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import check_choice
from ..errors import ParamError
from ..netguard import parse_host
from ..store import default_store_path
from ..values import check_bool, check_int, check_number, check_text

#: How long a signed video URL stays valid, as the hosted API's example says ("3600").
DEFAULT_URL_TTL = 3600
#: The largest request body accepted (a published body with three LoRA URLs is a few KiB).
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_QUEUE_SIZE = 100
#: Seconds a request body may take to arrive whole (a body that trickles in is cut: 408).
DEFAULT_BODY_TIMEOUT_S = 30.0
#: Without ``max_queued_per_key``: one key may keep this share of the queue waiting (at least one task).
DEFAULT_KEY_SHARE = 4


def default_max_queued_per_key(queue_size: int) -> int:
    """The default per-key bound: a quarter of the queue (so four keys at least share it), at least 1.

    Args:
        queue_size: the whole queue's bound.

    Returns:
        The per-key bound.

    Example:
        >>> default_max_queued_per_key(100)
        25
    """
    return max(1, queue_size // DEFAULT_KEY_SHARE)
#: The acceleration preset ``fast_mode: true`` runs (README "Serve the API": the study behind the choice).
FAST_MODE_PRESET = "taylorseer-fast"
LOOPBACK_NAMES = ("localhost",)
#: Webhook delivery: the first try and up to five retries (the published behaviour), 5 s each.
WEBHOOK_ATTEMPTS = 6
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_BACKOFF_S = 2.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1).

    Args:
        host: a host name or address.

    Returns:
        Whether it is loopback.

    Example:
        >>> is_loopback("localhost"), is_loopback("127.0.0.2"), is_loopback("[::1]"), is_loopback("0.0.0.0")
        (True, True, True, False)
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``wanlab serve`` is started with, validated when it is made.

    Each field is a ``wanlab serve`` option of the same name (``wanlab serve --help``).

    Attributes:
        model: a built-in model, a local diffusers folder or a hub id from the local cache.
        host: the address to listen on.
        port: the port.
        api_keys: the key file, one key per line (re-read when it changes).
        no_auth: serve without keys (only on a loopback ``host``).
        store: the run store for tasks and videos.
        workers: copies of the model generating at once (with ``ray``: Ray workers; None: as many as
            the cluster holds).
        ray: a Ray cluster's address (``""``: ``$RAY_ADDRESS`` or a Ray on this machine; None: no Ray).
        allow_local_sizes: also accept ``num_frames`` and any size that is a multiple of 16.
        webhook_allow: hosts webhooks may be sent to (none: bodies with a webhook are refused).
        webhook_attempts: tries per webhook.
        webhook_timeout_s: seconds per webhook try.
        webhook_backoff_s: seconds before the first retry, doubling for each next one.
        public_url: the base of the video URLs handed out (None: the address a client called).
        url_ttl: seconds a signed video URL stays valid.
        max_body: the largest request body in bytes (larger: 413).
        body_timeout_s: seconds a request body may take to arrive (slower: 408).
        queue_size: tasks waiting at most (more: 429 with Retry-After).
        max_queued_per_key: tasks one API key may have waiting (None: a quarter of ``queue_size``).
        lora_dirs: folders whose .safetensors files requests may name as LoRA paths.
        lora_cache: where LoRA downloads are kept by sha256.
        lora_max_bytes: the largest LoRA download.
        fast_mode_accel: the acceleration preset that ``fast_mode: true`` runs.
        device: where a local model runs (None: CUDA if present).
        dtype: the model's dtype (None: bfloat16 on CUDA, float32 on CPU).
        drain_timeout_s: on SIGTERM, seconds to wait for running tasks before writing them back as
            queued (None: wait for them).

    Raises:
        ParamError: a field that breaks its rule, naming it (e.g. ``no_auth`` on a public ``host``).

    Example:
        >>> ServerConfig(model="tiny", no_auth=True).public_base
        'http://127.0.0.1:8000'
    """

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: str | None = None
    no_auth: bool = False
    store: str = field(default_factory=lambda: str(default_store_path()))
    workers: int | None = 1
    ray: str | None = None
    allow_local_sizes: bool = False
    webhook_allow: tuple[str, ...] = ()
    webhook_attempts: int = WEBHOOK_ATTEMPTS
    webhook_timeout_s: float = WEBHOOK_TIMEOUT_S
    webhook_backoff_s: float = WEBHOOK_BACKOFF_S
    public_url: str | None = None
    url_ttl: int = DEFAULT_URL_TTL
    max_body: int = DEFAULT_MAX_BODY
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_queued_per_key: int | None = None
    lora_dirs: tuple[str, ...] = ()
    lora_cache: str | None = None
    lora_max_bytes: int = 2 << 30
    fast_mode_accel: str = FAST_MODE_PRESET
    device: str | None = None
    dtype: str | None = None
    drain_timeout_s: float | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        check_text("model", self.model, 1)
        check_text("host", self.host, 1)
        set_("port", check_int("port", self.port, 1, 65535))
        if self.ray is not None:  # a Ray pool: the cluster's address ("" = $RAY_ADDRESS or a Ray on this machine)
            check_text("ray", self.ray, 0, 512)
            set_("workers", check_int("workers", self.workers, 1, 1024, optional=True))
            check_choice(ray=self.ray, device=self.device)  # the rule wanlab.backends.open_backend applies
        else:
            set_("workers", check_int("workers", 1 if self.workers is None else self.workers, 1, 64))
        set_("url_ttl", check_int("url_ttl", self.url_ttl, 1, 7 * 86400))
        set_("max_body", check_int("max_body", self.max_body, 1024, 16 << 20))
        set_("body_timeout_s", check_number("body_timeout_s", self.body_timeout_s, 0, 3600, lo_open=True))
        set_("queue_size", check_int("queue_size", self.queue_size, 1, 100_000))
        if self.max_queued_per_key is None:
            set_("max_queued_per_key", default_max_queued_per_key(self.queue_size))
        set_("max_queued_per_key", check_int("max_queued_per_key", self.max_queued_per_key, 1, self.queue_size,
                                             rule=f"an integer in 1..{self.queue_size} (at most queue_size)"))
        set_("lora_max_bytes", check_int("lora_max_bytes", self.lora_max_bytes, 1))
        set_("webhook_attempts", check_int("webhook_attempts", self.webhook_attempts, 1, 20))
        set_("webhook_timeout_s", check_number("webhook_timeout_s", self.webhook_timeout_s, 0, 120, lo_open=True))
        set_("webhook_backoff_s", check_number("webhook_backoff_s", self.webhook_backoff_s, 0, 600))
        check_number("drain_timeout_s", self.drain_timeout_s, 0, optional=True)
        for name in ("no_auth", "allow_local_sizes"):
            check_bool(name, getattr(self, name))
        if self.api_keys is None and not self.no_auth:
            raise ParamError("api_keys", "a file of API keys (one per line); or, on a loopback host only, "
                             "--no-auth to serve without keys", None)
        if self.api_keys is not None and self.no_auth:
            raise ParamError("no_auth", "left off when --api-keys is given (keys are then required)", True)
        if self.no_auth and not is_loopback(self.host):
            raise ParamError("host", "a loopback address (127.0.0.1, ::1, localhost) when serving with --no-auth",
                             self.host)
        set_("webhook_allow", tuple(self.webhook_allow))
        for entry in self.webhook_allow:
            try:
                parse_host(entry)
            except ValueError as exc:
                raise ParamError("webhook_allow", "HOST or HOST:PORT entries", entry) from exc
        set_("lora_dirs", tuple(str(Path(d).expanduser().resolve()) for d in self.lora_dirs))
        for folder in self.lora_dirs:
            if not Path(folder).is_dir():
                raise ParamError("lora_dirs", "existing folders", folder)
        if self.public_url is not None:
            url = check_text("public_url", self.public_url, 1, 2048).rstrip("/")
            if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
                raise ParamError("public_url", "an http(s) base URL without query, e.g. https://gpu1.lab.example",
                                 self.public_url)
            set_("public_url", url)
        from ..accel.setting import Accel

        Accel.coerce(self.fast_mode_accel, "fast_mode_accel")

    @property
    def public_base(self) -> str:
        """The base of the URLs this server hands out (``--public-url``, else its own address)."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def webhook_warnings(self) -> list[str]:
        """Sentences about allow-list entries that can never be delivered to (logged when the server starts).

        A loopback name admits the name only, never the loopback address it resolves to.
        """
        return [f"--webhook-allow {entry}: a name admits only public addresses, so no webhook to it can be "
                f"delivered; list the address instead (127.0.0.1:PORT or [::1]:PORT)"
                for entry in self.webhook_allow if parse_host(entry)[0] in LOOPBACK_NAMES]

    @property
    def auth(self) -> bool:
        """Whether requests need an API key (not ``--no-auth``)."""
        return not self.no_auth

    def summary(self) -> dict[str, Any]:
        """What ``GET /health`` says about the service (nothing secret: no key, no path)."""
        return {"auth": self.auth, "workers": self.workers, "ray": self.ray is not None,
                "allow_local_sizes": self.allow_local_sizes,
                "rules": "local" if self.allow_local_sizes else "api", "url_ttl": self.url_ttl,
                "max_body": self.max_body, "queue_size": self.queue_size,
                "max_queued_per_key": self.max_queued_per_key if self.auth else None,
                "idempotency_header": "Idempotency-Key", "long_poll": {"param": "wanlab_wait", "max_s": 30.0},
                "webhooks": bool(self.webhook_allow),
                "fast_mode_accel": self.fast_mode_accel, "lora_sources": {
                    "files": bool(self.lora_dirs), "hub_cache": True, "https": True,
                    "max_bytes": self.lora_max_bytes}}
