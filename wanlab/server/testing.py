"""A real ``wanlab serve`` for tests and benchmarks: a subprocess on a free loopback port, ready when returned.

::

    from wanlab.server.testing import start_server

    with start_server(model="tiny", store=tmp_path / "store") as server:   # waits for GET /health: 200
        with server.client() as http:                                     # httpx, base URL and key set
            task_id = http.post("/v3/async/wan-t2v", json={"prompt": "a fox", "width": 32, "height": 32,
                                                           "num_frames": 5, "steps": 2}).json()["task_id"]
            server.wait_task(task_id)["task"]["status"]                   # 'TASK_STATUS_SUCCEED'
    # leaving the block stops it with SIGTERM (kill -9: server.kill(); again: server.restart())

The server runs ``python -m wanlab.cli serve`` with this wanlab on its path, its output in a log
file (:meth:`ServerProcess.log`), API keys written to a 0600 file (:attr:`ServerProcess.keys`).
Only httpx, the standard library and :mod:`wanlab.taskstatus` are imported here.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..taskstatus import FINISHED

HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's choice).

    Another process may take it before it is used; :func:`start_server` tries again then.

    Args:
        host: the address to bind on.

    Returns:
        The port.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_keys(path: str | os.PathLike[str], keys: int | Sequence[str] = 2) -> list[str]:
    """Write API keys to a key file (mode 0600): ``keys`` fresh ones, or those given.

    Args:
        path: the key file (its folder is made).
        keys: how many fresh keys, or the keys.

    Returns:
        The keys written.

    Example:
        >>> import tempfile, pathlib
        >>> keys = write_keys(pathlib.Path(tempfile.mkdtemp()) / "keys.txt", 2)
        >>> len(keys), keys[0].startswith("wanlab-test-")
        (2, True)
    """
    keys = [f"wanlab-test-{secrets.token_urlsafe(24)}" for _ in range(keys)] if isinstance(keys, int) else list(keys)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# API keys of a test server\n" + "\n".join(keys) + "\n")
    return keys


@dataclass
class ServerProcess:
    """A running ``wanlab serve`` subprocess, made by :func:`start_server`; ``with`` stops it.

    Attributes:
        args: the command line it runs.
        port: its loopback port.
        store: its store folder.
        keys: its API keys (empty for a server without keys).
        log_path: the file its output goes to.
        env: its environment.
        process: the subprocess.

    Example:
        >>> with start_server(model="tiny") as server:  # doctest: +SKIP
        ...     server.wait_ready()["status"]
        'ok'
    """

    args: list[str]
    port: int
    store: Path
    keys: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen = field(repr=False)

    @property
    def base_url(self) -> str:
        """The server's address (``http://127.0.0.1:PORT``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def key(self) -> str | None:
        """The first API key (None for a server without keys)."""
        return self.keys[0] if self.keys else None

    def headers(self, key: str | None = None) -> dict[str, str]:
        """``Authorization: Bearer KEY`` for ``key``.

        Args:
            key: an API key (None: the first key).

        Returns:
            The header, or ``{}`` for a server without keys.
        """
        key = key or self.key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def client(self, key: str | None = None, **kwargs: Any) -> Any:
        """An ``httpx.Client`` for this server, its base URL and key set.

        Args:
            key: an API key (None: the first).
            **kwargs: more ``httpx.Client`` arguments (``timeout`` defaults to 30 s).

        Returns:
            The client (``with`` closes it).
        """
        import httpx

        return httpx.Client(base_url=self.base_url, headers=self.headers(key), timeout=kwargs.pop("timeout", 30.0),
                            **kwargs)

    def log(self) -> str:
        """The server's output so far.

        Returns:
            The log's text ("" when it cannot be read).
        """
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def alive(self) -> bool:
        """Whether the server's process is still running."""
        return self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Wait until ``GET /health`` answers 200 and return its body.

        Args:
            timeout: seconds to wait at most.

        Returns:
            The health body.

        Raises:
            RuntimeError: (with the log) the server exited, reported a failed load, or was not ready in time.
        """
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"wanlab serve exited with {self.process.returncode} before it was ready:\n"
                                   f"{self.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{self.base_url}/health", timeout=5.0)
                body = response.json()
                if response.status_code == 200:
                    return body
                if body.get("status") == "failed":
                    raise RuntimeError(f"wanlab serve could not load its model: {body.get('reason')}")
            time.sleep(0.1)
        raise RuntimeError(f"wanlab serve was not ready within {timeout:g} s:\n{self.log()[-4000:]}")

    def wait_task(self, task_id: str, timeout: float = 120.0, key: str | None = None,
                  interval: float = 0.05) -> dict[str, Any]:
        """Poll ``task-result`` until the task has finished; its last answer.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most.
            key: the API key to ask with (None: the first).
            interval: seconds between polls.

        Returns:
            The finished task's result.

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
        """
        with self.client(key) as http:
            deadline = time.monotonic() + timeout
            while True:
                body = http.get("/v3/async/task-result", params={"task_id": task_id}).json()
                if body.get("task", {}).get("status") in FINISHED:
                    return body
                if time.monotonic() > deadline:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout:g} s: {body}")
                time.sleep(interval)

    def kill(self) -> None:
        """``kill -9``: no chance to clean up (what a crash looks like)."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 120.0) -> int:
        """Send SIGTERM and wait (then SIGKILL after ``timeout``).

        Args:
            timeout: seconds to wait for a clean stop.

        Returns:
            The server's exit code.
        """
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return int(self.process.returncode)

    def restart(self, *, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        """Start the same server again (same port, store and keys) after it stopped.

        Args:
            wait: wait until it is ready.
            timeout: seconds to wait for that.

        Returns:
            This :class:`ServerProcess`.

        Raises:
            RuntimeError: it is still running, or it did not become ready.
        """
        if self.alive():
            raise RuntimeError("restart: the server is still running; stop() or kill() it first")
        self.process = _launch(self.args, self.env, self.log_path)
        if wait:
            self.wait_ready(timeout)
        return self

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server(*, model: str = "tiny", store: str | os.PathLike[str] | None = None, keys: int | Sequence[str] = 2,
                 no_auth: bool = False, allow_local_sizes: bool = True, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, port: int | None = None, threads: int | None = 1,
                 wait: bool = True, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
    """Start ``wanlab serve --model MODEL`` on 127.0.0.1 and (with ``wait``) return once it is ready.

    Args:
        model: the model to serve.
        store: the server's store (None: a new temporary folder).
        keys: how many API keys to make, or the keys (another server's ``keys``: several servers on one
            store with the same keys); none with ``no_auth``.
        no_auth: serve without keys.
        allow_local_sizes: pass ``--allow-local-sizes`` (small sizes and ``num_frames`` for tiny/toy).
        args: further ``wanlab serve`` options (``["--webhook-allow", "127.0.0.1:9000"]``).
        env: environment variables added for the server.
        port: the port (None: a free one, tried again if another process takes it first).
        threads: the server's torch threads (``OMP_NUM_THREADS``; 1 is steady on a shared machine;
            None: torch's default).
        wait: wait until ``GET /health`` answers 200.
        timeout: seconds to wait for that.

    Returns:
        The :class:`ServerProcess` (``with server:`` stops it with SIGTERM).

    Raises:
        RuntimeError: the server exited or was not ready within ``timeout`` (its log is in the message).

    Example:
        >>> with start_server(model="tiny") as server:  # doctest: +SKIP
        ...     with server.client() as http:
        ...         task_id = http.post("/v3/async/wan-t2v", json={"prompt": "a fox", "width": 32, "height": 32,
        ...                                                        "num_frames": 5, "steps": 2}).json()["task_id"]
        ...     server.wait_task(task_id)["task"]["status"]
        'TASK_STATUS_SUCCEED'
    """
    folder = Path(store) if store is not None else Path(tempfile.mkdtemp(prefix="wanlab-serve-")) / "store"
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wanlab-serve-", dir=folder.parent))
    made = [] if no_auth else write_keys(work / "keys.txt", keys)
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                 **({"OMP_NUM_THREADS": str(threads)} if threads is not None else {}), **(env or {})}
    package_root = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [child_env.get("PYTHONPATH")])])
    for attempt in range(3):
        chosen = port or free_port()
        command = [sys.executable, "-m", "wanlab.cli", "serve", "--model", model, "--host", HOST, "--port",
                   str(chosen), "--store", str(folder)]
        command += ["--no-auth"] if no_auth else ["--api-keys", str(work / "keys.txt")]
        command += ["--allow-local-sizes"] if allow_local_sizes else []
        command += list(args)
        log_path = work / f"server-{chosen}.log"
        server = ServerProcess(command, chosen, folder, made, log_path, child_env,
                               _launch(command, child_env, log_path))
        if not wait:
            return server
        try:
            server.wait_ready(timeout)
            return server
        except RuntimeError:
            server.kill()
            if port is None and "address already in use" in server.log().lower() and attempt < 2:
                continue  # another process took the free port first
            raise
    raise AssertionError("unreachable")


def _launch(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    finally:
        log.close()


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 for tests: records every POST and answers by path.

    ``/ok`` answers 200; ``/fail/N`` answers 500 to its first N posts, then 200; ``/redirect/URL``
    answers 302 to the (URL-quoted) URL, ``/redirect-307/URL`` 307. :attr:`events` holds
    ``(path, json body)`` in arrival order; ``with`` closes it.

    Example:
        >>> import json, urllib.request
        >>> with WebhookReceiver() as hooks:
        ...     post = urllib.request.Request(hooks.url("/ok"), data=json.dumps({"n": 1}).encode(), method="POST")
        ...     urllib.request.urlopen(post).status, hooks.wait(1)
        (200, [{'n': 1}])
    """

    def __init__(self) -> None:
        import http.server
        import json
        import threading
        from urllib.parse import unquote

        self.events: list[tuple[str, Any]] = []
        self._seen: dict[str, int] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._cond:
                    receiver._seen[self.path] = count = receiver._seen.get(self.path, 0) + 1
                    receiver.events.append((self.path, json.loads(body or b"null")))
                    receiver._cond.notify_all()
                status, headers = 200, {}
                if self.path.startswith("/fail/") and count <= int(self.path.split("/")[2]):
                    status = 500
                elif self.path.startswith(("/redirect/", "/redirect-307/")):
                    code, _, target = self.path[1:].partition("/")
                    status, headers = (307 if code.endswith("307") else 302), {"Location": unquote(target)}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as ``--webhook-allow`` takes it."""
        return f"{HOST}:{self.port}"

    def url(self, path: str = "/ok") -> str:
        """The receiver's URL for ``path`` (a webhook target).

        Args:
            path: ``/ok``, ``/fail/N``, ``/redirect/URL`` or ``/redirect-307/URL``.

        Returns:
            The URL.
        """
        return f"http://{HOST}:{self.port}{path}"

    def posts(self, path: str) -> list[Any]:
        """Bodies received at ``path``.

        Args:
            path: a path, e.g. ``/ok``.

        Returns:
            The JSON bodies, in arrival order.
        """
        with self._cond:
            return [body for p, body in self.events if p == path]

    def wait(self, count: int, path: str | None = None, timeout: float = 60.0) -> list[Any]:
        """Wait until ``count`` posts arrived (at ``path``, or anywhere); their bodies.

        Args:
            count: how many posts.
            path: only posts to this path (None: any).
            timeout: seconds to wait at most.

        Returns:
            The JSON bodies so far, in arrival order.

        Raises:
            TimeoutError: fewer arrived within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                bodies = [b for p, b in self.events if path is None or p == path]
                if len(bodies) >= count:
                    return bodies
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(bodies)} of {count} webhook posts arrived within {timeout:g} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Stop receiving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
