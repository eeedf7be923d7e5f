"""The client of any service with the hosted Wan 2.1 T2V API's contract: ``wanlab.connect``.

- :mod:`~wanlab.client.credentials`: where the API key comes from; a holder that never shows it.
- :mod:`~wanlab.client.transport`: HTTP with timeouts, kept-alive connections, bounded retries and
  the service's refusals as wanlab's errors.
- :mod:`~wanlab.client.service`: which kind of service a URL is (a wanlab server or the hosted API).
- :mod:`~wanlab.client.download` and :mod:`~wanlab.client.fetched`: verified downloads, as Videos.
- :mod:`~wanlab.client.remote`: :class:`Remote`, the backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import lazy
from ..errors import ParamError
from ..values import check_choice, check_int, check_number

if TYPE_CHECKING:  # pragma: no cover
    from ..netguard import NetPolicy
    from .remote import Remote
    from .transport import RetryPolicy

__all__ = ["connect", "Remote", "RetryPolicy", "ApiKey", "read_key_file"]


def connect(base_url: str, api_key: Any = None, *, kind: str = "auto", max_in_flight: int | None = None,
            timeout: float = 30.0, retry: RetryPolicy | None = None, net_policy: NetPolicy | None = None,
            model_name: str | None = None, rules: str | None = None, ready_timeout: float = 120.0,
            poll_min: float = 0.01, poll_max: float = 5.0) -> Remote:
    """Connect to a service with the hosted API's contract, as a backend.

    The service is a ``wanlab serve`` box or the hosted API. The result is usable wherever a local
    pipeline is: ``sweep.run(remote, store)``, ``remote.generate(...)``, ``remote.submit(...)`` /
    ``task_result`` / ``wait``. The API key never appears in a record, log line, message or repr.

    Args:
        base_url: the service's http(s) address (no query or fragment).
        api_key: the Bearer key, a string or an :class:`ApiKey` (None: ``$WANLAB_API_KEY``, else
            ``$NOVITA_API_KEY``, else none, for a server started with ``--no-auth``).
        kind: ``"auto"`` (ask ``GET /health``: a wanlab server publishes its model's identity there),
            ``"wanlab"`` (insist on one) or ``"api"`` (the hosted API's mode: lossy mp4 downloads, the
            API's rules, run keys from the service's address and ``model_name``).
        max_in_flight: tasks kept at the service at once (None: the server's queue limit, at most 32,
            else 4); a sweep keeps one more point started, downloading and storing while the service works.
        timeout: seconds per connect, read and write.
        retry: how requests that got no answer are retried (:class:`RetryPolicy`).
        net_policy: where video URLs on other hosts may be fetched from (None: https to public addresses).
        model_name: the model's name in run keys in the API's mode (None: ``"wan2.1-t2v"``).
        rules: ``"local"`` lets a service used in the API's mode take local sizes and ``num_frames``
            (a ``wanlab serve --allow-local-sizes`` box); None: the service's own.
        ready_timeout: seconds to wait for a server that is still loading its model.
        poll_min: the shortest pause between polls of a young task, in seconds.
        poll_max: the longest pause between polls, in seconds.

    Returns:
        The :class:`Remote` backend (``with remote:`` closes its connections).

    Raises:
        ParamError: a bad argument (the URL, ``kind``, ``rules``, ``max_in_flight``, ...).
        AuthError: the service refused the API key.
        ServiceError: the service cannot be reached, is not ready in ``ready_timeout``, or is not a
            wanlab server when ``kind="wanlab"``.

    Example:
        >>> remote = wanlab.connect("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> remote.generate(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
        Video(17 frames, 64x64, 16 fps, seed=1, digest=...)
    """
    import warnings

    from .credentials import find_key
    from .remote import Remote
    from .service import API_MODEL_NAME, probe
    from .transport import Transport

    url = check_base_url(base_url)
    check_choice("kind", kind, ("auto", "wanlab", "api"))
    check_int("max_in_flight", max_in_flight, 1, 1024, optional=True)
    check_number("ready_timeout", ready_timeout, 0, rule="a number of seconds >= 0")
    if rules is not None:
        check_choice("rules", rules, ("api", "local"))
    key = find_key(api_key)
    if key is not None and url.startswith("http://") and not _loopback(url):
        warnings.warn(f"{url} is plain http: the API key travels unencrypted; use https", stacklevel=2)
    transport = Transport(url, key, timeout=timeout, retry=retry, connections=max(16, (max_in_flight or 4) * 2))
    try:
        info = probe(transport, kind, model_name=model_name or API_MODEL_NAME, rules=rules,
                     ready_timeout=ready_timeout)
    except BaseException:
        transport.close()
        raise
    if kind == "auto" and info.kind == "api":
        warnings.warn(f"{url} publishes no wanlab model identity at /health, so it is used as the hosted API: frames "
                      "from its lossy mp4, the API's rules, every task billed; pass kind='api' to say so (or check "
                      "the URL of a wanlab server)", stacklevel=2)
    return Remote(transport, info, max_in_flight=max_in_flight, net_policy=net_policy, poll_min=poll_min,
                  poll_max=poll_max)


def check_base_url(base_url: Any) -> str:
    """``base_url`` as the client uses it (no trailing slash), or a ParamError.

    Http(s), a host, and no user name, password, query or fragment (a key goes in ``api_key``, never in
    a URL).
    """
    import httpx

    if not isinstance(base_url, str) or not base_url.strip():
        raise ParamError("base_url", "an http(s) URL such as 'http://127.0.0.1:8000'", base_url)
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError):
        raise ParamError("base_url", "an http(s) URL such as 'http://127.0.0.1:8000'", base_url) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ParamError("base_url", "an http(s) URL with a host, such as 'https://api.example.org'", base_url)
    if url.userinfo:
        raise ParamError("base_url", "a URL without a user name or password (pass the key as api_key)",
                         f"{url.scheme}://***@{url.host}")
    if url.query or url.fragment:
        raise ParamError("base_url", "a URL without a query or fragment", base_url.split("?")[0].split("#")[0] + "?...")
    return base_url.strip().rstrip("/")


def _loopback(url: str) -> bool:
    import httpx

    from ..netguard import address_kind, resolve

    host = httpx.URL(url).host
    try:
        return all(address_kind(a) == "loopback" for a in resolve(host, 80))
    except OSError:
        return False


__getattr__, __dir__ = lazy.attach(__name__, {"Remote": "remote", "RetryPolicy": "transport", "ApiKey": "credentials",
                                             "read_key_file": "credentials"})
