"""The backend protocol (:class:`Backend`).

What sweeps, task queues, the service and ``verify`` need from anything that turns requests into videos;
:class:`Job`, one request to run; :class:`BackendBase`, what every backend shares (requests and run keys
from its model's identity, the LoRA source policy, ``with``).

Backends: :class:`wanlab.Pipeline` (local), ``wanlab.connect`` (a service), ``wanlab.ray.pool`` (Ray workers);
:mod:`wanlab.backends` opens the one a user names.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, TypeVar, runtime_checkable

from .errors import ParamError
from .inputs import AccelLike
from .params import Params

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from .accel.setting import Accel
    from .lora import SourcePolicy
    from .models.identity import ModelIdentity
    from .video import Video

StepCallback = Callable[[int, int], None]
_Self = TypeVar("_Self", bound="Closing")


@dataclass(frozen=True)
class Job:
    """One request for a backend to run.

    Attributes:
        params: the request, with its seed resolved (not -1).
        accel: its acceleration setting (None: the backend's default).
        on_step: called with (steps done, steps) after each denoising step.
        on_start: called when the job starts running.
        truncate: a prompt longer than the model reads: ``"warn"`` (cut, with a warning) or ``"error"``.
        affinity: jobs sharing one run on the same worker (an acceleration study's settings of one request).
        resume: for remote backends, a task id submitted earlier, polled instead of paying again.
        on_accepted: called with the task id of a remote submit before polling, so it is recorded.
        threads: the torch thread count to run with (None: that of the thread that starts the job; torch keeps
            the count per thread, and 1 vs 2 threads give other frames in the last bits).
        on_submit: called with the idempotency key of a remote submit before it is sent, so a submit whose
            answer is lost is known to a rerun.
        uncertain: that key, from an earlier run whose submit got no answer: a wanlab server is asked again
            under the same key and returns the task it accepted, if any; another service is not asked again
            unless ``retry_uncertain``.
        retry_uncertain: submit an uncertain request again to a service that cannot be asked (may pay twice).
        probes: what to record inside the model (:mod:`wanlab.probes`; validated into canonical form;
            backends that cannot record them refuse a job that asks).

    Raises:
        ParamError: ``params`` is not a :class:`~wanlab.Params` with a resolved seed.
        ProbeError: ``probes`` names an unknown probe or breaks a setting's rule.

    Example:
        >>> Job(Params(prompt="a fox", seed=1)).truncate
        'warn'
    """

    params: Params
    accel: AccelLike = None
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
    """Anything that turns requests into videos: what callers above the backend layer may use.

    ``identity`` and ``params``/``key_parts`` (requests and run keys), ``start(job) -> Future[Video]`` with at
    most ``max_in_flight`` jobs running at once (the runner keeps that many started), ``records_probes``
    (whether jobs may ask for :mod:`wanlab.probes`; a sweep refuses them up front where not), ``generate`` (one video,
    in this thread's time), the hosted API's task methods (``submit``, ``task_result``, ``wait``, ``cancel``:
    :class:`wanlab.tasks.TaskMethods` gives them to local backends), the LoRA source policy
    (``set_lora_policy``) and ``close``. :class:`BackendBase` gives what every backend shares.

    Example:
        >>> isinstance(wanlab.load("tiny"), Backend)  # doctest: +SKIP
        True
    """

    @property
    def identity(self) -> ModelIdentity:
        """The model and the settings that change frames (:class:`~wanlab.models.identity.ModelIdentity`)."""
        ...

    @property
    def max_in_flight(self) -> int:
        """Jobs worth starting at once (the sweep runner keeps that many started)."""
        ...

    @property
    def records_probes(self) -> bool:
        """Whether jobs may ask for :mod:`wanlab.probes` (a sweep refuses them up front where not)."""
        ...

    def params(self, params: Params | None = None, **fields: Any) -> Params:
        """The validated request: fields given are kept, the others come from the model's native settings."""
        ...

    def key_parts(self, params: Params, accel: AccelLike = None, loras: Any = None) -> dict[str, Any]:
        """What the run key of ``params`` under ``accel`` hashes (:func:`wanlab.keys.run_key`)."""
        ...

    def start(self, job: Job) -> Future[Video]:
        """Start ``job``; the Future holds its :class:`~wanlab.Video` or its error."""
        ...

    def generate(self, params: Params | None = None, *, accel: AccelLike = None, progress: bool | None = None,
                 on_step: StepCallback | None = None, truncate: str = "warn", probes: Any = None,
                 **fields: Any) -> Video:
        """Generate one video in this thread's time (validated, started, waited for)."""
        ...

    def submit(self, params: Params | None = None, *, accel: AccelLike = None, **fields: Any) -> str:
        """Queue a generation as a task and return its task id (the hosted API's ``submit``)."""
        ...

    def task_result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape, without waiting."""
        ...

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished (TaskTimeout after ``timeout`` s) and return its result."""
        ...

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task (TaskError once it has started, or where the service has no cancel)."""
        ...

    def set_lora_policy(self, policy: SourcePolicy | None) -> None:
        """Set which LoRA path forms jobs may use from now on (None: the library's default)."""
        ...

    def close(self) -> None:
        """Stop: running jobs finish, queued ones stay queued or are cancelled; resources are released."""
        ...


def is_backend(value: object) -> TypeGuard[Backend]:
    """Whether ``value`` offers the whole backend protocol (:class:`Backend`).

    Args:
        value: anything.

    Returns:
        True for a loaded pipeline, ``wanlab.connect``'s Remote, a Ray pool, ...; False for a model name.

    Example:
        >>> is_backend("toy")
        False
    """
    return isinstance(value, Backend)


def request(native: Mapping[str, Any], params: Params | None = None, **fields: Any) -> Params:
    """The one rule for a backend's request.

    Fields given (as keywords, or set explicitly in a ``Params``) are kept; every other field
    comes from the model's ``native`` settings, then from the hosted API's defaults.

    Args:
        native: the model's native settings (``identity.native``).
        params: a request whose explicitly set fields are kept.
        **fields: request fields, over those of ``params``.

    Returns:
        The validated :class:`~wanlab.Params`.

    Raises:
        ParamError: ``params`` is not a Params, a field is unknown or breaks its rule, or no prompt is given.

    Example:
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


class Closing(ABC):
    """Base: ``with thing:`` calls ``thing.close()`` at the end of the block (backends, connections).

    Example:
        >>> with wanlab.connect("http://127.0.0.1:8000") as remote:  # doctest: +SKIP
        ...     remote.generate(prompt="a red square moving right quickly")
    """

    @abstractmethod
    def close(self) -> None:
        """Release what this object holds; subclasses say what."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Keyer:
    """Requests and run keys of one model, from its :class:`~wanlab.models.identity.ModelIdentity`.

    The part of the protocol every backend shares. Subclasses set ``identity`` and ``accel`` (the default
    acceleration setting) and override the hooks where their rules differ: :meth:`check_accel` (which
    settings run) and :meth:`describe_loras` (how LoRA files are known in run keys).
    """

    identity: ModelIdentity
    accel: Accel | None = None
    _lora_policy: SourcePolicy | None = None

    @property
    def lora_policy(self) -> SourcePolicy | None:
        """Which LoRA path forms jobs may use (a :class:`wanlab.lora.SourcePolicy`; None: the library's default).

        Backends set it with ``set_lora_policy``.
        """
        return self._lora_policy

    def params(self, params: Params | None = None, **fields: Any) -> Params:
        """The validated request.

        Fields given (keywords, or set in ``params``) are kept, the others come from the model's native
        settings, then the hosted API's defaults (:func:`request`).

        Args:
            params: a request whose explicitly set fields are kept.
            **fields: request fields, over those of ``params``.

        Returns:
            The validated :class:`~wanlab.Params` (its seed may still be -1: ``.resolved()`` draws it).

        Raises:
            ParamError: a field that is unknown or breaks its rule.

        Example:
            >>> backend.params(prompt="a fox").steps  # doctest: +SKIP
            25
        """
        return request(self.identity.native, params, **fields)

    def key_parts(self, params: Params, accel: AccelLike = None, loras: Any = None) -> dict[str, Any]:
        """What the run key of ``params`` with ``accel`` is the hash of (:func:`wanlab.keys.key_parts`).

        Args:
            params: a request with a resolved seed.
            accel: the acceleration setting (None: this backend's default; :meth:`check_accel` decides).
            loras: descriptions of the LoRAs (path, scale, sha256), e.g. :func:`wanlab.keys.unreadable_loras`
                for a stand-in key; None: :meth:`describe_loras` reads them.

        Returns:
            The parts of the key (model, settings, request, accel, loras).

        Raises:
            LoRAError: a LoRA file that cannot be read (when ``loras`` is None).
            ParamError: an unresolved seed, or a setting this backend does not run.

        Example:
            >>> wanlab.keys.run_key(backend.key_parts(backend.params(prompt="a fox", seed=1)))  # doctest: +SKIP
        """
        from .keys import key_parts

        return key_parts(self.identity, params, self.check_accel(accel),
                         self.describe_loras(params) if loras is None else loras)

    def check_accel(self, accel: AccelLike) -> Any:
        """The acceleration setting a job asking for ``accel`` runs with.

        Args:
            accel: the setting asked for (None: this backend's default).

        Returns:
            The setting. Backends that run only some settings override this and refuse the others.

        Raises:
            ParamError: (in such backends) a setting this backend does not run.
        """
        return self.accel if accel is None else accel

    def describe_loras(self, params: Params) -> list[dict[str, Any]]:
        """Each LoRA of ``params`` as run keys hold it (path, scale, the file's sha256 under :attr:`lora_policy`).

        LoRAError for a file that cannot be read.
        """
        from .lora import describe

        return describe(params.loras, self.lora_policy)


class BackendBase(Keyer, Closing):
    """What every backend shares besides its requests and keys (:class:`Keyer`).

    The LoRA source policy, ``generate`` as one started job waited for, and ``with backend:`` closing
    it. A backend adds ``max_in_flight``, ``start``, ``close`` and the task methods.
    """

    #: Whether jobs may ask for probes (:mod:`wanlab.probes`); a backend that returns frames only says False.
    records_probes: bool = True

    def set_lora_policy(self, policy: SourcePolicy | None) -> None:
        """Set which LoRA path forms jobs may use from now on.

        None is the library's default: any local file, the hub cache, public https URLs.

        Args:
            policy: a :class:`wanlab.lora.SourcePolicy`, as the service sets it
                (:meth:`wanlab.lora.SourcePolicy.service`), or None.

        Example:
            >>> backend.set_lora_policy(wanlab.lora.SourcePolicy(urls=False))  # doctest: +SKIP
        """
        self._lora_policy = policy

    @abstractmethod
    def start(self, job: Job) -> Future[Video]:
        """Start ``job``; the Future holds its video or its error. Subclasses say where it runs."""

    def generate(self, params: Params | None = None, *, accel: AccelLike = None, progress: bool | None = None,
                 on_step: StepCallback | None = None, truncate: str = "warn", probes: Any = None,
                 **fields: Any) -> Video:
        """Generate one video: the request validated here, run as one :meth:`start` ed job, waited for.

        Args:
            params: a request; fields it leaves unset come from the model's native settings.
            accel: the acceleration setting (None: this backend's default).
            progress: draw a progress bar over the denoising steps.
            on_step: called with (steps done, steps) after each step.
            truncate: a prompt longer than the model reads: ``"warn"`` or ``"error"`` (refused).
            probes: what to record inside the model (:mod:`wanlab.probes`), where the backend can.
            **fields: request fields, over those of ``params``.

        Returns:
            The :class:`~wanlab.Video`.

        Raises:
            ParamError: a request field or setting that breaks its rule.

        Example:
            >>> backend.generate(prompt="a blue circle moving left slowly", seed=3)  # doctest: +SKIP
        """
        p = self.params(params, **fields).resolved()
        with step_progress(p.steps, progress, on_step) as step:
            job = Job(p, self.check_accel(accel), on_step=step, truncate=truncate, probes=probes)
            return self.start(job).result()


@contextmanager
def step_progress(total: int, progress: bool | None, on_step: StepCallback | None = None,
                  desc: str = "generate") -> Iterator[StepCallback | None]:
    """An ``on_step`` that draws a tqdm bar over ``total`` denoising steps when ``progress`` is true.

    It calls ``on_step`` too; the bar closes when the block ends. Without ``progress``: ``on_step`` itself.

    Args:
        total: the denoising steps.
        progress: draw the bar.
        on_step: the caller's own callback (None: none).
        desc: the bar's label.

    Yields:
        The callback to give a job (None when there is nothing to call).

    Example:
        >>> with step_progress(3, False) as step:
        ...     step is None
        True
    """
    if not progress:
        yield on_step
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def step(done: int, steps: int) -> None:
        bar.update(done - bar.n)
        if on_step is not None:
            on_step(done, steps)

    try:
        yield step
    finally:
        bar.close()


class IdentityBackend(Keyer):
    """A model known by its :class:`~wanlab.models.identity.ModelIdentity` alone.

    Requests and run keys, no generation. What a sweep's table, its dry run and record checks need without
    loading weights.

    Args:
        identity: the model's identity (:func:`wanlab.identity`).
        accel: the default acceleration setting of its keys.

    Example:
        >>> from wanlab.models.identity import identity
        >>> from wanlab.keys import run_key
        >>> keyer = IdentityBackend(identity("tiny", device="cpu"))
        >>> request = keyer.params(prompt="a fox", seed=1)  # the model's native size filled in
        >>> request.width, request.num_frames, len(run_key(keyer.key_parts(request)))
        (128, 33, 16)
    """

    def __init__(self, identity: ModelIdentity, accel: AccelLike = None) -> None:
        from .accel.setting import Accel

        self.identity = identity
        self.accel = Accel.coerce(accel)

    def __repr__(self) -> str:
        return f"IdentityBackend({self.identity.model_id!r})"
