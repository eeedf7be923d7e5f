"""Notebook widgets (ipywidgets 8): scrub a video, compare videos frame by frame, explore a sweep.

- :class:`FrameViewer` ``(video)``: the frame, a play button and a slider over frame indices, and
  ``frame i / T-1 · t = x.xx s`` under it.
- :class:`Compare` ``({label: video})``: one row of frames driven by one shared slider and play button
  (every video shows the same frame index; a shorter one holds its last frame), with a metrics table
  under it (PSNR/SSIM against the reference video, motion metrics per video).
- :class:`SweepExplorer` ``(result)``: a dropdown per swept parameter and one for the metric; shows the
  selected run's frames and metrics and marks the point on a metric-vs-parameter plot.

All three are widgets themselves (``VBox`` subclasses): the last expression of a cell shows them, and
they nest in other layouts. Frames travel to the browser as PNG (small frames) or JPEG bytes, encoded
on first view and cached per frame (:class:`FrameCache`), so scrubbing an 81-frame video encodes only
the frames looked at, each once. Playback needs a live kernel (each step is a round trip); for playback
that survives in a saved notebook use :func:`wanlab.show`.
"""
from __future__ import annotations

import html
import io
import math
import os
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np

from .player import as_labelled, auto_zoom, common_fps, encode_frame, pick_format

__all__ = ["FrameCache", "FrameViewer", "Compare", "SweepExplorer", "frame_label"]

#: Columns of a sweep table that are bookkeeping, not swept values or metrics.
BOOKKEEPING = ("point", "status", "error", "digest", "key", "path")
#: How many loaded videos a SweepExplorer keeps in memory.
VIDEO_CACHE_SIZE = 8


def frame_label(index: int, last: int, fps: float) -> str:
    """``frame 3 / 16 · t = 0.19 s``."""
    return f"frame {index} / {last} · t = {index / fps:.2f} s"


def _enlarge(frame: np.ndarray, zoom: int) -> np.ndarray:
    if zoom == 1:
        return frame
    return np.repeat(np.repeat(frame, zoom, axis=0), zoom, axis=1)


class FrameCache:
    """Encoded frames of one video, each encoded on first request and kept (index -> bytes).

    ``format`` is ``"png"``, ``"jpeg"`` or ``"auto"`` (PNG up to 256x256 px, JPEG above); ``zoom``
    enlarges each frame by a whole factor (nearest neighbour: pixels stay exact squares) before
    encoding. ``encodes`` counts the encodings done so far.
    """

    def __init__(self, frames: np.ndarray, *, format: str = "auto", quality: int = 85, zoom: int = 1) -> None:
        from .frames import check_frames

        self.frames = check_frames(frames)
        self.zoom = int(zoom)
        self.format = pick_format(format, *self.frames.shape[1:3])
        self.quality = quality
        self._bytes: dict[int, bytes] = {}
        self.encodes = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, index: int) -> bytes:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"frame index must be in 0..{len(self) - 1}; got {index}")
        data = self._bytes.get(index)
        if data is None:
            data = encode_frame(_enlarge(self.frames[index], self.zoom), self.format, self.quality)
            self._bytes[index] = data
            self.encodes += 1
        return data

    @property
    def cached(self) -> list[int]:
        """Indices encoded so far."""
        return sorted(self._bytes)

    @property
    def image_format(self) -> str:
        """The ipywidgets ``Image.format`` of the bytes."""
        return "png" if self.format == "png" else "jpeg"


def _zoom_for(heights: Iterable[int], zoom: int | None) -> int:
    if zoom is None:
        return auto_zoom(max(heights))
    if isinstance(zoom, bool) or not isinstance(zoom, int) or not 1 <= zoom <= 16:
        raise ValueError(f"zoom: must be an integer in 1..16 or None; got {zoom!r}")
    return zoom


def _transport(last: int, fps: float, description: str = "frame") -> tuple[widgets.Play, widgets.IntSlider, Any]:
    """A play button and a slider over 0..last, linked in the browser (playback does not wait on the
    kernel to move the slider), and the link."""
    play = widgets.Play(value=0, min=0, max=last, step=1, interval=max(1, round(1000 / fps)), repeat=True,
                        description="play", show_repeat=True, layout=widgets.Layout(width="auto"))
    slider = widgets.IntSlider(value=0, min=0, max=last, step=1, description=description, readout=False,
                               continuous_update=True, layout=widgets.Layout(width="320px"))
    link = widgets.jslink((play, "value"), (slider, "value"))
    return play, slider, link


def _image(cache: FrameCache) -> widgets.Image:
    h, w = cache.frames.shape[1:3]
    return widgets.Image(value=cache[0], format=cache.image_format, width=w * cache.zoom, height=h * cache.zoom,
                         layout=widgets.Layout(width=f"{w * cache.zoom}px", height=f"{h * cache.zoom}px"))


def _caption(text: str, width_px: int) -> widgets.HTML:
    return widgets.HTML(
        f'<div style="font-weight:600;max-width:{width_px}px;line-height:1.3;overflow-wrap:anywhere" '
        f'title="{html.escape(text)}">{html.escape(text)}</div>')


class _Scrubbed:
    """The frame index of a widget driven by ``self.slider`` over frames 0..``self.last``."""

    slider: Any
    last: int

    @property
    def index(self) -> int:
        """The frame index shown."""
        return int(self.slider.value)

    @index.setter
    def index(self, value: int) -> None:
        value = int(value)
        if not 0 <= value <= self.last:
            raise ValueError(f"index: must be a frame index in 0..{self.last}; got {value}")
        self.slider.value = value


class FrameViewer(_Scrubbed, widgets.VBox):
    """One video: the current frame, a play button and slider over frames, the frame index and time.

    ``viewer.index`` (get or set) is the frame shown; ``viewer.slider``, ``viewer.play`` and
    ``viewer.image`` are the ipywidgets inside; ``viewer.cache`` holds the encoded frames.
    ``fps`` overrides the playback rate (default: the video's). ``cache`` reuses the encoded frames of an
    earlier viewer of the same video (``viewer.cache``).
    """

    def __init__(self, video: Any, *, title: str | None = None, fps: float | None = None, zoom: int | None = None,
                 format: str = "auto", quality: int = 85, index: int = 0, cache: FrameCache | None = None) -> None:
        from .frames import as_frames

        self.video = video
        frames = as_frames(video)
        self.fps = common_fps({"video": video}, fps)
        if cache is not None and cache.frames is not frames and not np.array_equal(cache.frames, frames):
            raise ValueError("cache: holds the frames of another video")
        z = cache.zoom if cache is not None else _zoom_for([frames.shape[1]], zoom)
        self.cache = cache or FrameCache(frames, format=format, quality=quality, zoom=z)
        self.last = len(self.cache) - 1
        self.image = _image(self.cache)
        self.play, self.slider, self._link = _transport(self.last, self.fps)
        self.label = widgets.HTML(frame_label(0, self.last, self.fps))
        rows: list[widgets.Widget] = []
        if title:
            rows.append(_caption(title, max(frames.shape[2] * z, 320)))
        self._parts = [self._link, self.play, self.slider, self.image, self.label, *rows]
        rows += [self.image, widgets.HBox([self.play, self.slider, self.label])]
        super().__init__(rows)
        self.add_class("wanlab-frame-viewer")
        self.slider.observe(self._on_index, names="value")
        if index:
            self.index = index

    @property
    def frame(self) -> np.ndarray:
        """The frame shown, as uint8 (H, W, 3) at the video's own size."""
        return self.cache.frames[self.index]

    def _on_index(self, change: Mapping[str, Any]) -> None:
        i = int(change["new"])
        self.image.value = self.cache[i]
        self.label.value = frame_label(i, self.last, self.fps)

    def close(self) -> None:
        """Close the viewer and the widgets inside it (frees them in the browser too)."""
        for part in self._parts:
            part.close()
        super().close()

    def __repr__(self) -> str:
        return f"FrameViewer({self.last + 1} frames @ {self.fps:g} fps, frame {self.index})"


# --------------------------------------------------------------------------------------------------
def compare_metrics(videos: Mapping[str, Any], reference: str | None = None, *, motion: bool = True):
    """A table (pandas DataFrame, one row per video) of what tells the videos apart.

    Columns: ``frames``, ``size``, ``fps``, ``seed``; ``psnr`` (dB) and ``ssim`` against the
    ``reference`` video (the first by default; NaN where shapes differ, inf PSNR for identical frames);
    with ``motion``, the scalar motion metrics of :func:`wanlab.metrics.motion` (NaN for videos shorter
    than 3 frames).
    """
    import pandas as pd

    from . import metrics
    from .frames import as_frames

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
            row.update(psnr=math.nan, ssim=math.nan)
        if motion:
            if t >= 3:
                row.update(metrics.motion(frames, fps=float(getattr(video, "fps", 16.0))))
        rows.append(row)
    return pd.DataFrame(rows).set_index("video")


def _format_cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞"
        return f"{value:.4g}"
    return html.escape(str(value))


def html_table(df, *, index: bool = True) -> str:
    """A compact HTML table of a DataFrame (numbers to 4 significant digits, NaN as a dash)."""
    cols = list(df.columns)
    head = "".join(f"<th style='padding:2px 8px;text-align:right;white-space:nowrap'>{html.escape(str(c))}</th>"
                   for c in cols)
    if index:
        head = f"<th style='padding:2px 8px;text-align:left'>{html.escape(str(df.index.name or ''))}</th>" + head
    body = []
    for key, row in df.iterrows():
        cells = "".join(f"<td style='padding:2px 8px;text-align:right'>{_format_cell(row[c])}</td>" for c in cols)
        if index:
            key_cell = f"<td style='padding:2px 8px;text-align:left;white-space:nowrap'>{html.escape(str(key))}</td>"
            cells = key_cell + cells
        body.append(f"<tr>{cells}</tr>")
    return (f"<table class='wanlab-table' style='border-collapse:collapse;font-size:12px;line-height:1.4'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


class Compare(_Scrubbed, widgets.VBox):
    """Several videos in one row, one shared slider and play button, a metrics table under them.

    ``videos``: ``{label: video}`` or a list. ``reference``: the label PSNR/SSIM are measured against
    (default: the first). ``metrics=False`` skips the table (and its cost). ``cmp.index`` (get or set)
    is the shared frame index; ``cmp.indices`` the index each video shows (the same, clamped to each
    video's last frame); ``cmp.metrics`` the table as a DataFrame.
    """

    def __init__(self, videos: Any, *, reference: str | None = None, metrics: bool = True, fps: float | None = None,
                 zoom: int | None = None, format: str = "auto", quality: int = 85,
                 titles: Iterable[str] | None = None) -> None:
        from .frames import as_frames

        self.videos = as_labelled(videos, titles)
        self.fps = common_fps(self.videos, fps)
        arrays = {label: as_frames(v, f"videos[{label!r}]") for label, v in self.videos.items()}
        z = _zoom_for([a.shape[1] for a in arrays.values()], zoom)
        self.caches = {label: FrameCache(a, format=format, quality=quality, zoom=z) for label, a in arrays.items()}
        self.last = max(len(c) for c in self.caches.values()) - 1
        self.images = {label: _image(c) for label, c in self.caches.items()}
        self.play, self.slider, self._link = _transport(self.last, self.fps)
        self.label = widgets.HTML(frame_label(0, self.last, self.fps))
        columns = [widgets.VBox([_caption(label, max(arrays[label].shape[2] * z, 120)), self.images[label]],
                                layout=widgets.Layout(margin="0 12px 4px 0"))
                   for label in self.videos]
        self.metrics = compare_metrics(self.videos, reference, motion=True) if metrics else None
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
        note = (f"<div style='font-size:11px;color:#666'>psnr (dB) and ssim against “{html.escape(self.reference)}”; "
                "motion metrics from classical optical flow (proxies, see wanlab.metrics)</div>")
        return html_table(table) + note

    @property
    def indices(self) -> dict[str, int]:
        """The frame index each video shows now."""
        return {label: min(self.index, len(c) - 1) for label, c in self.caches.items()}

    def _on_index(self, change: Mapping[str, Any]) -> None:
        i = int(change["new"])
        for label, cache in self.caches.items():
            self.images[label].value = cache[min(i, len(cache) - 1)]
        self.label.value = frame_label(i, self.last, self.fps)

    def __repr__(self) -> str:
        return f"Compare({', '.join(self.videos)}; frame {self.index})"


# --------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    return value


def _short(value: Any) -> str:
    try:
        from .sweep import format_value
    except Exception:  # pragma: no cover - sweep.py is optional for the explorer
        return str(value)
    return format_value(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class SweepExplorer(widgets.VBox):
    """Pick a point of a sweep with one dropdown per swept parameter; see its frames, its metrics, and
    where it sits on a metric-vs-parameter plot.

    ``result`` is a :class:`wanlab.SweepResult` (its ``df``, ``sweep.swept`` and store are used), or a
    sweep table (pandas DataFrame) together with ``params`` (the swept column names) and ``loader`` (a
    callable from a table row to a :class:`~wanlab.Video`; by default ``Video.load(row["path"])``).
    ``metric`` is the metric plotted first (default ``flow_magnitude`` when there is one); ``x`` the
    parameter on the plot's x axis (default: the first numeric swept parameter other than ``seed``
    that varies). The plot shows every finished point (grey), the line through the points that share
    the selection's other values, and the selected point (red).

    Points that failed show their error; pending ones say so. For ``zip`` sweeps and other sparse
    tables, choosing a value with no point at the other values moves the other dropdowns to the first
    point that has it. ``explorer.select(**values)`` picks a point from code; ``explorer.row``,
    ``explorer.video``, ``explorer.viewer`` and ``explorer.figure`` are what is shown.
    """

    def __init__(self, result: Any, metric: str | None = None, *, params: Sequence[str] | None = None,
                 loader: Callable[[Any], Any] | None = None, x: str | None = None, zoom: int | None = None,
                 format: str = "auto") -> None:
        import pandas as pd

        self.result = result
        if isinstance(result, pd.DataFrame):
            df = result
            if params is None:
                from .params import Params

                params = [c for c in df.columns if c in Params.field_names() and df[c].astype(str).nunique() > 1]
                if not params:
                    raise ValueError("params: give the swept column names; none of the table's columns varies")
            self._loader = loader or _load_from_path
        elif hasattr(result, "df") and hasattr(result, "sweep"):
            df = result.df
            params = list(result.sweep.swept) if params is None else list(params)
            self._loader = loader or (lambda row: _load_from_result(result, row))
        else:
            raise TypeError(f"result: must be a wanlab.SweepResult or a pandas DataFrame; got {type(result).__name__}")
        missing = [p for p in params if p not in df.columns]
        if missing:
            raise ValueError(f"params: {missing} are not columns of the table; the columns are {list(df.columns)}")
        if not len(df):
            raise ValueError("result: the sweep table has no rows")
        self.df = df.reset_index(drop=True)
        self.params = list(params)
        self.metric_names = self._metric_columns()
        if not self.metric_names and metric is None:
            metric = None
        elif metric is None:
            metric = "flow_magnitude" if "flow_magnitude" in self.metric_names else self.metric_names[0]
        elif metric not in self.metric_names:
            raise ValueError(f"metric: must be one of {self.metric_names}; got {metric!r}")
        if x is not None and x not in self.params:
            raise ValueError(f"x: must be one of the swept parameters {self.params}; got {x!r}")
        self.x = x or self._default_x()
        self._zoom, self._format = zoom, format
        self._videos: OrderedDict[int, tuple[Any, FrameCache | None]] = OrderedDict()
        self._busy = False
        self._last_index = 0

        self.dropdowns: dict[str, widgets.Dropdown] = {}
        for name in self.params:
            values = list(dict.fromkeys(_plain(v) for v in self.df[name]))
            self.dropdowns[name] = widgets.Dropdown(
                options=[(_short(v), v) for v in values], value=values[0], description=name,
                style={"description_width": "initial"}, layout=widgets.Layout(width="auto"))
        self.metric_dropdown = widgets.Dropdown(
            options=self.metric_names, value=metric, description="metric", style={"description_width": "initial"},
            layout=widgets.Layout(width="auto", display="" if self.metric_names else "none"))
        self.status = widgets.HTML()
        self.viewer_box = widgets.VBox()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="420px"))
        self.table = widgets.HTML()
        self.viewer: FrameViewer | None = None
        self.video: Any = None
        self.row = None
        self.figure = None
        self.marked: tuple[Any, float] | None = None
        super().__init__([
            widgets.HBox([*self.dropdowns.values(), self.metric_dropdown], layout=widgets.Layout(flex_flow="row wrap")),
            self.status,
            widgets.HBox([self.viewer_box, widgets.VBox([self.plot, self.table])],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")),
        ])
        self.add_class("wanlab-sweep-explorer")
        for name, dd in self.dropdowns.items():
            dd.observe(lambda change, name=name: self._on_param(name), names="value")
        self.metric_dropdown.observe(lambda change: self._draw_plot(), names="value")
        self._update()

    # --- what the table holds ------------------------------------------------------------------
    def _metric_columns(self) -> list[str]:
        result_metrics = getattr(self.result, "metric_names", None) if hasattr(self.result, "sweep") else None
        if isinstance(result_metrics, (list, tuple)):
            names = [m for m in result_metrics if m in self.df.columns]
        else:
            names = [c for c in self.df.columns if c not in self.params and c not in BOOKKEEPING
                     and c != "seconds" and self.df[c].dtype.kind in "if"]
        if "seconds" in self.df.columns and "seconds" not in names:
            names.append("seconds")
        return names

    def _default_x(self) -> str:
        numeric = [p for p in self.params if p != "seed" and self.df[p].dtype.kind in "if"
                   and self.df[p].nunique() > 1]
        return numeric[0] if numeric else self.params[0]

    @property
    def metric(self) -> str | None:
        """The metric on the plot."""
        return self.metric_dropdown.value

    @property
    def selected(self) -> dict[str, Any]:
        """The swept values chosen in the dropdowns."""
        return {name: dd.value for name, dd in self.dropdowns.items()}

    def _mask(self, values: Mapping[str, Any]):
        mask = np.ones(len(self.df), dtype=bool)
        for name, value in values.items():
            mask &= np.array([_same(_plain(v), value) for v in self.df[name]], dtype=bool)
        return mask

    # --- choosing --------------------------------------------------------------------------------
    def select(self, **values: Any) -> "SweepExplorer":
        """Choose a point by its swept values, e.g. ``explorer.select(seed=2, guidance_scale=5.0)``."""
        unknown = [k for k in values if k not in self.dropdowns]
        if unknown:
            raise ValueError(f"select: {unknown} are not swept parameters; they are {self.params}")
        for name, value in values.items():
            options = [v for _, v in self.dropdowns[name].options]
            match = [v for v in options if _same(v, _plain(value))]
            if not match:
                raise ValueError(f"{name}: must be one of {options}; got {value!r}")
        self._busy = True
        try:
            for name, value in values.items():
                self.dropdowns[name].value = next(v for _, v in self.dropdowns[name].options
                                                  if _same(v, _plain(value)))
        finally:
            self._busy = False
        self._snap(next(iter(values), None))
        self._update()
        return self

    def _on_param(self, name: str) -> None:
        if self._busy:
            return
        self._snap(name)
        self._update()

    def _snap(self, changed: str | None) -> None:
        """Where the chosen combination has no point (zip sweeps), move the other dropdowns to the
        first point that has the value just chosen."""
        if self._mask(self.selected).any() or changed is None:
            return
        rows = np.flatnonzero(self._mask({changed: self.dropdowns[changed].value}))
        if not len(rows):
            return
        # prefer the point that agrees with most of the other choices
        best = max(rows, key=lambda i: sum(_same(_plain(self.df.at[i, n]), self.dropdowns[n].value)
                                           for n in self.params))
        self._busy = True
        try:
            for name in self.params:
                self.dropdowns[name].value = _plain(self.df.at[best, name])
        finally:
            self._busy = False

    # --- showing ---------------------------------------------------------------------------------
    def _update(self) -> None:
        rows = np.flatnonzero(self._mask(self.selected))
        label = ", ".join(f"{n}={_short(v)}" for n, v in self.selected.items())
        if not len(rows):
            self.row, self.video = None, None
            self._drop_viewer()
            self.status.value = f"<b>{html.escape(label)}</b>: no point of the sweep has these values"
            self.table.value = ""
            self._draw_plot()
            return
        i = int(rows[0])
        self.row = self.df.iloc[i]
        status = str(self.row.get("status", "done"))
        self._drop_viewer()
        if status == "done":
            try:
                self.video, cache = self._video(i)
            except Exception as exc:  # a missing or damaged file: say so, keep the explorer usable
                self.video = None
                self.status.value = (f"<b>{html.escape(label)}</b>: could not load the video: "
                                     f"{html.escape(type(exc).__name__ + ': ' + str(exc))}")
            else:
                self.viewer = FrameViewer(self.video, zoom=self._zoom, format=self._format, cache=cache)
                self.viewer.index = min(self._last_index, self.viewer.last)
                self._videos[i] = (self.video, self.viewer.cache)
                self.viewer_box.children = (self.viewer,)
                self.status.value = f"<b>{html.escape(label)}</b> (point {self._point(i)})"
        else:
            self.video = None
            error = self.row.get("error")
            reason = f": {html.escape(str(error))}" if status == "failed" and error else ""
            colour = "#b00" if status == "failed" else "#666"
            self.status.value = (f"<b>{html.escape(label)}</b> (point {self._point(i)}): "
                                 f"<span style='color:{colour}'>{html.escape(status)}{reason}</span>")
        self.table.value = self._row_table(i)
        self._draw_plot()

    def _drop_viewer(self) -> None:
        if self.viewer is not None:
            self._last_index = self.viewer.index
            self.viewer_box.children = ()
            self.viewer.close()
            self.viewer = None

    def _point(self, i: int) -> int:
        return int(self.df.at[i, "point"]) if "point" in self.df.columns else i

    def _video(self, i: int) -> tuple[Any, FrameCache | None]:
        """The video of table row ``i`` and its encoded frames so far (loaded ones are kept)."""
        if i in self._videos:
            self._videos.move_to_end(i)
            return self._videos[i]
        video = self._loader(self.df.iloc[i])
        self._videos[i] = (video, None)
        while len(self._videos) > VIDEO_CACHE_SIZE:
            self._videos.popitem(last=False)
        return video, None

    def _row_table(self, i: int) -> str:
        import pandas as pd

        row = self.df.iloc[i]
        names = [n for n in self.metric_names if n in row.index]
        extra = [n for n in ("status", "digest") if n in row.index]
        values = {n: row[n] for n in names}
        for n in extra:
            value = row[n]
            values[n] = value[:12] if n == "digest" and isinstance(value, str) else value
        table = pd.DataFrame({"value": values}).rename_axis("")
        return html_table(table)

    def _draw_plot(self) -> None:
        metric = self.metric
        if metric is None:
            self.plot.layout.display = "none"
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        df, x = self.df, self.x
        done = (df["status"] == "done").to_numpy() if "status" in df.columns else np.ones(len(df), dtype=bool)
        fig = Figure(figsize=(4.6, 3.2), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        xs_all = df[x].map(_plain)
        categorical = df[x].dtype.kind not in "if"
        order = list(dict.fromkeys(xs_all))
        pos = (lambda v: order.index(v)) if categorical else (lambda v: v)
        ax.scatter([pos(v) for v in xs_all[done]], df.loc[done, metric], s=14, color="0.7", label="all points",
                   zorder=1)
        others = {n: v for n, v in self.selected.items() if n != x}
        line = done & self._mask(others)
        if line.any():
            part = df[line].assign(_x=[pos(v) for v in xs_all[line]]).sort_values("_x")
            desc = ", ".join(f"{n}={_short(v)}" for n, v in others.items()) or "all"
            ax.plot(part["_x"], part[metric], "-o", color="tab:blue", ms=4, lw=1.2, label=desc, zorder=2)
        self.marked = None
        if self.row is not None and (("status" not in self.row.index) or self.row["status"] == "done"):
            xv, yv = _plain(self.row[x]), float(self.row[metric])
            if not math.isnan(yv):
                ax.scatter([pos(xv)], [yv], s=90, facecolor="none", edgecolor="red", linewidth=2, zorder=3,
                           label="selected")
                ax.annotate(f"{yv:.3g}", (pos(xv), yv), textcoords="offset points", xytext=(6, 6), color="red",
                            fontsize=8)
                self.marked = (xv, yv)
        if categorical:
            ax.set_xticks(range(len(order)), [_short(v) for v in order], rotation=30 if len(order) > 4 else 0)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.figure = fig
        self.plot.layout.display = ""
        self.plot.value = buf.getvalue()

    def __repr__(self) -> str:
        return f"SweepExplorer({len(self.df)} points; {self.selected})"


def _load_from_path(row: Any) -> Any:
    from .video import Video

    path = row.get("path") if hasattr(row, "get") else None
    if not path or (isinstance(path, float) and math.isnan(path)):
        raise FileNotFoundError("the table row has no video path; pass loader= to SweepExplorer")
    return Video.load(os.fspath(path))


def _load_from_result(result: Any, row: Any) -> Any:
    store, key = getattr(result, "store", None), row.get("key") if hasattr(row, "get") else None
    if store is not None and isinstance(key, str) and key:
        return store.get(key).video()
    return _load_from_path(row)
