"""Sweeps: many validated requests from one definition, run into a store, resumable and shardable.

:mod:`~wanlab.sweep.definition` (the :class:`Sweep` and its axes), :mod:`~wanlab.sweep.toml` (sweep
files), :mod:`~wanlab.sweep.runner` (running on a backend; one run's phases in
:mod:`~wanlab.sweep.execution`), :mod:`~wanlab.sweep.result` (the table, :class:`SweepResult`),
:mod:`~wanlab.sweep.values` (seeds, labels, shards).
"""
from __future__ import annotations

from .definition import Sweep
from .result import SweepResult
from .values import ACCEL, check_shard, draw_seeds, format_value

__all__ = ["Sweep", "SweepResult", "ACCEL", "check_shard", "draw_seeds", "format_value"]
