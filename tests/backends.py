"""Backends defined by the tests: everything above the backend protocol (sweeps, tasks, verify) is
tested through these too, with no model and no patching of wanlab's own code."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from wanlab.backend import BackendBase, Job
from wanlab.keys import key_parts
from wanlab.lora import describe
from wanlab.models.identity import ModelIdentity
from wanlab.tasks import TaskMethods
from wanlab.video import Video


class FakeBackend(TaskMethods, BackendBase):
    """Frames drawn from the request alone (a bright square whose speed follows ``guidance_scale``),
    so runs are exact and reproducible; ``fail_seeds`` fail, ``gate`` (an Event) holds every job
    until it is set, and the backend counts what it ran and how many jobs ran at once. Requests, keys,
    ``generate`` and the task methods are the ones every backend shares (BackendBase, TaskMethods)."""

    def __init__(self, *, max_in_flight: int = 2, fail_seeds: tuple[int, ...] = (), gate: threading.Event | None = None,
                 fingerprint: str = "f" * 64, step_seconds: float = 0.0) -> None:
        self.identity = ModelIdentity("fake", "test", fingerprint,
                                      settings={"dtype": "float32", "max_sequence_length": 16},
                                      native={"width": 32, "height": 32, "num_frames": 5, "steps": 2})
        self.max_in_flight = max_in_flight
        self.fail_seeds = set(fail_seeds)
        self.gate = gate
        self.step_seconds = step_seconds
        self.ran: list[Job] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="fake-backend")

    def start(self, job: Job):
        return self._pool.submit(self._run, job)

    def _run(self, job: Job) -> Video:
        if self.gate is not None:
            assert self.gate.wait(60), "the test never opened the gate"
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if job.on_start is not None:
                job.on_start()
            p = job.params
            for step in range(p.steps):
                time.sleep(self.step_seconds)
                if job.on_step is not None:
                    job.on_step(step + 1, p.steps)
            if p.seed in self.fail_seeds:
                raise RuntimeError(f"seed {p.seed} fails on purpose")
            with self._lock:
                self.ran.append(job)
            return Video(frames(p), params=p, model=self.identity.model_info, timings={"total": 0.01, "denoise": 0.01},
                         record={"params": p.to_dict(), "model": self.identity.model_info,
                                 "settings": dict(self.identity.settings),
                                 "accel": key_parts(self.identity, p, job.accel, describe(p.loras))["accel"],
                                 "loras": describe(p.loras), "environment": {"device": "none"}})
        finally:
            with self._lock:
                self.running -= 1


def frames(p) -> np.ndarray:
    """A square moving right at ``guidance_scale`` px/frame over noise drawn from the seed."""
    rng = np.random.default_rng(p.seed)
    out = rng.integers(0, 40, (p.num_frames, p.height, p.width, 3), dtype=np.uint8)
    for t in range(p.num_frames):
        x = round(2 + t * p.guidance_scale) % max(p.width - 8, 1)
        out[t, 8:16, x:x + 8] = 220
    return out
