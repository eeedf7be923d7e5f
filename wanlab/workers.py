"""N copies of the model in one process, as one backend (``wanlab serve --workers N``): :class:`LocalWorkers`.

A job goes to the copy with the fewest jobs in flight; copies go one per GPU where there are several,
and share the CPU cores (``cores // N`` torch threads each) on CPU.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from .backend import BackendBase, Job
from .params import Params
from .tasks import TaskMethods


def devices(workers: int, device: str | None) -> list[str | None]:
    """Where each copy goes: ``device`` for all when given, else one GPU each while there are GPUs.

    Args:
        workers: how many copies.
        device: the device for every copy (None: ``cuda:i`` for copy ``i`` on a machine with several
            GPUs, else the default device).

    Returns:
        One device (or None: the default) per copy.

    Example:
        >>> devices(2, "cpu")
        ['cpu', 'cpu']
    """
    if device is not None or workers == 1:
        return [device] * workers
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i % count}" for i in range(workers)] if count > 1 else [None] * workers


class LocalWorkers(TaskMethods, BackendBase):
    """Several loaded pipelines of one model behind the backend protocol.

    Each copy is a :class:`~wanlab.pipeline.Pipeline` with its own worker thread; a job goes to the copy
    with the fewest jobs in flight. On CPU each copy's jobs run with ``cores // N`` torch threads, so the
    copies share the cores instead of fighting over them. Every copy must have the same identity (same
    weights and settings): they give the same frames for the same request.

    Args:
        pipes: the loaded pipelines (:func:`wanlab.load`), at least one.

    Raises:
        ValueError: no pipeline, or pipelines of different models or settings.

    Example:
        >>> workers = LocalWorkers([wanlab.load("toy"), wanlab.load("toy")])  # doctest: +SKIP
        >>> workers.max_in_flight  # doctest: +SKIP
        2
    """

    def __init__(self, pipes: Sequence[Any]) -> None:
        if not pipes:
            raise ValueError("workers: must be at least one pipeline; got none")
        first = pipes[0].identity
        for pipe in pipes[1:]:
            if not pipe.identity.same_model(first):
                raise ValueError(f"workers: must all run the same model and settings; got {first.model_id} and "
                                 f"{pipe.identity.model_id} with other weights or settings")
        self.pipes = list(pipes)
        self.identity = first
        self.accel = self.pipes[0].accel
        self._busy = [0] * len(self.pipes)
        self._lock = threading.Lock()
        on_cpu = all(p.device == "cpu" for p in self.pipes)
        self.threads = max(1, (os.cpu_count() or 1) // len(self.pipes)) if on_cpu and len(self.pipes) > 1 else None

    def __repr__(self) -> str:
        return f"LocalWorkers({len(self.pipes)} x {self.identity.model_id!r})"

    @property
    def max_in_flight(self) -> int:
        """Jobs worth starting at once: the sum of the copies' own."""
        return sum(p.max_in_flight for p in self.pipes)

    @property
    def lora_policy(self) -> Any:
        """The copies' LoRA source policy (set on every copy by :meth:`set_lora_policy`)."""
        return self.pipes[0].lora_policy

    def set_lora_policy(self, policy: Any) -> None:
        """Set which LoRA path forms jobs may use from now on, on every copy.

        Args:
            policy: a :class:`wanlab.lora.SourcePolicy` (None: the library's default).
        """
        for pipe in self.pipes:
            pipe.set_lora_policy(policy)

    def describe_loras(self, params: Params) -> list[dict[str, Any]]:
        """Each LoRA of ``params`` as records and run keys hold it (the first copy's policy).

        Args:
            params: the request whose LoRAs are described.

        Returns:
            One dict per LoRA (path, scale, the file's sha256).

        Raises:
            LoRAError: a LoRA file that is missing or cannot be read.
        """
        return self.pipes[0].describe_loras(params)

    def start(self, job: Job) -> Future[Any]:
        """Run ``job`` on the least busy copy."""
        with self._lock:
            index = min(range(len(self.pipes)), key=lambda i: self._busy[i])
            self._busy[index] += 1
        if self.threads is not None:
            job = dataclasses.replace(job, threads=self.threads)
        future = self.pipes[index].start(job)
        future.add_done_callback(lambda _: self._done(index))
        return future

    def _done(self, index: int) -> None:
        with self._lock:
            self._busy[index] -= 1

    def close(self) -> None:
        """Stop the task queue and every copy's worker thread (what runs finishes)."""
        super().close()
        for pipe in self.pipes:
            pipe.close()
