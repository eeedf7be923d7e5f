"""Running a sweep into a store on any backend: resumable, failure tolerant, shardable.

Points already in the store (same run key) are skipped, so a killed sweep resumes where it
stopped; a failing point is recorded with its error and the sweep goes on (``max_failures=K``
stops it gracefully after K failures: the rest stay pending, ``result.stopped`` says so and a
warning is issued). Up to ``max_in_flight`` points run at once (default: the backend's own); each
video is stored as its job completes, then measured: a metrics failure is recorded on the run and
never loses it. Work a remote service accepted is recorded before waiting for it (``pending/``),
so a sweep killed meanwhile polls that task again instead of paying twice; a submit is recorded there
before it is sent (its idempotency key), so one whose answer was lost is not paid again by a rerun
(a wanlab server is asked under the same key; another service is not asked unless
``retry_uncertain=True``). ``shard=(i, n)`` runs
points ``i, i+n, ...`` so n processes (or machines sharing a folder) split a sweep with no
coordinator. Library warnings are silenced while it runs (wanlab's own show). A sweep over ``accel`` times its runs: one job at a time, nothing stored meanwhile,
the first request run once untimed and each compiled setting once per size.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backend import Job, is_backend
from ..errors import LoRAError, ParamError, SubmitUncertain, TruncationError
from ..keys import run_key, unreadable_loras
from ..quiet import quiet
from ..values import check_bool, check_choice, check_int
from ..metrics.suite import check_metrics
from .measure import measure, needs
from .values import check_shard

if TYPE_CHECKING:  # pragma: no cover
    from ..params import Params
    from ..store import Run, Store
    from ..video import Video
    from .definition import Sweep
    from .result import SweepResult


def backend_for(sweep: "Sweep", backend: Any) -> Any:
    """The backend to run on: the one given, or the model it names (or the sweep's own) loaded."""
    from ..pipeline import load
    from ..models.registry import DEFAULT_MODEL

    if is_backend(backend):
        return backend
    if backend is None or isinstance(backend, (str, os.PathLike)):
        return load(backend or sweep.model or DEFAULT_MODEL, progress=False)
    raise ParamError("backend", "a wanlab backend (wanlab.load, wanlab.connect, wanlab.ray.pool), a model name "
                     "or None (the sweep's model)", backend)


def names_model(name: str, ident: Any) -> bool:
    """Whether the model ``name`` (a sweep's ``model``) is the one ``ident`` identifies: the same name,
    the same folder, or the same weights fingerprint (a name wanlab cannot identify matches nothing else)."""
    from pathlib import Path

    from ..errors import LoadError
    from ..models.identity import identity

    if name == ident.model_id:
        return True
    try:
        if Path(name).expanduser().exists() and Path(ident.model_id).exists():
            return os.path.samefile(Path(name).expanduser(), ident.model_id)
        return identity(name).fingerprint == ident.fingerprint
    except (LoadError, ParamError, OSError):
        return False


def check_model(sweep: "Sweep", backend: Any) -> None:
    """Warn when the sweep names a model other than the backend it runs on: its runs, keys and table are
    the backend's, and a study written for one model says little about another (``tiny``'s videos are noise)."""
    from ..errors import ModelMismatchWarning, warn

    ident = getattr(backend, "identity", None)
    if not sweep.model or ident is None or names_model(sweep.model, ident):
        return
    warn(f"sweep {sweep.name or ''}: its file names model {sweep.model!r}, but it runs on {ident.model_id!r} "
         f"(the backend given), so these runs are {ident.model_id!r}'s; run it on the model it names, or say "
         f"which model the study is for with sweep.replace(model=...) (wanlab sweep --model)", ModelMismatchWarning)


def keyer_for(sweep: "Sweep", model: Any) -> Any:
    """What computes the sweep's keys: a backend, or a model known by its identity (nothing loaded)."""
    from ..backend import IdentityBackend
    from ..models.identity import ModelIdentity, identity
    from ..models.registry import DEFAULT_MODEL

    if is_backend(model) or isinstance(model, IdentityBackend):
        return model
    if isinstance(model, ModelIdentity):
        return IdentityBackend(model)
    if model is None or isinstance(model, (str, os.PathLike)):
        return IdentityBackend(identity(model or sweep.model or DEFAULT_MODEL))
    raise ParamError("model", "a backend, a ModelIdentity, a model name or None (the sweep's model)", model)


def store_for(sweep: "Sweep", store: Any) -> "Store":
    from ..store import Store

    if isinstance(store, Store):
        return store
    if store is None:
        store = sweep.default_store()
    if not isinstance(store, (str, os.PathLike)):
        raise ParamError("store", "a wanlab.Store, a folder path or None (runs/NAME)", store)
    return Store(store)


def point_keys(sweep: "Sweep", keyer: Any, points: list["Params"]) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Each point's key parts, and for a point whose LoRA file cannot be read why not (its key is then a
    stand-in from the files' paths, under which its failure is recorded)."""
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


def result(sweep: "Sweep", model: Any = None, store: Any = None) -> "SweepResult":
    """The sweep's table as the store holds it now (nothing runs, nothing loads)."""
    from .result import SweepResult

    keyer = keyer_for(sweep, model)
    store_ = store_for(sweep, store)
    points = sweep.points(keyer)
    parts, _ = point_keys(sweep, keyer, points)
    return SweepResult(sweep, store_, keyer, points=points, keys=[run_key(p) for p in parts])


def run(sweep: "Sweep", backend: Any = None, store: Any = None, *, metrics: Any = True, progress: bool = True,
        max_failures: int | None = None, shard: Any = None, retry_failed: bool = True,
        max_in_flight: int | None = None, truncate: str = "warn", retry_uncertain: bool = False,
        probes: Any = None) -> "SweepResult":
    """Run the points of ``sweep`` not yet in ``store`` on ``backend``; the whole sweep's table.

    The engine behind :meth:`Sweep.run <wanlab.sweep.definition.Sweep.run>`, which documents the
    arguments. In named phases: the options are checked, the backend opened, the run planned (which
    points, under which keys), then each point started and each finished job settled (its video
    stored, then measured), and the table returned.

    Args:
        sweep: The sweep to run.
        backend: A backend, a model name, or None (the sweep's model).
        store: A :class:`wanlab.Store`, its folder, or None (:meth:`Sweep.default_store`).
        metrics, progress, max_failures, shard, retry_failed, max_in_flight, truncate, retry_uncertain, probes:
            As :meth:`Sweep.run <wanlab.sweep.definition.Sweep.run>`.

    Returns:
        The whole sweep's :class:`~wanlab.sweep.result.SweepResult`.

    Raises:
        ParamError: An option, the backend or the store is not one this accepts.
    """
    options = _check_options(sweep, metrics=metrics, progress=progress, max_failures=max_failures, shard=shard,
                             retry_failed=retry_failed, max_in_flight=max_in_flight, truncate=truncate,
                             retry_uncertain=retry_uncertain, probes=probes)
    backend_ = _open_backend(sweep, backend, options.probes)
    outcome = _SweepRun(sweep, backend_, store_for(sweep, store), options).execute()
    if outcome.stopped:
        warnings.warn(f"sweep {sweep.name or ''}: {outcome.stopped}; the points not reached are pending", stacklevel=3)
    return outcome


@dataclass(frozen=True)
class _Options:
    """:func:`run`'s options, checked."""

    metrics: tuple[str, ...]
    probes: Any
    shard: tuple[int, int]
    progress: bool
    max_failures: int | None
    retry_failed: bool
    max_in_flight: int | None
    truncate: str
    retry_uncertain: bool


def _check_options(sweep: "Sweep", *, metrics: Any, progress: bool, max_failures: int | None, shard: Any,
                   retry_failed: bool, max_in_flight: int | None, truncate: str, retry_uncertain: bool,
                   probes: Any) -> _Options:
    """:func:`run`'s options checked (a bad one raises :class:`~wanlab.ParamError` naming it), defaults filled in."""
    from ..probes.spec import normalize

    check_int("max_failures", max_failures, 1, optional=True, rule="None or an integer >= 1")
    check_int("max_in_flight", max_in_flight, 1, 1024, optional=True)
    for flag, value in (("progress", progress), ("retry_failed", retry_failed), ("retry_uncertain", retry_uncertain)):
        check_bool(flag, value)
    names = check_metrics(sweep.metrics if metrics is True and sweep.metrics is not None else metrics)
    check_choice("truncate", truncate, ("warn", "error"))
    return _Options(metrics=names, probes=normalize(probes) if probes is not None else sweep.probes,
                    shard=check_shard(shard) if shard is not None else (0, 1), progress=progress,
                    max_failures=max_failures, retry_failed=retry_failed, max_in_flight=max_in_flight,
                    truncate=truncate, retry_uncertain=retry_uncertain)


def _open_backend(sweep: "Sweep", backend: Any, probes: Any) -> Any:
    """The backend the sweep runs on (:func:`backend_for`, library notices silenced), checked against the
    model the sweep names and the probes it records."""
    with quiet():
        backend_ = backend_for(sweep, backend)
    check_model(sweep, backend_)
    if probes and getattr(backend_, "records_probes", True) is False:
        raise ParamError("probes", f"left out with {type(backend_).__name__} (it returns frames only; record probes "
                         "with a local pipeline or a Ray pool)", list(probes))
    return backend_


class _SweepRun:
    """One call of :func:`run`: its plan and the state its phases share.

    Phases: :meth:`plan` (which of the shard's points to run, under which keys), :meth:`start` (one point:
    skipped, failed for an unreadable LoRA, or sent to the backend), :meth:`settle` (finished jobs:
    failures recorded, videos handed to :meth:`store_video`), and :meth:`finish` (the table).
    """

    def __init__(self, sweep: "Sweep", backend: Any, store: "Store", options: _Options) -> None:
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
        """The points, their keys, and which of the shard's points to run (not done, or done without
        what this call asks for: metrics, latents, probes)."""
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

    def _lacks_output(self, run: "Run") -> bool:
        """Whether a stored run lacks what only generating it again gives: latents, probes."""
        return (self.accel_study and not run.has_latents) or (bool(self.options.probes) and not run.has_probes)

    def _incomplete(self, run: "Run") -> bool:
        return bool(needs(run, self.options.metrics)) or self._lacks_output(run)

    # --- the loop ----------------------------------------------------------------------------------------------
    def execute(self) -> "SweepResult":
        """Start the planned points, at most ``capacity`` in flight, settle them all; the table."""
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
        """Point ``i``: done by now (another process: measured at most), failed (its LoRA file cannot be
        read), or sent to the backend (an accel study's request warmed up first)."""
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

    def _warm_up(self, params: "Params", accel: Any) -> None:
        """Accel studies time single runs: run the first request once untimed (first-call overheads),
        and a compiled setting once per size (compilation is not what is measured)."""
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
        """Take the jobs finished by now (``block``: wait for one): failures recorded, videos stored."""
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
                except Exception as exc:  # noqa: BLE001 - e.g. a full disk: recorded, the sweep goes on
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
    def store_video(self, i: int, video: "Video") -> None:
        """Store point ``i``'s video first, then measure it (a metrics failure is kept on the run)."""
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
            except Exception:  # noqa: BLE001 - it failed: the next run retries it
                pass

    def finish(self) -> "SweepResult":
        """The whole sweep's table, with the points this call ran and why it stopped early, if it did."""
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
