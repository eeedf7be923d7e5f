"""Acceleration: cache hooks, ``torch.compile`` and attention backends as validated, recorded settings,
and the study of what each costs in fidelity.

diffusers ships the mechanisms; wanlab makes each one an :class:`Accel` setting that is part of a
run's key and record, set per pipeline (``wanlab.load(..., accel=...)``) or per call
(``pipe.generate(..., accel=...)``), applied around the denoising loop only and always undone:

- ``cache``: ``"none"`` (exact), ``"first_block"``, ``"mag"`` (MagCache, calibrated on the model),
  ``"taylorseer"``, ``"pab"`` (one cache per guidance branch) or ``"seacache"``, with
  ``cache_params`` validated per method (:data:`METHODS`); ``"faster"`` is refused with its reason.
- ``compile``: ``"off"``, ``"transformer"`` or ``"blocks"`` (regional compilation).
- ``attention_backend``: ``None`` or a diffusers attention backend name.

:func:`study` runs the exact baseline and each setting on the same requests and returns speedup
and fidelity; :func:`summarize` aggregates it per setting and :func:`plot_study` draws speed
against PSNR with the Pareto front marked. The modules: :mod:`~wanlab.accel.setting` (the value and
presets), :mod:`~wanlab.accel.methods` (one spec per method), :mod:`~wanlab.accel.apply` (around a
call), :mod:`~wanlab.accel.pab`, :mod:`~wanlab.accel.magcache` (MagCache), :mod:`~wanlab.accel.tradeoff`.
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
