"""wanlab: study the Wan 2.1 text-to-video model from notebooks and sweep scripts.

The public API is short: ``Params`` (the validated request), ``load`` (a local pipeline), ``connect``
(a service with the hosted API's contract), ``open_backend`` (either, or a Ray pool, from what a user
names), ``identity`` (which model, without loading it), ``Video``
(the result), ``Store`` and ``Sweep`` (many runs), ``verify``, ``metrics``, ``plots``, ``widgets``,
``show``, and every :class:`WanlabError`. Every way a request becomes a video is a backend
(:mod:`wanlab.backend`). Heavy libraries (torch, diffusers, cv2, ipywidgets) load on first use.

Example:
    >>> import wanlab
    >>> pipe = wanlab.load("toy")  # doctest: +SKIP
    >>> video = pipe.generate(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
    >>> wanlab.show(video)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import lazy
from .errors import (
    AuthError,
    DownloadError,
    EvaluatorMissing,
    GenerationError,
    LoadError,
    LoRAError,
    LoRAWarning,
    ModelMismatchWarning,
    ParamError,
    ProbeError,
    PromptWarning,
    QueueClosed,
    QueueFull,
    RunNotFoundError,
    ServiceError,
    SubmitUncertain,
    TaskError,
    TaskTimeout,
    TrainedSizeWarning,
    TruncationError,
    UnsafeURLError,
    WanlabError,
)
from .params import LoRA, Params
from .taskstatus import TaskStatus

if TYPE_CHECKING:  # pragma: no cover - what editors and type checkers see of the lazy names
    from . import accel, keys, metrics, plots, probes, ray, stats, toy, widgets
    from .backend import Backend, Job
    from .backends import open_backend
    from .client import connect
    from .models.identity import ModelIdentity, identity
    from .pipeline import Pipeline, load
    from .player import show
    from .reproduce import verify
    from .store import Store
    from .sweep import Sweep, SweepResult
    from .video import Video

__version__ = "0.2.0"

_LAZY = {
    "load": "pipeline",
    "connect": "client",
    "identity": "models.identity",
    "ModelIdentity": "models.identity",
    "Pipeline": "pipeline",
    "Backend": "backend",
    "Job": "backend",
    "open_backend": "backends",
    "Video": "video",
    "Store": "store",
    "Sweep": "sweep",
    "SweepResult": "sweep",
    "verify": "reproduce",
    "show": "player",
}
_SUBMODULES = {"metrics", "plots", "widgets", "accel", "toy", "keys", "stats", "ray", "probes"}

#: wanlab's exceptions (every one a :class:`WanlabError`) and warnings, exported flat.
_ERRORS = ["WanlabError", "ParamError", "TruncationError", "ProbeError", "LoadError", "LoRAError", "GenerationError",
           "TaskError", "TaskTimeout", "QueueFull", "QueueClosed", "ServiceError", "AuthError", "SubmitUncertain",
           "DownloadError", "UnsafeURLError", "RunNotFoundError", "EvaluatorMissing"]
_WARNINGS = ["PromptWarning", "TrainedSizeWarning", "LoRAWarning", "ModelMismatchWarning"]

__all__ = ["Params", "LoRA", "TaskStatus", *_ERRORS, *_WARNINGS, "__version__", *_LAZY, *sorted(_SUBMODULES)]

__getattr__, __dir__ = lazy.attach(__name__, _LAZY, _SUBMODULES)
