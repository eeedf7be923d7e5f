"""One call of :func:`wanlab.sweep.runner.run` in named phases: :class:`SweepRun`.

:meth:`SweepRun.plan` decides which of the shard's points to run and under which keys,
:meth:`~SweepRun.start` sends one point to the backend (or skips or fails it),
:meth:`~SweepRun.settle` takes finished jobs (failures recorded, videos handed to
:meth:`~SweepRun.store_video`: stored first, then measured), and :meth:`~SweepRun.finish` gives the
table. An acceleration study (``accel`` swept) runs one job at a time, warmed up, and keeps latents.
"""
from __future__ import annotations

import contextlib
import functools
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backend import Job
from ..errors import LoRAError, SubmitUncertain, TruncationError
from ..keys import run_key, unreadable_loras
from ..quiet import quiet
from .measure import measure, needs

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.setting import Accel
    from ..params import Params
    from ..store import Run, Store
    from ..video import Video
    from .definition import Sweep
    from .result import SweepResult


def point_keys(sweep: Sweep, keyer: Any, points: list[Params]) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Each point's key parts, and for a point whose LoRA file cannot be read why not.

    Such a point's key is a stand-in from the files' paths, under which its failure is recorded.

    Args:
        sweep: the sweep (its points' acceleration settings).
        keyer: the backend (or identity backend) that computes key parts.
        points: the resolved points.

    Returns:
        ``(parts, problems)``: per point its key parts, and None or the LoRA error's text.
    """
    parts: list[dict[str, Any]] = []
    problems: list[str | None] = []
    for p, accel in zip(points, sweep.accels()):
        try:
            parts.append(keyer.key_parts(p, accel))
            problems.append(None)
        except LoRAError as exc:
            parts.append(keyer.key_parts(p, accel, loras=unreadable_loras(p)))
            problems.append(f"{type(exc).__name__}: {exc}")
    return parts, problems


@dataclass(frozen=True)
class RunOptions:
    """:func:`~wanlab.sweep.runner.run`'s options, checked."""

    metrics: tuple[str, ...]
    probes: Any
    shard: tuple[int, int]
    progress: bool
    max_failures: int | None
    retry_failed: bool
    max_in_flight: int | None
    truncate: str
    retry_uncertain: bool


class SweepRun:
    """One call of :func:`~wanlab.sweep.runner.run`: its plan and the state its phases share.

    Phases: :meth:`plan` (which of the shard's points to run, under which keys), :meth:`start` (one point:
    skipped, failed for an unreadable LoRA, or sent to the backend), :meth:`settle` (finished jobs:
    failures recorded, videos handed to :meth:`store_video`), and :meth:`finish` (the table).

    Args:
        sweep: the sweep.
        backend: the backend it runs on.
        store: the store the runs go to.
        options: the checked options.
    """

    def __init__(self, sweep: Sweep, backend: Any, store: Store, options: RunOptions) -> None:
        self.sweep, self.backend, self.store, self.options = sweep, backend, store, options
        #: An acceleration study (``accel`` is swept): runs are timed, so one job at a time, each request
        #: warmed up first and a request's settings on one worker; each run keeps its final latents
        #: (the latent error against the exact run).
        self.accel_study = sweep.is_accel_study
        self.device = _device_of(backend)
        self.ran: list[int] = []
        self.failures = 0
        self.stopped: str | None = None
        self.workers: Counter[str] = Counter()
        self.warmed: set[Any] = set()
        self.inflight: dict[Any, int] = {}
        self.submitting: dict[str, str] = {}  # run key -> idempotency key of a submit sent and not yet answered
        self.plan()

    # --- plan ----------------------------------------------------------------------------------------------
    def plan(self) -> None:
        """Plan: the points, their keys, and which of the shard's points to run.

        A point runs when it is not done, or done without what this call asks for (metrics, latents,
        probes).
        """
        from tqdm.auto import tqdm

        shard, store = self.options.shard, self.store
        self.points = self.sweep.points(self.backend)
        self.accels = self.sweep.accels()
        self.parts, self.problems = point_keys(self.sweep, self.backend, self.points)
        self.keys = [run_key(p) for p in self.parts]
        mine = list(range(shard[0], len(self.points), shard[1]))
        failed_before = store.failures()
        self.pending = store.pending()
        self.todo = [i for i in mine if (self._incomplete(store.get(self.keys[i])) if store.has(self.keys[i])
                                         else self.options.retry_failed or self.keys[i] not in failed_before)]
        self.capacity = 1 if self.accel_study else (self.options.max_in_flight
                                                    or max(1, int(self.backend.max_in_flight)))
        self.cached = len(mine) - len(self.todo)
        self.bar = tqdm(total=len(self.todo), desc=f"sweep {self.sweep.name or ''}".strip(), unit="run",
                        disable=not self.options.progress, dynamic_ncols=True)

    def _lacks_output(self, run: Run) -> bool:
        """Whether a stored run lacks what only generating it again gives: latents, probes."""
        return (self.accel_study and not run.has_latents) or (bool(self.options.probes) and not run.has_probes)

    def _incomplete(self, run: Run) -> bool:
        return bool(needs(run, self.options.metrics)) or self._lacks_output(run)

    # --- the loop ----------------------------------------------------------------------------------------------
    def execute(self) -> SweepResult:
        """Start the planned points, at most ``capacity`` in flight, and settle them all.

        Returns:
            The whole sweep's table (:meth:`finish`).
        """
        self._note()
        with quiet():  # library notices (peft on every second LoRA, ...) say nothing about a sweep
            try:
                for i in self.todo:
                    if self.stopped:
                        break
                    self.settle(block=False)
                    self.start(i)
                    while len(self.inflight) >= self.capacity:
                        self.settle(block=True)
                while self.inflight:
                    self.settle(block=True)
            finally:
                self._wind_down()
                self.bar.close()
        return self.finish()

    # --- start ---------------------------------------------------------------------------------------------
    def start(self, i: int) -> None:
        """Start point ``i``.

        It is done by now (another process: measured at most), failed (its LoRA file cannot be read),
        or sent to the backend (an accel study's request warmed up first).

        Args:
            i: the point's index.
        """
        key, params, accel = self.keys[i], self.points[i], self.accels[i]
        if self.store.has(key):
            run = self.store.get(key)
            if not self._lacks_output(run):
                if needs(run, self.options.metrics):
                    measure(self.store, run, run.video(), self.options.metrics, device=self.device)
                self.bar.update(1)
                return
        problem = self.problems[i]
        if problem is not None:
            self._fail(i, problem)
            self.bar.update(1)
            self._note()
            return
        if self.accel_study:
            self._warm_up(params, accel)
        earlier = self.pending.get(key) or {}
        job = Job(params, accel, truncate=self.options.truncate,
                  affinity=_affinity(self.parts[i]) if self.accel_study else None,
                  resume=earlier.get("task_id"), uncertain=None if earlier.get("task_id") else
                  earlier.get("submitting"), retry_uncertain=self.options.retry_uncertain, probes=self.options.probes,
                  on_submit=functools.partial(self._sending, key), on_accepted=functools.partial(self._accepted, key))
        self.inflight[self.backend.start(job)] = i

    def _warm_up(self, params: Params, accel: Accel | None) -> None:
        """Accel studies time single runs.

        Run the first request once untimed (first-call overheads), and a compiled setting once per
        size (compilation is not what is measured).
        """
        wanted: list[Any] = ["first"] if not self.warmed else []
        if accel is not None and accel.compile != "off":
            wanted.append((accel.key(), params.width, params.height, params.num_frames))
        for what in wanted:
            if what not in self.warmed:
                self.warmed.add(what)
                with contextlib.suppress(Exception):  # a request that fails fails as its own point, later
                    self.backend.start(Job(params, accel if what != "first" else None,
                                           truncate=self.options.truncate)).result()

    def _sending(self, key: str, idempotency_key: str) -> None:
        """A submit is about to be sent: recorded first, so a rerun asks for it instead of paying twice."""
        self.store.put_pending(key, {"submitting": idempotency_key, "service": self.backend.identity.model_id})
        self.submitting[key] = idempotency_key

    def _accepted(self, key: str, task_id: str) -> None:
        """The service accepted the work: its task is recorded, so a rerun polls it again."""
        self.store.put_pending(key, {"task_id": task_id, "service": self.backend.identity.model_id})
        self.submitting.pop(key, None)

    # --- settle --------------------------------------------------------------------------------------------
    def settle(self, block: bool) -> None:
        """Take the jobs finished by now: failures recorded, videos stored.

        Args:
            block: wait for one job to finish first.
        """
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            i = self.inflight.pop(future)
            error = future.exception()
            if error is not None:
                key = self.keys[i]
                if key in self.submitting and not isinstance(error, SubmitUncertain):
                    self.store.forget_pending(key)  # refused, surely not accepted: nothing is waiting there
                self.submitting.pop(key, None)
                self._fail(i, f"{type(error).__name__}: {error}")
                if isinstance(error, TruncationError):  # a hard stop: the sweep asked for one (truncate="error")
                    self.stopped = self.stopped or f"stopped: {error}"
            else:
                try:
                    self.store_video(i, future.result())
                except Exception as exc:
                    self._fail(i, f"the video was made but could not be stored: {type(exc).__name__}: {exc}")
            self.bar.update(1)
            self._note()

    def _fail(self, i: int, error: str) -> None:
        """Record point ``i``'s failure; past ``max_failures`` the sweep stops gracefully."""
        self.store.put_failure(self.keys[i], self.points[i], error, extra={"sweep": self.sweep.name, "point": i})
        self.failures += 1
        limit = self.options.max_failures
        if limit is not None and self.failures >= limit and self.stopped is None:
            self.stopped = f"stopped after {self.failures} failure{'s' * (self.failures != 1)} (max_failures={limit})"

    def _note(self) -> None:
        """The progress bar's postfix: runs already done, failures, runs per worker."""
        bits = [f"{self.cached} already done"] if self.cached else []
        bits += [f"{self.failures} failed"] if self.failures else []
        bits += [", ".join(f"{w}: {n}" for w, n in sorted(self.workers.items()))] if len(self.workers) > 1 else []
        self.bar.set_postfix_str("; ".join(bits), refresh=False)

    # --- store ---------------------------------------------------------------------------------------------
    def store_video(self, i: int, video: Video) -> None:
        """Store point ``i``'s video first, then measure it (a metrics failure is kept on the run).

        Args:
            i: the point's index.
            video: its video.
        """
        point = self.points[i]
        run = self.store.put(video, extra={"sweep": self.sweep.name, "point": i}, key_parts=self.parts[i],
                             latents=self.accel_study)
        if self.options.metrics:
            measure(self.store, run, video, self.options.metrics, device=self.device)
        if video.probes:
            self.store.put_metrics(run.key, video.probes.summary())
        if point.loras:  # a failure recorded while a LoRA file was missing is over
            stand_in = self.backend.key_parts(point, self.accels[i], loras=unreadable_loras(point))
            self.store.forget_failure(run_key(stand_in))
        self.workers[str(video.record.get("worker") or "local")] += 1
        self.ran.append(i)

    # --- finish --------------------------------------------------------------------------------------------
    def _wind_down(self) -> None:
        """On the way out (Ctrl-C included): what has not started is dropped; what runs finishes, stored."""
        for future in list(self.inflight):
            i = self.inflight.pop(future)
            if future.cancel():
                continue
            try:
                self.store_video(i, future.result())
            except Exception:
                pass

    def finish(self) -> SweepResult:
        """The whole sweep's table, with the points this call ran and why it stopped early, if it did.

        Returns:
            The :class:`~wanlab.sweep.result.SweepResult`.
        """
        from .result import SweepResult

        self.ran.sort()
        return SweepResult(self.sweep, self.store, self.backend, points=self.points, keys=self.keys, ran=self.ran,
                           stopped=self.stopped, shard=self.options.shard)


def _affinity(parts: dict[str, Any]) -> str:
    """Jobs of one request (every acceleration setting of it) share an affinity: one worker runs them."""
    from ..record import stable_hash

    return stable_hash({k: v for k, v in parts.items() if k != "accel"})


def _device_of(backend: Any) -> str | None:
    """Where evaluators run: a local pipeline's device (a CUDA index as torch names it), else the default."""
    device = getattr(backend, "device", None)
    return str(device) if isinstance(device, str) and device.split(":")[0] in ("cuda", "cpu", "mps") else None
