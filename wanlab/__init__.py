"""wanlab: study the Wan 2.1 text-to-video model from notebooks and sweep scripts.

The public API is short: ``Params`` (the validated request), ``load`` (a local pipeline),
``connect`` (a service with the hosted API's contract), ``identity`` (which model, without loading
it), ``Video`` (the result), ``Store`` and ``Sweep`` (many runs), ``verify``, ``metrics``, ``plots``,
``widgets`` and ``show``. Every way a request
becomes a video is a backend (:mod:`wanlab.backend`). Heavy libraries (torch, diffusers, cv2,
ipywidgets) load on first use, so ``import wanlab`` is fast.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import GenerationError, LoadError, LoRAError, ParamError, ProbeError, TaskError, WanlabError
from .params import LoRA, Params

if TYPE_CHECKING:  # pragma: no cover - what editors and type checkers see of the lazy names
    from . import accel, keys, metrics, plots, probes, ray, stats, toy, widgets
    from .backend import Backend, Job
    from .client import connect
    from .models.identity import ModelIdentity, identity
    from .pipeline import Pipeline, load
    from .player import show
    from .store import Store
    from .sweep import Sweep, SweepResult
    from .reproduce import verify
    from .video import Video

__version__ = "0.2.0"

_LAZY = {
    "load": ("pipeline", "load"),
    "connect": ("client", "connect"),
    "identity": ("models.identity", "identity"),
    "ModelIdentity": ("models.identity", "ModelIdentity"),
    "Pipeline": ("pipeline", "Pipeline"),
    "Backend": ("backend", "Backend"),
    "Job": ("backend", "Job"),
    "Video": ("video", "Video"),
    "Store": ("store", "Store"),
    "Sweep": ("sweep", "Sweep"),
    "SweepResult": ("sweep", "SweepResult"),
    "verify": ("reproduce", "verify"),
    "show": ("player", "show"),
}
_SUBMODULES = {"metrics", "plots", "widgets", "accel", "toy", "keys", "stats", "ray", "probes"}

__all__ = ["Params", "LoRA", "ParamError", "ProbeError", "LoadError", "LoRAError", "TaskError", "GenerationError",
           "WanlabError",
           "__version__", *_LAZY, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'wanlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
