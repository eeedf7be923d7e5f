"""The run store: runs on local disk, one folder each, written atomically, indexed for fast tables.

:mod:`~wanlab.store.store` (the :class:`Store` and its layout), :mod:`~wanlab.store.run` (one
:class:`Run`), :mod:`~wanlab.store.index` (the SQLite cache behind ``Store.df``). Run keys come from
:mod:`wanlab.keys`; task files belong to :mod:`wanlab.tasks`.
"""
from __future__ import annotations

from .index import CORE_COLUMNS, accel_label, loras_text
from .run import LATENTS_NAME, METRICS_NAME, Run, RunNotFoundError
from .store import Store, default_store_path, find_run

__all__ = ["Store", "Run", "RunNotFoundError", "default_store_path", "find_run", "loras_text", "accel_label",
           "CORE_COLUMNS", "METRICS_NAME", "LATENTS_NAME"]
