"""One task as a queue holds it (:class:`Task`), and its file's fields.

The file is written when the task is accepted and at every change, and read back by the next queue on
the store.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..accel.setting import Accel
from ..params import Params
from ..store import Store
from ..taskstatus import TaskStatus
from .files import task_file_data


@dataclass(eq=False)
class Task:
    """One task as the queue holds it.

    Attributes:
        task_id: its uuid4.
        params: its resolved request.
        accel: its acceleration setting (None: the backend's default).
        parts: its run key's parts.
        store: the store its video goes to.
        model: the model's fingerprint.
        owner: who submitted it (``wanlab serve``: the API key's digest).
        options: what the service keeps with it (webhook, torch threads, ...).
        status: its :class:`~wanlab.taskstatus.TaskStatus`.
        reason: why it failed ("" unless FAILED).
        done: denoising steps done.
        submitted: when it was accepted (epoch seconds).
        started: when it started (None: not yet).
        finished: when it ended (None: not yet).
        step_time: its measured seconds per step (None: none measured yet).
        last_step: ``time.perf_counter()`` at its last step.
        run_key: the key of the run it stored, once stored.
        version: bumped at every change; ``written`` is the version its file holds.
        written: the version last written to its file.
        write_lock: serialises writes of its file.
        future: the backend's Future while it runs.
        claim: the lock that makes this queue the task's one owner (:class:`wanlab.tasks.files.Claim`).
        abandoned: written back as queued by ``TaskQueue.abandon``: its job's end is ignored.
    """

    task_id: str
    params: Params
    accel: Accel | None
    parts: dict[str, Any]
    store: Store
    model: str = ""
    owner: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.QUEUED
    reason: str = ""
    done: int = 0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step_time: float | None = None
    last_step: float | None = None
    run_key: str | None = None
    version: int = 0
    written: int = -1
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    future: Any = None
    claim: Any = None  # the lock that makes this queue the task's one owner (wanlab.tasks.files.Claim)
    abandoned: bool = False  # written back as queued by TaskQueue.abandon: its job's end is ignored

    def file_data(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """What the task's file holds (:func:`~wanlab.tasks.files.task_file_data`).

        Args:
            result: its result in the hosted API's shape as of now.

        Returns:
            The request, setting, key, status, times, owner, options and result.
        """
        return task_file_data(task_id=self.task_id, status=self.status, reason=self.reason, params=self.params,
                              accel=self.accel, parts=self.parts, model=self.model, submitted=self.submitted,
                              started=self.started, finished=self.finished, run_key=self.run_key, owner=self.owner,
                              options=self.options, result=result)

    @classmethod
    def from_file(cls, data: Mapping[str, Any], store: Store) -> Task:
        """An unfinished task read back from its file: queued again.

        Args:
            data: the task file's fields.
            store: the store its video goes to.

        Returns:
            The :class:`Task`, QUEUED.
        """
        from ..accel.setting import Accel

        task = cls(task_id=data["task_id"], params=Params.from_dict(data["params"]),
                   accel=Accel.from_dict(data["accel"]) if data.get("accel") else None,
                   parts=dict(data.get("key_parts") or {}), store=store, model=str(data.get("model") or ""),
                   owner=data.get("owner"), options=dict(data.get("options") or {}),
                   submitted=float(data.get("submitted") or time.time()))
        task.version = 1  # the file says QUEUED or PROCESSING; it becomes QUEUED again
        return task
