"""Resumable training loops: seeded randomness per step, atomic checkpoints, logging, interruption.

Every random draw of a training step is a pure function of (seed, stage, step) (:func:`generator`),
and a loop's checkpoint holds its model, optimizer and :class:`Loop` state, so a run resumed from
its last checkpoint computes exactly what an uninterrupted one would.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class StopTraining(Exception):
    """Raised by :meth:`Loop.end_step` when ``stop_after`` asks to stop (tests of resuming)."""


def seed_int(*key: int) -> int:
    """A 62-bit seed that is a pure function of ``key`` (numpy's SeedSequence).

    Args:
        *key: Integers, e.g. (seed, stage, step).

    Returns:
        An int in ``[0, 2**62)``, the same for the same key on every machine.

    Example:
        >>> seed_int(1, 2, 3) == seed_int(1, 2, 3) != seed_int(1, 2, 4)
        True
    """
    return int(np.random.default_rng([int(k) for k in key]).integers(2**62))


def generator(*key: int):
    """A ``torch.Generator`` seeded from ``key`` (e.g. seed, stage, step).

    Args:
        *key: Integers, as for :func:`seed_int`.

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed_int(*key)``.

    Example:
        >>> import torch
        >>> bool((torch.rand(3, generator=generator(7, 1, 0)) == torch.rand(3, generator=generator(7, 1, 0))).all())
        True
    """
    import torch

    return torch.Generator().manual_seed(seed_int(*key))


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup to ``base``, then cosine decay to ``base * min_ratio`` at ``total``.

    Args:
        step: The step (0-based).
        total: Steps in the run; the rate stays at ``base * min_ratio`` from there on.
        base: The peak learning rate.
        warmup: Warmup steps (step ``warmup - 1`` reaches ``base``).
        min_ratio: The final rate as a fraction of ``base``.

    Returns:
        The learning rate at ``step``.

    Example:
        >>> lr_at(0, 100, 1.0, 10, 0.1), lr_at(9, 100, 1.0, 10, 0.1), round(lr_at(100, 100, 1.0, 10, 0.1), 6)
        (0.1, 1.0, 0.1)
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def save_checkpoint(obj: Any, path: Path) -> None:
    """``torch.save`` atomically (temporary file, fsync, rename): a reader sees the old file or the new one.

    Args:
        obj: What to save (state dicts, tensors, plain data).
        path: The checkpoint file.

    Example:
        >>> save_checkpoint({"model": model.state_dict(), "step": 10}, Path("work/vae.pt"))  # doctest: +SKIP
    """
    import torch

    from ..fsutil import atomic_file

    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> Any:
    """A checkpoint written by :func:`save_checkpoint` (CPU tensors).

    Args:
        path: The checkpoint file (a trusted one: it is unpickled with ``weights_only=False``).

    Returns:
        The saved object, its tensors on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> load_checkpoint(Path("work/vae.pt"))["step"]  # doctest: +SKIP
        10
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


class Loop:
    """One resumable training loop of ``total`` steps, checkpointed to ``path``.

    ``loop.resume()`` loads the checkpoint (or returns None); ``loop.steps()`` gives the remaining
    step indices; after each step, ``loop.log(done, **values)`` when ``loop.due(done)``, then
    ``loop.end_step(done, payload)``, which every ``ckpt_every`` steps and at the end saves
    ``payload()`` with the loop's state, then stops if ``stop_after(name, done)`` asks to.

    Args:
        name: The stage's name (in log lines and messages).
        path: The checkpoint file.
        total: Steps in the loop.
        log_every: Steps between log lines (:meth:`due`).
        ckpt_every: Steps between checkpoints.
        progress: Print log lines and resuming.
        stop_after: ``stop_after(name, done)`` returning True stops the loop with :class:`StopTraining`
            after that step's checkpoint (tests of resuming).

    Attributes:
        state: ``{"step", "log", "elapsed", "cpu"}``: the next step, the log lines, and the wall and CPU
            seconds at the last checkpoint.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "stage.pt"
        >>> stop = lambda name, done: done == 2
        >>> loop = Loop("stage", path, 4, log_every=1, ckpt_every=1, stop_after=stop)
        >>> loop.resume() is None
        True
        >>> try:
        ...     for step in loop.steps():
        ...         loop.end_step(step + 1, lambda: {"weights": step})
        ... except StopTraining as exc:
        ...     print(exc)
        stage: stopped after 2 steps
        >>> again = Loop("stage", path, 4, log_every=1, ckpt_every=1)
        >>> again.resume()["weights"], again.steps()
        (1, range(2, 4))
    """

    def __init__(self, name: str, path: Path, total: int, *, log_every: int, ckpt_every: int,
                 progress: bool = False, stop_after: Callable[[str, int], bool] | None = None) -> None:
        self.name, self.path, self.total = name, Path(path), int(total)
        self.log_every, self.ckpt_every = int(log_every), int(ckpt_every)
        self.progress, self.stop_after = progress, stop_after
        self.state: dict[str, Any] = {"step": 0, "log": [], "elapsed": 0.0, "cpu": 0.0}
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def resume(self) -> dict[str, Any] | None:
        """The saved checkpoint (its state restored into this loop), or None when there is none.

        Returns:
            The dict :meth:`end_step` saved (``payload()`` plus ``"state"``), or ``None`` when ``path``
            does not exist (the loop then starts at step 0).
        """
        if not self.path.exists():
            self._t0, self._c0 = time.perf_counter(), time.process_time()
            return None
        ck = load_checkpoint(self.path)
        self.state = ck["state"]
        self._t0 = time.perf_counter() - self.state["elapsed"]
        self._c0 = time.process_time() - self.state.get("cpu", 0.0)
        if self.progress:
            print(f"[{self.name}] resuming at step {self.state['step']}", flush=True)
        return ck

    def steps(self) -> range:
        """The step indices left: from the resumed step to ``total``.

        Returns:
            ``range(state["step"], total)``.
        """
        return range(self.state["step"], self.total)

    @property
    def elapsed(self) -> float:
        """Wall seconds since the loop started, counting the sessions before a resume."""
        return time.perf_counter() - self._t0

    @property
    def seconds(self) -> float:
        """Wall seconds summed over every session of this loop (as saved at its last checkpoint)."""
        return float(self.state["elapsed"])

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of this process in the loop, summed like :attr:`seconds` (wall time counts other jobs)."""
        return float(self.state.get("cpu", 0.0))

    def log(self, done: int, **values: Any) -> None:
        """Record one log line in ``state["log"]`` (and print it with an ETA when ``progress``).

        Args:
            done: Steps done.
            **values: What to log (floats are rounded to 6 digits), e.g. ``loss=0.12``.
        """
        elapsed = self.elapsed
        line = {"stage": self.name, "step": done, "elapsed_s": round(elapsed, 2),
                **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}}
        self.state["log"].append(line)
        if self.progress:
            eta = elapsed / max(done, 1) * (self.total - done)
            vals = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            print(f"[{self.name}] {done}/{self.total} {vals} ({elapsed:.0f} s, eta {eta:.0f} s)", flush=True)

    def due(self, done: int) -> bool:
        """Whether step ``done`` is a logging step.

        Args:
            done: Steps done.

        Returns:
            True every ``log_every`` steps and at ``total``.
        """
        return done % self.log_every == 0 or done == self.total

    def end_step(self, done: int, payload: Callable[[], dict[str, Any]]) -> None:
        """Checkpoint ``payload()`` plus the loop state when due, then stop if asked to.

        Args:
            done: Steps done.
            payload: Called only when a checkpoint is due; returns what to save besides the state.

        Raises:
            StopTraining: ``stop_after(name, done)`` asked to stop before ``total``.
        """
        if done % self.ckpt_every and done != self.total:
            return
        self.state.update(step=done, elapsed=self.elapsed, cpu=time.process_time() - self._c0)
        save_checkpoint({**payload(), "state": self.state}, self.path)
        if self.stop_after and self.stop_after(self.name, done) and done < self.total:
            raise StopTraining(f"{self.name}: stopped after {done} steps")
