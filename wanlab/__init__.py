"""wanlab: study the Wan 2.1 text-to-video model from notebooks and sweep scripts.

The public API is short: ``Params`` (the validated request), ``load`` (a pipeline), ``Video``
(the result), ``Store`` and ``Sweep`` (many runs), ``metrics``, ``plots``, ``widgets`` and ``show``.
Heavy libraries (torch, diffusers, cv2, ipywidgets) load on first use, so ``import wanlab`` is fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import LoadError, LoRAError, ParamError, TaskError, WanlabError
from .params import LoRA, Params

__version__ = "0.1.0"

_LAZY = {
    "load": ("pipeline", "load"),
    "Pipeline": ("pipeline", "Pipeline"),
    "Video": ("video", "Video"),
    "Store": ("store", "Store"),
    "Sweep": ("sweep", "Sweep"),
    "SweepResult": ("sweep", "SweepResult"),
    "verify": ("reproduce", "verify"),
    "show": ("player", "show"),
}
_SUBMODULES = {"metrics", "plots", "widgets", "accel", "toy"}

__all__ = ["Params", "LoRA", "ParamError", "LoadError", "LoRAError", "TaskError", "WanlabError",
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
