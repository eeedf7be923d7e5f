"""The service behind the HTTP routes: accepts tasks, answers for them, serves their files; no HTTP here.

One :class:`Service` per server process. It loads the model in the background (``GET /health``
says ``loading`` until then, and task results are answered from the store meanwhile), runs tasks
through a :class:`~wanlab.tasks.TaskQueue` over any backend (a pipeline, ``--workers`` copies, or
a Ray pool: :func:`load_backend` is where each plugs in), keeps tasks in the store when accepted,
and presents each result in the published shape with freshly signed file URLs. Every refusal is
an :class:`~wanlab.server.errors.ApiError` with its HTTP status.
"""
from __future__ import annotations

import hmac
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import LoRAError, ParamError, TaskError, UnsafeURLError
from ..netguard import precheck
from ..params import API_FIELDS, ApiOptions, Params
from ..store import Store
from ..tasks import QueueClosed, QueueFull, TaskFiles, TaskQueue
from ..tasks.files import FORMAT, TASK_ID_RE, task_file_data
from ..tasks.queue import reason_of
from ..tasks.shape import make_task_result, make_video_entry
from ..taskstatus import FINISHED, TaskStatus
from ..video import RUN_LOSSLESS, RUN_MP4, RUN_RECORD
from .auth import ApiKeys, ServerSecret
from .config import ServerConfig
from .errors import ApiError, echo, not_found, unavailable
from .idempotency import Idempotency, check_key, request_digest
from .redact import Redactor
from .served import ServedRuns
from .urls import FILES, UrlSigner, file_path
from .webhooks import Deliveries, WebhookRules, event

LOADING, READY, FAILED, STOPPING = "loading", "ok", "failed", "stopping"
DAMAGED = "the stored files of this task's run are damaged"
SAFETY_CHECKER = "none: no safety checker runs on a wanlab server; enable_safety_checker is accepted and recorded"
TEST_FAILURE = "test mode: a simulated failure (extra.webhook.test_mode); the task did not run"
INTEGER_FIELDS = ("width", "height", "seed", "steps", "num_frames", "frames")
TASK_FIELDS = ("task_id", "task_type", "status", "reason", "eta", "progress_percent")
DEBUG_FIELDS = ("request_info", "submit_time_ms", "execute_time_ms", "complete_time_ms")
log = logging.getLogger("wanlab.server")


def integral(value: Any) -> Any:
    """A JSON number without a fractional part as an int (JSON does not tell 30 from 30.0; 30.5 stays).

    Args:
        value: a parsed JSON value.

    Returns:
        The value, as an int where it is a whole float.

    Example:
        >>> integral(30.0), integral(30.5), integral("30")
        (30, 30.5, '30')
    """
    return int(value) if isinstance(value, float) and value.is_integer() else value


def load_backend(config: ServerConfig) -> Any:
    """The backend ``wanlab serve`` runs tasks on.

    One pipeline, ``--workers N`` copies in this process, or (``--ray``) a pool of Ray workers
    (:func:`wanlab.backends.open_backend`); the service needs only the backend protocol.

    Args:
        config: the server's configuration (model, workers, ray, device, dtype).

    Returns:
        The backend.

    Raises:
        LoadError: the model cannot be loaded.
        ParamError: contradictory backend options.
    """
    from ..backends import open_backend

    return open_backend(config.model, ray=config.ray, workers=config.workers, device=config.device,
                        dtype=config.dtype)


class Service:
    """What ``wanlab serve`` does, callable without HTTP; one per server process.

    It loads the model in the background (``GET /health`` says ``loading`` until then, and task results
    are answered from the store meanwhile), runs tasks through a :class:`~wanlab.tasks.TaskQueue` over
    any backend, keeps tasks in the store when accepted, and presents each result in the published
    shape with freshly signed file URLs. Every refusal is an :class:`~wanlab.server.errors.ApiError`
    with its HTTP status.

    Args:
        config: the validated :class:`~wanlab.server.config.ServerConfig`.
        backend_factory: makes the backend from ``config`` (None: :func:`load_backend`).
        on_failure: called when loading fails (the server then stops).

    Example:
        >>> service = Service(ServerConfig(model="tiny", no_auth=True, store="runs/serve"))  # doctest: +SKIP
        >>> service.start().join(); service.health()[0]  # doctest: +SKIP
        200
    """

    def __init__(self, config: ServerConfig, *, backend_factory: Callable[[ServerConfig], Any] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        from ..accel.setting import Accel
        from ..lora import SourcePolicy
        from ..lora.sources import default_cache_dir

        self.config = config
        self.store = Store(config.store)
        self.store.path.mkdir(parents=True, exist_ok=True)
        self.files = TaskFiles(self.store.path)
        secret = ServerSecret.of_store(self.store.path)
        self.keys = ApiKeys(config.api_keys, secret) if config.api_keys else None
        self.signer = UrlSigner(secret.derive("urls"), config.url_ttl)
        self.idempotency = Idempotency(self.store.path, secret.derive("idempotency"))
        self.rules = WebhookRules(config.webhook_allow, config.webhook_timeout_s)
        self.deliveries = Deliveries(self.store.path, self.rules, attempts=config.webhook_attempts,
                                     backoff_s=config.webhook_backoff_s)
        self.lora_policy = SourcePolicy.service(config.lora_dirs, max_bytes=config.lora_max_bytes,
                                                cache_dir=config.lora_cache or str(default_cache_dir()))
        self.fast_accel = Accel.coerce(config.fast_mode_accel, "fast_mode_accel")
        self.state, self.reason = LOADING, ""
        self.identity: Any = None
        self.backend: Any = None
        self.queue: TaskQueue | None = None
        self._factory = backend_factory or load_backend
        self.on_failure = on_failure
        self._retry_after = (0.0, 1)
        self.abandoned: list[str] = []
        for warning in config.webhook_warnings():
            log.warning(warning)
        self.runs = ServedRuns(self.store)
        self._damaged_tasks: set[str] = set()
        self._lock = threading.Lock()
        self.redactor = Redactor.of_server(config.lora_dirs, getattr(self.lora_policy, "cache_dir", None)
                                           or config.lora_cache, self.store.path)
        #: Whether the server has been asked to exit (``serve`` sets it: uvicorn's own flag); long polls end then.
        self.exit_requested: Callable[[], bool] = lambda: False

    def __repr__(self) -> str:
        return f"Service({self.config.model!r}, {self.state}, store={str(self.store.path)!r})"

    # --- life ----------------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        """Load the model in a background thread (the server answers meanwhile).

        Returns:
            The started thread.
        """
        thread = threading.Thread(target=self.load, name="wanlab-serve-load", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        """Load the backend, start the queue (resuming the store's unfinished tasks), send undelivered webhooks."""
        from ..models.identity import identity

        started = time.perf_counter()
        try:
            self.identity = identity(self.config.model, device=self.config.device, dtype=self.config.dtype)
            backend = self._factory(self.config)
            backend.set_lora_policy(self.lora_policy)
            self.queue = TaskQueue(backend, self.store, maxsize=self.config.queue_size, resume=True,
                                   max_per_owner=self.config.max_queued_per_key, video_url=self._video_url,
                                   on_finish=self._finished)
            self.backend, self.identity = backend, backend.identity
            if self.state == LOADING:
                self.state = READY
            resumed = self.queue.counts()[TaskStatus.QUEUED]
            sent = self.deliveries.resume(self._undelivered)
            log.info("model %s ready in %.1f s; %d unfinished task(s) queued again, %d webhook(s) resumed",
                     self.identity.model_id, time.perf_counter() - started, resumed, sent)
        except BaseException as exc:
            self.state, self.reason = FAILED, reason_of(exc)
            log.error("wanlab serve: the model %s could not be loaded: %s", self.config.model, self.reason)
            if self.on_failure is not None:
                self.on_failure()

    def close(self) -> None:
        """Stop taking tasks.

        The running ones finish (within ``drain_timeout_s``, else they are written back as queued for
        the next server and listed in :attr:`abandoned`); queued ones stay queued.
        """
        if self.state != FAILED:
            self.state = STOPPING
        queue = self.queue
        if queue is not None:
            queue.close(timeout=self.config.drain_timeout_s)
            self.abandoned = queue.abandon()
            for task_id in self.abandoned:
                log.warning("task %s was still running at shutdown; written back as queued", task_id)
        self.deliveries.close()
        if self.backend is not None and not self.abandoned:
            self.backend.close()

    # --- who -----------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> str | None:
        """The caller's owner id from its ``Authorization`` header.

        Args:
            authorization: the header's value (None: absent).

        Returns:
            The owner id (a hex digest of the key), or None when the server runs without keys.

        Raises:
            ApiError: 401 for a missing or wrong key.
        """
        return None if self.keys is None else self.keys.owner(authorization)

    def _owns(self, owner: str | None, task_owner: Any) -> bool:
        if self.keys is None:
            return True
        return isinstance(task_owner, str) and owner is not None and hmac.compare_digest(owner, task_owner)

    # --- submit --------------------------------------------------------------------------------------
    def submit(self, body: Any, owner: str | None, idempotency_key: str | None = None) -> str:
        """Validate a published request body and queue it (or, in webhook test mode, announce it).

        Args:
            body: the parsed JSON body of ``POST /v3/async/wan-t2v``.
            owner: the caller's owner id (None without keys).
            idempotency_key: the ``Idempotency-Key`` header: the task accepted earlier under that key from
                this owner is answered again (409 for another body); else a new task is recorded under it
                (:mod:`wanlab.server.idempotency`).

        Returns:
            The task id.

        Raises:
            ApiError: 400 for a bad field, 409 for a reused key with another body, 429 when the queue or
                this key's share is full, 503 while the model loads or the server stops, 507 on a full disk.
        """
        if idempotency_key is None:
            return self._submit(body, owner)
        key = check_key(idempotency_key)
        digest, request = self.idempotency.digest(owner, key), request_digest(body)
        with self.idempotency.lock():
            existing = self.idempotency.find(digest, request, self._task_file_exists)
            if existing is not None:
                log.info("task %s: submitted again under its idempotency key; the same task is answered", existing)
                return existing
            return self._submit(body, owner, lambda task_id: self.idempotency.record(digest, task_id, request),
                                digest)

    def _task_file_exists(self, task_id: str) -> bool:
        queue = self.queue
        return (queue is not None and queue.task(task_id) is not None) or self.files.path(task_id).is_file()

    def _submit(self, body: Any, owner: str | None, accepting: Callable[[str], None] | None = None,
                idempotency: str | None = None) -> str:
        """:meth:`submit` itself.

        ``accepting(task_id)`` is called once the task is accepted, before its file is written (the
        idempotency index entry), and ``idempotency`` (the index name) is kept in its options.
        """
        params, options = self.validate(body)
        if self.state != READY or self.queue is None:
            raise self._unavailable()
        if options.webhook_url and options.test_mode:
            return self._test_task(params, options, owner, accepting)
        recorded: dict[str, Any] = {
            "api": {"enable_safety_checker": options.enable_safety_checker, "fast_mode": options.fast_mode},
            "webhook": {"url": options.webhook_url} if options.webhook_url else None}
        if idempotency is not None:
            recorded["idempotency"] = idempotency
        try:
            task_id = self.queue.submit(params, owner=owner, options=recorded, accepting=accepting,
                                        accel=self.fast_accel if options.fast_mode else None)
        except QueueFull as exc:
            raise self._busy(exc) from None
        except QueueClosed:
            raise self._unavailable() from None
        if options.webhook_url:
            self.deliveries.accepted(task_id, options.webhook_url)
        return task_id

    def validate(self, body: Any) -> tuple[Params, ApiOptions]:
        """The request and its options from a body.

        Args:
            body: the parsed JSON body.

        Returns:
            ``(params, options)``: the validated request and the API's options (webhook, fast mode, ...).

        Raises:
            ApiError: 400 naming the field, the rule and the value.
        """
        local = self.config.allow_local_sizes
        if not isinstance(body, dict):
            raise ApiError.invalid(ParamError("body", "a JSON object with the fields of the Wan 2.1 T2V API", body))
        allowed = API_FIELDS + (("num_frames",) if local else ())
        unknown = sorted(str(k) for k in body if k not in allowed)
        if unknown:
            rule = f"fields of the Wan 2.1 T2V API ({', '.join(allowed)})"
            if "num_frames" in unknown:
                rule += "; num_frames and local sizes need a server started with --allow-local-sizes"
            raise ApiError(400, "INVALID_REQUEST_BODY", f"{', '.join(unknown)}: must be {rule}; got unknown "
                           f"field{'s' if len(unknown) > 1 else ''}", {"field": unknown[0], "fields": unknown,
                                                                        "rule": rule, "value": echo(body[unknown[0]])})
        if body.get("model_name") == self.config.model:  # the served model's own name is as good as the API's
            body = {k: v for k, v in body.items() if k != "model_name"}
        body = {k: integral(v) if k in INTEGER_FIELDS else v for k, v in body.items()}
        try:
            params = Params.from_api(body, local=local).resolved()
            options = ApiOptions.from_body(body)
            if options.webhook_url:
                self.rules.check(options.webhook_url)
        except ParamError as exc:
            raise ApiError.invalid(exc) from None
        self._check_loras(params)
        return params, options

    def _check_loras(self, params: Params) -> None:
        """What can be known of each LoRA path without downloading it (URLs are fetched when the task runs)."""
        from ..lora import locate

        rule = ("a .safetensors file inside the server's LoRA folders, a Hugging Face repo id in its hub cache, "
                "or an https URL")
        for i, lora in enumerate(params.loras):
            field = f"loras[{i}].path"
            if "://" in lora.path and not lora.path.startswith("hf://"):
                try:  # what is known without DNS (the download checks every address again)
                    precheck(lora.path, self.lora_policy.net)
                except UnsafeURLError as exc:
                    raise ApiError(400, "INVALID_REQUEST_BODY", f"{field}: {str(exc).removeprefix(lora.path + ': ')}",
                                   {"field": field, "rule": rule, "value": echo(lora.path)}) from None
                continue
            try:
                locate(lora.path, self.lora_policy)
            except (LoRAError, OSError, ValueError) as exc:
                message = self.redactor.scrub(str(exc).replace("loras.path:", f"{field}:", 1))
                raise ApiError(400, "INVALID_REQUEST_BODY", message,
                               {"field": field, "rule": rule, "value": echo(lora.path)}) from None

    def _test_task(self, params: Params, options: ApiOptions, owner: str | None,
                   accepting: Callable[[str], None] | None = None) -> str:
        """Webhook test mode: a task that does not run, ends with the requested status, and is announced."""
        task_id, now, url = str(uuid.uuid4()), time.time(), options.webhook_url
        if url is None:
            raise ValueError("webhook test mode needs the webhook's url")
        status = options.test_status
        reason = "" if status == TaskStatus.SUCCEED else TEST_FAILURE
        recorded = {"api": {"enable_safety_checker": options.enable_safety_checker, "fast_mode": options.fast_mode},
                    "webhook": {"url": options.webhook_url, "test_mode": True}}
        result = make_task_result(task_id=task_id, status=status, reason=reason, seed=params.seed,
                                  request={**params.to_dict(), "loras": len(params.loras)}, submitted=now,
                                  finished=now, wanlab={"run_key": None, "params": params.to_dict(), "accel": None,
                                                        "test_mode": True})
        if accepting is not None:
            accepting(task_id)
        self.files.write(task_file_data(task_id=task_id, status=status, reason=reason, params=params,
                                        model=self.identity.fingerprint, submitted=now, finished=now, owner=owner,
                                        options=recorded, result=result))
        self.deliveries.accepted(task_id, url)
        self.deliveries.send(task_id, url, event(self.present(result, recorded)))
        return task_id

    def _unavailable(self) -> ApiError:
        if self.state == LOADING:
            return unavailable("MODEL_LOADING", f"the model {self.config.model} is loading; retry in a few seconds", 5)
        if self.state == FAILED:
            return unavailable("MODEL_FAILED", f"the model {self.config.model} could not be loaded: {self.reason}", 60)
        return unavailable("SHUTTING_DOWN", "the server is shutting down; retry at another server or after its "
                                            "restart (queued tasks are kept)", 10)

    def _busy(self, exc: QueueFull) -> ApiError:
        """429 naming the limit that was hit.

        The whole queue (``--queue-size``) or this key's share of it (``--max-queued-per-key``), with
        Retry-After.
        """
        wait = self._retry_seconds()
        if exc.limit == "max_per_owner":
            message = (f"this API key already has {exc.value} tasks waiting, the most one key may queue on this "
                       f"server (--max-queued-per-key {exc.value}); retry after {wait} s, when one of them has started")
            reason, limit = "KEY_QUEUE_FULL", "max_queued_per_key"
        else:
            message = (f"the task queue is full ({exc.value} tasks waiting, --queue-size {exc.value}); retry after "
                       f"{wait} s")
            reason, limit = "QUEUE_FULL", "queue_size"
        return ApiError(429, reason, message, {"limit": limit, "value": exc.value, "retry_after": wait},
                        headers={"Retry-After": str(wait)})

    def _retry_seconds(self) -> int:
        """When a full queue will likely have room: the soonest eta of a running task (computed once a second)."""
        at, seconds = self._retry_after
        if time.monotonic() - at < 1.0 or self.queue is None:
            return seconds
        etas = [r["task"]["eta"] for r in self.queue.tasks() if r["task"]["status"] == TaskStatus.PROCESSING]
        seconds = max(1, math.ceil(min(etas))) if etas else 1
        self._retry_after = (time.monotonic(), seconds)
        return seconds

    # --- answers -------------------------------------------------------------------------------------
    def result(self, task_id: Any, owner: str | None, base: str | None = None) -> dict[str, Any]:
        """A task's result in the published shape, if ``owner`` may read it.

        Args:
            task_id: the ``task_id`` query parameter.
            owner: the caller's owner id (None without keys).
            base: the server's public address for the signed URLs (None: the configured one).

        Returns:
            The result (``task``, ``videos``, ``images``, ``audios``, ``extra``).

        Raises:
            ApiError: 404 for an unknown id, a malformed one, or another key's task (indistinguishable).
        """
        result, options = self._lookup(task_id, owner)
        return self.present(result, options, base)

    def _lookup(self, task_id: Any, owner: str | None) -> tuple[dict[str, Any], Mapping[str, Any]]:
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            raise not_found(task_id)
        queue = self.queue
        task = queue.task(task_id) if queue is not None else None
        if task is not None:
            if not self._owns(owner, task.owner):
                raise not_found(task_id)
            try:
                return queue.result(task_id), dict(task.options)  # type: ignore[union-attr]
            except TaskError:
                raise not_found(task_id) from None
        try:
            data = self.files.read(task_id)
        except TaskError as exc:
            if self.files.path(task_id).exists():  # whose it is cannot be read either: unknown to every key
                self._damaged_task(task_id, str(exc))
            raise not_found(task_id) from None
        if data.get("format") != FORMAT or not self._owns(owner, data.get("owner")):
            raise not_found(task_id)
        if not _is_result(data.get("result")):  # its owner asks: say so
            self._damaged_task(task_id, f"{self.files.path(task_id)} holds no task result in the published shape")
            raise ApiError(404, "TASK_DAMAGED", f"task_id: must be a task whose file on this server reads; the file "
                                                f"of {task_id} is damaged (the operator's log names it; it may be "
                                                "restored from a backup)", {"field": "task_id"})
        return dict(data["result"]), dict(data.get("options") or {})

    def _damaged_task(self, task_id: str, problem: str) -> None:
        """Log, once per task, that its file is damaged (the operator can restore it)."""
        with self._lock:
            first = task_id not in self._damaged_tasks
            self._damaged_tasks.add(task_id)
        if first:
            log.error("task %s cannot be answered: %s", task_id, problem)

    def present(self, result: Mapping[str, Any], options: Mapping[str, Any], base: str | None = None) -> dict[str, Any]:
        """A result as this server answers it: fresh signed URLs, what the options did, no server paths.

        Args:
            result: the task's result as the queue or its file holds it.
            options: the task's API options.
            base: the server's public address for the signed URLs (None: the configured one).

        Returns:
            The result as answered.
        """
        base = base or self.config.public_base
        wanlab = {k: v for k, v in dict(result["extra"].get("wanlab") or {}).items() if k != "store"}
        videos: list[dict[str, str]] = []
        run_key = wanlab.get("run_key")
        task = dict(result["task"])
        if task["status"] == TaskStatus.SUCCEED and run_key is not None:  # (a webhook test-mode task has no run)
            damage = self.runs.damage(run_key)
            if damage is None:
                videos.append(make_video_entry(self.signer.url(base, run_key, RUN_MP4), self.config.url_ttl))
                wanlab["files"] = {"lossless_url": self.signer.url(base, run_key, RUN_LOSSLESS),
                                   "record_url": self.signer.url(base, run_key, RUN_RECORD),
                                   "sha256": self.runs.hashes(run_key)}
            else:
                task.update(status=TaskStatus.FAILED,
                            reason=f"{DAMAGED}: {damage}. The video was made, but its stored files cannot be served; "
                                   "ask the server's operator to restore them, or submit the request again")
        task["reason"] = self.redactor.scrub(str(task.get("reason") or ""))
        api = dict(options.get("api") or {})
        wanlab["service"] = {"enable_safety_checker": api.get("enable_safety_checker", True),
                             "safety_checker": SAFETY_CHECKER, "fast_mode": api.get("fast_mode", False)}
        webhook = options.get("webhook")
        if webhook:
            record = self.deliveries.read(result["task"]["task_id"]) or {}
            wanlab["webhook"] = {"state": record.get("state", "waiting"), "attempts": len(record.get("attempts", [])),
                                 "test_mode": bool(webhook.get("test_mode"))}
        extra = result["extra"]
        return {"task": {k: task[k] for k in TASK_FIELDS}, "images": [], "videos": videos, "audios": [],
                "extra": {"seed": extra["seed"] or "-1",
                          "debug_info": {k: extra["debug_info"][k] or ("0" if k.endswith("_ms") else "")
                                         for k in DEBUG_FIELDS},
                          "wanlab": wanlab}}  # in the published order (task files keep keys sorted)

    def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /health``: 200 with the model's identity when ready, 503 while loading, failed or stopping.

        Returns:
            ``(status, body)``.
        """
        model = None
        if self.identity is not None:
            model = {**self.identity.to_dict(), "rules": "local" if self.config.allow_local_sizes else "api"}
        body: dict[str, Any] = {"status": self.state, "version": __version__, "model": model,
                                "server": self.config.summary(),
                                "queue": self.queue.counts() if self.queue is not None else None}
        if self.reason:
            body["reason"] = self.reason
        return (200 if self.state == READY else 503), body

    def file(self, run_key: str, name: str, expires: str | None, signature: str | None) -> tuple[Path, str]:
        """The run file a signed URL names, and its media type.

        Args:
            run_key: the run's key.
            name: the file's name in the run folder (``video.mp4``, ...).
            expires: the URL's ``expires`` parameter.
            signature: the URL's ``signature`` parameter.

        Returns:
            ``(path, media type)``.

        Raises:
            ApiError: 403 for a bad or expired signature, 404 if absent (or not a regular file in its run folder).
        """
        path = file_path(run_key, name)
        self.signer.check(path, expires, signature)
        found = self.runs.file(run_key, name) if name in FILES else None
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"{path}: no such file on this server", {"path": path})
        return found, FILES[name]

    # --- callbacks of the queue ----------------------------------------------------------------------
    def _video_url(self, run: Any, task: Any) -> tuple[str, int]:
        return self.signer.url(self.config.public_base, run.key, RUN_MP4), self.config.url_ttl

    def _finished(self, task: Any, result: Mapping[str, Any]) -> None:
        took = f" in {task.finished - task.started:.2f} s" if task.started and task.finished else ""
        log.info("task %s %s%s%s", task.task_id, TaskStatus(result["task"]["status"]).name, took,
                 f": {task.reason}" if task.reason else f" (run {task.run_key})")
        webhook = (task.options or {}).get("webhook")
        if webhook and webhook.get("url"):
            self.deliveries.send(task.task_id, webhook["url"], event(self.present(result, task.options)))

    def _undelivered(self, task_id: str) -> tuple[str, dict[str, Any]] | None:
        data = self.files.read(task_id)
        if data.get("status") not in FINISHED:
            return None
        options = dict(data.get("options") or {})
        url = (options.get("webhook") or {}).get("url")
        return (url, event(self.present(data["result"], options))) if url else None


def _is_result(result: Any) -> bool:
    """Whether a task file's ``result`` has the published shape, with the types the provider's SDKs parse."""
    if (not isinstance(result, dict) or not isinstance(result.get("task"), dict)
            or not isinstance(result.get("extra"), dict)):
        return False
    task, extra = result["task"], result["extra"]
    debug = extra.get("debug_info")
    if (not all(k in task for k in TASK_FIELDS) or not isinstance(debug, dict)
            or not all(k in debug for k in DEBUG_FIELDS)):
        return False
    numbers = [task["eta"], task["progress_percent"]]
    texts = [debug[f"{n}_time_ms"] for n in ("submit", "execute", "complete")]
    # "" for a time or seed not known: what task files written before wanlab 0.2.1 hold (answered as "0", "-1")
    return (all(type(n) is int for n in numbers) and all(isinstance(t, str) and (t == "" or t.isdigit()) for t in texts)
            and isinstance(extra.get("seed"), str) and (extra["seed"] == "" or extra["seed"].lstrip("-").isdigit())
            and all(isinstance(task[k], str) for k in ("task_id", "status", "reason")))
