"""The probes section of a sweep report (:func:`probe_section`).

When the layout is decided (the trajectory's decided step) against the swept axes, with intervals
over seeds, and what one run's trajectory looks like.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..sweep.result import SweepResult

COLUMN = "trajectory_decided_step"


def probe_section(result: SweepResult, out: Path, done: pd.DataFrame,
                  image: Callable[[Path, str, str], str], effects: Callable[[str], list[str]]) -> list[str]:
    """HTML parts of the report's probes section (empty when the sweep recorded no trajectory).

    Writes ``decided_step.png`` (the decided step against the first swept axis) and
    ``trajectory_grid.png`` (the first run's predictions, steps x frames) into ``out``.

    Args:
        result: The sweep's result.
        out: The report folder.
        done: The finished runs' table.
        image: ``image(path, alt, css_class)`` makes the page's tag for each figure (the report
            embeds them as data URIs).
        effects: ``effects(column)`` gives the report's effects blocks of a column over the swept axes.

    Returns:
        The section's HTML parts, in order.

    Example:
        >>> parts = probe_section(result, out, done, image, effects)  # doctest: +SKIP
    """
    from .plots import trajectory_grid

    if COLUMN not in done.columns or not done[COLUMN].notna().any():
        return []
    parts = ["<h2>Inside the model: when is the video decided?</h2>"]
    px, phue = result.default_axes(None, None)
    if px in done.columns and done[px].astype(str).nunique() > 1:
        fig = result.plot(y=COLUMN, x=px, hue=phue)
        fig.savefig(out / "decided_step.png", dpi=90)
        parts.append(image(out / "decided_step.png", f"decided step vs {px}", "plot"))
    parts.extend(effects(COLUMN))
    first = next((run for run in map(result.store.get, done["key"]) if run.has_probes), None)
    probes: Any = first.probes() if first is not None else None
    if first is not None and probes is not None and "trajectory" in probes:
        trajectory_grid(probes["trajectory"], n_steps=5, n_frames=6).savefig(out / "trajectory_grid.png", dpi=72)
        parts.append(image(out / "trajectory_grid.png", "trajectory grid", "plot pixel"))
        parts.append(f'<p class="meta">Rows: the model\'s prediction of the clean video at denoising steps of run '
                     f"{html.escape(first.key[:12])} (latent-to-RGB previews; d: relative distance to the last "
                     "step's prediction).</p>")
    parts.append('<p class="meta">Decided step: the first denoising step from which the model\'s clean-video '
                 "prediction stays within 30 dB PSNR of its final one (<code>Trajectory.decided_step</code>; "
                 "predicted-x0 previews as in FlowMo). Lower: layout and motion are fixed earlier.</p>")
    return parts
