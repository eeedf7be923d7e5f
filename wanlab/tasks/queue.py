"""The task queue: the hosted API's asynchronous shape (submit, poll the result) over any backend.

:class:`TaskQueue` validates, stores, schedules (fairly across owners) and runs tasks, keeps their
progress and eta, and resumes a store's unfinished tasks; the rules are in its docstring.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..backend import Job
from ..errors import QueueClosed, QueueFull, TaskError, TaskTimeout, WanlabError
from ..inputs import AccelLike, StoreLike
from ..params import Params
from ..store import Store, default_store_path
from ..taskstatus import FINISHED, TaskStatus
from ..values import check_int, check_number
from .eta import Rates, eta, progress
from .fair import FairQueue
from .files import TaskFiles, check_task_id, wait_file
from .shape import LOCAL_URL_TTL, make_task_result, make_video_entry
from .task import Task

DEFAULT_MAXSIZE = 16
KEEP_FINISHED = 1000
CANCELLED_REASON = "cancelled before it started"
log = logging.getLogger("wanlab.tasks")


def caller_threads() -> int | None:
    """The calling thread's torch thread count when torch is in use, else None.

    A task runs with the count its submitter had, not the dispatcher thread's default.
    """
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def reason_of(exc: BaseException) -> str:
    """One readable sentence: wanlab's own errors are already phrased for people."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, (WanlabError, ValueError, FileNotFoundError)) else f"{type(exc).__name__}: {text}"


class TaskQueue:
    """A bounded queue of generation tasks over ``backend``, kept in ``store``.

    A request is validated at submit (bad fields raise at once, as the API answers 400) and written to
    the store; a dispatcher thread starts up to the backend's ``max_in_flight`` tasks at a time: oldest
    first within each owner's tasks, the owners in turn (:mod:`wanlab.tasks.fair`). Each finished video
    goes into the store as a run and the task ends ``TASK_STATUS_SUCCEED`` (or ``TASK_STATUS_FAILED``
    with a readable reason; a cancelled task is FAILED too, the API having no cancelled status).

    - ``progress_percent`` follows the denoising steps and stays below 100 until the video is stored;
      ``eta`` (seconds, always a number) comes from :mod:`wanlab.tasks.eta`.
    - Polls (:meth:`result`) read memory under a lock that no disk write ever holds; :meth:`listen`
      registers a callable told of every change (a long poll waiting on an event loop).
    - A queue created on a store resumes that store's unfinished tasks of the same model
      (:mod:`wanlab.tasks.files` decides which process runs each one).
    - :meth:`close` stops taking tasks, lets running ones finish and leaves queued ones queued on disk.

    Args:
        backend: the backend the tasks run on.
        store: a :class:`~wanlab.Store` or its folder (None: the default store).
        maxsize: how many queued tasks not yet handed to the backend it holds (more: QueueFull).
        keep_finished: finished tasks kept in memory; older ones are read from the store.
        resume: run the store's unfinished tasks of the same model.
        max_per_owner: queued tasks one ``owner`` may have (None: no bound of its own; tasks without an
            owner are not bounded by it).
        video_url: ``video_url(run, task)`` gives a finished task's ``(url, ttl_seconds)`` (None: the
            run's mp4 as a ``file://`` URL).
        on_finish: called as ``on_finish(task, result)`` once per task that ends (``wanlab serve``
            sends webhooks from it).

    Raises:
        ParamError: ``maxsize``, ``keep_finished`` or ``max_per_owner`` out of range.

    Example:
        >>> queue = TaskQueue(wanlab.load("toy"), "runs/tasks")  # doctest: +SKIP
        >>> queue.wait(queue.submit(prompt="a red square moving right quickly"))["task"]["status"]  # doctest: +SKIP
        'TASK_STATUS_SUCCEED'
    """

    def __init__(self, backend: Any, store: Store | str | None = None, *, maxsize: int = DEFAULT_MAXSIZE,
                 keep_finished: int = KEEP_FINISHED, resume: bool = True, max_per_owner: int | None = None,
                 video_url: Callable[[Any, Task], tuple[str, int]] | None = None,
                 on_finish: Callable[[Task, dict[str, Any]], None] | None = None) -> None:
        self.backend = backend
        self.store = Store(store) if store is not None else Store(default_store_path())
        self.maxsize = check_int("maxsize", maxsize, 1)
        self.keep_finished = check_int("keep_finished", keep_finished, 1)
        self.max_per_owner = check_int("max_per_owner", max_per_owner, 1, optional=True)
        self.video_url = video_url or _file_url
        self.on_finish = on_finish
        self._cond = _Signal()
        self._queue = FairQueue()
        self._tasks: dict[str, Task] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._stores: dict[str, Store] = {str(self.store.path): self.store}
        self._running: list[Task] = []
        self._reserved = 0  # places taken by submits writing their task file
        self._reserved_by: collections.Counter[str | None] = collections.Counter()  # the same, by owner
        self._dispatcher: threading.Thread | None = None
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanlab-tasks-finish")
        self._closing = False
        self._rates = Rates(self.store.path / "tasks", backend.identity.fingerprint)
        if resume:
            self._resume()

    def __repr__(self) -> str:
        with self._cond:
            return (f"TaskQueue({len(self._queue)} queued, {len(self._running)} running, "
                    f"store={str(self.store.path)!r})")

    # --- the API -------------------------------------------------------------------------------------
    def submit(self, params: Params | None = None, *, store: StoreLike | None = None, accel: AccelLike = None,
               owner: str | None = None, options: Mapping[str, Any] | None = None,
               accepting: Callable[[str], None] | None = None, **fields: Any) -> str:
        """Validate a request, write it to the store, queue it and return its task id.

        Args:
            params: a request whose explicitly set fields are kept.
            store: where this task's video goes (None: the queue's store).
            accel: a per-task acceleration setting (None: the backend's default).
            owner: who submitted it (tasks are bounded and served fairly per owner).
            options: kept with the task for the service (its webhook, ...).
            accepting: called as ``accepting(task_id)`` once the task is this queue's, before its file is
                written; an exception from it refuses the task.
            **fields: request fields (``prompt``, ``seed``, ...); a seed of -1 is drawn now.

        Returns:
            The task id (a uuid4 string).

        Raises:
            ParamError: a request field that breaks its rule.
            QueueClosed: the queue is closed.
            QueueFull: the queue, or this owner's share of it, is full.
        """
        from ..accel.setting import Accel

        p = self.backend.params(params, **fields).resolved()
        accel_ = Accel.coerce(accel) if accel is not None else None
        target = self.store if store is None else Store(store)
        task = Task(task_id=str(uuid.uuid4()), params=p, accel=accel_, parts={}, store=target, owner=owner,
                    options={"torch_threads": caller_threads(), **dict(options or {})},
                    model=self.backend.identity.fingerprint)
        with self._cond:
            if self._closing:
                raise QueueClosed("the task queue is closed; it takes no new tasks")
            if len(self._queue) + self._reserved >= self.maxsize:
                raise QueueFull(f"the task queue is full ({self.maxsize} tasks waiting); wait for one to finish "
                                "or cancel one, then submit again", limit="maxsize", value=self.maxsize)
            if owner is not None and self.max_per_owner is not None \
                    and self._queue.count(owner) + self._reserved_by[owner] >= self.max_per_owner:
                raise QueueFull(f"this owner already has {self.max_per_owner} tasks waiting, the most one owner may "
                                "queue; wait for one to start, then submit again", limit="max_per_owner",
                                value=self.max_per_owner)
            self._reserved += 1
            self._reserved_by[owner] += 1
            self._stores.setdefault(str(target.path), target)
        try:
            task.claim = TaskFiles(target.path).claim(task.task_id)  # a fresh id: ours from now on
            if accepting is not None:
                accepting(task.task_id)
            self._persist(task)
        except BaseException:
            with self._cond:
                self._reserved -= 1
                self._reserved_by[owner] -= 1
            if task.claim is not None:
                task.claim.release()
            raise
        with self._cond:
            self._reserved -= 1
            self._reserved_by[owner] -= 1
            self._tasks[task.task_id] = task
            self._queue.append(task)
            self._start()
            self._cond.notify_all()
        return task.task_id

    def result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape (tasks not in memory: from the store).

        Args:
            task_id: the task's id.

        Returns:
            The result (``task``, ``videos``, ``images``, ``audios``, ``extra``).

        Raises:
            TaskError: no such task here or in the store.
        """
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is not None:
                return self._result(task)
        return self._stored(task_id)

    def task(self, task_id: str) -> Task | None:
        """The in-memory task (None when it is only in the store).

        Args:
            task_id: the task's id.

        Returns:
            The :class:`~wanlab.tasks.task.Task`, or None.
        """
        with self._cond:
            return self._tasks.get(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished (SUCCEED or FAILED), and its file says so, and return its result.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The task's result in the hosted API's shape.

        Raises:
            ParamError: a negative ``timeout``.
            TaskError: no such task here or in the store.
            TaskTimeout: (a ``TaskError`` and ``TimeoutError``) still unfinished after ``timeout`` seconds.
        """
        check_number("timeout", timeout, 0, optional=True, rule="a number of seconds >= 0 or None")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None:
                return wait_file(self._stored, task_id, timeout)  # another process owns it (or it is done)
            while task.status not in FINISHED or task.written < task.version:  # finished and on disk
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TaskTimeout(f"task {task_id} is still {task.status} after {timeout:g} s "
                                      f"({self._progress(task)}% done); it goes on running")
                self._cond.wait(remaining if remaining is not None else 1.0)
            return self._result(task)

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task; it ends FAILED with reason "cancelled ...".

        Args:
            task_id: the task's id.

        Returns:
            The cancelled task's result.

        Raises:
            TaskError: no such task, or it is running or finished.
        """
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None:
                status = self._stored(task_id)["task"]["status"]  # raises for unknown ids
                raise TaskError(f"task {task_id} is {status}; only queued tasks can be cancelled")
            if task.status != TaskStatus.QUEUED or (task not in self._queue
                                                    and not (task.future and task.future.cancel())):
                raise TaskError(f"task {task_id} is {task.status}; only queued tasks can be cancelled")
            if task in self._queue:
                self._queue.remove(task)
            self._end(task, TaskStatus.FAILED, CANCELLED_REASON)
        try:
            self._persist(task, final=True)
        finally:
            self._let_go(task)
        self._finished_hook(task)
        return self.result(task_id)

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` at every change of any task (status, progress, a file written).

        It runs on the queue's threads and under its lock: it must be quick and must not call the queue
        (e.g. wake an event loop). :meth:`unlisten` stops it.

        Args:
            listener: a callable taking no arguments.
        """
        with self._cond:
            self._cond.listeners.add(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (nothing happens when it was not listening).

        Args:
            listener: a callable given to :meth:`listen`.
        """
        with self._cond:
            self._cond.listeners.discard(listener)

    def tasks(self) -> list[dict[str, Any]]:
        """Results of the tasks this queue holds in memory, oldest first.

        Returns:
            One result per task, in the hosted API's shape.
        """
        with self._cond:
            return [self._result(task) for task in self._tasks.values()]

    def counts(self) -> dict[str, int]:
        """How many tasks in memory are queued, processing and finished.

        Returns:
            Counts under ``TASK_STATUS_QUEUED``, ``TASK_STATUS_PROCESSING`` and ``"finished"``.
        """
        with self._cond:
            statuses = [t.status for t in self._tasks.values()]
        return {TaskStatus.QUEUED: statuses.count(TaskStatus.QUEUED),
                TaskStatus.PROCESSING: statuses.count(TaskStatus.PROCESSING),
                "finished": sum(statuses.count(s) for s in FINISHED)}

    def close(self, timeout: float | None = None) -> None:
        """Stop taking tasks.

        Running tasks finish (within ``timeout`` seconds; after it they go on in the background, see
        :meth:`abandon`), queued ones stay queued in the store for the next queue on it (this queue
        lets go of them). Safe to call twice.

        Args:
            timeout: seconds to wait for running tasks (None: until they finish).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            queued, self._queue = list(self._queue), FairQueue()
            self._cond.notify_all()
            dispatcher = self._dispatcher
        for task in queued:
            self._let_go(task)
        if dispatcher is not None:
            dispatcher.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._cond:
            while self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else 1.0)
            idle = not self._running
        if idle:
            self._finisher.shutdown(wait=True)

    def abandon(self) -> list[str]:
        """For a closed queue whose process is about to exit.

        Write every task still running back as queued and let go of it, so the next queue on the
        store runs it once; the end of its job is ignored here (no run stored, no file written).

        Returns:
            The ids of the tasks written back.

        Raises:
            TaskError: the queue is not closed (call :meth:`close` first).
        """
        with self._cond:
            if not self._closing:
                raise TaskError("abandon() is for a closed queue: call close() first")
            tasks = [t for t in self._running if not t.abandoned]
            for task in tasks:
                task.abandoned, task.status, task.started, task.done = True, TaskStatus.QUEUED, None, 0
                task.version += 1
        for task in tasks:
            self._persist(task)
            self._let_go(task)
        return [t.task_id for t in tasks]

    # --- the dispatcher --------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._dispatcher = threading.Thread(target=self._loop, name=f"wanlab-tasks-{id(self):x}", daemon=True)
            self._dispatcher.start()

    def _capacity(self) -> int:
        return max(1, int(self.backend.max_in_flight))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not (self._queue and len(self._running) < self._capacity()):
                    self._cond.wait()
                if self._closing:
                    return
                task = self._queue.popleft()
                self._running.append(task)
            try:
                self._dispatch(task)
            except BaseException as exc:
                self._complete(task, None, exc)

    def _dispatch(self, task: Task) -> None:
        """Start the task's job on the backend; its end is handled on the finisher thread."""
        try:
            if not task.parts:  # LoRA files are read (and downloaded) here, not while the request waits
                task.parts = self.backend.key_parts(task.params, task.accel)
            job = Job(task.params, task.accel, on_step=self._step_counter(task), on_start=lambda: self._started(task),
                      truncate=str(task.options.get("truncate", "warn")), threads=task.options.get("torch_threads"))
            future = self.backend.start(job)
        except BaseException as exc:
            self._complete(task, None, exc)
            return
        task.future = future
        # storing (video encodes, fsyncs) runs on the queue's own thread, not the backend's worker
        future.add_done_callback(lambda f: self._finisher.submit(self._complete, task, f, None))

    def _started(self, task: Task) -> None:
        with self._cond:
            if task.abandoned:
                return
            task.status, task.started, task.last_step = TaskStatus.PROCESSING, time.time(), time.perf_counter()
            task.version += 1
            self._cond.notify_all()
        try:
            self._persist(task)
        except OSError as exc:  # the task runs on; its end is written (or set aside) when it ends
            log.warning("task %s: its file could not be updated to PROCESSING (%s)", task.task_id, reason_of(exc))

    def _step_counter(self, task: Task) -> Callable[[int, int], None]:
        """The job's step callback: progress, and the measured time per step (for every eta)."""
        def on_step(done: int, total: int) -> None:
            now = time.perf_counter()
            with self._cond:
                start = task.last_step if task.last_step is not None else now
                task.step_time = now - start if task.step_time is None else 0.5 * (task.step_time + (now - start))
                task.done = done
                self._rates.add_step(task.step_time, task.params)
                task.last_step = now
                self._cond.notify_all()
        return on_step

    def _complete(self, task: Task, future: Any, error: BaseException | None) -> None:
        """A task's job ended: store its video (SUCCEED) or say why not (FAILED), then let go of it."""
        cancelled = (future is not None and future.cancelled()) or task.abandoned
        try:
            if cancelled:
                return  # cancel() has ended the task and written it, or abandon() has written it back
            if error is None and future is not None:
                error = future.exception()
            if error is None:
                video = future.result()
                run = task.store.put(video, key_parts=task.parts, extra={"task_id": task.task_id})
                tail = time.perf_counter() - (task.last_step or time.perf_counter())
                with self._cond:
                    self._rates.add_tail(tail, task.params)
                    if task.abandoned:  # abandon() wrote it back as queued while it was being stored
                        return
                    task.run_key, task.done = run.key, task.params.steps
                    self._end(task, TaskStatus.SUCCEED, "")
                self._rates.save()
            else:
                with self._cond:
                    if not task.abandoned:
                        self._end(task, TaskStatus.FAILED, reason_of(error))
        except Exception as exc:
            with self._cond:
                if not task.abandoned:
                    self._end(task, TaskStatus.FAILED, f"the video was made but could not be stored: {reason_of(exc)}")
        finally:
            try:
                if not cancelled and not task.abandoned:
                    self._persist(task, final=True)
            finally:
                self._let_go(task)
                with self._cond:
                    if task in self._running:
                        self._running.remove(task)
                    self._cond.notify_all()
        if task.status in FINISHED:
            self._finished_hook(task)

    def _let_go(self, task: Task) -> None:
        """Release the task's claim (the next queue on the store may take it, if it is unfinished)."""
        claim, task.claim = task.claim, None
        if claim is not None:
            claim.release()

    def _end(self, task: Task, status: TaskStatus, reason: str) -> None:
        """Set a final status (under the lock) and forget the oldest finished tasks beyond the limit."""
        task.status, task.reason, task.finished = status, reason, time.time()
        task.version += 1
        self._finished.append(task.task_id)
        while len(self._finished) > self.keep_finished:
            old = self._finished.popleft()
            if old in self._tasks and self._tasks[old].status in FINISHED:
                del self._tasks[old]
        self._cond.notify_all()

    def _finished_hook(self, task: Task) -> None:
        if self.on_finish is not None:
            with contextlib.suppress(Exception):  # a webhook's trouble never changes the task
                self.on_finish(task, self.result(task.task_id))

    # --- disk ----------------------------------------------------------------------------------------
    def _persist(self, task: Task, *, final: bool = False) -> None:
        """Write the task's file if this version is newer than the last written (outside the queue lock).

        A write that fails (a full disk) raises; with ``final`` (the task's end) the task's file is
        set aside instead, so that the store never says queued or processing for a task that ended.
        """
        with self._cond:
            version, data = task.version, task.file_data(self._result(task))
        with task.write_lock:
            if version <= task.written:
                return
            files = TaskFiles(task.store.path)
            try:
                files.write(data)
            except OSError as exc:
                if not final:
                    raise
                log.error("task %s ended %s but its file could not be written (%s); set aside", task.task_id,
                          task.status, reason_of(exc))
                files.set_aside(task.task_id)
            task.written = version
        with self._cond:
            self._cond.notify_all()

    def _resume(self) -> None:
        """Queue this store's unfinished tasks of this backend's model that no live process owns (oldest first).

        A task file that cannot be read back ends FAILED, naming the file.
        """
        files = TaskFiles(self.store.path)
        for data in files.unfinished():
            if data.get("model") != self.backend.identity.fingerprint:
                continue
            claim = files.claim(data["task_id"])
            if claim is None:
                continue  # a live queue owns it
            try:
                task = Task.from_file(data, self.store)
            except (ValueError, KeyError, TypeError) as exc:
                self._fail_file(files, data, exc)
                claim.release()
                continue
            task.claim = claim
            self._tasks[task.task_id] = task
            self._queue.append(task)
        if self._queue:
            self._start()

    def _fail_file(self, files: TaskFiles, data: dict[str, Any], exc: BaseException) -> None:
        reason = f"{files.path(data['task_id'])} could not be read back ({reason_of(exc)}); the task cannot run"
        result = make_task_result(task_id=data["task_id"], status=TaskStatus.FAILED, reason=reason,
                                  submitted=data.get("submitted"), finished=time.time())
        with contextlib.suppress(OSError, ValueError):
            files.write({**data, "status": TaskStatus.FAILED, "reason": reason, "finished": time.time(),
                         "result": result})

    # --- answers -------------------------------------------------------------------------------------
    def _progress(self, task: Task) -> int:
        return progress(task)

    def _eta(self, task: Task) -> float:
        waiting = [t for t in self._running if t.status == TaskStatus.QUEUED] + list(self._queue)
        running = [t for t in self._running if t.status == TaskStatus.PROCESSING]
        return eta(task, running, waiting, self._capacity(), self._rates)

    def _result(self, task: Task) -> dict[str, Any]:
        videos = []
        if task.status == TaskStatus.SUCCEED and task.run_key is not None:
            try:
                url, ttl = self.video_url(task.store.get(task.run_key), task)
                videos.append(make_video_entry(url, ttl))
            except WanlabError:  # the run was removed or damaged since: no URL (the service says why)
                pass
        wanlab = {"run_key": task.run_key or (_key_of(task.parts) if task.parts else None),
                  "params": task.params.to_dict(),
                  "accel": task.accel.to_dict() if task.accel is not None else None, "store": str(task.store.path)}
        return make_task_result(task_id=task.task_id, status=task.status, reason=task.reason, eta=self._eta(task),
                                progress=self._progress(task), videos=videos, seed=task.params.seed,
                                request=_request_info(task.params), submitted=task.submitted, started=task.started,
                                finished=task.finished, wanlab=wanlab)

    def _stored(self, task_id: str) -> dict[str, Any]:
        """A task's result from one of the stores this queue has written to."""
        check_task_id(task_id)
        for store in list(self._stores.values()):
            with contextlib.suppress(TaskError):
                return TaskFiles(store.path).result(task_id)
        looked = ", ".join(str(s.path) for s in self._stores.values())
        raise TaskError(f"unknown task id {task_id!r}: not submitted here, and no task with that id in {looked}")


class _Signal(threading.Condition):
    """The queue's condition: every ``notify_all`` (a change) also calls the listeners (:meth:`TaskQueue.listen`)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: set[Callable[[], None]] = set()

    def notify_all(self) -> None:
        super().notify_all()
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):  # a listener's trouble never stops the queue
                listener()


def _key_of(parts: Mapping[str, Any]) -> str:
    from ..keys import run_key

    return run_key(parts)


def _request_info(params: Params) -> dict[str, Any]:
    return {k: v for k, v in params.to_dict().items() if k != "loras"} | {"loras": len(params.loras)}


def _file_url(run: Any, task: Task) -> tuple[str, int]:
    """A finished task's video as the in-process API gives it: the run's mp4 as a ``file://`` URL."""
    return Path(run.mp4).resolve().as_uri(), LOCAL_URL_TTL
