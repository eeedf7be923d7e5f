"""Notebook widgets (ipywidgets 8): scrub a video, compare videos frame by frame, explore a sweep.

- :class:`FrameViewer` ``(video)``: the frame, a play button and a slider over frame indices, and
  ``frame i / T-1 · t = x.xx s`` under it.
- :class:`Compare` ``({label: video})``: one row of frames driven by one shared slider and play button
  (every video shows the same frame index; a shorter one holds its last frame), with a metrics table
  under it (PSNR/SSIM against the reference video, motion metrics per video).
- :class:`SweepExplorer` ``(result)``: a dropdown per swept parameter and one for the metric; shows the
  selected run's frames and metrics and marks the point on a metric-vs-parameter plot.
- :class:`ProbeViewer` ``(video)``: a video's probes (trajectory: step x frame sliders; attention: a
  word picker with the map over the frames; features: the change heatmap, skipped calls marked).

All three are widgets themselves (``VBox`` subclasses): the last expression of a cell shows them, and
they nest in other layouts. Frames travel to the browser as PNG (small frames) or JPEG bytes, encoded
on first view and cached per frame (:class:`FrameCache`), so scrubbing an 81-frame video encodes only
the frames looked at, each once. Playback needs a live kernel (each step is a round trip); for playback
that survives in a saved notebook use :func:`wanlab.show`.
"""
from __future__ import annotations

from .compare import Compare, compare_metrics
from .explorer import SweepExplorer
from .probes import ProbeViewer
from .viewer import FrameCache, FrameViewer, frame_label

__all__ = ["FrameCache", "FrameViewer", "Compare", "SweepExplorer", "ProbeViewer", "frame_label", "compare_metrics"]
