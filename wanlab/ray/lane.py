"""The driver's side of one worker: a thread that checks its actor, feeds it jobs and notices its death.

A lane waits for its actor to load the model (or to come back after Ray restarts its process),
checks the actor's identity against the driver's, then takes the jobs the scheduler hands it one
at a time. A job's own failure (a bad LoRA, garbage frames) fails that job and the worker goes on;
the actor's death (``ray.kill``, a killed process, a lost node) sends the job back to the queue,
to the next free worker, at most ``max_retries`` times.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import LoRAError, WanlabError
from .scheduler import Scheduler, Ticket

if TYPE_CHECKING:  # pragma: no cover
    from ..models.identity import ModelIdentity
    from ..video import Video

#: Lane states, as ``RayPool.status()`` shows them.
STATES = ("loading", "ready", "running", "restarting", "dead", "refused", "closed")


class WorkerLost(Exception):
    """The actor died under a job (the job is retried elsewhere)."""


def lost(ray: Any, exc: BaseException) -> bool:
    """Whether ``exc`` says the worker is gone rather than that the job itself failed.

    Gone: its process, its node, or the object it returned.

    Args:
        ray: the ``ray`` module.
        exc: what a job's future raised.

    Returns:
        Whether the worker is lost (then the job is retried elsewhere).
    """
    e = ray.exceptions
    kinds = (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.ObjectLostError, e.OwnerDiedError,
             e.LocalRayletDiedError, e.OutOfMemoryError)
    return isinstance(exc, kinds) and not isinstance(exc, e.RayTaskError)


def own_error(ray: Any, exc: BaseException) -> BaseException:
    """The job's own exception inside Ray's wrapper (a ``LoRAError`` stays a ``LoRAError``).

    Args:
        ray: the ``ray`` module.
        exc: what a job's future raised.

    Returns:
        The cause Ray wrapped, or ``exc`` itself.
    """
    if isinstance(exc, ray.exceptions.RayTaskError) and getattr(exc, "cause", None) is not None:
        return exc.cause
    return exc


class Lane(threading.Thread):
    """One worker of a pool seen from the driver (see the module docstring): a thread feeding its actor.

    Args:
        ray: the ``ray`` module.
        name: the worker's name (``ray-0``, ...).
        actor: its Ray actor handle.
        scheduler: the pool's scheduler it takes jobs from.
        identity: the identity its model must have.
        version: the driver's wanlab version.
        max_retries: how often a job whose worker died is run again.
        on_change: called when its state changes.
    """

    def __init__(self, ray: Any, name: str, actor: Any, scheduler: Scheduler, identity: ModelIdentity,
                 version: str, max_retries: int, on_change: Any) -> None:
        super().__init__(name=f"wanlab-ray-{name}", daemon=True)
        self.ray = ray
        self.worker = name
        self.actor = actor
        self.scheduler = scheduler
        self.identity = identity
        self.version = version
        self.max_retries = max_retries
        self.on_change = on_change
        self.state = "loading"
        self.error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self.runs = 0
        self.failures = 0
        self.deaths = 0
        self.ready = threading.Event()  # set once the first load has ended (ready, refused or dead)
        self.current: Ticket | None = None

    def _set(self, state: str, error: BaseException | None = None) -> None:
        self.state = state
        if error is not None:
            self.error = error
        self.on_change()

    # --- the thread -----------------------------------------------------------------------------------
    def run(self) -> None:
        """The lane's thread: wait for the worker to load, check it, then run the jobs it takes."""
        from .actor import check_worker

        while not self.scheduler.closed:
            try:
                info = self._wait_loaded()
            except WorkerLost as exc:
                self._set("closed" if self.scheduler.closed else "dead", exc)
                break
            except BaseException as exc:
                self._set("refused", own_error(self.ray, exc))
                self._kill()
                break
            try:
                check_worker(self.worker, info, self.identity, self.version)
            except WanlabError as exc:
                self._set("refused", exc)
                self._kill()
                break
            self.info = info
            self._set("ready")
            self.ready.set()
            self.scheduler.join(self.worker)
            try:
                self._serve()
            except WorkerLost:
                self.deaths += 1
                self.scheduler.leave(self.worker)
                self._set("restarting")
                continue
            break
        self.scheduler.leave(self.worker)
        if self.state not in ("dead", "refused"):
            self._set("closed")
        self.ready.set()

    def _wait_loaded(self) -> dict[str, Any]:
        """The actor's info once its model is loaded; Ray restarting the actor is waited for."""
        while True:
            try:
                return self.ray.get(self.actor.info.remote())
            except BaseException as exc:
                if isinstance(exc, self.ray.exceptions.ActorUnavailableError):
                    time.sleep(0.2)  # its process is being restarted
                    continue
                if lost(self.ray, exc):
                    raise WorkerLost(str(exc).splitlines()[0]) from None
                raise

    def _serve(self) -> None:
        while True:
            ticket = self.scheduler.take(self.worker)
            if ticket is None:
                return
            self.current = ticket
            self._set("running")
            try:
                video = self._execute(ticket)
            except WorkerLost as exc:
                self._lose(ticket, exc)
                raise
            except BaseException as exc:
                self.failures += 1
                self.scheduler.done(ticket)
                ticket.future.set_exception(exc)
            else:
                self.runs += 1
                self.scheduler.done(ticket, video.record.get("accel_calibration"))
                ticket.future.set_result(video)
            finally:
                self.current = None
            self._set("ready")

    def _lose(self, ticket: Ticket, exc: WorkerLost) -> None:
        """The actor died under ``ticket``: queue it again, or fail it once it has outlived its retries."""
        ticket.attempts += 1
        if ticket.attempts <= self.max_retries:
            try:
                self.scheduler.retry(ticket)
                return
            except RuntimeError:  # the pool is closing: nobody will run it again
                error = WanlabError(f"the Ray worker running this job died ({self.worker}: {exc}) while the pool "
                                    "was closing")
        else:
            error = WanlabError(f"the Ray worker running this job died {ticket.attempts} times (last: {self.worker}: "
                                f"{exc}); not retried again (max_retries={self.max_retries})")
        self.scheduler.done(ticket)
        ticket.future.set_exception(error)

    def _execute(self, ticket: Ticket) -> Video:
        """Run one ticket on the actor; the job's callbacks run here, in the driver, as events arrive."""
        import numpy as np

        job = ticket.job
        options = {"truncate": job.truncate, "calibration": ticket.calibration, "attempt": ticket.attempts + 1,
                   "lora_policy": ticket.lora_policy, "probes": job.probes}
        callback_error: BaseException | None = None
        try:
            if job.on_start is None and job.on_step is None:
                video = self.ray.get(self.actor.run.remote(job.params, job.accel, **options))
            else:
                video = None
                stream = self.actor.stream.options(num_returns="streaming")
                for ref in stream.remote(job.params, job.accel, **options):
                    kind, *rest = self.ray.get(ref)
                    if kind == "video":
                        video = rest[0]
                    elif callback_error is None:
                        try:
                            if kind == "start" and job.on_start is not None:
                                job.on_start()
                            elif kind == "step" and job.on_step is not None:
                                job.on_step(*rest)
                        except BaseException as exc:
                            callback_error = exc
        except BaseException as exc:
            if lost(self.ray, exc):
                raise WorkerLost(str(exc).splitlines()[0]) from None
            raise own_error(self.ray, exc) from None
        if callback_error is not None:
            raise callback_error
        assert video is not None
        video.frames = np.array(video.frames)  # owned and writable, not a view into Ray's object store
        if video.latents is not None:
            video.latents = np.array(video.latents)
        read = [d.get("sha256") for d in video.record.get("loras") or []]
        if read != [d["sha256"] for d in ticket.loras]:
            raise LoRAError(f"loras: Ray worker {self.worker} read other LoRA files than the driver hashed "
                            f"(sha256 {[s[:12] for s in read if s]} vs {[d['sha256'][:12] for d in ticket.loras]}): "
                            "on a cluster each LoRA path must hold the same file on every node")
        return video

    def _kill(self) -> None:
        try:
            self.ray.kill(self.actor)
        except Exception:
            pass

    def stop(self) -> None:
        """End the actor (the pool is closing): a lane waiting for it to load then ends too."""
        self._kill()

    def describe(self) -> dict[str, Any]:
        """This worker's state for ``RayPool.status()``.

        Returns:
            ``worker``, ``state``, ``runs``, ``failures``, ``deaths``, ``node``, ``pid``, ``device``,
            ``device_name``, ``threads`` (and ``error`` when it has one).
        """
        out = {"worker": self.worker, "state": self.state, "runs": self.runs, "failures": self.failures,
               "deaths": self.deaths, "node": self.info.get("node"), "pid": self.info.get("pid"),
               "device": self.info.get("device"), "device_name": self.info.get("device_name"),
               "threads": self.info.get("threads")}
        if self.error is not None:
            out["error"] = f"{type(self.error).__name__}: {self.error}"
        return out
