"""Comparing videos frame by frame in a notebook: :class:`Compare` and the table that tells them apart."""
from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

import ipywidgets as widgets

from ..frames import WAN_FPS
from ..player import as_labelled, common_fps
from ..tables import html_table
from .viewer import FrameCache, Scrubbed, caption, frame_label, image_of, transport, zoom_for


def compare_metrics(videos: Mapping[str, Any], reference: str | None = None, *, motion: bool = True):
    """A table of what tells the videos apart, one row per video.

    Args:
        videos: Label to video (a :class:`wanlab.Video` or uint8 (T, H, W, 3) frames).
        reference: The label PSNR/SSIM are measured against (default: the first).
        motion: Also the scalar motion metrics of :func:`wanlab.metrics.motion` (NaN for videos
            shorter than 3 frames).

    Returns:
        A pandas DataFrame indexed by label. Columns: ``frames``, ``size``, ``fps``, ``seed``;
        ``psnr`` (dB, from the MSE over all frames), ``psnr_frame_mean`` (dB, the mean of per-frame
        PSNR) and ``ssim`` against the reference (:func:`wanlab.metrics.compare`; NaN where shapes
        differ, inf PSNR for identical frames); then the motion metrics.

    Raises:
        ValueError: A reference that is not a label, or bad frames.

    Example:
        >>> import numpy as np
        >>> video = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        >>> table = compare_metrics({"a": video, "b": video}, motion=False)
        >>> table.loc["b", ["psnr", "ssim"]].tolist()
        [inf, 1.0]
    """
    import pandas as pd

    from .. import metrics
    from ..frames import as_frames

    labels = list(videos)
    reference = labels[0] if reference is None else reference
    if reference not in videos:
        raise ValueError(f"reference: must be one of the labels {labels}; got {reference!r}")
    ref = as_frames(videos[reference])
    rows = []
    for label in labels:
        video = videos[label]
        frames = as_frames(video)
        t, h, w, _ = frames.shape
        row: dict[str, Any] = {"video": label, "frames": t, "size": f"{w}x{h}",
                               "fps": float(getattr(video, "fps", math.nan)), "seed": getattr(video, "seed", None)}
        if frames.shape == ref.shape and min(h, w) >= 7:
            row.update(metrics.compare(frames, ref))
        else:
            row.update(psnr=math.nan, psnr_frame_mean=math.nan, ssim=math.nan)
        if motion:
            if t >= 3:
                row.update(metrics.motion(frames, fps=float(getattr(video, "fps", WAN_FPS))))
        rows.append(row)
    return pd.DataFrame(rows).set_index("video")


class Compare(Scrubbed, widgets.VBox):
    """Several videos in one row, one shared slider and play button, a metrics table under them.

    Every video shows the same frame index; a shorter one holds its last frame. ``cmp.index`` (get
    or set) is the shared frame index; ``cmp.indices`` the index each video shows; ``cmp.metrics``
    the table as a DataFrame (:func:`compare_metrics`: PSNR/SSIM against the reference, motion
    metrics per video).

    Args:
        videos: ``{label: video}`` or a list of videos.
        reference: The label PSNR/SSIM are measured against (default: the first).
        metrics: False skips the table (and its cost).
        fps: The playback rate (default: the videos' common rate).
        zoom: Enlarge frames by a whole factor (default: small videos to a visible size).
        format: ``"png"``, ``"jpeg"`` or ``"auto"``.
        quality: JPEG quality.
        titles: Labels for a list of videos.

    Raises:
        ValueError: Bad frames, fps, zoom or labels, or a reference that is not a label.

    Example:
        >>> import numpy as np
        >>> from wanlab.widgets import Compare
        >>> still = np.zeros((9, 32, 32, 3), np.uint8)
        >>> cmp = Compare({"long": still, "short": still[:5]}, metrics=False)
        >>> cmp.index = 7
        >>> cmp.indices
        {'long': 7, 'short': 4}
    """

    def __init__(self, videos: Any, *, reference: str | None = None, metrics: bool = True, fps: float | None = None,
                 zoom: int | None = None, format: str = "auto", quality: int = 85,
                 titles: Iterable[str] | None = None) -> None:
        from ..frames import as_frames

        self.videos = as_labelled(videos, titles)
        self.fps = common_fps(self.videos, fps)
        arrays = {label: as_frames(v, f"videos[{label!r}]") for label, v in self.videos.items()}
        z = zoom_for([a.shape[1] for a in arrays.values()], zoom)
        self.caches = {label: FrameCache(a, format=format, quality=quality, zoom=z) for label, a in arrays.items()}
        self.last = max(len(c) for c in self.caches.values()) - 1
        self.images = {label: image_of(c) for label, c in self.caches.items()}
        self.play, self.slider, self._link = transport(self.last, self.fps)
        self.label = widgets.HTML(frame_label(0, self.last, self.fps))
        columns = [widgets.VBox([caption(label, max(arrays[label].shape[2] * z, 120)), self.images[label]],
                                layout=widgets.Layout(margin="0 12px 4px 0"))
                   for label in self.videos]
        self.metrics: Any = compare_metrics(self.videos, reference, motion=True) if metrics else None
        self.reference = reference or next(iter(self.videos))
        self.table = widgets.HTML(self._table_html() if metrics else "")
        rows: list[widgets.Widget] = [widgets.HBox(columns, layout=widgets.Layout(flex_flow="row wrap")),
                                      widgets.HBox([self.play, self.slider, self.label])]
        if metrics:
            rows.append(self.table)
        super().__init__(rows)
        self.add_class("wanlab-compare")
        self.slider.observe(self._on_index, names="value")

    def _table_html(self) -> str:
        # one column per video (as the frames above), one row per measurement
        table = self.metrics.T.rename(columns={self.reference: f"{self.reference} (reference)"})
        table.index.name = ""
        note = (f"<div style='font-size:11px;color:#666'>psnr (dB, from the MSE over all frames), psnr_frame_mean "
                f"(dB, mean of per-frame PSNR) and ssim against “{html.escape(self.reference)}”; "
                "motion metrics from classical optical flow (proxies, see wanlab.metrics)</div>")
        return html_table(table, index=True) + note

    @property
    def indices(self) -> dict[str, int]:
        """The frame index each video shows now (the shared index, clamped to each video's last frame)."""
        return {label: min(self.index, len(c) - 1) for label, c in self.caches.items()}

    def _on_index(self, change: Mapping[str, Any]) -> None:
        i = int(change["new"])
        for label, cache in self.caches.items():
            self.images[label].value = cache[min(i, len(cache) - 1)]
        self.label.value = frame_label(i, self.last, self.fps)

    def __repr__(self) -> str:
        return f"Compare({', '.join(self.videos)}; frame {self.index})"


#
