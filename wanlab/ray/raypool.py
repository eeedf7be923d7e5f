"""A backend whose workers are Ray actors, each holding the model once: :func:`pool`, :class:`RayPool`.

The driver (the process that calls :func:`pool`) identifies the model without loading it, starts
one actor per worker (``num_gpus`` GPUs each, or CPU actors with a fixed torch thread count), and
refuses any actor whose loaded model is not the identified one. Jobs are queued in the driver and
handed to free workers (:mod:`wanlab.ray.scheduler`); each video comes back once, through Ray's
object store, to whoever started the job: the sweep runner or the task queue stores it, so the
run store and its SQLite index are written by the driver alone, on the driver's disk.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..backend import BackendBase, Job
from ..errors import ParamError, WanlabError
from ..models.registry import DEFAULT_MODEL
from ..params import Params
from ..pipeline import TRUNCATE
from ..tasks import TaskMethods
from ..values import check_int, check_known, check_number
from .lane import Lane
from .scheduler import Scheduler, Ticket

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.setting import Accel
    from ..models.identity import ModelIdentity
    from ..video import Video

#: ``wanlab.load`` options a pool passes on to every actor (``device`` is the pool's to decide).
LOAD_OPTIONS = ("dtype", "cpu_offload", "vae_tiling", "max_sequence_length", "accel", "group_offload")
MAX_RETRIES = 2
MAX_RESTARTS = 3


def pool(model: str | os.PathLike[str] = DEFAULT_MODEL, *, workers: int | None = None, num_gpus: float = 1,
         address: str | None = None, threads: int = 1, max_retries: int = MAX_RETRIES,
         max_restarts: int = MAX_RESTARTS, runtime_env: dict[str, Any] | None = None,
         **load_options: Any) -> RayPool:
    """A backend of ``workers`` Ray actors, each loading ``model`` once.

    Usable wherever a pipeline is (``sweep.run(pool, store)``, ``pool.submit``/``task_result``,
    ``wanlab.accel.study``). It returns once every worker has loaded the model and matched the driver's
    identity. Every node needs wanlab (the same version), the model's files and LoRA files under the
    same paths; videos come back to the driver through Ray's object store and the driver alone writes
    the store.

    Args:
        model: a built-in name, a diffusers folder or a hub id (the same on every node).
        workers: actors to start (None: as many as the cluster holds now).
        num_gpus: GPUs per actor; on a cluster without GPUs the actors are CPU actors (said once);
            0 asks for CPU actors anywhere.
        address: the Ray cluster (:mod:`wanlab.ray.cluster`; None joins the one this process or
            ``$RAY_ADDRESS`` names, else starts Ray on this machine, listening on 127.0.0.1).
        threads: torch threads per actor (and the CPUs a CPU actor reserves); frames depend on it in the
            last bits, so a pool of 1-thread actors gives the frames of a 1-thread local pipeline.
        max_retries: how often a job whose worker died is run again on another worker.
        max_restarts: how often Ray restarts a worker whose process died (it reloads the model).
        runtime_env: Ray's runtime environment for the actors (``{"env_vars": {...}}``, ...).
        **load_options: ``wanlab.load`` options (``dtype``, ``cpu_offload``, ``vae_tiling``,
            ``max_sequence_length``, ``accel``, ``group_offload``; not ``device``).

    Returns:
        The :class:`RayPool` (``with pool:`` ends its actors).

    Raises:
        ParamError: a bad option (``device`` given, an unknown load option, ``threads`` out of range, ...).
        LoadError: the model cannot be identified on the driver.
        WanlabError: the cluster has no room for a worker, or a worker did not start or loaded other weights.

    Example:
        >>> backend = wanlab.ray.pool("Wan-AI/Wan2.1-T2V-14B-Diffusers", workers=8)  # doctest: +SKIP
        >>> wanlab.Sweep.load("sweeps/guidance_x_shift.toml").run(backend)  # doctest: +SKIP
    """
    return RayPool(model, workers=workers, num_gpus=num_gpus, address=address, threads=threads,
                   max_retries=max_retries, max_restarts=max_restarts, runtime_env=runtime_env,
                   load_options=load_options)


class RayPool(TaskMethods, BackendBase):
    """Workers on Ray behind the backend protocol; made by :func:`pool`, which documents its arguments.

    The driver identifies the model without loading it, starts one actor per worker and refuses any
    actor whose loaded model is not the identified one. Jobs are queued in the driver and handed to free
    workers (:mod:`wanlab.ray.scheduler`).

    Attributes:
        identity: the model every worker loaded.
        num_gpus: GPUs per actor (0: CPU actors).
        threads: torch threads per actor.

    Example:
        >>> with wanlab.ray.pool("toy", workers=2, num_gpus=0) as backend:  # doctest: +SKIP
        ...     video = backend.generate(prompt="a red square moving right quickly", seed=1)
        ...     backend.status()["workers"][0]["state"]
        'ready'
    """

    def __init__(self, model: Any, *, workers: int | None, num_gpus: float, address: str | None, threads: int,
                 max_retries: int, max_restarts: int, runtime_env: dict[str, Any] | None,
                 load_options: dict[str, Any]) -> None:
        from .. import __version__
        from ..accel.setting import Accel
        from .actor import Worker
        from .cluster import capacity, connect, has_gpus

        check_int("workers", workers, 1, 4096, optional=True)
        check_number("num_gpus", num_gpus, 0, 64, rule="a number of GPUs per worker in 0..64")
        check_int("threads", threads, 1, 1024)
        check_int("max_retries", max_retries, 0, 100)
        check_int("max_restarts", max_restarts, 0, 1000)
        if "device" in load_options:
            raise ParamError("device", "left to the pool: each worker runs on the GPUs Ray gives it, or on the CPU",
                             load_options["device"])
        check_known("", load_options, LOAD_OPTIONS, "a wanlab.load option a pool passes on")
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise ParamError("runtime_env", "None or a dict (Ray's runtime environment)", runtime_env)
        self.accel = Accel.coerce(load_options.get("accel"))
        # The LoRA source policy (set_lora_policy) applies here (run keys: LoRA files as the driver reads them,
        # each worker must read the same bytes) and is sent with each job to its worker.
        ray = connect(address)
        if num_gpus > 0 and not has_gpus(ray):
            print(f"wanlab.ray: the Ray cluster has no GPUs: CPU workers with {threads} torch thread"
                  f"{'s' * (threads != 1)} each", file=sys.stderr, flush=True)
            num_gpus = 0
        self.num_gpus, self.threads = float(num_gpus), threads
        #: Where each worker runs: ``cuda`` (the GPUs Ray gives it) or ``cpu``.
        self.device = "cuda" if num_gpus > 0 else "cpu"
        self.identity = _identity(model, self.device, load_options)
        room, unit = capacity(ray, num_gpus, threads)
        have = f"{ray.cluster_resources().get(unit, 0):g} {unit}s"
        if room < 1:
            raise WanlabError(f"the Ray cluster has no room for a worker ({have}, "
                              f"{num_gpus if num_gpus else threads:g} per worker)")
        count = workers if workers is not None else room
        if count > room:
            warnings.warn(f"{count} workers need {count * (num_gpus or threads):g} {unit}s and the Ray cluster has "
                          f"{have} now: the pool starts with {room}, the others join when it grows", stacklevel=3)
        self._scheduler = Scheduler()
        options: dict[str, Any] = {"num_cpus": threads if num_gpus == 0 else 1, "num_gpus": num_gpus,
                                   "max_restarts": max_restarts, "max_task_retries": 0}
        if runtime_env is not None:
            options["runtime_env"] = runtime_env
        remote = ray.remote(Worker).options(**options)
        model_arg = os.fspath(model) if isinstance(model, os.PathLike) else model
        self._lanes: list[Lane] = []
        for i in range(count):
            actor = remote.remote(f"ray-{i}", model_arg, {**load_options, "device": self.device}, threads)
            self._lanes.append(Lane(ray, f"ray-{i}", actor, self._scheduler, self.identity, __version__,
                                    max_retries, self._changed))
        for lane in self._lanes:
            lane.start()
        self._wait_started(min(count, room))

    def _wait_started(self, needed: int) -> None:
        """Wait until ``needed`` workers have loaded the model (or failed to); raise if any of them failed."""
        while sum(lane.ready.is_set() for lane in self._lanes) < needed:
            time.sleep(0.05)
        refused = [lane for lane in self._lanes if lane.ready.is_set() and lane.state in ("refused", "dead")]
        if refused:
            self.close()
            first = refused[0]
            raise WanlabError(f"{len(refused)} of {len(self._lanes)} Ray workers did not start: {first.worker}: "
                              f"{first.error}") from None

    def __repr__(self) -> str:
        return (f"RayPool(model={self.identity.model_id!r}, workers={len(self._lanes)}, "
                f"{f'num_gpus={self.num_gpus:g}' if self.num_gpus else f'cpu, threads={self.threads:d}'})")

    # --- the backend protocol --------------------------------------------------------------------------
    @property
    def max_in_flight(self) -> int:
        """Jobs worth starting at once.

        One more than the live workers, so a worker that finishes finds its next job waiting while the
        driver stores the last video (and a task queue's eta stays close).
        """
        return len(self._alive()) + 1

    def start(self, job: Job) -> Future[Video]:
        """Queue ``job`` for the next free worker (``job.affinity``: the worker that ran its first job).

        ``job.threads`` is not used: each worker runs with the pool's ``threads``; ``job.resume`` and
        ``on_accepted`` concern remote services (a pool's work dies with its driver). Callbacks
        (``on_start``, ``on_step``) run in this process.

        Args:
            job: the resolved request with its acceleration, callbacks and probes.

        Returns:
            A Future that holds the job's :class:`~wanlab.Video`, or its error: ParamError for a bad job,
            LoRAError for an unreadable LoRA file, WanlabError when no worker is left or the pool is closed.
        """
        from ..accel.setting import Accel
        from ..lora import describe

        if not isinstance(job, Job):
            return failed(ParamError("job", "a wanlab.backend.Job", job))
        if job.truncate not in TRUNCATE:
            return failed(ParamError("truncate", f"one of {', '.join(TRUNCATE)}", job.truncate))
        if not self._alive():
            return failed(self._no_workers())
        accel = Accel.coerce(self.accel if job.accel is None else job.accel)
        try:
            loras = describe(job.params.loras, self.lora_policy)
        except WanlabError as exc:
            return failed(exc)
        ticket = Ticket(replace(job, accel=accel), loras=loras, lora_policy=self.lora_policy,
                        calibration_group=_calibration_group(self.identity, job.params, accel, loras))
        try:
            self._scheduler.put(ticket)
        except RuntimeError:
            return failed(WanlabError("the Ray pool is closed"))
        self._changed()  # the last worker may have gone meanwhile
        return ticket.future

    # --- workers -----------------------------------------------------------------------------------------
    @property
    def actors(self) -> dict[str, Any]:
        """The Ray actor handle of each worker, by name (``ray-0``, ...)."""
        return {lane.worker: lane.actor for lane in self._lanes}

    def status(self) -> dict[str, Any]:
        """The workers and the jobs queued.

        Returns:
            ``workers`` (per worker: state, runs, failures, deaths, node, pid, device), ``queued``, ``model``
            and ``fingerprint``.

        Example:
            >>> [w["state"] for w in backend.status()["workers"]]  # doctest: +SKIP
            ['ready', 'running']
        """
        return {"workers": [lane.describe() for lane in self._lanes], "queued": self._scheduler.queued(),
                "model": self.identity.model_id, "fingerprint": self.identity.fingerprint}

    def _alive(self) -> list[Lane]:
        return [lane for lane in self._lanes if lane.state in ("loading", "ready", "running", "restarting")]

    def _no_workers(self) -> WanlabError:
        why = "; ".join(f"{lane.worker} {lane.state}" + (f" ({lane.error})" if lane.error else "")
                        for lane in self._lanes)
        return WanlabError(f"no Ray worker of this pool is left to run jobs: {why}")

    def _changed(self) -> None:
        """A worker changed state: when none is left, the queued jobs fail (nothing would run them)."""
        if self._alive():
            return
        error = self._no_workers()
        for ticket in self._scheduler.drain():
            if not ticket.started:
                ticket.future.set_running_or_notify_cancel()
            ticket.future.set_exception(error)

    def close(self) -> None:
        """Stop the task queue, let running jobs finish, cancel queued ones and end the actors."""
        super().close()
        for ticket in self._scheduler.close():
            if ticket.started:
                ticket.future.set_exception(WanlabError("the Ray pool was closed before this job could run again"))
            else:
                ticket.future.cancel()
        for lane in self._lanes:
            if lane.state == "running" and lane is not threading.current_thread():
                lane.join()  # its job finishes (take() then ends the lane)
        for lane in self._lanes:
            lane.stop()
        for lane in self._lanes:
            if lane is not threading.current_thread():
                lane.join(timeout=10)


def failed(exc: BaseException) -> Future[Video]:
    """A Future that already holds the exception ``exc`` (a job refused before it is queued).

    Args:
        exc: the error.

    Returns:
        The finished Future.

    Example:
        >>> failed(ValueError("no")).exception()
        ValueError('no')
    """
    future: Future[Video] = Future()
    future.set_exception(exc)
    return future


def _identity(model: Any, device: str, options: dict[str, Any]) -> ModelIdentity:
    """The identity every worker must load, computed here without weights.

    The driver may have no GPU: the settings that change frames do not include the device, only the
    dtype it implies.
    """
    from ..models.identity import check_group_offload, dtype_name, identity

    dtype = dtype_name(options.get("dtype"), device)
    cpu_offload = options.get("cpu_offload", False)
    ident = identity(model, device="cpu", dtype=dtype, cpu_offload=cpu_offload,
                     vae_tiling=options.get("vae_tiling", False),
                     max_sequence_length=options.get("max_sequence_length"))
    offload = check_group_offload(options.get("group_offload"), device, cpu_offload)
    if offload:
        ident = replace(ident, settings={**ident.to_dict()["settings"], "group_offload": offload})
    return ident


def _calibration_group(identity: ModelIdentity, params: Params, accel: Accel,
                       loras: list[dict[str, Any]]) -> str | None:
    """Jobs needing the same MagCache calibration share this name (None: the job needs none)."""
    from ..record import stable_hash

    if accel.cache != "mag" or accel.cache_params["mag_ratios"] != "auto":
        return None
    return stable_hash({"model": identity.fingerprint, "loras": [(d["sha256"], d["scale"]) for d in loras],
                        "steps": params.steps, "guidance_scale": params.guidance_scale, "flow_shift": params.flow_shift,
                        "size": [params.width, params.height, params.num_frames],
                        "prompt": accel.cache_params["calibration_prompt"],
                        "seed": accel.cache_params["calibration_seed"]})
