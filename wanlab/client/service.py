"""Which kind of service a base URL is, told apart honestly, and the identity its runs are keyed by.

- A **wanlab server** (``wanlab serve``) publishes its model's :class:`~wanlab.models.identity.ModelIdentity`
  at ``GET /health``: run keys are those of the same request run locally on the same weights, and
  each run's lossless copy and record are fetched, so its frames are exact.
- Any other service with the hosted API's routes (**the hosted API**) is known only by its address
  and ``model_name``: the identity is built from those (``source="service"``), frames come from its
  lossy mp4 (``exact=False``), and its requests follow the API's rules (the four sizes, 81 frames).

``kind="auto"`` asks ``/health`` and takes a wanlab identity when one is there, else the hosted
API's; ``kind="wanlab"`` insists on one; ``kind="api"`` asks nothing (the hosted API's mode, also
against a wanlab server).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParamError, ServiceError
from ..models.identity import RULES, ModelIdentity
from ..params import API_MODEL_NAMES
from .transport import Transport

KINDS = ("auto", "wanlab", "api")
#: The ``model_name`` the hosted API's Wan 2.1 text-to-video endpoint is asked for.
API_MODEL_NAME = API_MODEL_NAMES[0]
HEALTH = "/health"
#: Statuses of ``/health`` that mean "not a wanlab server" (the route is not there, or not open).
NOT_WANLAB = (400, 401, 403, 404, 405, 410, 501)


@dataclass(frozen=True)
class ServiceInfo:
    """What the client knows about a service.

    Attributes:
        kind: ``"wanlab"`` or ``"api"``.
        identity: the identity its runs are keyed by.
        accel: the acceleration setting it runs (a wanlab server's own, else None).
        queue_limit: how many tasks it queues for one key (None: not said).
        health: the ``/health`` answer it came from.
    """

    kind: str
    identity: ModelIdentity
    accel: Mapping[str, Any] | None = None
    queue_limit: int | None = None
    health: Mapping[str, Any] = field(default_factory=dict)


def canonical_url(base_url: str) -> str:
    """A base URL as identities hold it: scheme and host in lower case, no default port, no trailing slash.

    Args:
        base_url: a service's address.

    Returns:
        The canonical form.

    Example:
        >>> canonical_url("HTTPS://API.Example.org:443/")
        'https://api.example.org'
    """
    import httpx

    url = httpx.URL(base_url)
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = "" if url.port in (None, default) else f":{url.port}"
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host.lower()}{port}{url.path.rstrip('/')}"


def service_identity(base_url: str, model_name: str = API_MODEL_NAME, rules: str = "api") -> ModelIdentity:
    """The identity of a service that is not wanlab.

    Its address and ``model_name``, hashed (so the same request to the same service has the same run
    key); frames lossy, no latents.

    Args:
        base_url: the service's address.
        model_name: the model's name in its API.
        rules: ``"api"`` or ``"local"``.

    Returns:
        The :class:`~wanlab.models.identity.ModelIdentity` (source ``"service"``).

    Raises:
        ParamError: ``rules`` is not one of :data:`~wanlab.models.identity.RULES`.

    Example:
        >>> service_identity("https://api.example.org").source
        'service'
    """
    if rules not in RULES:
        raise ParamError("rules", f"one of {', '.join(RULES)}", rules)
    settings = {"service": canonical_url(base_url), "model_name": model_name}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return ModelIdentity(model_name, "service", fingerprint, settings, native={}, exact=False, latents=False,
                         rules=rules)


def probe(transport: Transport, kind: str, *, model_name: str = API_MODEL_NAME, rules: str | None = None,
          ready_timeout: float = 120.0) -> ServiceInfo:
    """Tell what ``transport``'s service is (see the module docstring).

    Waits up to ``ready_timeout`` seconds while a wanlab server loads its model (503).

    Args:
        transport: the connection to the service.
        kind: ``"auto"`` (ask ``/health``), ``"wanlab"`` (insist on a wanlab server) or ``"api"``.
        model_name: the model's name in run keys when the service is not wanlab.
        rules: the rules to use (None: the service's own; for a wanlab server it must be its own).
        ready_timeout: seconds to wait for a loading server.

    Returns:
        The :class:`ServiceInfo`.

    Raises:
        ParamError: a bad ``kind``, or ``rules`` other than a wanlab server's own.
        ServiceError: with ``kind="wanlab"``, a service that is not one; or ``/health`` failing.
    """
    if kind not in KINDS:
        raise ParamError("kind", f"one of {', '.join(KINDS)}", kind)
    if kind == "api":
        return ServiceInfo("api", service_identity(transport.base_url, model_name, rules or "api"))
    what = f"GET {transport.base_url}{HEALTH}"
    try:
        health = transport.json("GET", HEALTH, what=what, patience=ready_timeout)
    except ServiceError as exc:
        if kind == "auto" and exc.status in NOT_WANLAB:
            return ServiceInfo("api", service_identity(transport.base_url, model_name, rules or "api"))
        if kind == "wanlab" and exc.status in NOT_WANLAB:
            raise ServiceError(f"{transport.base_url} is not a wanlab server: {what} answered {exc.status}; "
                               "connect with kind='api' to use it as a hosted API", exc.status) from None
        raise
    identity = identity_of(health)
    if identity is None:
        if kind == "wanlab":
            raise ServiceError(f"{transport.base_url} is not a wanlab server: {what} names no model identity "
                               "(model_id, source, fingerprint); connect with kind='api' to use it as a hosted API")
        return ServiceInfo("api", service_identity(transport.base_url, model_name, rules or "api"), health=health)
    if rules is not None and rules != identity.rules:
        raise ParamError("rules", f"the server's own ({identity.rules}) for a wanlab server", rules)
    return ServiceInfo("wanlab", identity, accel=_accel_of(health), queue_limit=_queue_limit(health), health=health)


def identity_of(health: Any) -> ModelIdentity | None:
    """The :class:`ModelIdentity` a wanlab server's ``/health`` answer carries (None when it has none).

    Its frames are exact (lossless copies are fetched); latents do not travel.

    Args:
        health: the parsed ``/health`` answer.

    Returns:
        The identity, or None.

    Raises:
        ServiceError: an identity is there but cannot be read.

    Example:
        >>> identity_of({"status": "ok"}) is None
        True
        >>> identity_of({"model": {"model_id": "toy", "source": "builtin", "fingerprint": "ab"}}).latents
        False
    """
    if not isinstance(health, Mapping):
        return None
    for candidate in (health.get("identity"), health.get("model"), health):
        if isinstance(candidate, Mapping) and all(isinstance(candidate.get(k), str)
                                                  for k in ("model_id", "source", "fingerprint")):
            data = {**dict(candidate), "latents": False}
            try:
                return ModelIdentity.from_dict(data)
            except (TypeError, ValueError) as exc:
                raise ServiceError(f"the server's identity at {HEALTH} cannot be read: {exc}") from None
    return None


def _accel_of(health: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for candidate in (health.get("accel"), (health.get("identity") or {}).get("accel")
                      if isinstance(health.get("identity"), Mapping) else None):
        if isinstance(candidate, Mapping):
            return dict(candidate)
    return None


def _queue_limit(health: Mapping[str, Any]) -> int | None:
    """How many tasks the server queues for one key, from the names a health answer may give it.

    A wanlab server's ``max_queued_per_key`` when smaller than its queue.
    """
    server = health.get("server")
    per_key = server.get("max_queued_per_key") if isinstance(server, Mapping) else None
    whole = _whole_queue(health)
    if isinstance(per_key, int) and not isinstance(per_key, bool) and per_key > 0:
        return per_key if whole is None else min(whole, per_key)
    return whole


def _whole_queue(health: Mapping[str, Any]) -> int | None:
    candidates: list[Any] = [health.get(k) for k in ("queue_limit", "max_queue", "queue_size", "maxsize")]
    for section in ("queue", "server"):
        part = health.get(section)
        if isinstance(part, Mapping):
            candidates += [part.get(k) for k in ("limit", "maxsize", "max", "capacity", "queue_limit", "queue_size")]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
