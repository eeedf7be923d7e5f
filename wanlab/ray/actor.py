"""One worker of a Ray pool, as it runs inside its Ray actor: the model loaded once, jobs run on it.

The pool (:mod:`wanlab.ray.raypool`) makes one actor per worker from :class:`Worker`. The actor loads
the model with ``wanlab.load`` in its constructor (a load error is kept and raised by :meth:`info`,
so the driver reads it as the error it is), pins torch to its thread count, and runs each job on
its pipeline's worker thread, exactly as a local :class:`~wanlab.Pipeline` runs ``start(job)``:
same code, same frames. Libraries' loading chatter and notices are silenced here
(:func:`wanlab.quiet.quiet`), as in the CLI; wanlab's own warnings reach the driver's log. Videos
go back to the driver through Ray's object store with their run files already encoded and their
digest computed here (:class:`~wanlab.ray.encoded.EncodedVideo`); the store is written by the
driver alone, which then only writes bytes.
"""
from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..backend import Job
from ..errors import WanlabError
from ..inputs import AccelLike
from ..quiet import quiet

if TYPE_CHECKING:  # pragma: no cover
    from ..params import Params
    from ..video import Video


class Worker:
    """The body of one Ray actor (see the module docstring); the pool wraps it with ``ray.remote``.

    A load error is kept and raised by :meth:`info`, so the driver reports it.

    Args:
        name: the worker's name (``ray-0``, ...).
        model: the model to load.
        options: ``wanlab.load`` options.
        threads: torch threads for this worker.
    """

    def __init__(self, name: str, model: str, options: dict[str, Any], threads: int) -> None:
        import ray

        self.name = name
        self.threads = threads
        self.node = ray.util.get_node_ip_address()
        self.error: BaseException | None = None
        self.pipe: Any = None
        try:
            import torch

            torch.set_num_threads(threads)
            from ..pipeline import load

            with quiet():
                self.pipe = load(model, progress=False, **options)
        except Exception as exc:
            self.error = exc

    def info(self) -> dict[str, Any]:
        """What the driver checks before sending jobs.

        Returns:
            The loaded model's identity, wanlab's version, pid, node, device and its name, torch
            threads and library versions.

        Raises:
            Exception: the load error, when the model did not load.
        """
        if self.error is not None:
            raise self.error
        import torch

        from .. import __version__
        from ..record import environment

        env = environment(self.pipe.device)
        return {"identity": self.pipe.identity.to_dict(), "wanlab": __version__, "pid": os.getpid(),
                "node": self.node, "device": self.pipe.device,
                "device_name": env["device_name"], "threads": torch.get_num_threads(), "versions": env["versions"]}

    def run(self, params: Params, accel: AccelLike, *, truncate: str, calibration: dict[str, Any] | None,
            attempt: int, lora_policy: Any = None, probes: Any = None) -> Video:
        """Run one request and return its video.

        ``calibration``: a MagCache calibration another worker measured; ``lora_policy``: the driver's
        LoRA source policy; ``attempt``: 1, or more on a retry.
        """
        job = Job(params, accel, truncate=truncate, threads=self.threads, probes=probes)
        self._prepare(params, accel, calibration, lora_policy)
        with quiet():
            return self._finish(self.pipe.start(job).result(), attempt)

    def stream(self, params: Params, accel: AccelLike, *, truncate: str, calibration: dict[str, Any] | None,
               attempt: int, lora_policy: Any = None, probes: Any = None) -> Iterator[tuple[Any, ...]]:
        """Run one request, yielding its events as they happen (a Ray streaming generator).

        ``("start",)``, ``("step", done, total)`` per denoising step, then ``("video", video)``: the
        driver calls the job's callbacks as these arrive.
        """
        events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        job = Job(params, accel, truncate=truncate, threads=self.threads, probes=probes,
                  on_start=lambda: events.put(("start",)),
                  on_step=lambda done, total: events.put(("step", done, total)))
        self._prepare(params, accel, calibration, lora_policy)
        with quiet():
            future = self.pipe.start(job)
            future.add_done_callback(lambda _f: events.put(("end",)))
            while True:
                event = events.get()
                if event[0] == "end":
                    break
                yield event
            video = self._finish(future.result(), attempt)
        yield ("video", video)

    def _prepare(self, params: Params, accel: AccelLike, calibration: dict[str, Any] | None, lora_policy: Any) -> None:
        """Read LoRA paths under the driver's policy, and adopt another worker's MagCache calibration.

        The calibration is adopted when it is the one this worker would measure.
        """
        if lora_policy is not None:
            self.pipe.loras.policy = lora_policy
        if calibration is None:
            return
        from ..accel.magcache import calibration_key, remember
        from ..accel.setting import Accel

        if calibration_key(self.pipe, params, Accel.coerce(accel)) == calibration.get("key"):
            remember(calibration)

    def _finish(self, video: Video, attempt: int) -> Video:
        """Name the worker in the record, then encode the run's files and hash the frames here.

        The sweep's progress counts runs per worker; encoding on the worker leaves the driver only bytes
        to write.
        """
        from .encoded import EncodedVideo

        video.record["worker"] = self.name
        video.record["ray"] = {"node": self.node, "pid": os.getpid(), "attempt": attempt}
        encoded = EncodedVideo.of(video)
        _ = encoded.digest
        return encoded


def check_worker(name: str, info: dict[str, Any], expected: Any, version: str) -> None:
    """Refuse a worker whose loaded model is not the one the driver identified, or whose wanlab differs.

    Its runs would be stored under keys that do not describe them.

    Args:
        name: the worker's name.
        info: what :meth:`Worker.info` returned.
        expected: the identity the driver computed.
        version: the driver's wanlab version.

    Raises:
        WanlabError: another wanlab version, other weights, or other settings.
    """
    from ..models.identity import ModelIdentity

    loaded = ModelIdentity.from_dict(info["identity"])
    where = f"Ray worker {name} (node {info.get('node')}, pid {info.get('pid')})"
    if info.get("wanlab") != version:
        raise WanlabError(f"{where} runs wanlab {info.get('wanlab')}, the driver wanlab {version}: install the same "
                          "wanlab on every node")
    if loaded.fingerprint != expected.fingerprint:
        raise WanlabError(f"{where} loaded other weights than the driver identified for {expected.model_id} "
                          f"(fingerprint {loaded.fingerprint[:12]}, expected {expected.fingerprint[:12]}): every node "
                          "must hold the same checkpoint; the worker is refused")
    if not loaded.same_model(expected):
        diff = sorted(k for k in set(loaded.settings) | set(expected.settings)
                      if loaded.to_dict()["settings"].get(k) != expected.to_dict()["settings"].get(k))
        raise WanlabError(f"{where} loaded the model with other generation settings than the driver identified "
                          f"({', '.join(diff)} differ): the worker is refused")
