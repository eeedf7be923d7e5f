"""How long tasks still take.

Measured seconds per denoising step (scaled by each request's size) and per output pixel for decoding
and storing, kept per model in the store (``tasks/rates.json``), so a restarted queue starts from
what it measured; before any measurement, priors measured on the tiny model on 2 CPU cores (a GPU
replaces them with the first step).
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..params import Params
from ..taskstatus import FINISHED, TaskStatus

PRIOR_STEP_RATE = 5e-4
PRIOR_TAIL_RATE = 1.5e-6
RATES_FILE = "rates.json"


def work(params: Params) -> float:
    """Relative cost of one denoising step: latent tokens, doubled under classifier-free guidance.

    Args:
        params: the request.

    Returns:
        The latent tokens (frames compressed 4x in time, 16x16 pixels per token), times 2 when
        ``guidance_scale > 1``.

    Example:
        >>> work(Params(prompt="a fox", width=64, height=64, num_frames=17, guidance_scale=5.0))
        160.0
    """
    tokens = ((params.num_frames - 1) // 4 + 1) * max(params.height // 16, 1) * max(params.width // 16, 1)
    return float(tokens) * (2.0 if params.guidance_scale > 1.0 else 1.0)


def pixels(params: Params) -> float:
    """Output pixels of a request (frames x height x width): what decoding and storing scale with.

    Args:
        params: the request.

    Returns:
        The pixel count.

    Example:
        >>> pixels(Params(prompt="a fox", width=64, height=64, num_frames=17))
        69632.0
    """
    return float(params.num_frames * params.height * params.width)


class Rates:
    """Seconds per unit of :func:`work` per step (``step``) and per output pixel after the last step (``tail``).

    Running averages, read from and written to ``folder/rates.json`` under ``model``; a prior until
    one is measured.

    Args:
        folder: the store's folder.
        model: the model's fingerprint (rates are kept per model).

    Example:
        >>> import tempfile
        >>> request = Params(prompt="a fox", width=64, height=64, num_frames=17, guidance_scale=5.0)
        >>> rates = Rates(tempfile.mkdtemp(), "tiny")
        >>> rates.per_step(request)  # the prior: 5e-4 s per unit of work
        0.08
        >>> rates.add_step(0.32, request); rates.per_step(request)
        0.32
    """

    def __init__(self, folder: Path, model: str) -> None:
        self.file = Path(folder) / RATES_FILE
        self.model = model
        try:
            saved = dict(json.loads(self.file.read_text()).get(model) or {})
        except (OSError, ValueError, AttributeError):
            saved = {}
        self.step: float | None = saved.get("step_rate")
        self.tail: float | None = saved.get("tail_rate")

    def add_step(self, seconds: float, params: Params) -> None:
        """Fold in one denoising step of ``params`` that took ``seconds``.

        Args:
            seconds: the step's time.
            params: its request.
        """
        rate = seconds / work(params)
        self.step = rate if self.step is None else 0.5 * (self.step + rate)

    def add_tail(self, seconds: float, params: Params) -> None:
        """Fold in the ``seconds`` a task of ``params`` took after its last step (decode, store).

        Args:
            seconds: the time after the last step.
            params: its request.
        """
        rate = seconds / pixels(params)
        self.tail = rate if self.tail is None else 0.5 * (self.tail + rate)

    def per_step(self, params: Params) -> float:
        """Expected seconds per denoising step of ``params`` (a prior until one is measured).

        Args:
            params: the request.

        Returns:
            The seconds.
        """
        return (self.step if self.step is not None else PRIOR_STEP_RATE) * work(params)

    def after_steps(self, params: Params) -> float:
        """Expected seconds after the last step of ``params`` (a prior until one is measured).

        Args:
            params: the request.

        Returns:
            The seconds.
        """
        return (self.tail if self.tail is not None else PRIOR_TAIL_RATE) * pixels(params)

    def save(self) -> None:
        """Keep the rates for the next queue on this store (a cache: trouble writing it is ignored)."""
        from ..fsutil import write_json

        with contextlib.suppress(OSError, ValueError):
            try:
                data = json.loads(self.file.read_text())
            except (OSError, ValueError):
                data = {}
            data[self.model] = {"step_rate": self.step, "tail_rate": self.tail}
            write_json(self.file, data)


def progress(task: Any) -> int:
    """``progress_percent``.

    0 while queued, the share of denoising steps done (at most 99) while processing, 100 only
    once the video is stored.

    Args:
        task: a queue's task.

    Returns:
        The percentage.
    """
    if task.status == TaskStatus.SUCCEED:
        return 100
    if task.status == TaskStatus.QUEUED:
        return 0
    return min(99, int(100 * task.done / task.params.steps))


def remaining(task: Any, rates: Rates) -> float:
    """Seconds this task still needs (its own measured step time while it runs, else the rates).

    Args:
        task: a queue's task.
        rates: the measured rates.

    Returns:
        The seconds, at least 0.
    """
    p = task.params
    measured = task.status == TaskStatus.PROCESSING and task.step_time is not None
    per_step = task.step_time if measured else rates.per_step(p)
    left = per_step * (p.steps - task.done) + rates.after_steps(p)
    if task.status == TaskStatus.PROCESSING and task.last_step is not None and task.done < p.steps:
        left -= min(time.perf_counter() - task.last_step, per_step)  # the step under way
    return max(left, 0.0)


def eta(task: Any, processing: Sequence[Any], waiting: Sequence[Any], capacity: int, rates: Rates) -> float:
    """``eta`` in seconds.

    0 when finished, the task's own remaining time while it runs; while it waits, the work of the
    running tasks and of those ahead of it (itself included), shared by ``capacity``.

    Args:
        task: the task asked about.
        processing: the tasks running now.
        waiting: the tasks waiting, in the order they will start.
        capacity: tasks the backend runs at once.
        rates: the measured rates.

    Returns:
        The seconds.
    """
    if task.status in FINISHED:
        return 0.0
    if task.status == TaskStatus.PROCESSING:
        return remaining(task, rates)
    ahead = list(processing) + (list(waiting[: list(waiting).index(task) + 1]) if task in waiting else [task])
    return sum(remaining(t, rates) for t in ahead) / min(capacity, len(ahead))
