"""HTTP to one service.

One pool of kept-alive connections, timeouts, the key, bounded retries, and the service's refusals
turned into wanlab's errors, saying what the service said.

- 400 (and 422) -> :class:`~wanlab.ParamError` with the service's field, rule and value;
- 401 -> :class:`~wanlab.errors.AuthError` "the API key was refused"; 403 -> AuthError;
- 429, and 503 (busy or loading) -> wait ``Retry-After`` (else a backoff) and send again, up to
  :attr:`RetryPolicy.busy_s` seconds in all: the service did not accept the request;
- other 5xx, and connections that fail -> up to :attr:`RetryPolicy.attempts` tries with exponential
  backoff and jitter; a request that must not run twice (a paid submit, ``replay=False``) is sent
  again only when it surely did not arrive (the connection was never made, or 429/503), else it is a
  :class:`~wanlab.errors.SubmitUncertain`; one the service deduplicates (an ``Idempotency-Key`` a
  wanlab server honours, ``idempotent=True``) is sent again, and is SubmitUncertain only when every try failed.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import AuthError, ParamError, ServiceError, SubmitUncertain
from ..values import check_int, check_number
from .credentials import ApiKey

log = logging.getLogger("wanlab.client")
#: ``FIELD: must be RULE; got VALUE``: wanlab's own form, which a wanlab server answers in.
_WANLAB_MESSAGE = re.compile(r"^(?P<field>[^:\n]{1,80}): must be (?P<rule>.+?); got (?P<value>.*)$", re.S)
MAX_SAID = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying; give it to :func:`wanlab.connect` as ``retry=``.

    Attributes:
        attempts: tries of a request that got no answer or a 5xx, the first included (1..100).
        backoff_s: the first wait between tries; the n-th is ``backoff_s * 2**n`` seconds, jittered.
        max_backoff_s: the longest wait between tries.
        busy_s: seconds of waiting in all while the service answers 429 or 503 (honouring Retry-After).

    Raises:
        ParamError: a field out of range, named ``retry.<field>``.

    Example:
        >>> RetryPolicy(attempts=3).attempts
        3
        >>> 0.125 <= RetryPolicy(backoff_s=0.25).delay(0) <= 0.25
        True
    """

    attempts: int = 6
    backoff_s: float = 0.25
    max_backoff_s: float = 20.0
    busy_s: float = 900.0

    def __post_init__(self) -> None:
        check_int("retry.attempts", self.attempts, 1, 100)
        for name in ("backoff_s", "max_backoff_s", "busy_s"):
            check_number(f"retry.{name}", getattr(self, name), 0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``: exponential, jittered.

        Args:
            attempt: the try that failed, counted from 0.

        Returns:
            ``min(max_backoff_s, backoff_s * 2**attempt)`` times a random factor in 0.5..1.
        """
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)


def retry_after(response: Any) -> float | None:
    """The ``Retry-After`` of a response in seconds (a number of seconds or an HTTP date), or None.

    Args:
        response: an ``httpx.Response`` (anything with ``headers``).

    Returns:
        The seconds (at least 0), or None when absent or unreadable.

    Example:
        >>> from types import SimpleNamespace
        >>> retry_after(SimpleNamespace(headers={"retry-after": "3"})), retry_after(SimpleNamespace(headers={}))
        (3.0, None)
    """
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def shown_url(url: Any) -> str:
    """A URL as messages show it: without its query (a signed URL's signature) and fragment.

    Args:
        url: a URL (a string or an ``httpx.URL``).

    Returns:
        The URL without query and fragment.

    Example:
        >>> shown_url("https://h.org/v3/files/k/video.mp4?expires=1&signature=ab")
        'https://h.org/v3/files/k/video.mp4'
    """
    text = str(url)
    return text.split("?", 1)[0].split("#", 1)[0]


class Transport:
    """Requests to one service at ``base_url`` (an ``httpx.Client``: thread-safe, connections reused).

    ``stats`` counts requests, retries, busy waits and bytes received.

    Args:
        base_url: the service's address.
        key: the API key (None: none sent).
        timeout: seconds for each connect (at most 10), read and write.
        retry: how long to keep trying (None: :class:`RetryPolicy`'s defaults).
        connections: the most open connections.

    Raises:
        ParamError: ``timeout`` is not a positive number.

    Example:
        >>> transport = Transport("http://127.0.0.1:8000/", None)
        >>> transport.url("/health"), transport.same_origin("http://127.0.0.1:8001/x")
        ('http://127.0.0.1:8000/health', False)
        >>> transport.close()
    """

    def __init__(self, base_url: str, key: ApiKey | None, *, timeout: float = 30.0, retry: RetryPolicy | None = None,
                 connections: int = 16) -> None:
        import httpx

        from .. import __version__

        self.base_url = base_url.rstrip("/")
        self.key = key
        self.retry = retry or RetryPolicy()
        self.timeout = check_number("timeout", timeout, 0, lo_open=True, rule="a number of seconds > 0")
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False, headers={"User-Agent": f"wanlab/{__version__}", "Accept": "application/json"})
        self._origin = httpx.URL(self.base_url)
        self.stats = {"requests": 0, "retries": 0, "busy_waits": 0, "busy_seconds": 0.0, "bytes": 0}
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r}, key={'set' if self.key else 'none'})"

    def url(self, path: str) -> str:
        """The absolute URL of a route (``/v3/async/task-result``) or an absolute URL unchanged.

        Args:
            path: a route or an absolute URL.

        Returns:
            The absolute URL.
        """
        return path if "://" in path else f"{self.base_url}{path}"

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on this service (scheme, host and port): only there does the key go.

        Args:
            url: an absolute URL.

        Returns:
            Whether scheme, host and port are the service's.
        """
        import httpx

        other = httpx.URL(url)
        return (other.scheme, other.host, other.port) == (self._origin.scheme, self._origin.host, self._origin.port)

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._client.close()

    def count(self, name: str, amount: float = 1) -> None:
        """Add to one of :attr:`stats` (requests run on many threads at once).

        Args:
            name: the counter.
            amount: what to add.
        """
        with self._count_lock:
            self.stats[name] = self.stats.get(name, 0) + amount

    # --- sending -------------------------------------------------------------------------------------
    def send(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
             query: Mapping[str, str] | None = None, replay: bool = True, stream: bool = False,
             what: str | None = None, patience: float | None = None, headers: Mapping[str, str] | None = None,
             idempotent: bool = False) -> Any:
        """Send a request and return the ``httpx.Response`` of a 2xx answer.

        Retries and errors as the module docstring says.

        Args:
            method: the HTTP method.
            path: a path on the service, or a URL on its origin (the key goes nowhere else).
            body: a JSON body.
            query: query parameters.
            replay: False for a request that must not run twice.
            stream: return the response unread (close it).
            what: names the request in messages (default ``METHOD URL``).
            patience: replaces :attr:`RetryPolicy.busy_s` (seconds of 429/503 waits) for this request.
            headers: sent besides the key's.
            idempotent: the service deduplicates this request (an ``Idempotency-Key``), so it is sent
                again; when no try got an answer after one may have arrived,
                :class:`~wanlab.errors.SubmitUncertain`.

        Returns:
            The ``httpx.Response`` of a 2xx answer.

        Raises:
            AuthError: the key was refused (401) or lacks permission (403).
            SubmitUncertain: a request that must not run twice may have arrived, with no answer.
            ServiceError: a URL off the service's origin, a refusal, or no answer after the retries.
        """
        import httpx

        url = self.url(path)
        if not self.same_origin(url):
            raise ServiceError(f"{shown_url(url)} is not on {self.base_url}: the API key is sent to its service only")
        what = what or f"{method} {shown_url(url)}"
        headers = {**(headers or {}), **(self.key.headers() if self.key is not None else {})}
        failures = 0
        arrived_once = False
        busy = 0
        waited = 0.0
        patience = self.retry.busy_s if patience is None else patience
        while True:
            self.count("requests")
            request = self._client.build_request(method, url, json=body, params=query, headers=headers)
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                arrived = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                if arrived and not replay and not idempotent:
                    raise SubmitUncertain(f"{what}: the connection broke after the request was sent "
                                          f"({_describe(exc)}); "
                                          "the service may have accepted it, so it is not sent again (that could pay "
                                          "twice)") from None
                arrived_once |= arrived
                failures += 1
                if failures >= self.retry.attempts and idempotent and arrived_once:
                    raise SubmitUncertain(f"{what}: no answer from {self.base_url} after {failures} tries, the last "
                                          f"{_describe(exc)}; the service may have accepted it: a rerun asks again "
                                          "under the same idempotency key, so it is not paid twice") from None
                if failures >= self.retry.attempts:
                    raise ServiceError(f"{what}: no answer from {self.base_url} after {failures} "
                                       f"tr{'ies' if failures > 1 else 'y'} ({_describe(exc)})") from None
                self._pause(self.retry.delay(failures - 1), what, _describe(exc))
                continue
            status = response.status_code
            if status < 300:
                return response
            if stream:
                response.read()
            if status in (429, 503):
                wait = retry_after(response)
                wait = self.retry.delay(busy) if wait is None else wait
                if waited + wait > patience:
                    raise self.error(response, what, note=f"still busy after {waited:.0f} s of waiting")
                busy += 1
                self.count("busy_waits")
                self.count("busy_seconds", wait)
                waited += wait
                self._pause(wait, what, f"{status} {_reason(response)}")
                continue
            if status >= 500 and status != 501 and (replay or idempotent):
                failures += 1
                if failures < self.retry.attempts:
                    self._pause(self.retry.delay(failures - 1), what, f"{status} {_reason(response)}")
                    continue
            raise self.error(response, what)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`send`, and the answer's JSON.

        Args:
            method: the HTTP method.
            path: a route or a URL on the service.
            **kwargs: as :meth:`send`.

        Returns:
            The parsed JSON.

        Raises:
            ServiceError: the answer is not JSON, or as :meth:`send`.
            AuthError: as :meth:`send`.
        """
        response = self.send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(f"{kwargs.get('what') or f'{method} {shown_url(self.url(path))}'}: the service answered "
                               f"{response.status_code} with no JSON ({_snippet(response.text)})",
                               response.status_code) from None

    def _pause(self, seconds: float, what: str, why: str) -> None:
        self.count("retries")
        log.info("%s: %s; trying again in %.2f s", what, why, seconds)
        time.sleep(seconds)

    # --- errors --------------------------------------------------------------------------------------
    def error(self, response: Any, what: str, note: str = "") -> Exception:
        """The wanlab error for a refusal (see the module docstring), with what the service said.

        Args:
            response: the refusal.
            what: names the request in the message.
            note: added in parentheses.

        Returns:
            The error to raise: ParamError (400, 422), AuthError (401, 403), or ServiceError (a
            redirect, or any other status).
        """
        status = response.status_code
        said, detail = _said(response)
        if self.key is not None:
            said = self.key.scrub(said)
        tail = f": {said}" if said else ""
        tail += f" ({note})" if note else ""
        if status in (400, 422) and detail is not None:
            return ParamError(*detail)
        if status in (400, 422):
            return ParamError("request", f"what the service accepts ({status} {_reason(response)}{tail})", what)
        if status == 401:
            if self.key is None:
                return AuthError(f"{what}: the service asks for an API key and none was given: pass api_key=, set "
                                 f"$WANLAB_API_KEY (or $NOVITA_API_KEY), or use --api-key-file (401{tail})", status)
            return AuthError(f"{what}: the API key was refused (401 Unauthorized; the key from "
                             f"{self.key.source}){tail}", status)
        if status == 403:
            return AuthError(f"{what}: the service refused this with the key given (403 Forbidden){tail}", status)
        if 300 <= status < 400:
            where = shown_url(response.headers.get("location", "elsewhere"))
            return ServiceError(f"{what}: the service redirects to {where} ({status}); wanlab does not follow "
                                f"redirects with the API key: connect to that address instead", status)
        return ServiceError(f"{what}: the service answered {status} {_reason(response)}{tail}", status)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(response: Any) -> str:
    return response.reason_phrase or ""


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SAID else text[: MAX_SAID - 3] + "..."


def _said(response: Any) -> tuple[str, tuple[str, str, Any] | None]:
    """What the service said (a message) and, when it names them, the field, rule and value it refused."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text or ""), None
    containers: list[Mapping[str, Any]] = []
    for candidate in (body, *(body.get(k) for k in ("metadata", "error", "detail", "errors")
                              if isinstance(body, Mapping))):
        if isinstance(candidate, Mapping):
            containers.append(candidate)
        elif isinstance(candidate, list):
            containers.extend(item for item in candidate if isinstance(item, Mapping))
    message = ""
    for container in containers:
        if isinstance(container.get("field"), str) and isinstance(container.get("rule"), str):
            return _snippet(str(container.get("message") or "")), (container["field"], container["rule"],
                                                                   container.get("value"))
        message = message or next((str(container[k]) for k in ("message", "reason", "detail", "error", "msg")
                                   if isinstance(container.get(k), str) and container[k]), "")
    if not message:
        message = next((body[k] for k in ("detail", "error", "message") if isinstance(body, Mapping)
                        and isinstance(body.get(k), str)), "") if isinstance(body, Mapping) else ""
    message = message or (body if isinstance(body, str) else json.dumps(body)[:MAX_SAID])
    match = _WANLAB_MESSAGE.match(message.strip())
    if match:
        return _snippet(message), (match["field"], match["rule"], _value(match["value"]))
    return _snippet(message), None


def _value(text: str) -> Any:
    """A refused value as the message printed it (Python's repr of JSON-like values), back as a value."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()

