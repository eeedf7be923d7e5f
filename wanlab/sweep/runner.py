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
import os
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait
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
    parts, problems = [], []
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

    - ``metrics``: the metric sets to compute for every stored run (also for runs stored earlier
      without them): ``True`` the sweep's own (its file's ``metrics = [...]``, else ``["motion"]``),
      ``False`` none, or a list of names of :data:`wanlab.metrics.suite.METRIC_SETS` (``"motion"``,
      ``"adherence"``, ``"clip_score"``, ``"subject_consistency"``, ``"background_consistency"``,
      ``"aesthetic_quality"``; ``"quality"`` for the last four). Evaluators run on the backend's device.
    - ``progress``: one ``tqdm.auto`` bar over the runs to do, with ETA (and runs per worker).
    - ``max_failures``: after that many failures in this call, stop gracefully.
    - ``shard=(i, n)`` (or ``"i/n"``): run only points ``i, i+n, i+2n, ...`` (0 <= i < n).
    - ``retry_failed``: run points whose earlier attempt failed again (default); False keeps them failed.
    - ``max_in_flight``: points running at once (default: the backend's ``max_in_flight``).
    - ``truncate``: ``"warn"`` (default) or ``"error"``: a prompt longer than the model reads fails its
      point and stops the sweep (the points not reached stay pending).
    - ``retry_uncertain``: submit again a point whose earlier submit got no answer (the service may have
      accepted it, and may bill it twice) on a service that cannot be asked under the same idempotency
      key (the hosted API); default False: such a point fails again, saying so. A wanlab server is
      always asked under the same key, and returns the task it accepted.
    - ``probes``: what every run records inside the model (:mod:`wanlab.probes`; default: the sweep's
      own ``probes``). Stored with each run; their scalar summaries (e.g. ``trajectory_decided_step``)
      are kept as the run's metrics, so they are columns of ``SweepResult.df``. Runs stored earlier
      without them are generated again (the frames come out the same) and the probes added.

    Ctrl-C stops the sweep; what finished is in the store and the next run resumes.
    """
    from tqdm.auto import tqdm

    from .result import SweepResult

    check_int("max_failures", max_failures, 1, optional=True, rule="None or an integer >= 1")
    check_int("max_in_flight", max_in_flight, 1, 1024, optional=True)
    for flag, value in (("progress", progress), ("retry_failed", retry_failed), ("retry_uncertain", retry_uncertain)):
        check_bool(flag, value)
    names = check_metrics(sweep.metrics if metrics is True and sweep.metrics is not None else metrics)
    check_choice("truncate", truncate, ("warn", "error"))
    from ..probes.spec import normalize

    probes = normalize(probes) if probes is not None else sweep.probes
    shard_ = check_shard(shard) if shard is not None else (0, 1)
    with quiet():
        backend_ = backend_for(sweep, backend)
    check_model(sweep, backend_)
    if probes and getattr(backend_, "records_probes", True) is False:
        raise ParamError("probes", f"left out with {type(backend_).__name__} (it returns frames only; record probes "
                         "with a local pipeline or a Ray pool)", list(probes))
    store_ = store_for(sweep, store)
    points = sweep.points(backend_)
    accels = sweep.accels()
    parts, problems = point_keys(sweep, backend_, points)
    keys = [run_key(p) for p in parts]
    mine = list(range(shard_[0], len(points), shard_[1]))
    failed_before = store_.failures()
    pending = store_.pending()
    latents = sweep.keeps_latents

    device = _device_of(backend_)

    def incomplete(run: "Run") -> bool:
        return (bool(needs(run, names)) or (latents and not run.has_latents)
                or (bool(probes) and not run.has_probes))

    todo = [i for i in mine if (incomplete(store_.get(keys[i])) if store_.has(keys[i])
                                else retry_failed or keys[i] not in failed_before)]
    capacity = 1 if latents else (max_in_flight or max(1, int(backend_.max_in_flight)))
    ran: list[int] = []
    failures = 0
    stopped: str | None = None
    workers: Counter[str] = Counter()
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name or ''}".strip(), unit="run", disable=not progress,
               dynamic_ncols=True)
    cached = len(mine) - len(todo)

    def note() -> None:
        bits = [f"{cached} already done"] if cached else []
        bits += [f"{failures} failed"] if failures else []
        bits += [", ".join(f"{w}: {n}" for w, n in sorted(workers.items()))] if len(workers) > 1 else []
        bar.set_postfix_str("; ".join(bits), refresh=False)

    def fail(i: int, error: str) -> None:
        nonlocal failures, stopped
        store_.put_failure(keys[i], points[i], error, extra={"sweep": sweep.name, "point": i})
        failures += 1
        if max_failures is not None and failures >= max_failures and stopped is None:
            stopped = f"stopped after {failures} failure{'s' * (failures != 1)} (max_failures={max_failures})"

    def finish(i: int, video: "Video") -> None:
        """Store one generated video first, then measure it (a metrics failure is kept on the run)."""
        extra = {"sweep": sweep.name, "point": i}
        run = store_.put(video, extra=extra, key_parts=parts[i], latents=latents)
        if names:
            measure(store_, run, video, names, device=device)
        if video.probes:
            store_.put_metrics(run.key, video.probes.summary())
        if points[i].loras:  # a failure recorded while a LoRA file was missing is over
            store_.forget_failure(run_key(backend_.key_parts(points[i], accels[i], loras=unreadable_loras(points[i]))))
        workers[str(video.record.get("worker") or "local")] += 1
        ran.append(i)

    warmed: set[Any] = set()

    def warm_up(params: "Params", accel: Any) -> None:
        """Accel sweeps time single runs: run the first request once untimed (first-call overheads),
        and a compiled setting once per size (compilation is not what is measured)."""
        wanted = ["first"] if not warmed else []
        if accel is not None and accel.compile != "off":
            wanted.append((accel.key(), params.width, params.height, params.num_frames))
        for what in wanted:
            if what not in warmed:
                warmed.add(what)
                with contextlib.suppress(Exception):  # a request that fails fails as its own point, below
                    backend_.start(Job(params, accel if what != "first" else None, truncate=truncate)).result()

    inflight: dict[Any, int] = {}
    submitting: dict[str, str] = {}  # run key -> idempotency key of a submit sent and not yet answered

    def sending(key: str, idempotency_key: str) -> None:
        store_.put_pending(key, {"submitting": idempotency_key, "service": backend_.identity.model_id})
        submitting[key] = idempotency_key

    def accepted(key: str, task_id: str) -> None:
        store_.put_pending(key, {"task_id": task_id, "service": backend_.identity.model_id})
        submitting.pop(key, None)

    def settle(block: bool) -> None:
        nonlocal stopped
        if not inflight:
            return
        done, _ = wait(list(inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            i = inflight.pop(future)
            error = future.exception()
            if error is not None:
                if keys[i] in submitting and not isinstance(error, SubmitUncertain):
                    store_.forget_pending(keys[i])  # refused, surely not accepted: nothing is waiting there
                submitting.pop(keys[i], None)
                fail(i, f"{type(error).__name__}: {error}")
                if isinstance(error, TruncationError):  # a hard stop: the sweep asked for one (truncate="error")
                    stopped = stopped or f"stopped: {error}"
            else:
                try:
                    finish(i, future.result())
                except Exception as exc:  # noqa: BLE001 - e.g. a full disk: recorded, the sweep goes on
                    fail(i, f"the video was made but could not be stored: {type(exc).__name__}: {exc}")
            bar.update(1)
            note()

    note()
    with quiet():  # library notices (peft on every second LoRA, ...) say nothing about a sweep
        try:
            for i in todo:
                if stopped:
                    break
                settle(block=False)
                key, params, accel = keys[i], points[i], accels[i]
                if store_.has(key) and not ((latents and not store_.get(key).has_latents)
                                            or (probes and not store_.get(key).has_probes)):
                    if needs(store_.get(key), names):  # done by now (another process): metrics at most
                        run = store_.get(key)
                        measure(store_, run, run.video(), names, device=device)
                    bar.update(1)
                    continue
                if problems[i] is not None:
                    fail(i, problems[i])
                    bar.update(1)
                    note()
                    continue
                if latents:
                    warm_up(params, accel)
                earlier = pending.get(key) or {}
                job = Job(params, accel, truncate=truncate, affinity=_affinity(parts[i]) if latents else None,
                          resume=earlier.get("task_id"), uncertain=None if earlier.get("task_id") else
                          earlier.get("submitting"), retry_uncertain=retry_uncertain, probes=probes,
                          on_submit=lambda idem, key=key: sending(key, idem),
                          on_accepted=lambda task_id, key=key: accepted(key, task_id))
                inflight[backend_.start(job)] = i
                while len(inflight) >= capacity:
                    settle(block=True)
            while inflight:
                settle(block=True)
        finally:
            for future in list(inflight):  # Ctrl-C: what has not started is dropped; what runs finishes, stored
                i = inflight.pop(future)
                if future.cancel():
                    continue
                try:
                    finish(i, future.result())
                except Exception:  # noqa: BLE001 - it failed: the next run retries it
                    pass
            bar.close()
    ran.sort()
    if stopped:
        warnings.warn(f"sweep {sweep.name or ''}: {stopped}; the points not reached are pending", stacklevel=3)
    return SweepResult(sweep, store_, backend_, points=points, keys=keys, ran=ran, stopped=stopped, shard=shard_)


def _affinity(parts: dict[str, Any]) -> str:
    """Jobs of one request (every acceleration setting of it) share an affinity: one worker runs them."""
    from ..record import stable_hash

    return stable_hash({k: v for k, v in parts.items() if k != "accel"})


def _device_of(backend: Any) -> str | None:
    """Where evaluators run: a local pipeline's device (a CUDA index as torch names it), else the default."""
    device = getattr(backend, "device", None)
    return str(device) if isinstance(device, str) and device.split(":")[0] in ("cuda", "cpu", "mps") else None
