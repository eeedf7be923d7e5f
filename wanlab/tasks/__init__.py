"""Tasks: the hosted API's asynchronous shape (submit, poll the result) on any backend.

``pipe.submit(params) -> task_id`` queues a generation; ``pipe.task_result(task_id)`` answers in the
hosted API's shape (:mod:`wanlab.tasks.shape`). The queue (:mod:`wanlab.tasks.queue`) runs tasks
through the backend protocol; tasks are written to the store when accepted
(:mod:`wanlab.tasks.files`) and outlive the process; :func:`read_task_result` reads one from any
process. A task's status is a :class:`~wanlab.taskstatus.TaskStatus`.
"""
from __future__ import annotations

from ..errors import QueueClosed, QueueFull, TaskTimeout
from ..taskstatus import FINISHED, TaskStatus
from .files import TaskFiles, read_task_result
from .methods import TaskMethods
from .queue import TaskQueue
from .shape import TASK_TYPE

__all__ = ["TaskQueue", "TaskMethods", "TaskTimeout", "QueueFull", "QueueClosed", "TaskFiles", "read_task_result",
           "TaskStatus", "FINISHED", "TASK_TYPE"]
