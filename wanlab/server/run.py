"""Running the service: uvicorn on the configured address, clean shutdown on SIGTERM or Ctrl-C.

:func:`serve` blocks until the server stops and returns its exit code: 0 after a clean stop, 2 when
the model could not be loaded. On SIGTERM uvicorn stops taking connections, answers those under
way, and the service lets running tasks finish (``--drain-timeout``: at most that long, then the
tasks still running are written back as queued and the process exits at once); queued tasks stay
queued in the store for the next start.

On CPU, OpenMP's busy-waiting threads fight over the cores when the model is loaded in one thread
and run in another (as a server must, to answer while it loads): measured on 2 shared cores, tiny
generated 10-50x slower. :func:`serve` therefore sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set
(the same speed as the default in a single thread, measured); set it yourself to override.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from .config import ServerConfig

#: Seconds a connection may take to send a whole request line and headers (uvicorn itself waits forever).
HEADERS_TIMEOUT_S = 10.0
MISSING = "wanlab serve needs FastAPI and uvicorn: pip install 'wanlab[serve]' (or: pip install fastapi uvicorn)"


def missing_dependencies() -> str | None:
    """The one line to print when the server's packages are not installed, else None.

    Returns:
        The line (how to install ``wanlab[serve]``), or None when FastAPI and uvicorn are there.
    """
    import importlib.util

    for name in ("fastapi", "uvicorn"):
        try:
            if importlib.util.find_spec(name) is None:
                return MISSING
        except (ImportError, ValueError):  # a broken or blocked installation
            return MISSING
    return None


def serve(config: ServerConfig, *, backend_factory: Callable[[ServerConfig], Any] | None = None,
          access_log: bool = True) -> int:
    """Serve ``config`` until stopped (SIGTERM or Ctrl-C).

    Args:
        config: the validated :class:`~wanlab.server.config.ServerConfig`.
        backend_factory: makes the backend from ``config`` (None: :func:`wanlab.server.service.load_backend`).
        access_log: log every request.

    Returns:
        The exit code: 0 after a clean stop, 2 when the model failed to load.

    Raises:
        KeyboardInterrupt: after the clean stop, when Ctrl-C stopped it.

    Example:
        >>> serve(ServerConfig(model="tiny", no_auth=True, port=8000))  # doctest: +SKIP
    """
    if "torch" not in sys.modules:  # OpenMP reads it once, when torch loads
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from .app import create_app
    from .service import FAILED, Service

    _log_to_stderr()
    holder: dict[str, Any] = {}

    def stop() -> None:
        server = holder.get("server")
        if server is not None:
            server.should_exit = True

    service = Service(config, backend_factory=backend_factory, on_failure=stop)
    app = create_app(service)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, access_log=access_log,
                                           log_level="info", lifespan="on", server_header=False,
                                           http=json_errors_protocol()))
    holder["server"] = server
    service.exit_requested = lambda: bool(server.should_exit)  # long polls answer at once, not at their end
    terminated: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))  # uvicorn raises it again at exit
    auth = f"{len(service.keys)} API key(s) from {config.api_keys}" if service.keys else "no authentication"
    logging.getLogger("wanlab.server").info("wanlab serve %s on %s (%s; store %s)", config.model, config.public_base,
                                            auth, service.store.path)
    server.run()
    if service.abandoned:  # running tasks are written back as queued: do not wait for their threads
        sys.stderr.flush()
        os._exit(0)
    if service.state == FAILED:
        print(f"wanlab: error: the model {config.model} could not be loaded: {service.reason}", file=sys.stderr)
        return 2
    return 0


def json_errors_protocol() -> type:
    """The uvicorn HTTP/1.1 protocol (h11) with the service's error bodies and a timeout for headers.

    It answers a request it cannot parse (a malformed request line or header) in the service's
    documented error body instead of uvicorn's plain text, and closes a
    connection whose request line and headers have not arrived within :data:`HEADERS_TIMEOUT_S` (408: a
    connection held open without a request, or headers that trickle); uvicorn takes a protocol class
    for this (``Config(http=...)``).
    """
    import json

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonErrorsH11Protocol(H11Protocol):
        _headers_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._headers_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # a request begins: its line and headers have HEADERS_TIMEOUT_S to arrive
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._headers_timer = self.loop.call_later(HEADERS_TIMEOUT_S, self._headers_late)

        def _headers_late(self) -> None:
            """No whole request line and headers in time (a connection held open, a trickle): 408, closed."""
            self._headers_timer = None
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                return  # a request is being answered (or the keep-alive wait will close the connection)
            body = json.dumps({"code": 408, "reason": "REQUEST_TIMEOUT", "message": f"request: must send its line and "
                               f"headers within {HEADERS_TIMEOUT_S:g} s; got less", "metadata": {
                                   "field": "request", "timeout_s": HEADERS_TIMEOUT_S}}).encode("ascii")
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

        def send_400_response(self, msg: str) -> None:
            said = msg.rstrip(".") or "an unreadable request"
            body = json.dumps({"code": 400, "reason": "INVALID_HTTP_REQUEST",
                               "message": f"request: must be valid HTTP/1.1; got {said.lower()}",
                               "metadata": {"field": "request"}}).encode("ascii")
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers,
                                                             reason=b"Bad Request")))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
            self.transport.close()

    return JsonErrorsH11Protocol


def _log_to_stderr() -> None:
    logger = logging.getLogger("wanlab")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
