"""Tasks: the hosted API's asynchronous shape (submit, poll the result) on a local pipeline.

``pipe.submit(params) -> task_id`` queues a generation; one background worker per pipeline runs
the tasks one at a time, in order. ``pipe.task_result(task_id)`` answers in the hosted API's
shape::

    {"task": {"task_id", "task_type", "status", "reason", "eta", "progress_percent"},
     "videos": [{"video_url", "video_url_ttl", "video_type"}],
     "extra": {"seed", "run_key", "debug_info": {...}}}

- ``status``: ``TASK_STATUS_QUEUED`` -> ``TASK_STATUS_PROCESSING`` -> ``TASK_STATUS_SUCCEED`` or
  ``TASK_STATUS_FAILED`` (with a human-readable ``reason``; a cancelled task is FAILED too, the API
  having no cancelled status).
- ``progress_percent`` (int) follows the denoising steps and stays below 100 until the video is
  decoded and stored; ``eta`` (int seconds, None until a step has been measured) comes from the
  measured time per step, scaled by each queued request's size, plus the measured decode time.
- ``video_url`` is the ``file://`` URI of the run's playable mp4 in the store; ``video_url_ttl`` is
  ``"0"`` (local files do not expire); ``video_type`` is ``"mp4"``. As in the hosted API,
  ``extra.seed`` is a string.
- Finished results are kept in the store (``tasks/<task_id>.json``): another process reads them
  with ``Store(path).task_result(task_id)`` or its own ``pipe.task_result(task_id)``.
"""
from __future__ import annotations

import collections
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import TaskError, WanlabError
from .params import Params
from .store import Run, Store, default_store_path

QUEUED = "TASK_STATUS_QUEUED"
PROCESSING = "TASK_STATUS_PROCESSING"
SUCCEED = "TASK_STATUS_SUCCEED"
FAILED = "TASK_STATUS_FAILED"
FINISHED = (SUCCEED, FAILED)
TASK_TYPE = "WAN_T2V"
DEFAULT_MAXSIZE = 16
CANCELLED_REASON = "cancelled before it started (pipe.cancel)"


class TaskTimeout(TaskError, TimeoutError):
    """``wait`` ran out of time before the task finished (the task goes on)."""


def _ms(t: float | None) -> str:
    return "" if t is None else str(int(t * 1000))


def _work(params: Params) -> float:
    """Relative cost of one denoising step: latent tokens, doubled under classifier-free guidance."""
    tokens = ((params.num_frames - 1) // 4 + 1) * max(params.height // 16, 1) * max(params.width // 16, 1)
    return float(tokens) * (2.0 if params.guidance_scale > 1.0 else 1.0)


def _pixels(params: Params) -> float:
    return float(params.num_frames * params.height * params.width)


def _reason(exc: BaseException) -> str:
    """One readable sentence: wanlab's own errors are already phrased for people."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, (WanlabError, ValueError, FileNotFoundError)) else f"{type(exc).__name__}: {text}"


@dataclass(eq=False)
class _Task:
    task_id: str
    params: Params
    store: Store
    status: str = QUEUED
    reason: str = ""
    done: int = 0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step_time: float | None = None
    last_step: float | None = None
    run: Run | None = None
    accel: Any = None


class TaskQueue:
    """A bounded queue of generation tasks and the one daemon thread that runs them for ``pipe``.

    ``store`` (a :class:`Store` or a folder) receives each finished run and task result; a task may
    name its own store at submit. ``maxsize`` bounds the number of queued (not yet started) tasks.
    """

    def __init__(self, pipe: Any, store: Store | str | None = None, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize: must be a positive integer; got {maxsize!r}")
        self.pipe = pipe
        self.store = Store(store) if store is not None else Store(default_store_path())
        self.maxsize = maxsize
        self._cond = threading.Condition()
        self._queue: collections.deque[_Task] = collections.deque()
        self._tasks: dict[str, _Task] = {}
        self._stores: dict[str, Store] = {str(self.store.path): self.store}
        self._current: _Task | None = None
        self._worker: threading.Thread | None = None
        self._step_rate: float | None = None  # seconds per unit of _work, per step
        self._tail_rate: float | None = None  # seconds of decode + store per output pixel

    def __repr__(self) -> str:
        with self._cond:
            return (f"TaskQueue({len(self._queue)} queued, {'1 running' if self._current else 'idle'}, "
                    f"store={str(self.store.path)!r})")

    # --- the API -------------------------------------------------------------------------------------
    def submit(self, params: Params | None = None, *, store: Store | str | None = None, accel: Any = None,
               **fields: Any) -> str:
        """Validate the request (a bad field raises :class:`ParamError` now, as the API answers 400),
        resolve its seed, queue it and return its task id (a uuid4 string). ``accel`` is a per-task
        acceleration setting (as ``pipe.generate(accel=...)``; None: the pipeline's default)."""
        p = self.pipe.params(params, **fields).resolved()
        if accel is not None:
            from .accel import Accel

            accel = Accel.coerce(accel)
        target = self.store if store is None else Store(store)
        task = _Task(task_id=str(uuid.uuid4()), params=p, store=target, accel=accel)
        with self._cond:
            if len(self._queue) >= self.maxsize:
                raise TaskError(f"the task queue is full ({self.maxsize} tasks waiting); wait for one to finish "
                                "or cancel one, then submit again")
            self._stores.setdefault(str(target.path), target)
            self._tasks[task.task_id] = task
            self._queue.append(task)
            self._start()
            self._cond.notify_all()
        return task.task_id

    def result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape (finished tasks of other processes from the store)."""
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is not None:
                return self._result(task)
        return self._stored(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished (SUCCEED or FAILED) and return its result.

        Raises :class:`TaskTimeout` (a ``TaskError`` and ``TimeoutError``) after ``timeout`` seconds.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise ValueError(f"timeout: must be a number of seconds >= 0 or None; got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None:
                return self._stored(task_id)
            while task.status not in FINISHED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TaskTimeout(f"task {task_id} is still {task.status} after {timeout:g} s "
                                      f"({self._progress(task)}% done); it goes on running")
                self._cond.wait(remaining)
            return self._result(task)

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task: it ends FAILED with reason "cancelled ..."; running or finished
        tasks cannot be cancelled (:class:`TaskError`)."""
        with self._cond:
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None:
                status = self._stored(task_id)["task"]["status"]  # raises for unknown ids
                raise TaskError(f"task {task_id} has already finished ({status}); only queued tasks can be cancelled")
            if task.status != QUEUED:
                raise TaskError(f"task {task_id} is {task.status}; only queued tasks can be cancelled")
            self._queue.remove(task)
            task.reason, task.finished = CANCELLED_REASON, time.time()
            self._finish(task, FAILED)
            return self._result(task)

    def tasks(self) -> list[dict[str, Any]]:
        """Results of every task submitted to this queue in this process, oldest first."""
        with self._cond:
            return [self._result(task) for task in self._tasks.values()]

    # --- the worker ----------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._loop, name=f"wanlab-tasks-{id(self):x}", daemon=True)
            self._worker.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                task = self._queue.popleft()
                task.status, task.started = PROCESSING, time.time()
                task.last_step = time.perf_counter()
                self._current = task
                self._cond.notify_all()
            try:
                self._execute(task)
            except BaseException as exc:  # noqa: BLE001 - the worker must outlive every task
                with self._cond:
                    task.reason, task.finished = _reason(exc), time.time()
                    self._finish(task, FAILED)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _execute(self, task: _Task) -> None:
        p = task.params
        t0 = time.perf_counter()

        def on_step(done: int, total: int) -> None:
            now = time.perf_counter()
            with self._cond:
                task.done = done
                task.step_time = (now - t0) / done
                rate = task.step_time / _work(p)
                self._step_rate = rate if self._step_rate is None else 0.5 * (self._step_rate + rate)
                task.last_step = now
                self._cond.notify_all()

        kwargs = {"accel": task.accel} if task.accel is not None else {}
        video = self.pipe.generate(p, progress=False, on_step=on_step, **kwargs)
        run = task.store.put(video, extra={"task_id": task.task_id})
        tail = time.perf_counter() - (task.last_step or t0)
        with self._cond:
            rate = tail / _pixels(p)
            self._tail_rate = rate if self._tail_rate is None else 0.5 * (self._tail_rate + rate)
            task.run, task.done, task.finished = run, p.steps, time.time()
            self._finish(task, SUCCEED)

    def _finish(self, task: _Task, status: str) -> None:
        """Keep the final result in the task's store, then publish the new status (under the lock)."""
        task.status = status
        try:
            task.store.put_task(task.task_id, self._result(task))
        except (OSError, WanlabError, ValueError) as exc:  # the task itself is done; say why it is not kept
            if status == SUCCEED:
                task.status, task.reason = FAILED, f"the video was made but its task result could not be stored: {exc}"
            else:
                task.reason += f" (and the task result could not be stored: {exc})"
        self._cond.notify_all()

    # --- answers -------------------------------------------------------------------------------------
    def _progress(self, task: _Task) -> int:
        if task.status == SUCCEED:
            return 100
        if task.status == QUEUED:
            return 0
        return min(99, int(100 * task.done / task.params.steps))

    def _estimate(self, task: _Task) -> float | None:
        """Seconds this task still needs (None before any step was measured)."""
        p = task.params
        if task.status == PROCESSING and task.step_time is not None:
            per_step = task.step_time
        elif self._step_rate is not None:
            per_step = self._step_rate * _work(p)
        else:
            return None
        tail = self._tail_rate * _pixels(p) if self._tail_rate is not None else per_step
        remaining = per_step * (p.steps - task.done) + tail
        if task.status == PROCESSING and task.last_step is not None and task.done < p.steps:
            remaining -= min(time.perf_counter() - task.last_step, per_step)  # the step under way
        return max(remaining, 0.0)

    def _eta(self, task: _Task) -> int | None:
        if task.status in FINISHED:
            return 0
        ahead = [task]
        if task.status == QUEUED:
            ahead = ([self._current] if self._current else []) + list(self._queue)[: self._queue.index(task) + 1]
        total = 0.0
        for item in ahead:
            seconds = self._estimate(item)
            if seconds is None:
                return None
            total += seconds
        return int(math.ceil(total))

    def _result(self, task: _Task) -> dict[str, Any]:
        videos = []
        if task.status == SUCCEED and task.run is not None:
            videos.append({"video_url": task.run.mp4.resolve().as_uri(), "video_url_ttl": "0", "video_type": "mp4"})
        extra: dict[str, Any] = {
            "seed": str(task.params.seed),
            "debug_info": {"submit_time_ms": _ms(task.submitted), "execute_time_ms": _ms(task.started),
                           "complete_time_ms": _ms(task.finished)},
            "params": task.params.to_dict(),
            "store": str(task.store.path),
        }
        if task.run is not None:
            extra["run_key"] = task.run.key
        return {
            "task": {"task_id": task.task_id, "task_type": TASK_TYPE, "status": task.status, "reason": task.reason,
                     "eta": self._eta(task), "progress_percent": self._progress(task)},
            "videos": videos,
            "extra": extra,
        }

    def _stored(self, task_id: str) -> dict[str, Any]:
        """A finished task's result from one of the stores this queue has written to."""
        if not isinstance(task_id, str):
            raise TaskError(f"unknown task id {task_id!r}: task ids are uuid4 strings as returned by pipe.submit")
        for store in list(self._stores.values()):
            try:
                return store.task_result(task_id)
            except TaskError:
                continue
        looked = ", ".join(str(s.path) for s in self._stores.values())
        raise TaskError(f"unknown task id {task_id!r}: not submitted to this pipeline, and no finished task "
                        f"with that id in {looked}")


_QUEUES_LOCK = threading.Lock()


def queue_for(pipe: Any, store: Store | str | None = None) -> TaskQueue:
    """The pipeline's task queue, made on first use (with ``store``, or ``$WANLAB_STORE``/``runs/tasks``)."""
    with _QUEUES_LOCK:
        if getattr(pipe, "_tasks", None) is None:
            pipe._tasks = TaskQueue(pipe, store)
        return pipe._tasks
