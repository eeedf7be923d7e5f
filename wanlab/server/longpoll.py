"""A long poll of ``GET /v3/async/task-result``.

``wanlab_wait=SECONDS`` (a wanlab extension, under a name the hosted API does not use) holds the answer
until the task's status or progress changes, or it ends, or the seconds run out, so a client learns of a
finished task at once instead of at its next poll.

A change of status (or the end) is answered at once; a change of progress alone at the earliest
:data:`PROGRESS_EVERY_S` after the request came (a progress bar moves twice a second, and a client that
waits for the end asks about twice per task, not once per denoising step).

The wait runs on the event loop without blocking it: the task queue tells listeners of every change
(:meth:`wanlab.tasks.TaskQueue.listen`), each waiting request is woken through
``loop.call_soon_threadsafe`` and compares the task's state with the one it started from. A task that
has finished, or that this server does not run (only in the store), is answered at once; a server
that is stopping answers every waiting request within :data:`SLICE_S` seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

from ..tasks import FINISHED
from .errors import ApiError

PARAM = "wanlab_wait"
#: The longest wait a request may ask for (seconds).
MAX_WAIT_S = 30.0
#: How often a waiting request checks whether the server is stopping (seconds).
SLICE_S = 0.5
#: A change of progress alone is answered no sooner than this after the request came (seconds).
PROGRESS_EVERY_S = 0.5
RULE = f"a number of seconds in 0..{MAX_WAIT_S:g}"


def check_wait(value: str | None) -> float:
    """The seconds ``wanlab_wait`` asks for (0 when absent).

    Args:
        value: the query parameter's value (None: absent).

    Returns:
        The seconds, 0..:data:`MAX_WAIT_S`.

    Raises:
        ApiError: 400 naming ``wanlab_wait`` for a value that is not such a number.

    Example:
        >>> check_wait(None), check_wait("2.5")
        (0.0, 2.5)
    """
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_WAIT_S:
        shown = value if len(value) <= 40 else f"{len(value)} characters"
        raise ApiError(400, "INVALID_REQUEST", f"{PARAM}: must be {RULE}; got {shown!r}",
                       {"field": PARAM, "rule": RULE, "value": shown})
    return seconds


def state(result: dict[str, Any]) -> tuple[Any, Any]:
    """What a long poll waits to see change: the task's status and progress.

    Args:
        result: a task result.

    Returns:
        ``(status, progress_percent)``.

    Example:
        >>> state({"task": {"status": "TASK_STATUS_QUEUED", "progress_percent": 0}})
        ('TASK_STATUS_QUEUED', 0)
    """
    task = result["task"]
    return task["status"], task["progress_percent"]


async def answer(service: Any, task_id: str, owner: str | None, base: str, seconds: float,
                 stopping: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """The task's result once its status or progress differs from now, or after at most ``seconds``.

    A change of progress alone counts only after :data:`PROGRESS_EVERY_S`; the task's end always does.
    ``stopping()`` true ends the wait early (the server is shutting down).

    Args:
        service: the :class:`~wanlab.server.service.Service`.
        task_id: the task's id.
        owner: the caller's owner id.
        base: the server's public address for signed URLs.
        seconds: the longest wait (0: answer at once).
        stopping: says whether the server is stopping.

    Returns:
        The task's result, as ``Service.result`` gives it.

    Raises:
        ApiError: as ``Service.result`` (404 for a task this owner may not read).
    """
    queue = service.queue
    if seconds <= 0 or queue is None:
        return service.result(task_id, owner, base)
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def poke() -> None:  # on the queue's threads, under its lock: cheap, and never raises
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(changed.set)

    queue.listen(poke)  # before the first look: no change between the two is missed
    try:
        result = service.result(task_id, owner, base)  # 404 for an unknown task or another key's
        if result["task"]["status"] in FINISHED or queue.task(task_id) is None:
            return result
        (status, progress), begun = state(result), loop.time()
        deadline, moved = begun + seconds, False
        while True:
            now = loop.time()
            if now >= deadline or stopping() or (moved and now - begun >= PROGRESS_EVERY_S):
                return service.result(task_id, owner, base)
            pause = min(deadline - now, SLICE_S, begun + PROGRESS_EVERY_S - now if moved else SLICE_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), max(pause, 0.0))
            if changed.is_set():
                changed.clear()
                result = service.result(task_id, owner, base)
                if result["task"]["status"] != status or result["task"]["status"] in FINISHED:
                    return result
                moved = moved or result["task"]["progress_percent"] != progress
    finally:
        queue.unlisten(poke)
