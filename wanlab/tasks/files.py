"""Tasks on disk: ``STORE/tasks/<task_id>.json``, one file per task (:class:`TaskFiles`).

Written atomically when a task is accepted and at every change, so results outlive the process and a
restart finds every accepted task; which process runs a task is decided by a lock beside its file
(:meth:`TaskFiles.claim`). :func:`task_file_data` is the one place a task file's fields are named.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TaskError, TaskTimeout
from ..fsutil import FileLock, write_json
from ..keys import run_key as key_of
from ..taskstatus import FINISHED, TaskStatus
from ..values import plain

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.setting import Accel
    from ..params import Params

log = logging.getLogger("wanlab.tasks")
TASKS_DIR = "tasks"
FORMAT = 2
#: The suffix of a task file set aside because its final state could not be written.
UNWRITTEN = ".unwritten.json"
UNWRITTEN_REASON = ("the server could not write this task's final state (its disk was full or failed), so it "
                    "did not finish; submit the request again")
TASK_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_task_id(task_id: Any) -> str:
    """``task_id`` when it is a uuid string, else TaskError (unknown id).

    Args:
        task_id: anything given as a task id.

    Returns:
        The id.

    Raises:
        TaskError: not a uuid string (answered as an unknown id).

    Example:
        >>> check_task_id("0b7e3c5e-8c3a-4f0e-9a57-3f1f0c2a9d11")
        '0b7e3c5e-8c3a-4f0e-9a57-3f1f0c2a9d11'
        >>> check_task_id("../etc")
        Traceback (most recent call last):
        ...
        wanlab.errors.TaskError: unknown task id '../etc': task ids are uuid4 strings as returned by submit
    """
    if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
        raise TaskError(f"unknown task id {task_id!r}: task ids are uuid4 strings as returned by submit")
    return task_id


class TaskFiles:
    """The task files of one store folder: ``STORE/tasks/<task_id>.json``.

    A task file holds the request, its acceleration setting, its run key, its status and times, an
    opaque ``owner`` (``wanlab serve`` keeps a hash of the API key there), ``options`` (what the service
    needs, e.g. a webhook) and ``result``: the task's answer in the hosted API's shape as of its last
    change. Files written before tasks were persisted at submit hold the finished result alone; they
    read back as they are. A task whose final state cannot be written (a full disk) has its last file
    renamed aside (:meth:`set_aside`), which needs no free space: it then reads back as FAILED, never as
    queued, and is not run again.

    Which process owns a task is decided by a lock on ``tasks/<task_id>.lock`` (``flock``), held by the
    queue that accepted (or resumed) it until the task ends: two processes on one store never run the
    same task, and a task whose process died (a ``kill -9``) holds no lock, so the next queue runs it.

    Args:
        store_path: the store's folder.

    Example:
        >>> import tempfile
        >>> files = TaskFiles(tempfile.mkdtemp())
        >>> files.ids(), files.unfinished()
        ([], [])
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.root = Path(store_path)
        self.folder = self.root / TASKS_DIR

    def __repr__(self) -> str:
        return f"TaskFiles({str(self.folder)!r})"

    def path(self, task_id: str) -> Path:
        """The file of task ``task_id``.

        Args:
            task_id: a uuid4 string.

        Returns:
            ``STORE/tasks/<task_id>.json``.

        Raises:
            TaskError: an id that is not a uuid string.
        """
        return self.folder / f"{check_task_id(task_id)}.json"

    def write(self, data: Mapping[str, Any]) -> None:
        """Write one task's file (atomically: readers see the old file or the new one).

        Args:
            data: the file's fields, as :func:`task_file_data` makes them (the format number is added).

        Raises:
            ValueError: ``status`` is not a :class:`~wanlab.taskstatus.TaskStatus`.
            TaskError: ``task_id`` is not a uuid string.
        """
        out = {"format": FORMAT, **plain(dict(data))}
        if out.get("status") not in tuple(TaskStatus):
            raise ValueError(f"task status: must be one of {', '.join(TaskStatus)}; got {out.get('status')!r}")
        write_json(self.path(out["task_id"]), out)

    def set_aside(self, task_id: str) -> None:
        """Move a task's last file aside when its final state could not be written (a full disk).

        A rename needs no free space; the task is then neither run again nor read as still queued:
        :meth:`read` gives it as FAILED, saying why. Nothing happens if it has no file.

        Args:
            task_id: the task's id.
        """
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path(task_id), self.folder / f"{task_id}{UNWRITTEN}")

    def read(self, task_id: str) -> dict[str, Any]:
        """One task's file (a file of the earlier format: its finished result, as it was written).

        Args:
            task_id: the task's id.

        Returns:
            The file's fields.

        Raises:
            TaskError: no such task in this store, or its file cannot be read or is not a task record.
        """
        file = self.path(task_id)
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            aside = self._set_aside(task_id)
            if aside is not None:
                return aside
            raise TaskError(f"unknown task id {task_id!r}: store {self.root} holds no task with it") from None
        except (OSError, ValueError) as exc:
            raise TaskError(f"task {task_id}: its file {file} cannot be read ({exc})") from None
        if not isinstance(data, dict):
            raise TaskError(f"task {task_id}: its file {file} is not a task record")
        return data

    def _set_aside(self, task_id: str) -> dict[str, Any] | None:
        """A task whose final state could not be written (:meth:`set_aside`), as FAILED; None if none."""
        file = self.folder / f"{task_id}{UNWRITTEN}"
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        reason = UNWRITTEN_REASON
        result = dict(data.get("result") or {})
        task = {**dict(result.get("task") or {}), "status": TaskStatus.FAILED, "reason": reason, "eta": 0}
        return {**data, "status": TaskStatus.FAILED, "reason": reason, "result": {**result, "task": task}}

    def result(self, task_id: str) -> dict[str, Any]:
        """The task's answer in the hosted API's shape, as its file last recorded it.

        Args:
            task_id: the task's id.

        Returns:
            The result (``task``, ``videos``, ``images``, ``audios``, ``extra``).

        Raises:
            TaskError: no such task in this store, or its file cannot be read.
        """
        data = self.read(task_id)
        return data["result"] if data.get("format") == FORMAT else data

    def ids(self) -> list[str]:
        """Ids of every task kept in this store.

        Returns:
            The ids, sorted.
        """
        if not self.folder.is_dir():
            return []
        return sorted(f.stem for f in self.folder.glob("*.json") if TASK_ID_RE.match(f.stem))

    def unfinished(self) -> list[dict[str, Any]]:
        """Files of tasks accepted but not finished (queued, or running when their process stopped).

        Damaged files are logged and left out.

        Returns:
            The files' fields, oldest first.
        """
        out = []
        for task_id in self.ids():
            try:
                data = self.read(task_id)
            except TaskError as exc:  # damaged: reported, not run (a restored file is picked up next start)
                log.error("%s; it is not resumed", exc)
                continue
            if data.get("format") == FORMAT and data.get("status") not in FINISHED:
                out.append(data)
        return sorted(out, key=lambda d: (d.get("submitted") or 0.0, d["task_id"]))

    def claim(self, task_id: str) -> Claim | None:
        """Become the one process that owns this task.

        Args:
            task_id: the task's id.

        Returns:
            A :class:`Claim` holding its lock (released by :meth:`Claim.release`, or by the kernel when the
            process dies), or None when another process holds it.
        """
        lock = FileLock(self.folder / f"{check_task_id(task_id)}.lock", mode=0o644)
        return Claim(lock) if lock.acquire(blocking=False) else None


class Claim:
    """The lock a queue holds on one task from the moment it accepts (or resumes) it until it ends."""

    def __init__(self, lock: FileLock) -> None:
        self._lock = lock

    def release(self) -> None:
        """Let go of the task (safe to call twice)."""
        self._lock.release()


def task_file_data(*, task_id: str, status: TaskStatus, params: Params, result: Mapping[str, Any],
                   reason: str = "", accel: Accel | None = None, parts: Mapping[str, Any] | None = None,
                   model: str = "",
                   submitted: float, started: float | None = None, finished: float | None = None,
                   run_key: str | None = None, owner: str | None = None,
                   options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What one task's file holds (:meth:`TaskFiles.write` adds the format number).

    The one place its fields are named.

    Args:
        task_id: the task's uuid.
        status: its status now.
        params: its request.
        result: its answer in the hosted API's shape (:func:`wanlab.tasks.shape.make_task_result`) as of now.
        reason: why it failed ("" unless FAILED).
        accel: its acceleration setting (an ``Accel``), or None.
        parts: its run key's parts (:func:`wanlab.keys.run_key`), or None for a task that makes no run.
        model: the model's fingerprint.
        submitted: when it was accepted (epoch seconds).
        started: when it started (None: not yet).
        finished: when it ended (None: not yet).
        run_key: the key of the run it stored, once stored.
        owner: who submitted it (opaque; ``wanlab serve`` keeps a hash of the API key).
        options: what the service needs of it later (e.g. its webhook).

    Returns:
        The file's fields as a plain dict.

    Example:
        >>> files.write(task_file_data(task_id=task_id, status=TaskStatus.QUEUED, params=params,  # doctest: +SKIP
        ...                            result=make_task_result(task_id=task_id, status=TaskStatus.QUEUED),
        ...                            submitted=time.time()))
    """
    return {"task_id": task_id, "status": status, "reason": reason,
            "params": params.to_dict(), "accel": accel.to_dict() if accel is not None else None,
            "key": key_of(parts) if parts else None, "key_parts": dict(parts) if parts else None,
            "model": model, "submitted": submitted, "started": started, "finished": finished,
            "run_key": run_key, "owner": owner, "options": dict(options or {}), "result": dict(result)}


def read_task_result(store: Any, task_id: str) -> dict[str, Any]:
    """A task's result in the hosted API's shape, read from a store's task file, from any process.

    Args:
        store: a :class:`~wanlab.store.Store` or its folder.
        task_id: the task's id, as ``submit`` returned it.

    Returns:
        The result as its file last recorded it (a file of the earlier format: its finished result).

    Raises:
        TaskError: an id that is not a uuid, a task the store does not hold, or a file that cannot be read.

    Example:
        >>> wanlab.tasks.read_task_result("runs", task_id)["task"]["status"]  # doctest: +SKIP
        'TASK_STATUS_SUCCEED'
    """
    return TaskFiles(getattr(store, "path", store)).result(task_id)


def wait_file(read: Callable[[str], dict[str, Any]], task_id: str, timeout: float | None,
              interval: float = 0.1) -> dict[str, Any]:
    """Poll a task's file (another process owns the task) until it says the task finished.

    Args:
        read: reads a task's result by id (e.g. :meth:`TaskFiles.result`).
        task_id: the task's id.
        timeout: seconds to wait at most (None: no limit).
        interval: seconds between reads.

    Returns:
        The finished task's result.

    Raises:
        TaskError: no such task.
        TaskTimeout: still unfinished after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = read(task_id)
        status = result["task"]["status"]
        if status in FINISHED:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise TaskTimeout(f"task {task_id} is still {status} after {timeout:g} s; it goes on running "
                              "(another process runs it)")
        time.sleep(interval)
