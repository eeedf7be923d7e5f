"""Webhooks: the published ``ASYNC_TASK_RESULT`` event, POSTed to ``extra.webhook.url`` when a task ends.

:class:`WebhookRules` says where events may go (the operator's allow-list, checked at submit and at
every hop); :class:`Deliveries` sends them with retries and records each in ``STORE/webhooks``, so a
restarted server delivers what a stopped one left undelivered.
"""
from __future__ import annotations

import contextlib
import heapq
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ParamError, TaskError, UnsafeURLError
from ..fsutil import write_json
from ..netguard import NetPolicy, parse_host, request
from ..record import now_iso
from ..tasks import TaskFiles
from ..tasks.files import TASK_ID_RE

EVENT_TYPE = "ASYNC_TASK_RESULT"
FOLDER = "webhooks"
log = logging.getLogger("wanlab.server.webhooks")


def event(result: Mapping[str, Any]) -> dict[str, Any]:
    """The published webhook body for a task result.

    Args:
        result: the task's result in the published shape.

    Returns:
        ``{"event_type": "ASYNC_TASK_RESULT", "payload": result}``.

    Example:
        >>> event({"task": {"status": "TASK_STATUS_SUCCEED"}})["event_type"]
        'ASYNC_TASK_RESULT'
    """
    return {"event_type": EVENT_TYPE, "payload": dict(result)}


def shown(url: str) -> str:
    """A URL as logs show it: scheme, host, port and path (a query may carry the receiver's token).

    Args:
        url: the webhook URL.

    Returns:
        The URL without its query and fragment.

    Example:
        >>> shown("https://example.org/hook?token=abc")
        'https://example.org/hook'
    """
    return url.split("?", 1)[0].split("#", 1)[0]


class WebhookRules:
    """The operator's allow-list as a :class:`~wanlab.netguard.NetPolicy`, and the check at submit.

    Events go only to destinations the operator listed (``--webhook-allow HOST[:PORT]``, repeatable);
    with none listed a body with a webhook is refused (400). An entry admits exactly its host (a name
    admits the name, an address the address: ``localhost:9003`` does not admit ``127.0.0.1:9003``) at
    exactly its port (a bare ``HOST``: 80 for http, 443 for https only). Every hop (the URL and each
    redirect that keeps the POST: 307, 308) must name a listed host, and every address it resolves to
    must be public, unless the URL names a listed address itself (``127.0.0.1:9000``: a listed name that
    resolves to a loopback or private address is refused). IPv6 forms that carry an IPv4 address
    (``::ffff:127.0.0.1``, ``::7f00:1``, NAT64, 6to4, Teredo) count as that address. The connection goes
    to the checked address (:mod:`wanlab.netguard`), so DNS cannot move it. An answer 301/302/303 is not
    followed (that would resend the event as a GET): it is a failed try.

    Args:
        allow: the listed destinations, ``HOST[:PORT]`` each.
        timeout_s: seconds per try.

    Example:
        >>> WebhookRules(("127.0.0.1:9000",), 5.0).check("http://127.0.0.1:9000/hook")
        'http://127.0.0.1:9000/hook'
    """

    def __init__(self, allow: tuple[str, ...], timeout_s: float) -> None:
        self.allow = tuple(allow)
        explicit: list[str] = []  # addresses listed as such may be reached even when not public
        for entry in self.allow:
            with contextlib.suppress(ValueError):
                explicit.append(str(ipaddress.ip_address(parse_host(entry)[0])))
        self.policy = NetPolicy(schemes=("http", "https"), allow=tuple(dict.fromkeys(explicit)), max_redirects=3,
                                timeout_s=timeout_s, hosts=self.allow, keep_method=True)

    def check(self, url: str) -> str:
        """``url`` when this server may send to it (what is known without DNS).

        Args:
            url: the body's ``extra.webhook.url``.

        Returns:
            The URL.

        Raises:
            ParamError: (field ``extra.webhook.url``) no destination is allowed, not an http(s) URL with a
                host and no credentials, a host or port not listed, or an address neither public nor listed.
        """
        import httpx

        field = "extra.webhook.url"
        if not self.allow:
            raise ParamError(field, "absent on this server: its operator allowed no webhook destinations "
                                    "(wanlab serve --webhook-allow HOST[:PORT])", url)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ParamError(field, "an http(s) URL", url) from None
        if parsed.scheme not in self.policy.schemes or not parsed.host or parsed.userinfo:
            raise ParamError(field, "an http(s) URL with a host and no user name or password", url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if not self.policy.allows_host(parsed.host, port, parsed.scheme):
            raise ParamError(field, f"a URL on an allowed host ({', '.join(self.allow)}; a host listed without a "
                                    "port admits only port 80 for http and 443 for https)", url)
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(parsed.host.strip("[]"))
            if not self.policy.allows(address):
                raise ParamError(field, "a URL whose address is public or listed by the operator", url)
        return url


class Deliveries:
    """Sends webhook events with retries on a few threads; records and resumes them in the store.

    Each event is ``{"event_type": "ASYNC_TASK_RESULT", "payload": <the task result>}`` as JSON, each try
    with a timeout (5 s), retried on a timeout, a connection error or a non-2xx answer with exponential
    backoff (2, 4, 8, 16, 32 s) up to five times, as the hosted API does; a refused destination is not
    retried. Every try is logged (``wanlab.server.webhooks``; the URL without its query) and kept in
    ``STORE/webhooks/<task_id>.json``. The record is written when the task is accepted; a server that
    starts on the store delivers what a stopped one left undelivered (one server per delivery, by the
    task's lock).

    Args:
        store: the store's folder.
        rules: where events may go.
        attempts: tries per event.
        backoff_s: seconds before the first retry, doubling for each next one.
        workers: threads sending at once.
    """

    def __init__(self, store: str | Path, rules: WebhookRules, *, attempts: int, backoff_s: float,
                 workers: int = 4) -> None:
        self.root = Path(store)
        self.folder = self.root / FOLDER
        self.rules = rules
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="wanlab-webhook")
        self._due: list[tuple[float, int, str, str, bytes, int]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._count = 0
        self._timer = threading.Thread(target=self._schedule, name="wanlab-webhook-timer", daemon=True)
        self._timer.start()

    def record_file(self, task_id: str) -> Path:
        """The file that records the delivery of ``task_id``'s webhook."""
        return self.folder / f"{task_id}.json"

    def read(self, task_id: str) -> dict[str, Any] | None:
        """The delivery record of ``task_id`` (None: none, or unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.record_file(task_id).read_text())
            return data if isinstance(data, dict) else None
        return None

    def accepted(self, task_id: str, url: str) -> None:
        """Note, when a task is accepted, that its end is to be announced (so a restart still does).

        Written only where no record is yet (a task that failed at once may have been announced already).

        Args:
            task_id: the task's id.
            url: its webhook URL (recorded without its query).
        """
        file = self.record_file(task_id)
        tmp = file.with_name(f".{file.name}.new")
        write_json(tmp, {"task_id": task_id, "url": shown(url), "state": "waiting", "attempts": []})
        try:
            os.link(tmp, file)  # atomic "create if absent": a delivery's own record is never replaced
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def send(self, task_id: str, url: str, body: Mapping[str, Any]) -> None:
        """Deliver ``body`` to ``url`` in the background (first try now).

        After :meth:`close` nothing is sent: the record stays waiting for the next server on the store.

        Args:
            task_id: the task's id.
            url: the webhook URL.
            body: the event (:func:`event`).
        """
        payload = json.dumps(body, allow_nan=False).encode()
        with self._cond:
            if self._closed:
                return  # the record stays "waiting": the next server on the store delivers it
            self._count += 1
            heapq.heappush(self._due, (time.monotonic(), self._count, task_id, url, payload, 1))
            self._cond.notify()

    def undelivered(self) -> list[str]:
        """Ids of tasks whose event is recorded as not yet delivered.

        Returns:
            The ids, sorted.
        """
        if not self.folder.is_dir():
            return []
        out = []
        for file in sorted(self.folder.glob("*.json")):
            data = self.read(file.stem) if TASK_ID_RE.match(file.stem) else None
            if data and data.get("state") == "waiting":
                out.append(file.stem)
        return out

    def resume(self, answer: Callable[[str], tuple[str, dict[str, Any]] | None]) -> int:
        """Send what a stopped server left undelivered.

        Args:
            answer: ``answer(task_id)`` gives ``(url, body)`` for a task that has finished, None for one
                still to run (its end will be sent as usual).

        Returns:
            How many events were sent again.
        """
        sent = 0
        for task_id in self.undelivered():
            with contextlib.suppress(TaskError, OSError, ValueError, KeyError):
                found = answer(task_id)
                if found is not None:
                    self.send(task_id, *found)
                    sent += 1
        return sent

    def close(self, timeout: float = 5.0) -> None:
        """Stop: tries under way finish, later retries wait in the store for the next start.

        Args:
            timeout: seconds to wait for the scheduler thread.
        """
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify_all()
        self._timer.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- the work ---------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._due else max(self._due[0][0] - time.monotonic(), 0.0))
                if self._closed:
                    return
                _, _, task_id, url, payload, attempt = heapq.heappop(self._due)
            with contextlib.suppress(RuntimeError):  # the pool shut down meanwhile
                self._pool.submit(self._try, task_id, url, payload, attempt)

    def _try(self, task_id: str, url: str, payload: bytes, attempt: int) -> None:
        """One try, under the task's lock so that one server delivers it; schedules the next on failure."""
        claim = TaskFiles(self.root).claim(task_id)
        if claim is None:
            return  # another server on the store is delivering it
        try:
            record = self.read(task_id) or {"task_id": task_id, "url": shown(url), "attempts": []}
            if record.get("state") in ("delivered", "failed"):
                return
            ok, last = self._post(task_id, url, payload, attempt, record)
        finally:
            claim.release()
        if not last:
            delay = self.backoff_s * 2 ** (attempt - 1)
            with self._cond:
                if not self._closed:
                    self._count += 1
                    heapq.heappush(self._due, (time.monotonic() + delay, self._count, task_id, url, payload,
                                               attempt + 1))
                    self._cond.notify()
        elif not ok:
            log.warning("webhook for task %s to %s given up after %d tries", task_id, shown(url), attempt)

    def _post(self, task_id: str, url: str, payload: bytes, attempt: int, record: dict[str, Any]) -> tuple[bool, bool]:
        """POST once, log it and record it: (delivered, no more tries)."""
        started = time.perf_counter()
        status, error, final = None, None, False
        try:
            response = request("POST", url, self.rules.policy, content=payload,
                               headers={"Content-Type": "application/json", "User-Agent": _agent()})
            status = response.status_code
            final = 200 <= status < 300
            if response.is_redirect:
                error = ("redirected; a POST is not followed as a GET: the receiver must answer 2xx at the URL "
                         "given")
        except UnsafeURLError as exc:  # the destination is not allowed: trying again cannot help
            error, final = str(exc), True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        seconds = time.perf_counter() - started
        ok = status is not None and 200 <= status < 300
        outcome = f"answered {status}" if status is not None else f"failed ({error})"
        log.info("webhook for task %s, try %d of %d, to %s: %s in %.2f s", task_id, attempt, self.attempts,
                 shown(url), outcome, seconds)
        record["attempts"] = [*record.get("attempts", []), {"at": now_iso(), "status": status, "error": error,
                                                            "seconds": round(seconds, 3)}]
        last = final or attempt >= self.attempts
        record["state"] = "delivered" if ok else ("failed" if last else "waiting")
        with contextlib.suppress(OSError):
            write_json(self.record_file(task_id), record)
        return ok, last


def _agent() -> str:
    from .. import __version__

    return f"wanlab/{__version__}"
