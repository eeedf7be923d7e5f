"""The client backend: :class:`Remote`, a service with the hosted API's contract used wherever a pipeline is.

Each job is one task (submit, poll, download, verified); how tasks are resumed, deduplicated and
polled is in the class's docstring.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backend import BackendBase, Job, request
from ..errors import ParamError, ServiceError, SubmitUncertain, TaskError
from ..inputs import AccelLike
from ..params import Params
from ..values import check_number, check_unicode
from .download import DownloadError, fetch
from .fetched import api_video, wanlab_video
from .polling import Polling, progress_bar
from .service import ServiceInfo
from .transport import Transport
from .wire import body, check_service_lora, describe_loras

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.setting import Accel

log = logging.getLogger("wanlab.client")
SUBMIT = "/v3/async/wan-t2v"
RESULT = "/v3/async/task-result"
#: Tries of a download that did not arrive whole (each after a fresh task-result: its URLs may have expired).
DOWNLOAD_TRIES = 3
#: The most tasks kept at a service by default (a server's queue limit may be larger).
MAX_SLOTS = 32
#: The header a wanlab server deduplicates submits by (announced at ``/health``: ``server.idempotency_header``).
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: The query parameter of a wanlab server's long poll of task-result (announced at ``/health``: ``server.long_poll``).
WAIT_PARAM = "wanlab_wait"
#: Seconds a long poll may take less than the transport's read timeout (the answer must come before it).
WAIT_MARGIN_S = 5.0


class Remote(BackendBase):
    """A service with the hosted API's contract as a backend; made by :func:`wanlab.connect`.

    It has the backend protocol (:class:`wanlab.backend.Backend`; ``with remote:`` closes it) with the
    hosted API's ``submit``, ``task_result`` and ``wait``, plus ``video(task_id)`` for a finished task.

    Each job is one task: ``POST /v3/async/wan-t2v``, then ``GET /v3/async/task-result`` until it
    ends, then the download, verified. At most ``slots`` tasks are at the service at once
    (``connect(max_in_flight=K)``); a sweep keeps one more job started, which downloads and stores a
    finished task while the service runs the next. The task id is handed to ``job.on_accepted``
    before the first poll (a sweep writes it to the store), and a job with ``resume`` polls that task
    instead of submitting again: what a killed sweep paid for is fetched, never paid twice. Each
    submit of a job is announced to ``job.on_submit`` with a fresh idempotency key before it is sent
    (a sweep records it): against a wanlab server the key goes along (``Idempotency-Key``), so a
    submit whose answer was lost is sent again under it, now or in a rerun (``job.uncertain``), and
    the server returns the task it accepted; another service cannot be asked, so such a job fails
    (:class:`~wanlab.errors.SubmitUncertain`) unless ``job.retry_uncertain``. A task the service
    failed ends the job with the service's reason. Polls are timed by :mod:`wanlab.client.polling`; a
    wanlab server that offers a long poll (``/health``: ``server.long_poll``) is asked to hold each
    answer until the task changes (``wanlab_wait``), so its end is seen at once.

    Attributes:
        kind: ``"wanlab"`` (a wanlab server: exact frames, keys as local runs) or ``"api"``.
        identity: the served model's identity (a wanlab server's own, or one from the service's address).
        slots: tasks at the service at once.
        max_in_flight: jobs worth starting at once (one more than ``slots``).
        stats: counts of tasks submitted and resumed, polls and downloads.

    Example:
        >>> remote = wanlab.connect("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> sweep.run(remote, "runs/demo", max_in_flight=4)  # doctest: +SKIP
    """

    accel: Accel

    device = "remote"
    #: A service returns frames only: sweeps refuse ``probes`` with this backend before running anything.
    records_probes = False

    def __init__(self, transport: Transport, info: ServiceInfo, *, max_in_flight: int | None = None,
                 net_policy: Any = None, poll_min: float = 0.01, poll_max: float = 5.0) -> None:
        from ..accel.setting import Accel

        self.transport = transport
        self.info = info
        self.kind = info.kind
        self.identity = info.identity
        self.accel = Accel.coerce(info.accel) if info.accel else Accel.coerce(None)
        self.net_policy = net_policy
        self.polling = Polling(poll_min, poll_max)
        #: Tasks at the service at once (submitted, not finished there): ``connect(max_in_flight=)``, else the
        #: server's queue limit (at most :data:`MAX_SLOTS`), else 4.
        self.slots = int(max_in_flight or min(info.queue_limit or 4, MAX_SLOTS))
        #: Jobs worth starting at once: one more than the service's tasks, downloading and storing while it works.
        self.max_in_flight = self.slots + 1
        self._slots = threading.BoundedSemaphore(self.slots)
        self.stats = {"submitted": 0, "resumed": 0, "polls": 0, "downloads": 0}
        self._requests: dict[str, tuple[Params, Any]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._downloads: ThreadPoolExecutor | None = None
        announced = info.health.get("server")
        server: Mapping[str, Any] = announced if isinstance(announced, Mapping) else {}
        #: The header this service deduplicates submits by (None: it does not say it does, so none is sent).
        self.idempotency_header = server.get("idempotency_header") if self.kind == "wanlab" and \
            server.get("idempotency_header") == IDEMPOTENCY_HEADER else None
        #: Seconds each task-result may wait for a change at this service (None: it offers no long poll: polling).
        self.long_poll_s = _long_poll_s(server, transport.timeout) if self.kind == "wanlab" else None

    def __repr__(self) -> str:
        return f"Remote({self.base_url!r}, kind={self.kind!r}, model={self.identity.model_id!r})"

    @property
    def base_url(self) -> str:
        """The service's address, as the client uses it (no trailing slash)."""
        return self.transport.base_url

    # --- requests and keys ---------------------------------------------------------------------------
    def params(self, params: Params | None = None, **fields: Any) -> Params:
        """The validated request.

        Fields not given come from the served model's native settings, else the API's defaults; under the
        API's rules from the API's defaults alone (as the service reads a body), and local sizes and
        ``num_frames`` are refused here, before any call.

        Args:
            params: a request whose explicitly set fields are kept.
            **fields: request fields (``prompt``, ``seed``, ...).

        Returns:
            The validated :class:`~wanlab.Params`.

        Raises:
            ParamError: a field that breaks its rule, or one the service's rules refuse.
        """
        if self.identity.rules != "api":
            p = request(self.identity.native, params, **fields)
        else:
            p = request({}, params, **fields)
            p.check_api()
        if self.kind == "api":
            for lo in p.loras:
                check_service_lora(lo.path)
        return p

    def check_accel(self, accel: AccelLike) -> Any:
        """The acceleration setting a job asking for ``accel`` runs with at this service.

        The API's body has no field for an acceleration setting, so only the service's own runs.

        Args:
            accel: the setting asked for (None: the service's own).

        Returns:
            The service's :class:`~wanlab.accel.Accel`.

        Raises:
            ParamError: ``accel`` is not the service's own setting.
        """
        from ..accel.setting import Accel

        if accel is None:
            return self.accel
        wanted = Accel.coerce(accel)
        if wanted != self.accel:
            own = "exact (no acceleration): the hosted API takes no acceleration setting" if self.kind == "api" else \
                f"{self.accel.label}, the server's own setting (the API's body has no field for another)"
            raise ParamError("accel", own, wanted.label)
        return self.accel

    def describe_loras(self, params: Params) -> list[dict[str, Any]]:
        """Each LoRA of ``params`` as run keys hold it (:func:`wanlab.client.wire.describe_loras`).

        Args:
            params: the request whose LoRAs are described.

        Returns:
            One dict per LoRA (path, scale, and a local file's sha256 for a wanlab server).

        Raises:
            LoRAError: a LoRA path that :meth:`set_lora_policy` rules out, or a file that cannot be read.
        """
        return describe_loras(params, self.kind, self.lora_policy)

    def body(self, params: Params) -> dict[str, Any]:
        """The JSON body of ``POST /v3/async/wan-t2v`` for ``params`` (:func:`wanlab.client.wire.body`).

        Args:
            params: the validated request.

        Returns:
            The body as a dict.
        """
        return body(params, self.identity, self.kind)

    # --- the hosted API's task methods -------------------------------------------------------------
    def submit(self, params: Params | None = None, *, accel: AccelLike = None, idempotency_key: str | None = None,
               **fields: Any) -> str:
        """Submit one request and return the service's task id.

        The request is validated here first, and a seed of -1 is drawn here, so it is known. Every call is a
        task the service runs (and may bill), except that a wanlab server given the same
        ``idempotency_key`` for the same request again returns the task it accepted first.

        Args:
            params: a request whose explicitly set fields are kept.
            accel: the acceleration setting (None, or the service's own).
            idempotency_key: 1 to 255 visible ASCII characters (a service other than wanlab ignores it).
            **fields: request fields (``prompt``, ``seed``, ...).

        Returns:
            The task id, for :meth:`task_result`, :meth:`wait` and :meth:`video`.

        Raises:
            ParamError: a field that breaks its rule (nothing is sent).
            AuthError: the service refused the API key.
            SubmitUncertain: the connection broke after the request was sent, so the task may exist.
            ServiceError: any other refusal, or an answer without a task id.

        Example:
            >>> task_id = remote.submit(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
        """
        p = self.params(params, **fields).resolved()
        accel_ = self.check_accel(accel)
        return self._submit(p, accel_, idempotency_key)

    def _submit(self, params: Params, accel: AccelLike, idempotency_key: str | None = None) -> str:
        """POST the request; with a key a wanlab server honours, it goes along and the POST may be sent again."""
        header = self.idempotency_header if idempotency_key is not None else None
        data = self.transport.json("POST", SUBMIT, body=self.body(params), replay=False, idempotent=header is not None,
                                   headers={header: idempotency_key} if header else None,
                                   what=f"POST {self.base_url}{SUBMIT}")
        task_id = data.get("task_id") if isinstance(data, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise ServiceError(f"POST {self.base_url}{SUBMIT}: the answer holds no task_id ({str(data)[:200]})")
        with self._lock:
            self.stats["submitted"] += 1
            self._requests[task_id] = (params, accel)
        return task_id

    def task_result(self, task_id: str, *, wait: float | None = None) -> dict[str, Any]:
        """The task's state as the service gives it (the published shape).

        Args:
            task_id: an id :meth:`submit` returned.
            wait: seconds the service may hold the answer until the task's status or progress changes
                (a wanlab server's long poll, at most :attr:`long_poll_s`; None: answer at once).

        Returns:
            A dict with ``task`` (``status``, ``progress_percent``, ``eta``, ``reason``), ``videos``,
            ``images``, ``audios`` and ``extra``.

        Raises:
            ParamError: ``task_id`` is not a string, or ``wait`` is negative.
            TaskError: the service knows no such task (not submitted there, or with another key).
            ServiceError: the service refused, or its answer is not a task result.

        Example:
            >>> remote.task_result(task_id)["task"]["status"]  # doctest: +SKIP
            'TASK_STATUS_PROCESSING'
        """
        if not isinstance(task_id, str) or not task_id:
            raise ParamError("task_id", "a task id string", task_id)
        check_unicode("task_id", task_id)
        check_number("wait", wait, 0, optional=True, rule="a number of seconds >= 0 or None")
        query = {"task_id": task_id}
        if wait and self.long_poll_s:
            query[WAIT_PARAM] = f"{min(wait, self.long_poll_s):.3f}"
        with self._lock:
            self.stats["polls"] += 1
        try:
            result = self.transport.json("GET", RESULT, query=query,
                                         what=f"GET {self.base_url}{RESULT}")
        except ServiceError as exc:
            if exc.status == 404:
                raise TaskError(f"unknown task id {task_id!r} at {self.base_url} (404): not submitted there, or "
                                "with another API key") from None
            raise
        if not isinstance(result, Mapping) or not isinstance(result.get("task"), Mapping) \
                or not isinstance(result["task"].get("status"), str):
            raise ServiceError(f"GET {self.base_url}{RESULT}: not a task result (no task.status): {str(result)[:200]}")
        return dict(result)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the task has finished and return its result.

        Args:
            task_id: an id :meth:`submit` returned.
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The finished task's result, shaped as :meth:`task_result` returns it.

        Raises:
            TaskError: the service knows no such task.
            TaskTimeout: the task has not finished after ``timeout`` seconds (it goes on at the service).
            ServiceError: the service refused a poll.

        Example:
            >>> remote.wait(task_id, timeout=600)["task"]["status"]  # doctest: +SKIP
            'TASK_STATUS_SUCCEED'
        """
        from ..errors import TaskTimeout
        from ..taskstatus import FINISHED

        check_number("timeout", timeout, 0, optional=True, rule="a number of seconds >= 0 or None")
        start = time.monotonic()
        seen = None
        while True:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            wait = self.long_poll_s if left is None else left
            asked = time.monotonic()
            result = self.task_result(task_id, wait=wait)
            task = result["task"]
            if task["status"] in FINISHED:
                return result
            age = time.monotonic() - start
            held, seen = self._held(asked, wait, seen, task), _state(task)
            if held and (timeout is None or age < timeout):
                continue  # the service held the answer until something changed: ask again at once
            if timeout is not None and age >= timeout:
                raise TaskTimeout(f"task {task_id} is still {task['status']} after {timeout:g} s "
                                  f"({task.get('progress_percent', 0)}% done); it goes on running at {self.base_url}")
            pause = self.polling.pause(age, task)
            time.sleep(pause if timeout is None else min(pause, max(timeout - age, 0.0)))

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Refuse: the hosted API has no cancel route, so a submitted task runs to its end.

        Args:
            task_id: the task that cannot be cancelled.

        Returns:
            Never returns.

        Raises:
            TaskError: always.
        """
        raise TaskError(f"task {task_id} cannot be cancelled: the hosted API's contract has no cancel route, so a "
                        "submitted task runs (and is billed) to its end")

    def video(self, task_id: str, params: Params | None = None) -> Any:
        """The :class:`~wanlab.Video` of a finished task, downloaded and verified now.

        Waits for the task first.

        Args:
            task_id: an id :meth:`submit` returned.
            params: the request, when it was not submitted through this client (a wanlab server's record
                says it; the hosted API's answer does not).

        Returns:
            The task's video with its record.

        Raises:
            TaskError: the service knows no such task.
            DownloadError: a download that breaks off, is too large, or whose content fails its checks.
            ServiceError: the task failed, or its result is malformed.

        Example:
            >>> remote.video(task_id)  # doctest: +SKIP
            Video(17 frames, 64x64, 16 fps, seed=1, digest=...)
        """
        with self._lock:
            known = self._requests.get(task_id)
        p = params if params is not None else (known[0] if known else None)
        return self._fetch(task_id, self.wait(task_id), p)

    # --- the backend protocol ----------------------------------------------------------------------
    def start(self, job: Job) -> Future[Any]:
        """Run ``job`` as one task (or poll ``job.resume``) on a client thread.

        Args:
            job: the resolved request with its acceleration and callbacks.

        Returns:
            A Future that holds the job's :class:`~wanlab.Video` or its error.
        """
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(32, self.max_in_flight),
                                                thread_name_prefix="wanlab-remote")
            pool = self._pool
        return pool.submit(self._run, job)

    def generate(self, params: Params | None = None, *, accel: AccelLike = None, progress: bool | None = None,
                 on_step: Callable[[int, int], None] | None = None, truncate: str = "warn", probes: Any = None,
                 **fields: Any) -> Any:
        """Generate one video on the service and return it, downloaded and verified.

        Args:
            params: a request whose explicitly set fields are kept.
            accel: the acceleration setting (None, or the service's own).
            progress: show a progress bar over the task's steps.
            on_step: called as ``on_step(done, total)`` as the task's progress advances.
            truncate: ``"warn"`` or ``"error"`` for prompts longer than the model reads.
            probes: must be left out: a service returns frames only.
            **fields: request fields (``prompt``, ``seed``, ...).

        Returns:
            The :class:`~wanlab.Video` with its record.

        Raises:
            ParamError: a field that breaks its rule, or ``probes`` given.
            AuthError: the service refused the API key.
            ServiceError: the service refused the task, or the task failed.
            DownloadError: the video's download or its checks failed.

        Example:
            >>> remote.generate(prompt="a blue circle moving left slowly", seed=3)  # doctest: +SKIP
            Video(17 frames, 64x64, 16 fps, seed=3, digest=...)
        """
        if probes:
            raise ParamError("probes", "left out with a remote backend (the service's API returns frames only; record "
                             "probes with a local pipeline or a Ray pool)", probes)
        p = self.params(params, **fields).resolved()
        job = Job(p, self.check_accel(accel), on_step=on_step or (progress_bar(p.steps) if progress else None),
                  truncate=truncate)
        return self._run(job)

    def close(self) -> None:
        """Stop: jobs not started are cancelled, running ones finish; the connections close."""
        with self._lock:
            pool, self._pool = self._pool, None
            downloads, self._downloads = self._downloads, None
        for executor in (pool, downloads):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self.transport.close()

    # --- one job -----------------------------------------------------------------------------------
    def _run(self, job: Job) -> Any:
        if job.probes:
            raise ParamError("probes", "left out with a remote backend (the service's API returns frames only; record "
                             "probes with a local pipeline or a Ray pool)", list(job.probes))
        p = job.params
        accel = self.check_accel(job.accel)
        if self.identity.rules == "api":
            p.check_api()
        if self.lora_policy is not None:
            self.describe_loras(p)  # a LoRA path the policy rules out is refused before it is sent
        with self._slots:  # held while the task is at the service; its download overlaps the next one's run
            task_id = self._accepted(job, accel)
            result = self._follow(task_id, job)
        return self._fetch(task_id, result, p)

    def _accepted(self, job: Job, accel: AccelLike) -> str:
        """The task of this job at the service.

        The one it resumes, or a new one (its idempotency key announced to ``job.on_submit`` before it is
        sent, its task id to ``job.on_accepted`` before anything else happens).
        """
        from ..taskstatus import TaskStatus

        p = job.params
        task_id = None
        idempotency_key = None
        if job.resume:
            try:
                if self.task_result(job.resume)["task"]["status"] == TaskStatus.FAILED:
                    log.info("task %s failed earlier at %s; submitting the request again", job.resume, self.base_url)
                else:
                    task_id = job.resume
                    with self._lock:
                        self.stats["resumed"] += 1
                        self._requests[task_id] = (p, accel)
            except TaskError:
                log.warning("task %s is unknown at %s; submitting the request again", job.resume, self.base_url)
        elif job.uncertain:
            if self.idempotency_header is not None:
                idempotency_key = job.uncertain  # the server returns the task it accepted under it, if it did
            elif not job.retry_uncertain:
                raise SubmitUncertain(
                    f"an earlier submit of this request to {self.base_url} got no answer, so the service may have "
                    "accepted it (and may bill it); it is not submitted again: pass retry_uncertain=True (wanlab "
                    "sweep --retry-uncertain) to submit it anyway, after checking the service's own task list")
            else:
                log.info("submitting again a request whose earlier submit got no answer (retry_uncertain)")
        if task_id is None:
            idempotency_key = idempotency_key or uuid.uuid4().hex
            if job.on_submit is not None:
                job.on_submit(idempotency_key)  # recorded before it is sent: a lost answer is known to a rerun
            task_id = self._submit(p, accel, idempotency_key)
            if job.on_accepted is not None:
                try:
                    job.on_accepted(task_id)
                except Exception as exc:
                    log.warning("task %s: recording it failed (%s); fetching it anyway", task_id, exc)
        return task_id

    def _follow(self, task_id: str, job: Job) -> dict[str, Any]:
        """Poll the task to its end, reporting start and progress to the job's callbacks."""
        from ..taskstatus import TaskStatus

        steps = job.params.steps
        started = False
        done = 0
        since = time.monotonic()
        seen = None
        while True:
            asked = time.monotonic()
            result = self.task_result(task_id, wait=self.long_poll_s)
            task = result["task"]
            status = task["status"]
            if status != TaskStatus.QUEUED and not started:
                started = True
                if job.on_start is not None:
                    job.on_start()
            if job.on_step is not None and status != TaskStatus.QUEUED:
                percent = int(task.get("progress_percent") or 0)
                now = steps if status == TaskStatus.SUCCEED else min(steps, percent * steps // 100)
                if now > done:
                    done = now
                    job.on_step(done, steps)
            if status == TaskStatus.SUCCEED:
                self.polling.learn(job.params, result)
                return result
            if status == TaskStatus.FAILED:
                raise TaskError(f"task {task_id} failed at {self.base_url}: {task.get('reason') or 'no reason given'}")
            held, seen = self._held(asked, self.long_poll_s, seen, task), _state(task)
            if held:
                continue  # the service held the answer until the task changed: ask again at once
            time.sleep(self.polling.pause(time.monotonic() - since, task,
                                          self.polling.expected_end(job.params, result)))

    def _held(self, asked: float, wait: float | None, seen: Any, task: Mapping[str, Any]) -> bool:
        """Whether a long poll sent at ``asked`` did its work, so the next may go at once.

        It did when the task changed from ``seen``, or the service held the answer for the time asked;
        else (a server that answers long polls of this task at once, e.g. one that does not run it)
        the usual poll pause comes first.
        """
        if not self.long_poll_s or not wait:
            return False
        return _state(task) != seen or time.monotonic() - asked >= 0.9 * min(wait, self.long_poll_s)

    def _fetch(self, task_id: str, result: Mapping[str, Any], params: Params | None) -> Any:
        """Download a finished task's files into a folder of their own (removed with the Video) and build its Video.

        A download that does not arrive whole is tried again with a fresh result.
        """
        folder = Path(tempfile.mkdtemp(prefix="wanlab-download-"))
        try:
            for attempt in range(DOWNLOAD_TRIES):
                try:
                    if self.kind == "wanlab" and _has_lossless(result):
                        video = wanlab_video(self, task_id, result, params, folder)
                    else:
                        video = api_video(self, task_id, result, params, folder)
                    break
                except DownloadError as exc:
                    if attempt + 1 == DOWNLOAD_TRIES:
                        raise DownloadError(f"task {task_id}: its video could not be downloaded whole in "
                                            f"{DOWNLOAD_TRIES} tries ({exc}); the task is done at {self.base_url}, "
                                            "so a later run fetches it without paying again") from None
                    log.info("task %s: %s; downloading again", task_id, exc)
                    result = self.task_result(task_id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            self.stats["downloads"] += 1
        weakref.finalize(video, shutil.rmtree, str(folder), True)
        return video

    def in_parallel(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the download threads (a task's files come at once).

        Args:
            fn: the function to run.
            *args: its arguments.

        Returns:
            A Future holding what ``fn`` returns.
        """
        with self._lock:
            if self._downloads is None:
                self._downloads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wanlab-download")
            pool = self._downloads
        return pool.submit(fn, *args)

    def download(self, url: str, target: Path, sha256: str | None = None) -> Any:
        """One file of a task, downloaded and verified (:func:`wanlab.client.download.fetch`).

        Args:
            url: the file's URL.
            target: where to write it.
            sha256: the digest the file must have (None: not checked).

        Returns:
            The download's outcome (:class:`~wanlab.client.download.Downloaded`).

        Raises:
            DownloadError: the download broke off, was too large, or its digest differs.
        """
        return fetch(self.transport, url, target, policy=self.net_policy, sha256=sha256)


def _state(task: Mapping[str, Any]) -> tuple[Any, Any]:
    return task.get("status"), task.get("progress_percent")


def _long_poll_s(server: Mapping[str, Any], timeout: float) -> float | None:
    """Seconds a task-result may wait at a wanlab server that announces a long poll; None without one.

    ``server.long_poll`` gives its parameter and longest wait; the wait is kept :data:`WAIT_MARGIN_S`
    under the read ``timeout``.
    """
    offer = server.get("long_poll")
    if not isinstance(offer, Mapping) or offer.get("param") != WAIT_PARAM:
        return None
    longest = offer.get("max_s")
    if not isinstance(longest, (int, float)) or isinstance(longest, bool) or not longest > 0:
        return None
    seconds = min(float(longest), timeout - WAIT_MARGIN_S)
    return seconds if seconds >= 1.0 else None


def _has_lossless(result: Mapping[str, Any]) -> bool:
    from .fetched import lossless_link

    return lossless_link(result) is not None
