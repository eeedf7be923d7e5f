"""Notebook widgets (ipywidgets 8, each a ``VBox``: the last expression of a cell shows it).

:class:`FrameViewer` scrubs one video, :class:`Compare` several side by side with a metrics table,
:class:`SweepExplorer` a sweep, :class:`ProbeViewer` a video's probes. Playback needs a live kernel;
for playback that survives in a saved notebook use :func:`wanlab.show`.
"""
from __future__ import annotations

from .compare import Compare, compare_metrics
from .explorer import SweepExplorer
from .probes import ProbeViewer
from .viewer import FrameCache, FrameViewer, frame_label

__all__ = ["FrameCache", "FrameViewer", "Compare", "SweepExplorer", "ProbeViewer", "frame_label", "compare_metrics"]
