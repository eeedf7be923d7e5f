"""The HTTP routes of ``wanlab serve`` (FastAPI), over a :class:`~wanlab.server.service.Service`.

- ``POST /v3/async/wan-t2v``: the published body -> ``{"task_id": ...}`` (an ``Idempotency-Key``
  header: the same task for the same key again, :mod:`wanlab.server.idempotency`);
- ``GET /v3/async/task-result?task_id=...``: the published task-result shape (``&wanlab_wait=S``: a long
  poll, answered when the task changes, :mod:`wanlab.server.longpoll`);
- ``GET /v3/files/<run key>/<file>?expires=&signature=``: a task's video (range requests work),
  lossless copy or record, by the signed URL a result gave;
- ``GET /health``: 200 with the model's identity when ready, 503 while loading.

Every answer that is not a success has the body of :mod:`wanlab.server.errors`; FastAPI's own
validation format never reaches a client, and an unexpected exception is a logged 500 in the same
shape (the tests fuzz the schema to find none).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import ParamError
from ..values import check_unicode
from ..video import RUN_RECORD
from . import schema
from .errors import REASONS, ApiError
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .longpoll import PARAM as WAIT_PARAM
from .longpoll import answer, check_wait
from .service import Service

log = logging.getLogger("wanlab.server")
JSON_TYPES = ("application/json",)
#: What a write that found no room fails with: a full disk, or a quota.
FULL = (errno.ENOSPC, errno.EDQUOT)


def storage_full() -> ApiError:
    """507: the store's disk is full; nothing was accepted (Retry-After: 60)."""
    return ApiError(507, "INSUFFICIENT_STORAGE", "the server's store has no room left on its disk; nothing was "
                                                 "accepted (retry later; the operator must free space)",
                    {"retry_after": 60}, headers={"Retry-After": "60"})


class JsonResponse(JSONResponse):
    """JSON with every non-ASCII character escaped.

    Any text, even one a client sent back to be echoed in an error, renders (a lone surrogate
    cannot be encoded as UTF-8, its escape can).
    """

    def render(self, content: Any) -> bytes:
        """``content`` as compact ASCII JSON (NaN and infinity refused).

        Args:
            content: what to answer.

        Returns:
            The bytes.
        """
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(error: ApiError) -> JsonResponse:
    """The response for ``error``: its documented body, status and headers.

    Args:
        error: the refusal.

    Returns:
        The :class:`JsonResponse`.
    """
    return JsonResponse(error.body(), status_code=error.status, headers=error.headers)


class ClientGone(Exception):
    """The client closed its connection before its request body had arrived: nobody to answer."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique.

    A key given twice makes the request ambiguous (which one counts differs between parsers), so it is
    refused.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            shown = key if key.isascii() and key.isprintable() else ascii(key)
            raise ApiError(400, "INVALID_JSON", f"{shown}: must appear once in a JSON object; got it twice (an "
                                                "ambiguous request)", {"field": shown, "rule": "unique keys"})
        out[key] = value
    return out


def find_bad_text(value: Any, where: str = "") -> ApiError | None:
    r"""A 400 for the first text in a parsed body (a value or a field name) that is not valid Unicode.

    Such text holds a lone UTF-16 surrogate such as ``"\ud800"``; the answer names its field. None
    when all text is valid.

    Args:
        value: the parsed body, or a part of it.
        where: the field path of ``value`` (``""``: the body).

    Returns:
        The 400 :class:`~wanlab.server.errors.ApiError`, or None.

    Example:
        >>> find_bad_text({"prompt": "a fox"}) is None, find_bad_text({"prompt": "a \ud800 fox"}).status
        (True, 400)
    """
    if isinstance(value, str):
        try:
            check_unicode(where or "body", value)
        except ParamError as exc:
            return ApiError.invalid(exc)
    elif isinstance(value, dict):
        for key, item in value.items():
            if find_bad_text(key) is not None:
                return ApiError.invalid(ParamError(f"{where}.{key!a}" if where else ascii(key),
                                                   "a field name in valid Unicode (no lone UTF-16 surrogate)",
                                                   "<a field name with a lone surrogate>"))
            found = find_bad_text(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_bad_text(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The request body as JSON.

    Args:
        request: the incoming request.
        limit: the largest body in bytes.
        timeout: seconds the body may take to arrive.

    Returns:
        The parsed body.

    Raises:
        ApiError: 415 unless it says JSON, 413 over ``limit`` bytes (declared or sent), 408 when it has
            not arrived whole within ``timeout`` seconds (a body that trickles), 400 if not JSON, if a
            key is given twice in an object, or if a text is not valid Unicode.
        ClientGone: the client left before sending it.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in JSON_TYPES and not (kind.startswith("application/") and kind.endswith("+json")):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type: must be application/json; got "
                                                      f"{ascii(kind) if kind else 'none'}", {"field": "Content-Type"})
    declared = request.headers.get("content-length")
    too_big = ApiError(413, "REQUEST_TOO_LARGE", f"body: must be at most {limit} bytes; got more",
                       {"limit": limit})
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, "REQUEST_TIMEOUT", f"body: must arrive whole within {timeout:g} s; got "
                                               f"{sum(map(len, chunks))} bytes by then", {"timeout_s": timeout},
                       headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone() from None
    try:
        body = json.loads(b"".join(chunks).decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_object)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "INVALID_JSON", f"body: must be a JSON object (UTF-8, no NaN or Infinity); got "
                                            f"unreadable JSON ({type(exc).__name__}: {str(exc)[:120]})",
                       {"field": "body"}) from None
    bad = find_bad_text(body)
    if bad is not None:
        raise bad
    return body


def create_app(service: Service) -> FastAPI:
    """The FastAPI application serving ``service`` (the model starts loading when the app starts).

    Args:
        service: What answers: the queue, the store and the model being served.

    Returns:
        The application: error handlers, the task routes, the file and health routes, and an OpenAPI
        schema without FastAPI's own validation answers.

    Example:
        >>> uvicorn.run(create_app(Service(config)))  # doctest: +SKIP
    """
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(title="wanlab serve", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="The hosted Wan 2.1 text-to-video API (async), served by wanlab on your own machine.")
    _add_error_handlers(app)
    _add_task_routes(app, service)
    _add_file_and_health_routes(app, service)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure answered in the body of :mod:`wanlab.server.errors` (FastAPI's own never reaches a client)."""
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        field = ".".join(where) or "request"
        value = first.get("input")
        rule = "given" if first.get("type") == "missing" else "a string"
        return error_response(ApiError(400, "INVALID_REQUEST", f"{field}: must be {rule}; got "
                                       f"{'nothing' if value is None else repr(value)[:100]}",
                                       {"field": field, "rule": rule}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = REASONS.get(exc.status_code, "ERROR")
        message = {404: "no such route on this server (the API: POST /v3/async/wan-t2v, GET "
                        "/v3/async/task-result?task_id=..., GET /health)",
                   405: "method not allowed on this route"}.get(exc.status_code, str(exc.detail))
        return error_response(ApiError(exc.status_code, reason, message, headers=dict(exc.headers or {})))

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, _: ClientGone) -> JSONResponse:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info("%s closed the connection before its %s %s body had arrived; nothing was accepted", client,
                 request.method, request.url.path)
        return error_response(ApiError(400, "CLIENT_DISCONNECTED", "body: must arrive whole; the connection closed"))

    @app.exception_handler(OSError)
    async def disk_error(request: Request, exc: OSError) -> JSONResponse:
        # a handler of its own: Starlette re-raises what the catch-all handler below answers, which drops the
        # connection; a full disk is an expected condition with its own answer
        if exc.errno in FULL:
            log.error("%s %s: the store's disk is full (%s)", request.method, request.url.path, exc)
            return error_response(storage_full())
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "INTERNAL_ERROR", f"the server failed to answer ({type(exc).__name__}); "
                                                              "the operator's log has the details"))


#: The routes' OpenAPI security: a bearer key.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _add_task_routes(app: FastAPI, service: Service) -> None:
    """``POST /v3/async/wan-t2v`` (submit) and ``GET /v3/async/task-result`` (its state, or a long poll)."""
    config = service.config

    def base(request: Request) -> str:
        return config.public_url or str(request.base_url).rstrip("/")

    @app.post("/v3/async/wan-t2v", summary="Submit a Wan 2.1 text-to-video task",
              responses=schema.responses(400, 401, 408, 409, 413, 415, 429, 503, 507, ok=schema.SUBMITTED),
              openapi_extra={"requestBody": {"required": True, "content": {schema.JSON: {
                  "schema": schema.request_body(config.allow_local_sizes, config.model)}}}, "security": BEARER,
                  "parameters": [schema.IDEMPOTENCY_KEY]})
    async def submit(request: Request) -> JSONResponse:
        owner = service.authenticate(request.headers.get("authorization"))
        body = await read_json(request, config.max_body, config.body_timeout_s)
        task_id = await run_in_threadpool(service.submit, body, owner, request.headers.get(IDEMPOTENCY_HEADER))
        return JsonResponse({"task_id": task_id})

    @app.get("/v3/async/task-result", summary="The state and result of a task",
             responses=schema.responses(400, 401, 404, ok=schema.TASK_RESULT),
             openapi_extra={"security": BEARER, "parameters": [schema.WAIT]})
    async def task_result(request: Request, task_id: str = Query(..., description="as returned by POST "
                                                                                "/v3/async/wan-t2v")) -> JSONResponse:
        # On the event loop itself: an answer from memory (or one small file) takes well under a millisecond,
        # and every hop to a worker thread waits for the GIL while a generation holds it. A long poll waits
        # there too, woken by the queue (never blocking the loop).
        owner = service.authenticate(request.headers.get("authorization"))
        seconds = check_wait(request.query_params.get(WAIT_PARAM))
        if not seconds:
            return JsonResponse(service.result(task_id, owner, base(request)))
        return JsonResponse(await answer(service, task_id, owner, base(request), seconds,
                                         lambda: service.state != "ok" or service.exit_requested()))


def _add_file_and_health_routes(app: FastAPI, service: Service) -> None:
    """``GET /v3/files/<run key>/<file>`` (a task's file by its signed URL) and ``GET /health``."""
    config = service.config

    def binary() -> dict[str, Any]:
        return {kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in ("video/mp4", "video/x-matroska", schema.JSON)}

    @app.api_route("/v3/files/{run_key}/{name}", methods=["GET", "HEAD"], summary="A task's file by its signed URL",
                   responses={**schema.responses(403, 404, 416), 200: {"description": "the file", "content": binary()},
                              206: {"description": "the requested byte range", "content": binary()}})
    def files(run_key: str, name: str, expires: str | None = None, signature: str | None = None) -> Any:
        path, media_type = service.file(run_key, name, expires, signature)
        headers = {"Cache-Control": f"private, max-age={config.url_ttl}"}
        if name == RUN_RECORD:
            return JsonResponse(service.runs.record(run_key), headers=headers)
        return FileResponse(path, media_type=media_type, headers=headers)

    @app.get("/health", summary="Readiness and the served model's identity",
             responses={200: {"description": "ready", "content": {schema.JSON: {"schema": schema.HEALTH}}},
                        503: {"description": "loading, failed or stopping", "content": {
                            schema.JSON: {"schema": schema.HEALTH}}}})
    async def health() -> JSONResponse:
        status, body = service.health()
        return JsonResponse(body, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema (made once).

    With the bearer security scheme, without FastAPI's 422 answers (validation failures are 400s in the
    API's own error body).
    """
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        spec.setdefault("components", {})["securitySchemes"] = schema.security()
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = spec
    return app.openapi_schema
