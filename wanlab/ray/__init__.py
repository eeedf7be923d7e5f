"""Sweeps, studies and the task queue on many GPUs: a pool of Ray actors as a backend.

``wanlab.ray.pool(model, workers=8)`` starts one Ray actor per worker, each loading the model once, and
returns a backend usable wherever a local pipeline is: ``sweep.run(pool, store)``, ``pool.submit`` /
``task_result``, ``wanlab.accel.study(pool, ...)``. Videos come back to the driver, which alone writes
the store (no shared filesystem needed). Ray is optional: ``pip install 'wanlab[ray]'``.
"""
from __future__ import annotations

from .raypool import RayPool, pool

__all__ = ["pool", "RayPool"]
