"""When to ask a service about a task again.

Often while it is young, rarer as it ages, and at the moment it should end once tasks of its shape
have finished before.

Without history a task is polled after about a tenth of its age (between ``poll_min`` and
``poll_max`` seconds, never more often than half the service's ``eta``), so a short task is seen
finished soon and a long one costs few requests. Each finished task teaches how long the service
ran one of its shape (its own ``execute``/``complete`` times); a running task of that shape is
then polled when it should end (from its own start time), and again soon after, ever less often.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..params import Params
from ..values import check_number


def debug_info(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """A task result's ``extra.debug_info`` (empty when absent).

    Args:
        result: a task result.

    Returns:
        The mapping.

    Example:
        >>> debug_info({"extra": {"debug_info": {"submit_time_ms": "0"}}}), debug_info({})
        ({'submit_time_ms': '0'}, {})
    """
    extra: Any = result.get("extra") if isinstance(result.get("extra"), Mapping) else {}
    debug = extra.get("debug_info")
    return debug if isinstance(debug, Mapping) else {}


def shape(params: Params) -> tuple[Any, ...]:
    """What a task's run time depends on most: size, frames, steps, guidance on or off, LoRA count.

    Args:
        params: the request.

    Returns:
        A tuple that keys learned run times.
    """
    return (params.width, params.height, params.num_frames, params.steps, params.guidance_scale > 1.0,
            len(params.loras))


def moment(debug: Mapping[str, Any], name: str) -> float | None:
    """A ``debug_info`` time (``submit_time_ms`` ...) in epoch seconds.

    Args:
        debug: a result's ``debug_info``.
        name: the time's field.

    Returns:
        The time, or None when it has not happened (``"0"``, as the hosted API and wanlab send it, an
        empty string from older servers, or absent).

    Example:
        >>> moment({"execute_time_ms": "1700000000000"}, "execute_time_ms")
        1700000000.0
        >>> moment({"execute_time_ms": "0"}, "execute_time_ms") is None
        True
    """
    try:
        value = float(debug.get(name)) / 1000.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


class Polling:
    """Poll timing for one service (see the module docstring); safe to share between threads.

    Example:
        >>> Polling(0.01, 5.0).pause(age=2.0, task={"eta": 0})
        0.2
    """

    def __init__(self, poll_min: float = 0.01, poll_max: float = 5.0) -> None:
        self.poll_min = check_number("poll_min", poll_min, 0, lo_open=True, rule="a number of seconds > 0")
        self.poll_max = check_number("poll_max", poll_max, self.poll_min, rule=f"a number of seconds >= {poll_min}")
        self._run_seconds: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def pause(self, age: float, task: Mapping[str, Any], expected_end: float | None = None) -> float:
        """Seconds to the next poll of a task ``age`` seconds old.

        A tenth of its age (at least half its ``eta``), or until the end :meth:`expected_end` predicts;
        always within ``poll_min``..``poll_max``.

        Args:
            age: seconds since the task was submitted.
            task: the ``task`` part of its last result.
            expected_end: when it should end (epoch seconds), or None.

        Returns:
            The pause in seconds.
        """
        import time

        if expected_end is not None:
            remaining = expected_end - time.time()
            pause = remaining if remaining > 0 else 0.1 * -remaining
        else:
            eta = task.get("eta")
            floor = 0.5 * float(eta) if isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta > 1 else 0.0
            pause = max(0.1 * age, floor)
        return min(self.poll_max, max(self.poll_min, pause))

    def learn(self, params: Params, result: Mapping[str, Any]) -> None:
        """Keep how long the service ran a finished task of this shape (from its own times).

        Args:
            params: the task's request.
            result: its finished result.
        """
        debug = debug_info(result)
        started, completed = moment(debug, "execute_time_ms"), moment(debug, "complete_time_ms")
        if started is None or completed is None:
            return
        seconds = completed - started
        if seconds > 0:
            key = shape(params)
            with self._lock:
                before = self._run_seconds.get(key)
                self._run_seconds[key] = seconds if before is None else 0.5 * (before + seconds)

    def expected_end(self, params: Params, result: Mapping[str, Any]) -> float | None:
        """When a running task should end, from the run times learned for its shape.

        Args:
            params: the task's request.
            result: its last result (its ``execute_time_ms``).

        Returns:
            Epoch seconds, or None when nothing says.
        """
        with self._lock:
            seconds = self._run_seconds.get(shape(params))
        started = moment(debug_info(result), "execute_time_ms")
        return None if seconds is None or started is None else started + seconds


def progress_bar(total: int) -> Callable[[int, int], None]:
    """An ``on_step`` that draws a tqdm bar over the denoising steps as the service reports them.

    Args:
        total: the request's steps.

    Returns:
        The callback; the bar closes when the last step is reported.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="step", leave=False, desc="remote")

    def on_step(done: int, steps: int) -> None:
        bar.update(done - bar.n)
        if done >= steps:
            bar.close()
    return on_step
