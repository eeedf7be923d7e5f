"""Acceleration: cache hooks, ``torch.compile`` and attention backends as validated, recorded settings.

An :class:`Accel` (``cache`` of :data:`CACHE_METHODS`, ``compile``, ``attention_backend``; named ones in
:data:`PRESETS`) is part of a run's key and record, set per pipeline (``wanlab.load(..., accel=...)``)
or per call (``pipe.generate(..., accel=...)``), applied around the denoising loop only and always
undone (:func:`applied`). :func:`study`, :func:`summarize` and :func:`plot_study` measure what each
setting costs in fidelity. Modules: ``setting``, ``methods``, ``apply``, ``pab``, ``magcache``, ``tradeoff``.

Example:
    >>> from wanlab.accel import Accel
    >>> Accel.coerce("fbc").cache, "mag" in PRESETS
    ('first_block', True)
    >>> video = pipe.generate(prompt="a red square moving right quickly", accel="fbc")  # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy
from .methods import CALIBRATION_PROMPT, CALIBRATION_SEED, METHODS, TAYLORSEER_MODULES, CacheMethod
from .setting import ATTENTION_BACKENDS, CACHE_METHODS, COMPILE_MODES, CPU_ATTENTION_BACKENDS, PRESETS, Accel

if TYPE_CHECKING:  # pragma: no cover
    from .apply import Applied, CallCounter, applied
    from .magcache import cache_dir, calibrate, calibration_key, clear_calibrations
    from .tradeoff import fidelity, pareto_mask, plot_study, rel_l2, study, study_row, summarize

_LAZY = {
    "applied": "apply", "Applied": "apply", "CallCounter": "apply", "WORK_UNITS": "apply",
    "calibrate": "magcache", "calibration_key": "magcache", "clear_calibrations": "magcache",
    "cache_dir": "magcache",
    "study": "tradeoff", "summarize": "tradeoff", "plot_study": "tradeoff", "pareto_mask": "tradeoff",
    "rel_l2": "tradeoff",
    "fidelity": "tradeoff", "study_row": "tradeoff", "STAT_COLUMNS": "tradeoff", "pooled_psnr": "tradeoff",
}

__all__ = ["Accel", "PRESETS", "CACHE_METHODS", "METHODS", "CacheMethod", "COMPILE_MODES", "ATTENTION_BACKENDS",
           "CPU_ATTENTION_BACKENDS", "TAYLORSEER_MODULES", "CALIBRATION_PROMPT", "CALIBRATION_SEED", *_LAZY]
__getattr__, __dir__ = lazy.attach(__name__, _LAZY)
