"""Tasks: the hosted API's asynchronous shape (submit, poll the result) on any backend.

``pipe.submit(params) -> task_id`` queues a generation; ``pipe.task_result(task_id)`` answers in the
hosted API's shape (:mod:`wanlab.tasks.shape`). The queue (:mod:`wanlab.tasks.queue`) runs tasks
through the backend protocol; tasks are written to the store when accepted
(:mod:`wanlab.tasks.files`) and outlive the process.
"""
from __future__ import annotations

from ..errors import QueueClosed, QueueFull, TaskTimeout
from .files import TaskFiles, task_result
from .methods import TaskMethods
from .queue import TaskQueue
from .shape import FAILED, FINISHED, PROCESSING, QUEUED, STATUSES, SUCCEED, TASK_TYPE

__all__ = ["TaskQueue", "TaskMethods", "TaskTimeout", "QueueFull", "QueueClosed", "TaskFiles", "task_result", "QUEUED",
           "PROCESSING", "SUCCEED", "FAILED", "FINISHED", "STATUSES", "TASK_TYPE"]
