"""The tasks waiting to run, served fairly.

One line per owner (``wanlab serve``: the API key's digest; tasks without an owner form one line of
their own), oldest first within a line, and the next task taken from the owner served least recently
(round-robin, remembering who was served last: an owner whose task was just started waits behind one
that has had none), so a key that queued many tasks delays another key's task by at most one task of
its own.

:class:`FairQueue` offers what the task queue asks of a deque (``append``, ``popleft``, ``remove``,
``in``, ``len``); iterating it gives the tasks in the order they will be dispatched.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any


class FairQueue:
    """Waiting tasks (anything with an ``owner`` attribute) in per-owner lines served in turn.

    Example:
        >>> from types import SimpleNamespace as T
        >>> q = FairQueue()
        >>> for name, owner in [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B")]:
        ...     q.append(T(name=name, owner=owner))
        >>> [t.name for t in q]
        ['a1', 'b1', 'a2', 'a3']
    """

    def __init__(self) -> None:
        self._lines: dict[Any, collections.deque[Any]] = {}  # owners with waiting tasks, in the order they came
        self._served: dict[Any, int] = {}  # owner -> when (a dispatch count) its last task was taken
        self._taken = 0

    def __repr__(self) -> str:
        return f"FairQueue({len(self)} tasks, {len(self._lines)} owners)"

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __contains__(self, task: Any) -> bool:
        line = self._lines.get(getattr(task, "owner", None))
        return line is not None and task in line

    def __iter__(self) -> Iterator[Any]:
        """The tasks in dispatch order (as :meth:`popleft` will take them if nothing else comes)."""
        lines = {owner: collections.deque(line) for owner, line in self._lines.items()}
        served, taken = dict(self._served), self._taken
        while lines:
            owner = _next(lines, served)
            yield lines[owner].popleft()
            served[owner], taken = taken, taken + 1
            if not lines[owner]:
                del lines[owner]

    def count(self, owner: Any) -> int:
        """How many tasks of ``owner`` wait.

        Args:
            owner: an owner (None: the tasks without one).

        Returns:
            The count.
        """
        return len(self._lines.get(owner, ()))

    def append(self, task: Any) -> None:
        """Queue ``task`` at the end of its owner's line.

        Args:
            task: anything with an ``owner`` attribute.
        """
        self._lines.setdefault(task.owner, collections.deque()).append(task)

    def popleft(self) -> Any:
        """Take the next task: the oldest of the owner served least recently (never served: first).

        Returns:
            The task.

        Raises:
            IndexError: no task waits.
        """
        if not self._lines:
            raise IndexError("pop from an empty FairQueue")
        owner = _next(self._lines, self._served)
        line = self._lines[owner]
        task = line.popleft()
        if not line:
            del self._lines[owner]
        self._served[owner], self._taken = self._taken, self._taken + 1
        if len(self._served) > MAX_REMEMBERED:  # owners seen long ago: forget the oldest half
            for old in sorted(self._served, key=self._served.__getitem__)[: MAX_REMEMBERED // 2]:
                del self._served[old]
        return task

    def remove(self, task: Any) -> None:
        """Take ``task`` out of its line.

        Args:
            task: a waiting task.

        Raises:
            ValueError: it does not wait here.
        """
        owner = getattr(task, "owner", None)
        line = self._lines.get(owner)
        if line is None:
            raise ValueError("FairQueue.remove(task): the task does not wait here")
        line.remove(task)
        if not line:
            del self._lines[owner]


#: Owners whose last dispatch is remembered (a server's keys number far fewer).
MAX_REMEMBERED = 10_000


def _next(lines: dict[Any, Any], served: dict[Any, int]) -> Any:
    """The owner to serve next: least recently served; among equals, the one waiting longest."""
    return min(lines, key=lambda owner: served.get(owner, -1))
