"""A task's status: the hosted API's four values, spelled once.

:class:`TaskStatus` is a ``str`` enum whose values are the wire strings (``"TASK_STATUS_QUEUED"`` ...), so
a member compares equal to the string read from JSON or a task file, hashes like it, and is written
as it by ``json.dumps``, ``str()`` and f-strings: the wire format is the same whichever form a caller
holds. :data:`FINISHED` holds the two final statuses, in the order the API documents them.

>>> TaskStatus.SUCCEED == "TASK_STATUS_SUCCEED", f"{TaskStatus.QUEUED}"
(True, 'TASK_STATUS_QUEUED')
>>> "TASK_STATUS_FAILED" in FINISHED
True
"""
from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    """A task's status in the hosted API's task result (``task.status``).

    A task is ``QUEUED`` when accepted, ``PROCESSING`` while it runs, and ends ``SUCCEED`` (its video is
    in ``videos``) or ``FAILED`` (``task.reason`` says why; a cancelled task is FAILED too, the API having
    no cancelled status).

    Example:
        >>> TaskStatus("TASK_STATUS_PROCESSING") is TaskStatus.PROCESSING
        True
        >>> TaskStatus.FAILED.finished
        True
    """

    QUEUED = "TASK_STATUS_QUEUED"
    PROCESSING = "TASK_STATUS_PROCESSING"
    SUCCEED = "TASK_STATUS_SUCCEED"
    FAILED = "TASK_STATUS_FAILED"

    # The wire string, not ``TaskStatus.QUEUED``, wherever text is made (as enum.StrEnum, new in 3.11, does).
    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)

    @property
    def finished(self) -> bool:
        """True for ``SUCCEED`` and ``FAILED``: the task will not change again."""
        return self in FINISHED


#: The final statuses (``SUCCEED``, then ``FAILED``); plain wire strings test ``in`` it as well.
FINISHED: tuple[TaskStatus, ...] = (TaskStatus.SUCCEED, TaskStatus.FAILED)
