"""The backend protocol: what the sweep runner, the task queue, the service and ``verify`` need from
anything that turns requests into videos, and nothing more.

A backend is a local :class:`wanlab.Pipeline`, a client of a service with the hosted API's
contract (``wanlab.connect``) or a pool of Ray workers (``wanlab.ray.pool``). Each has:

- ``identity``: a :class:`~wanlab.models.identity.ModelIdentity` (what run keys and records need);
- ``params(params=None, **fields)``: the validated request, with the model's native settings and
  the backend's rules (a hosted API refuses local sizes);
- ``key_parts(params, accel=None, loras=None)``: what the run key of that request is the hash of
  (:mod:`wanlab.keys`; LoRA files hashed the way this backend reads them, unless ``loras`` gives
  their descriptions);
- ``start(job) -> Future[Video]`` with at most ``max_in_flight`` jobs running at once: the runner
  keeps that many started and stores each video as its future completes;
- ``generate(params=None, **fields) -> Video``, and the hosted API's task methods ``submit``,
  ``task_result``, ``wait`` (:class:`wanlab.tasks.TaskMethods`).

:class:`Job` is one request to run: the request, its acceleration setting, callbacks when it
starts and after each step, what to do with a prompt longer than the model reads (``truncate``:
``"warn"`` or ``"error"``), an ``affinity`` (jobs sharing one run on the same worker: an acceleration study's settings of one
request) and, for remote backends, ``resume`` (a task id submitted earlier, to poll instead of
paying again) with ``on_accepted`` (called with the task id before polling, so it is recorded),
``on_submit`` (called with the idempotency key of a submit before it is sent, so a submit whose answer
is lost is known to a rerun), ``uncertain`` (that key, from an earlier run whose submit got no answer:
a wanlab server is asked again under the same key and returns the task it accepted, if any; another
service is not asked again unless ``retry_uncertain``), ``threads``: the torch thread count to run with (None: that of
the thread that starts the job; torch keeps the count per thread, and 1 vs 2 threads give other frames in the last
bits), and ``probes``: what to record inside the model (:mod:`wanlab.probes`; validated into canonical form;
backends that cannot record them refuse a job that asks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from .errors import ParamError
from .params import Params

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from .models.identity import ModelIdentity
    from .video import Video


@dataclass(frozen=True)
class Job:
    """One request for a backend to run (see the module docstring)."""

    params: Params
    accel: Any = None
    on_step: Callable[[int, int], None] | None = None
    on_start: Callable[[], None] | None = None
    truncate: str = "warn"
    affinity: str | None = None
    resume: str | None = None
    on_accepted: Callable[[str], None] | None = None
    threads: int | None = None
    on_submit: Callable[[str], None] | None = None
    uncertain: str | None = None
    retry_uncertain: bool = False
    probes: Any = None

    def __post_init__(self) -> None:
        if self.probes is not None:
            from .probes.spec import normalize

            object.__setattr__(self, "probes", normalize(self.probes))
        if not isinstance(self.params, Params):
            raise ParamError("job.params", "a wanlab.Params", self.params)
        if self.params.seed == -1:
            raise ParamError("job.params.seed", "resolved (not -1): a job runs one exact request", -1)


@runtime_checkable
class Backend(Protocol):
    """Anything that turns requests into videos (see the module docstring)."""

    identity: "ModelIdentity"
    max_in_flight: int

    def params(self, params: Params | None = None, **fields: Any) -> Params: ...

    def key_parts(self, params: Params, accel: Any = None, loras: Any = None) -> dict[str, Any]: ...

    def start(self, job: Job) -> "Future[Video]": ...

    def generate(self, params: Params | None = None, **fields: Any) -> "Video": ...


def is_backend(value: Any) -> bool:
    """Whether ``value`` offers the backend protocol."""
    return isinstance(value, Backend)


def request(native: Mapping[str, Any], params: Params | None = None, **fields: Any) -> Params:
    """The one rule for a backend's request: fields given (as keywords, or set explicitly in a
    ``Params``) are kept; every other field comes from the model's ``native`` settings, then from
    the hosted API's defaults.

    >>> request({"width": 64, "height": 64}, Params(prompt="a fox", steps=10)).width
    64
    """
    if params is not None and not isinstance(params, Params):
        raise ParamError("params", "a wanlab.Params", params)
    names = Params.field_names()
    for name in fields:
        if name not in names:
            raise ParamError(name, f"one of {', '.join(names)}", fields[name])
    given = params.explicit_fields() if params is not None else {}
    merged = {**dict(native), **given, **fields}
    if "prompt" not in merged:
        raise ParamError("prompt", "given", None)
    return Params(**merged)


class IdentityBackend:
    """A model known by its :class:`~wanlab.models.identity.ModelIdentity` alone: requests and run keys, no
    generation. What a sweep's table, its dry run and record checks need without loading weights.

    >>> keyer = IdentityBackend(wanlab.identity("toy"))  # doctest: +SKIP
    """

    def __init__(self, identity: "ModelIdentity", accel: Any = None) -> None:
        from .accel.setting import Accel

        self.identity = identity
        self.accel = Accel.coerce(accel)

    def __repr__(self) -> str:
        return f"IdentityBackend({self.identity.model_id!r})"

    def params(self, params: Params | None = None, **fields: Any) -> Params:
        return request(self.identity.native, params, **fields)

    def key_parts(self, params: Params, accel: Any = None, loras: Any = None) -> dict[str, Any]:
        from .keys import key_parts
        from .lora import describe

        return key_parts(self.identity, params, self.accel if accel is None else accel,
                         describe(params.loras) if loras is None else loras)
