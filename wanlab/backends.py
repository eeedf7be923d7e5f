"""Opening the backend a user names.

A model (loaded here, or ``workers`` copies of it), a service with the hosted API's contract (``remote``) or
a pool of Ray workers (``ray``): :func:`open_backend`; and the command line's flags that name one
(``--remote``, ``--ray``, ``--workers``), defined once for ``sweep``, ``generate`` and ``serve``:
:func:`add_backend_args`, :func:`open_from_args`.
"""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from .errors import ParamError
from .values import check_int

if TYPE_CHECKING:  # pragma: no cover
    from .backend import Backend

#: The most local copies of a model ``workers`` may ask for (a Ray pool's limit is its own).
MAX_LOCAL_WORKERS = 64
RAY_HELP = ("run on a pool of Ray workers, one GPU each (CPU workers where the cluster has no GPU; wanlab[ray]): "
            "ADDRESS is the cluster's head (HOST:PORT, ray://HOST:PORT or auto); without it, $RAY_ADDRESS or a new "
            "Ray on this machine. The store stays on this machine")
WORKERS_HELP = "with --ray: workers to start (default: as many as the cluster holds)"
LOCAL_WORKERS_HELP = ("copies of the model generating at once (one per GPU when there are several; default 1; with "
                      "--ray: as many as the cluster holds)")


def _namer(flags: bool) -> Any:
    """How errors name an option: ``--remote-kind`` on the command line (``flags``), else ``remote_kind``."""
    return (lambda name: f"--{name.replace('_', '-')}") if flags else (lambda name: name)


def check_choice(*, remote: str | None = None, ray: str | None = None, workers: int | None = None,
                 device: str | None = None, dtype: str | None = None, local_workers: bool = True,
                 flags: bool = False) -> None:
    """Refuse a choice of backend that contradicts itself, before anything loads or connects.

    Args:
        remote: a service's base URL.
        ray: a Ray cluster's address (``""``: ``$RAY_ADDRESS`` or a Ray on this machine).
        workers: Ray workers to start, or (without ``ray``, where ``local_workers``) copies of the model.
        device: where a local model runs.
        dtype: the local model's dtype.
        local_workers: whether ``workers`` without ``ray`` means local copies (``wanlab serve``) or is refused.
        flags: name options as command-line flags (``--ray``) in errors, else as keywords (``ray``).

    Raises:
        ParamError: naming the option, the rule and the value.

    Example:
        >>> check_choice(ray="", workers=3)  # agrees: nothing to say
        >>> check_choice(ray="", device="cpu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: device: must be left out with ray (each worker runs on the GPU Ray gives it, ...
    """
    name = _namer(flags)
    if workers is not None and ray is None and (remote or not local_workers):
        raise ParamError(name("workers"), f"used with {name('ray')}", workers)
    if ray is not None and remote:
        raise ParamError(name("ray"), f"left out with {name('remote')} (the service runs the tasks)",
                         ray or "(no address)")
    for option, value in (("device", device), ("dtype", dtype)):
        if remote and value:
            raise ParamError(name(option), f"left out with {name('remote')} (the service runs its own model its own "
                             "way)", value)
    if ray is not None and device is not None:
        raise ParamError(name("device"), f"left out with {name('ray')} (each worker runs on the GPU Ray gives it, or "
                         "the CPU)", device)
    if ray is None and not remote and workers is not None:
        check_int(name("workers"), workers, 1, MAX_LOCAL_WORKERS)


def open_backend(model: str | os.PathLike[str] | None = None, *, remote: str | None = None, ray: str | None = None,
                 workers: int | None = None, device: str | None = None, dtype: str | None = None,
                 api_key: Any = None, remote_kind: str = "auto", max_in_flight: int | None = None,
                 progress: bool | None = False, local_workers: bool = True, flags: bool = False,
                 model_named_by: str | None = None) -> Backend:
    """The backend a user names.

    A service (``remote``), a pool of Ray workers (``ray``), ``workers`` local copies of ``model``, or
    ``model`` loaded once.

    Args:
        model: a built-in model, a local diffusers folder or a hub id (None: the default model, ``toy``); with
            ``remote``, the model the service must serve (None: whichever it serves).
        remote: a service's base URL (:func:`wanlab.connect`).
        ray: a Ray cluster's address for :func:`wanlab.ray.pool` (``""``: ``$RAY_ADDRESS``, else a Ray on this
            machine).
        workers: with ``ray``, workers to start (None: as many as the cluster holds); without, copies of the
            model in this process (:class:`wanlab.workers.LocalWorkers`; None or 1: one pipeline).
        device: where a local model runs (None: CUDA if present).
        dtype: the model's dtype (None: bfloat16 on CUDA, float32 on CPU).
        api_key: the service's API key (a string or :class:`wanlab.client.credentials.ApiKey`; None:
            ``$WANLAB_API_KEY``, else ``$NOVITA_API_KEY``, else none).
        remote_kind: ``"auto"`` (ask the service's ``/health``), ``"wanlab"`` or ``"api"``.
        max_in_flight: with ``remote``, tasks at the service at once (None: its queue limit, else 4).
        progress: loading bars of a local model (:func:`wanlab.load`'s ``progress``).
        local_workers: whether ``workers`` without ``ray`` means local copies (else it is refused).
        flags: name options in errors as command-line flags (``--ray``), else as keywords.
        model_named_by: what named ``model`` in an error when the service serves another (default: the option).

    Returns:
        A backend (:class:`wanlab.backend.Backend`); close it when done (``with open_backend(...) as b:``).

    Raises:
        ParamError: a contradictory choice (e.g. ``ray`` with ``remote``), or a service serving another model.
        LoadError: a model that cannot be loaded.
        ServiceError: a service that cannot be reached.

    Example:
        >>> backend = open_backend("toy")  # doctest: +SKIP
        >>> backend = open_backend(ray="", workers=4)  # doctest: +SKIP
        >>> with open_backend(remote="http://127.0.0.1:8000") as backend:  # doctest: +SKIP
        ...     video = backend.generate(prompt="a red square moving right quickly", seed=1)
    """
    from .models.registry import DEFAULT_MODEL
    from .pipeline import load

    check_choice(remote=remote, ray=ray, workers=workers, device=device, dtype=dtype, local_workers=local_workers,
                 flags=flags)
    name = _namer(flags)
    if remote:
        from .client import connect

        service = connect(remote, api_key, kind=remote_kind, max_in_flight=max_in_flight)
        served = service.identity.model_id
        if model and os.fspath(model) != served:
            service.close()
            raise ParamError(model_named_by or name("model"), f"the model {remote} serves ({served}), or left out",
                             os.fspath(model))
        return service
    model = model or DEFAULT_MODEL
    if ray is not None:
        from .ray import pool

        return pool(model, workers=workers, address=ray or None, dtype=dtype)
    if workers is None or workers == 1:
        return load(model, device=device, dtype=dtype, progress=progress)
    from .workers import LocalWorkers, devices

    return LocalWorkers([load(model, device=d, dtype=dtype, progress=progress) for d in devices(workers, device)])


def add_backend_args(parser: argparse.ArgumentParser, *, remote: bool = True, ray: bool = True,
                     local_workers: bool = False) -> None:
    """Add the options that name a backend to ``parser``.

    ``--remote URL`` with ``--api-key-file`` and ``--remote-kind``, and ``--ray [ADDRESS]`` with ``--workers N``
    (with ``local_workers``, ``--workers`` alone means copies of the model here). :func:`open_from_args` opens
    what they name.

    Args:
        parser: the subcommand's parser.
        remote: add the ``--remote`` options.
        ray: add ``--ray`` and ``--workers``.
        local_workers: ``--workers`` without ``--ray`` is local copies (``wanlab serve``), else refused.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_backend_args(parser, remote=False)
        >>> args = parser.parse_args(["--ray", "--workers", "4"])
        >>> args.ray, args.workers
        ('', 4)
    """
    if remote:
        parser.add_argument("--remote", default=None, metavar="URL",
                            help="run on a service with the hosted API's contract instead of a local model: a `wanlab "
                                 "serve` box (exact frames, the same run keys as local runs) or the hosted API (lossy "
                                 "mp4 downloads, the API's sizes; every task is billed)")
        parser.add_argument("--api-key-file", default=None, metavar="FILE",
                            help="file whose first line is the service's API key (default: $WANLAB_API_KEY, else "
                                 "$NOVITA_API_KEY; none for a server started with --no-auth)")
        parser.add_argument("--remote-kind", default="auto", choices=("auto", "wanlab", "api"),
                            help="what --remote is: auto (ask its /health), wanlab or api (treat it as the hosted API)")
    if ray:
        parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help=RAY_HELP)
        parser.add_argument("--workers", type=int, default=None, metavar="N",
                            help=LOCAL_WORKERS_HELP if local_workers else WORKERS_HELP)
    parser.set_defaults(local_workers=local_workers)


def check_args(args: argparse.Namespace) -> None:
    """Refuse contradictory backend options (:func:`check_choice`, errors naming the flags) before anything loads.

    What :func:`add_backend_args` added, with ``--device`` and ``--dtype`` where the command has them.

    Args:
        args: the parsed command line.

    Raises:
        ParamError: naming the flag, the rule and the value.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_backend_args(parser)
        >>> check_args(parser.parse_args(["--remote", "http://127.0.0.1:8000", "--ray"]))
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: --ray: must be left out with --remote (the service runs the tasks); got '(no address)'
    """
    check_choice(remote=getattr(args, "remote", None), ray=getattr(args, "ray", None),
                 workers=getattr(args, "workers", None), device=getattr(args, "device", None),
                 dtype=getattr(args, "dtype", None), local_workers=getattr(args, "local_workers", False), flags=True)


def open_from_args(args: argparse.Namespace, model: str | os.PathLike[str] | None = None, *,
                   model_named_by: str | None = None, max_in_flight: int | None = None,
                   progress: bool | None = False) -> Backend:
    """:func:`open_backend` for the options :func:`add_backend_args` added, errors naming the flags.

    The API key is read from ``--api-key-file``, else the environment.

    Args:
        args: the parsed command line.
        model: the model named (``--model``, or a sweep file's).
        model_named_by: what named ``model``, for the error when the service serves another.
        max_in_flight: with ``--remote``, tasks at the service at once.
        progress: loading bars of a local model.

    Returns:
        The backend; the caller closes it.

    Raises:
        ParamError: contradictory options, or a service serving another model.
        LoadError: a model that cannot be loaded.
        ServiceError: a service that cannot be reached.

    Example:
        >>> backend = open_from_args(parser.parse_args(["--remote", "http://127.0.0.1:8000"]))  # doctest: +SKIP
    """
    check_args(args)
    key = None
    if getattr(args, "remote", None) and args.api_key_file:
        from .client.credentials import read_key_file

        key = read_key_file(args.api_key_file)
    return open_backend(model, remote=getattr(args, "remote", None), ray=getattr(args, "ray", None),
                        workers=getattr(args, "workers", None), device=getattr(args, "device", None),
                        dtype=getattr(args, "dtype", None), api_key=key,
                        remote_kind=getattr(args, "remote_kind", "auto"), max_in_flight=max_in_flight,
                        progress=progress, local_workers=getattr(args, "local_workers", False), flags=True,
                        model_named_by=model_named_by)
