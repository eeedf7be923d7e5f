"""Sweeps, studies and the task queue on many GPUs: a pool of Ray actors as a backend.

``wanlab.ray.pool(model, workers=8)`` starts one Ray actor per worker (one GPU each, or CPU actors
with a fixed torch thread count), each loading the model once, and returns a backend usable
wherever a local pipeline is: ``sweep.run(pool, store)``, ``pool.submit``/``task_result``
(a :class:`~wanlab.tasks.TaskQueue` over the pool), ``wanlab.accel.study(pool, ...)``.

Where runs are written: every video comes back once to the driver (the process that made the
pool) through Ray's object store, shared memory on one machine, and the driver writes the run
folders and the SQLite index of its store, on its own disk. Workers never touch the store, so no
shared filesystem is needed for it and the index has one writer. Frames travel once, worker to
driver, and nowhere else; only the request goes out. Every node needs wanlab (the same version)
and the model (same files: a worker that loads other weights is refused), and LoRA files under
the same paths.

Ray is an optional dependency: ``pip install 'wanlab[ray]'``.
"""
from __future__ import annotations

from .raypool import RayPool, pool

__all__ = ["pool", "RayPool"]
