"""Exploring a sweep in a notebook: :class:`SweepExplorer`."""
from __future__ import annotations

import html
import io
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..sweep.values import format_value
from ..tables import html_table
from ..values import plain
from .viewer import FrameCache, FrameViewer

#: Columns of a sweep table that are bookkeeping, not swept values or metrics.
BOOKKEEPING = ("point", "status", "error", "digest", "key", "path")
#: Columns that say how a metric was measured (a threshold), not what the video did: never in the metric menu.
MEASUREMENT_SETTINGS = ("dynamic_threshold",)
#: How many loaded videos a SweepExplorer keeps in memory.
VIDEO_CACHE_SIZE = 8


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class SweepExplorer(widgets.VBox):
    """Pick a point of a sweep with one dropdown per swept parameter; see its frames, metrics and plot.

    The frames and metrics are the point's; the plot shows where it sits against a parameter.

    The plot shows every finished point (grey), the line through the points that share the
    selection's other values, and the selected point (red). The metric menu lists the metrics that
    vary over the table (not thresholds such as ``dynamic_threshold``, nor constants). Below it,
    when ``seed`` is swept with several values, ``explorer.effects`` holds what changing ``x`` does
    to the metric over seeds (:func:`wanlab.stats.effects`: means with intervals, paired
    differences), shown as tables.

    Points that failed show their error; pending ones say so. For ``zip`` sweeps and other sparse
    tables, choosing a value with no point at the other values moves the other dropdowns to the first
    point that has it. ``explorer.select(**values)`` picks a point from code; ``explorer.row``,
    ``explorer.video``, ``explorer.viewer`` and ``explorer.figure`` are what is shown.

    Args:
        result: A :class:`wanlab.SweepResult` (its ``df``, ``sweep.swept`` and store are used), or a
            sweep table (pandas DataFrame) together with ``params`` and ``loader``.
        metric: The metric plotted first (default ``flow_magnitude`` when there is one).
        params: The swept column names (for a table).
        loader: A callable from a table row to a :class:`~wanlab.Video` (for a table; by default
            ``Video.load(row["path"])``).
        x: The parameter on the plot's x axis (default: the first numeric swept parameter other
            than ``seed`` that varies; ``seed`` only when nothing else is swept, and then as
            categories, never a line).
        zoom: Enlarge frames by a whole factor (default: small videos to a visible size).
        format: ``"png"``, ``"jpeg"`` or ``"auto"``.

    Example:
        >>> sweep = wanlab.Sweep(base={"prompt": "a fox"}, grid={"guidance_scale": [1, 5]}, seeds=6)  # doctest: +SKIP
        >>> result = sweep.run(pipe, store="runs/fox")  # doctest: +SKIP
        >>> SweepExplorer(result, metric="smoothness")  # doctest: +SKIP
    """

    def __init__(self, result: Any, metric: str | None = None, *, params: Sequence[str] | None = None,
                 loader: Callable[[Any], Any] | None = None, x: str | None = None, zoom: int | None = None,
                 format: str = "auto") -> None:
        self.result = result
        df, params, self._loader = _table_of(result, params, loader)
        self.df = df.reset_index(drop=True)
        self.params = list(params)
        self.metric_names = self._metric_columns()
        #: The metric menu: the measurements that vary over the table (no thresholds, no constants).
        self.menu_metrics = [m for m in self.metric_names if m not in MEASUREMENT_SETTINGS and self._varies(m)] \
            or list(self.metric_names)
        metric = self._first_metric(metric)
        if x is not None and x not in self.params:
            raise ValueError(f"x: must be one of the swept parameters {self.params}; got {x!r}")
        self.x = x or self._default_x()
        self._zoom, self._format = zoom, format
        self._videos: OrderedDict[int, tuple[Any, FrameCache | None]] = OrderedDict()
        self._busy = False
        self._last_index = 0

        self.dropdowns: dict[str, widgets.Dropdown] = {}
        for name in self.params:
            values = list(dict.fromkeys(plain(v) for v in self.df[name]))
            self.dropdowns[name] = widgets.Dropdown(
                options=[(format_value(v), v) for v in values], value=values[0], description=name,
                style={"description_width": "initial"}, layout=widgets.Layout(width="auto"))
        self.metric_dropdown = widgets.Dropdown(
            options=self.menu_metrics, value=metric, description="metric", style={"description_width": "initial"},
            layout=widgets.Layout(width="auto", display="" if self.metric_names else "none"))
        self.status = widgets.HTML()
        self.viewer_box = widgets.VBox()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="420px"))
        self.table = widgets.HTML()
        # under the frames and plot, across the whole width: its title, note and verdict column stay in view
        self.effects_pane = widgets.HTML(layout=widgets.Layout(width="100%", overflow_x="auto"))
        self.effects: Any = None
        self._effects_cache: dict[tuple[str, str], Any] = {}
        self.viewer: FrameViewer | None = None
        self.video: Any = None
        self.row: Any = None
        self.figure: Any = None
        self.marked: tuple[Any, float] | None = None
        super().__init__([
            widgets.HBox([*self.dropdowns.values(), self.metric_dropdown], layout=widgets.Layout(flex_flow="row wrap")),
            self.status,
            widgets.HBox([self.viewer_box, widgets.VBox([self.plot, self.table])],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")),
            self.effects_pane,
        ])
        self.add_class("wanlab-sweep-explorer")
        for name, dd in self.dropdowns.items():
            dd.observe(lambda change, name=name: self._on_param(name), names="value")
        self.metric_dropdown.observe(lambda change: self._on_metric(), names="value")
        self._show_effects()
        self._update()

    def _first_metric(self, metric: str | None) -> str | None:
        """The metric shown first: the one asked for (added to the menu), else flow magnitude or the menu's first."""
        if not self.metric_names and metric is None:
            return None
        if metric is None:
            return "flow_magnitude" if "flow_magnitude" in self.menu_metrics else self.menu_metrics[0]
        if metric not in self.metric_names:
            raise ValueError(f"metric: must be one of {self.metric_names}; got {metric!r}")
        if metric not in self.menu_metrics:
            self.menu_metrics.append(metric)
        return metric

    def _on_metric(self) -> None:
        self._draw_plot()
        self._show_effects()

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

    def _varies(self, name: str) -> bool:
        values = self.df[name]
        if "status" in self.df.columns:
            values = values[self.df["status"] == "done"]
        return values.dropna().nunique() > 1

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
            mask &= np.array([_same(plain(v), value) for v in self.df[name]], dtype=bool)
        return mask

    # --- choosing --------------------------------------------------------------------------------
    def select(self, **values: Any) -> SweepExplorer:
        """Choose a point by its swept values.

        Args:
            **values: Swept parameter to value; the others keep theirs (or move to the first point
                that has these).

        Returns:
            The explorer itself.

        Raises:
            ValueError: A name that is not a swept parameter, or a value it does not take.

        Example:
            >>> explorer.select(seed=2, guidance_scale=5.0)  # doctest: +SKIP
        """
        unknown = [k for k in values if k not in self.dropdowns]
        if unknown:
            raise ValueError(f"select: {unknown} are not swept parameters; they are {self.params}")
        for name, value in values.items():
            options = [v for _, v in self.dropdowns[name].options]
            match = [v for v in options if _same(v, plain(value))]
            if not match:
                raise ValueError(f"{name}: must be one of {options}; got {value!r}")
        self._busy = True
        try:
            for name, value in values.items():
                self.dropdowns[name].value = next(v for _, v in self.dropdowns[name].options
                                                  if _same(v, plain(value)))
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
        """Move the other dropdowns to the first point that has the value just chosen.

        Only where the chosen combination has no point (zip sweeps).
        """
        if self._mask(self.selected).any() or changed is None:
            return
        rows = np.flatnonzero(self._mask({changed: self.dropdowns[changed].value}))
        if not len(rows):
            return
        # prefer the point that agrees with most of the other choices
        best = max(rows, key=lambda i: sum(_same(plain(self.df.at[i, n]), self.dropdowns[n].value)
                                           for n in self.params))
        self._busy = True
        try:
            for name in self.params:
                self.dropdowns[name].value = plain(self.df.at[best, name])
        finally:
            self._busy = False

    # --- showing ---------------------------------------------------------------------------------
    def _update(self) -> None:
        rows = np.flatnonzero(self._mask(self.selected))
        label = ", ".join(f"{n}={format_value(v)}" for n, v in self.selected.items())
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
        return html_table(table, index=True)

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
        xs_all = df[x].map(plain)
        # seeds are labels, not quantities: one category each, and never joined by a line as a trend
        categorical = x == "seed" or df[x].dtype.kind not in "if"
        if x == "seed":
            order = sorted(dict.fromkeys(xs_all))
        else:
            order = list(dict.fromkeys(xs_all))
        pos = (lambda v: order.index(v)) if categorical else (lambda v: v)
        ax.scatter([pos(v) for v in xs_all[done]], df.loc[done, metric], s=14, color="0.7", label="all points",
                   zorder=1)
        others = {n: v for n, v in self.selected.items() if n != x}
        line = done & self._mask(others)
        if line.any():
            part = df[line].assign(_x=[pos(v) for v in xs_all[line]]).sort_values("_x")
            desc = ", ".join(f"{n}={format_value(v)}" for n, v in others.items()) or "all"
            ax.plot(part["_x"], part[metric], "o" if x == "seed" else "-o", color="tab:blue", ms=4, lw=1.2,
                    label=desc, zorder=2)
        self.marked = None
        if self.row is not None and (("status" not in self.row.index) or self.row["status"] == "done"):
            xv, yv = plain(self.row[x]), float(self.row[metric])
            if not math.isnan(yv):
                ax.scatter([pos(xv)], [yv], s=90, facecolor="none", edgecolor="red", linewidth=2, zorder=3,
                           label="selected")
                ax.annotate(f"{yv:.3g}", (pos(xv), yv), textcoords="offset points", xytext=(6, 6), color="red",
                            fontsize=8)
                self.marked = (xv, yv)
        if categorical:
            ax.set_xticks(range(len(order)), [format_value(v) for v in order], rotation=30 if len(order) > 4 else 0)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)  # under, not over
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.figure = fig
        self.plot.layout.display = ""
        self.plot.value = buf.getvalue()

    def _show_effects(self) -> None:
        """The effect of ``x`` on the metric over seeds (nothing when seed is not swept, or x is seed)."""
        metric, x = self.metric, self.x
        self.effects = None
        if metric is None or x == "seed" or "seed" not in self.params or self.df["seed"].nunique() < 2 \
                or metric == "seconds":
            self.effects_pane.value = ""
            return
        from ..stats import effects

        if (metric, x) not in self._effects_cache:
            axes = [n for n in self.params if n not in ("seed", x)]
            try:
                self._effects_cache[metric, x] = effects(self.df, metric, x, axes=axes)
            except ValueError as exc:
                self._effects_cache[metric, x] = str(exc)
        found = self._effects_cache[metric, x]
        if isinstance(found, str):
            self.effects_pane.value = f"<p style='color:#666'>effects: {html.escape(found)}</p>"
        else:
            self.effects = found
            self.effects_pane.value = found.to_html()

    def __repr__(self) -> str:
        return f"SweepExplorer({len(self.df)} points; {self.selected})"


def _load_from_path(row: Any) -> Any:
    from ..video import Video

    path = row.get("path") if hasattr(row, "get") else None
    if not path or (isinstance(path, float) and math.isnan(path)):
        raise FileNotFoundError("the table row has no video path; pass loader= to SweepExplorer")
    return Video.load(os.fspath(path))


def _load_from_result(result: Any, row: Any) -> Any:
    store, key = getattr(result, "store", None), row.get("key") if hasattr(row, "get") else None
    if store is not None and isinstance(key, str) and key:
        return store.get(key).video()
    return _load_from_path(row)


def _table_of(result: Any, params: Sequence[str] | None,
              loader: Callable[[Any], Any] | None) -> tuple[Any, list[str], Callable[[Any], Any]]:
    """The explorer's table, swept columns and video loader for a SweepResult or a DataFrame (checked)."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        df = result
        if params is None:
            from ..params import Params

            params = [c for c in df.columns if c in Params.field_names() and df[c].astype(str).nunique() > 1]
            if not params:
                raise ValueError("params: give the swept column names; none of the table's columns varies")
        chosen = loader or _load_from_path
    elif hasattr(result, "df") and hasattr(result, "sweep"):
        df = result.df
        params = list(result.sweep.swept) if params is None else list(params)
        chosen = loader or (lambda row: _load_from_result(result, row))
    else:
        raise TypeError(f"result: must be a wanlab.SweepResult or a pandas DataFrame; got {type(result).__name__}")
    missing = [p for p in params if p not in df.columns]
    if missing:
        raise ValueError(f"params: {missing} are not columns of the table; the columns are {list(df.columns)}")
    if not len(df):
        raise ValueError("result: the sweep table has no rows")
    return df, list(params), chosen
