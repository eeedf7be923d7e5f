"""Measuring stored runs: the metric sets a sweep asks for, computed once per run and kept with it.

A sweep measures each video as it is stored; :func:`measure_store` measures runs already in a
store later (a metric added after the sweep ran, an evaluator downloaded since), from the stored
lossless frames and the recorded prompt, without regenerating anything. A set that fails keeps its
reason in the run's metrics (``<name>_error``; ``metrics_error`` for motion) and is not tried again
unless asked (``redo=True``); the run itself is never lost.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..metrics.suite import check_metrics, compute, error_key, missing

if TYPE_CHECKING:  # pragma: no cover
    from ..store import Run, Store
    from ..video import Video


def needs(run: Run, names: Sequence[str]) -> list[str]:
    """The sets of ``names`` a stored run still lacks.

    Motion measured before its definitions changed (no ``static`` key: temporal flicker then also
    scored moving clips) counts as lacking; a failure recorded in the run's record (older wanlab)
    counts as done.

    Args:
        run: a stored run.
        names: metric set names.

    Returns:
        The names it lacks.
    """
    stored = dict(run.metrics)
    if (run.record.get("extra") or {}).get("metrics_error"):
        stored.setdefault("metrics_error", run.record["extra"]["metrics_error"])
    return missing(stored, names)


def measure(store: Store, run: Run, video: Video, names: Sequence[str], *, device: str | None = None,
            evaluators: dict[str, Any] | None = None, redo: bool = False) -> dict[str, Any]:
    """Compute the sets of ``names`` that ``run`` lacks (all of them with ``redo``) and store them.

    A set that fails is recorded as ``<name>_error`` on the run, never raised.

    Args:
        store: the store the run is in.
        run: the stored run.
        video: its video.
        names: metric set names.
        device: where evaluators run.
        evaluators: evaluator overrides per set.
        redo: compute every set again.

    Returns:
        What was written: values, and ``<name>_error`` strings for sets that failed.
    """
    todo = list(names) if redo else needs(run, names)
    values: dict[str, Any] = {}
    prompt = run.params.prompt if todo else None
    for name in todo:
        try:
            values.update(compute(name, video, prompt, device=device, evaluators=evaluators))
            if redo:
                values[error_key(name)] = None
        except Exception as exc:
            values[error_key(name)] = f"{type(exc).__name__}: {exc}"
    if values:
        store.put_metrics(run.key, values)  # with redo, an error now gone is overwritten by None
    return values


def measure_store(store: Store | str | os.PathLike[str], metrics: Any = True, *, keys: Sequence[str] | None = None,
                  redo: bool = False, device: str | None = None, evaluators: dict[str, Any] | None = None,
                  progress: bool = True) -> dict[str, int]:
    """Measure the runs of a store (all, or ``keys``) with the sets ``metrics`` names, without regenerating.

    Args:
        store: a :class:`wanlab.Store` or its folder.
        metrics: as ``Sweep.run``'s: ``True`` (motion), a name or a list of names
            (:data:`wanlab.metrics.suite.METRIC_SETS`; ``"quality"`` for the four reference metrics).
        keys: only these runs (default: every run of the store).
        redo: compute again sets already stored or that failed before.
        device: where evaluators run (default CUDA when available).
        evaluators: evaluator overrides per set (see :func:`wanlab.metrics.suite.compute`).
        progress: a progress bar.

    Returns:
        ``{"measured": runs measured now, "failed": runs where a set failed now, "skipped": runs that had
        everything}``.

    Raises:
        ParamError: unknown metric names.

    Example:
        >>> measure_store("runs/demo", ["adherence", "clip_score"])  # doctest: +SKIP
        {'measured': 54, 'failed': 0, 'skipped': 0}
    """
    from tqdm.auto import tqdm

    from ..store import Store

    names = check_metrics(metrics)
    store_ = store if isinstance(store, Store) else Store(store)
    counts = {"measured": 0, "failed": 0, "skipped": 0}
    chosen = list(keys) if keys is not None else [run.key for run in store_.runs()]
    for key in tqdm(chosen, desc="measure", unit="run", disable=not progress):
        run = store_.get(key)
        if not redo and not needs(run, names):
            counts["skipped"] += 1
            continue
        written = measure(store_, run, run.video(), names, device=device, evaluators=evaluators, redo=redo)
        counts["failed" if any(written.get(error_key(n)) for n in names) else "measured"] += 1
    return counts
