"""Running a sweep into a store on any backend: resumable, failure tolerant, shardable.

:func:`run` is the engine behind ``Sweep.run`` (its docstring says how a run resumes, fails, shards and
times acceleration studies); :func:`result` reads the table without running. The phases of one run
live in :mod:`wanlab.sweep.execution`.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from ..backend import is_backend
from ..errors import ParamError
from ..inputs import BackendLike, StoreLike
from ..keys import run_key
from ..metrics.suite import check_metrics
from ..quiet import quiet
from ..values import check_bool, check_choice, check_int
from .execution import RunOptions, SweepRun, point_keys
from .values import check_shard

if TYPE_CHECKING:  # pragma: no cover
    from ..backend import Backend
    from ..store import Store
    from .definition import Sweep
    from .result import SweepResult


def backend_for(sweep: Sweep, backend: BackendLike) -> Backend:
    """The backend to run on: the one given, or the model it names (or the sweep's own) opened.

    Args:
        sweep: the sweep.
        backend: a backend, a model name, or None (the sweep's ``model``, else the default model).

    Returns:
        The backend (one opened here is the caller's to close).

    Raises:
        ParamError: ``backend`` is neither a backend, a model name nor None.
        LoadError: the named model cannot be loaded.
    """
    from ..backends import open_backend

    if is_backend(backend):
        return backend
    if backend is None or isinstance(backend, (str, os.PathLike)):
        return open_backend(backend or sweep.model)
    raise ParamError("backend", "a wanlab backend (wanlab.load, wanlab.connect, wanlab.ray.pool), a model name "
                     "or None (the sweep's model)", backend)


def names_model(name: str, ident: Any) -> bool:
    """Whether the model ``name`` (a sweep's ``model``) is the one ``ident`` identifies.

    The same name, the same folder, or the same weights fingerprint (a name wanlab cannot identify matches
    nothing else).

    Args:
        name: the model the sweep names.
        ident: the backend's :class:`~wanlab.models.identity.ModelIdentity`.

    Returns:
        Whether they are the same model.

    Example:
        >>> from wanlab.models.identity import identity
        >>> tiny = identity("tiny", device="cpu")
        >>> names_model("tiny", tiny), names_model("no-such-model", tiny)
        (True, False)
    """
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


def check_model(sweep: Sweep, backend: Any) -> None:
    """Warn when the sweep names a model other than the backend it runs on.

    Its runs, keys and table are the backend's, and a study written for one model says little about another
    (``tiny``'s videos are noise).

    Args:
        sweep: the sweep.
        backend: the backend it runs on.
    """
    from ..errors import ModelMismatchWarning, warn

    ident = getattr(backend, "identity", None)
    if not sweep.model or ident is None or names_model(sweep.model, ident):
        return
    warn(f"sweep {sweep.name or ''}: its file names model {sweep.model!r}, but it runs on {ident.model_id!r} "
         f"(the backend given), so these runs are {ident.model_id!r}'s; run it on the model it names, or say "
         f"which model the study is for with sweep.replace(model=...) (wanlab sweep --model)", ModelMismatchWarning)


def keyer_for(sweep: Sweep, model: Any) -> Any:
    """What computes the sweep's keys: a backend, or a model known by its identity (nothing loaded).

    Args:
        sweep: the sweep.
        model: a backend, a :class:`~wanlab.models.identity.ModelIdentity`, a model name, or None (the
            sweep's model, else the default model).

    Returns:
        The backend, or an :class:`~wanlab.backend.IdentityBackend`.

    Raises:
        ParamError: ``model`` is none of those.
        LoadError: a named model cannot be found.
    """
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


def store_for(sweep: Sweep, store: Any) -> Store:
    """The sweep's store: ``store`` itself, its folder opened, or the sweep's default store for None.

    Args:
        sweep: the sweep.
        store: a :class:`~wanlab.Store`, a folder, or None (``runs/<name>``).

    Returns:
        The :class:`~wanlab.Store`.

    Raises:
        ParamError: ``store`` is none of those.
    """
    from ..store import Store

    if isinstance(store, Store):
        return store
    if store is None:
        store = sweep.default_store()
    if not isinstance(store, (str, os.PathLike)):
        raise ParamError("store", "a wanlab.Store, a folder path or None (runs/NAME)", store)
    return Store(store)


def result(sweep: Sweep, model: Any = None, store: Any = None) -> SweepResult:
    """The sweep's table as the store holds it now (nothing runs, nothing loads).

    The engine behind :meth:`Sweep.result <wanlab.sweep.definition.Sweep.result>`.

    Args:
        sweep: the sweep.
        model: as :func:`keyer_for`.
        store: as :func:`store_for`.

    Returns:
        The :class:`~wanlab.sweep.result.SweepResult`.
    """
    from .result import SweepResult

    keyer = keyer_for(sweep, model)
    store_ = store_for(sweep, store)
    points = sweep.points(keyer)
    parts, _ = point_keys(sweep, keyer, points)
    return SweepResult(sweep, store_, keyer, points=points, keys=[run_key(p) for p in parts])


def run(sweep: Sweep, backend: BackendLike = None, store: StoreLike | None = None, *, metrics: Any = True,
        progress: bool = True,
        max_failures: int | None = None, shard: Any = None, retry_failed: bool = True,
        max_in_flight: int | None = None, truncate: str = "warn", retry_uncertain: bool = False,
        probes: Any = None) -> SweepResult:
    """Run the points of ``sweep`` not yet in ``store`` on ``backend``; the whole sweep's table.

    The engine behind :meth:`Sweep.run <wanlab.sweep.definition.Sweep.run>`, which documents the
    arguments. In named phases: the options are checked, the backend opened, the run planned (which
    points, under which keys), then each point started and each finished job settled (its video
    stored, then measured), and the table returned.

    Points already in the store (same run key) are skipped, so a killed sweep resumes where it
    stopped; a failing point is recorded with its error and the sweep goes on (``max_failures=K``
    stops it gracefully after K failures: the rest stay pending, ``result.stopped`` says so and a
    warning is issued). Up to ``max_in_flight`` points run at once (default: the backend's own); each
    video is stored as its job completes, then measured: a metrics failure is recorded on the run and
    never loses it. Work a remote service accepted is recorded before waiting for it (``pending/``),
    so a sweep killed meanwhile polls that task again instead of paying twice; a submit is recorded
    there before it is sent (its idempotency key), so one whose answer was lost is not paid again by
    a rerun (a wanlab server is asked under the same key; another service is not asked unless
    ``retry_uncertain=True``). ``shard=(i, n)`` runs points ``i, i+n, ...`` so n processes (or
    machines sharing a folder) split a sweep with no coordinator. Library warnings are silenced while
    it runs (wanlab's own show). A sweep over ``accel`` (an acceleration study) times its runs: one
    job at a time, nothing stored meanwhile, the first request run once untimed and each compiled
    setting once per size.

    Args:
        sweep: The sweep to run.
        backend: A backend, a model name, or None (the sweep's model).
        store: A :class:`wanlab.Store`, its folder, or None (:meth:`Sweep.default_store`).
        metrics: As :meth:`Sweep.run <wanlab.sweep.definition.Sweep.run>`, like the rest.
        progress: Show a bar over the runs to do.
        max_failures: Failures in this call after which the sweep stops gracefully.
        shard: ``(i, n)`` or ``"i/n"``: run only this shard's points.
        retry_failed: Run points whose earlier attempt failed again.
        max_in_flight: Points running at once (None: the backend's).
        truncate: ``"warn"`` or ``"error"`` for prompts longer than the model reads.
        retry_uncertain: Submit again a point whose earlier submit got no answer.
        probes: What every run records inside the model (None: the sweep's own).

    Returns:
        The whole sweep's :class:`~wanlab.sweep.result.SweepResult`.

    Raises:
        ParamError: An option, the backend or the store is not one this accepts.
    """
    options = _check_options(sweep, metrics=metrics, progress=progress, max_failures=max_failures, shard=shard,
                             retry_failed=retry_failed, max_in_flight=max_in_flight, truncate=truncate,
                             retry_uncertain=retry_uncertain, probes=probes)
    backend_ = _open_backend(sweep, backend, options.probes)
    outcome = SweepRun(sweep, backend_, store_for(sweep, store), options).execute()
    if outcome.stopped:
        warnings.warn(f"sweep {sweep.name or ''}: {outcome.stopped}; the points not reached are pending", stacklevel=3)
    return outcome


def _check_options(sweep: Sweep, *, metrics: Any, progress: bool, max_failures: int | None, shard: Any,
                   retry_failed: bool, max_in_flight: int | None, truncate: str, retry_uncertain: bool,
                   probes: Any) -> RunOptions:
    """:func:`run`'s options checked (a bad one raises :class:`~wanlab.ParamError` naming it), defaults filled in."""
    from ..probes.spec import normalize

    check_int("max_failures", max_failures, 1, optional=True, rule="None or an integer >= 1")
    check_int("max_in_flight", max_in_flight, 1, 1024, optional=True)
    for flag, value in (("progress", progress), ("retry_failed", retry_failed), ("retry_uncertain", retry_uncertain)):
        check_bool(flag, value)
    names = check_metrics(sweep.metrics if metrics is True and sweep.metrics is not None else metrics)
    check_choice("truncate", truncate, ("warn", "error"))
    return RunOptions(metrics=names, probes=normalize(probes) if probes is not None else sweep.probes,
                      shard=check_shard(shard) if shard is not None else (0, 1), progress=progress,
                      max_failures=max_failures, retry_failed=retry_failed, max_in_flight=max_in_flight,
                      truncate=truncate, retry_uncertain=retry_uncertain)


def _open_backend(sweep: Sweep, backend: Any, probes: Any) -> Any:
    """The backend the sweep runs on, checked against the model the sweep names and the probes it records.

    Opened by :func:`backend_for`, library notices silenced.
    """
    with quiet():
        backend_ = backend_for(sweep, backend)
    check_model(sweep, backend_)
    if probes and not backend_.records_probes:
        raise ParamError("probes", f"left out with {type(backend_).__name__} (it returns frames only; record probes "
                         "with a local pipeline or a Ray pool)", list(probes))
    return backend_
