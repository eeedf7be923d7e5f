"""Matplotlib figures: frame grids of one video or several, metric-vs-parameter plots and heatmaps.

Every function returns a closed ``matplotlib.figure.Figure`` (shown by Jupyter, saved with ``savefig``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .values import check_int

#: Units of the measurements wanlab stores, for axis labels.
UNITS = {
    "flow_magnitude": "px/frame", "dynamic_score": "px per sampled pair", "dynamic_threshold": "px",
    "dynamic_degree": "1 dynamic, 0 static", "temporal_flicker": "0..1, 1 = no change",
    "smoothness": "0..1, 1 = smooth", "warp_error": "mean squared error, [0, 1] scale",
    "psnr_vs_ref": "dB", "ssim_vs_ref": "-1..1", "psnr": "dB", "psnr_frame_mean": "dB",
    "seconds": "s", "denoise_s": "s", "speedup": "x", "calls_skipped": "calls",
    "adherence": "share of caption attributes shown, 0..1", "adherence_visible": "1 = one whole shape throughout",
    "clip_score": "100 x cosine, 0..100",
    "subject_consistency": "0..1", "background_consistency": "0..1", "aesthetic_quality": "LAION score / 10",
}


def axis_label(name: str) -> str:
    """A column name with its unit, when wanlab knows it (:data:`UNITS`).

    Args:
        name: A column of a store's or sweep's table.

    Returns:
        ``"name (unit)"``, or the name alone.

    Example:
        >>> axis_label("flow_magnitude"), axis_label("steps")
        ('flow_magnitude (px/frame)', 'steps')
    """
    unit = UNITS.get(name)
    return f"{name} ({unit})" if unit else name


def _frame_indices(count: int, n: int | None, frames: Sequence[int] | None) -> list[int]:
    if frames is not None:
        picked = [int(i) for i in frames]
        bad = [i for i in picked if not 0 <= i < count]
        if bad:
            raise ValueError(f"frames: must be indices in 0..{count - 1}; got {bad}")
        return picked
    n = count if n is None else n
    check_int("n", n, 1, rule="a positive integer")
    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def frame_grid(video: Any, n: int = 8, frames: Sequence[int] | None = None, *, width: float = 2.0,
               title: str | None = None):
    """One row of ``n`` evenly spaced frames (or the given ``frames``), each labelled with its index.

    Args:
        video: uint8 (T, H, W, 3) frames or a ``wanlab.Video``.
        n: How many frames, evenly spaced from first to last (fewer when T < n).
        frames: The frame indices to show instead.
        width: Inches per frame.
        title: A label left of the row.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: Bad frames, ``n`` < 1 or an index outside the video.

    Example:
        >>> import numpy as np
        >>> from wanlab import plots
        >>> fig = plots.frame_grid(np.zeros((17, 64, 64, 3), np.uint8), n=4)
        >>> [ax.get_title() for ax in fig.axes]
        ['frame 0', 'frame 5', 'frame 11', 'frame 16']
    """
    return compare_grid({title or "": video}, n=n, frames=frames, width=width)


def compare_grid(videos: Mapping[str, Any], n: int = 8, frames: Sequence[int] | None = None, *,
                 width: float = 2.0, fontsize: float = 11.0):
    """Rows = videos (labelled, horizontally, left of each row), columns = the same frame indices in every video.

    Args:
        videos: Label to video (uint8 (T, H, W, 3) frames or a ``wanlab.Video``); the frame indices
            are picked from the shortest.
        n: How many frames, evenly spaced.
        frames: The frame indices to show instead.
        width: Inches per frame.
        fontsize: Size of the row labels and column titles (readable at the size a report shows the grid).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: No videos, bad frames, ``n`` < 1 or an index outside the shortest video.

    Example:
        >>> import numpy as np
        >>> from wanlab import plots
        >>> still = np.zeros((9, 32, 32, 3), np.uint8)
        >>> fig = plots.compare_grid({"exact": still, "cached": still}, n=3)
        >>> len(fig.axes)
        6
    """
    if not videos:
        raise ValueError("videos: must hold at least one video; got none")
    from .frames import as_frames

    arrays = {label: as_frames(v, f"videos[{label!r}]") for label, v in videos.items()}
    count = min(a.shape[0] for a in arrays.values())
    picked = _frame_indices(count, n, frames)
    plt = pyplot()

    h, w = next(iter(arrays.values())).shape[1:3]
    rows, cols = len(arrays), len(picked)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.0, width * rows * h / w + 0.5), squeeze=False)
    for r, (label, arr) in enumerate(arrays.items()):
        for c, index in enumerate(picked):
            ax = axes[r][c]
            ax.imshow(arr[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {index}", fontsize=fontsize)
            if c == 0 and label:
                ax.set_ylabel(str(label), fontsize=fontsize, rotation=0, ha="right", va="center", labelpad=6)
    fig.tight_layout()
    plt.close(fig)
    return fig


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend when no other is chosen (no display needed).

    Returns:
        The ``matplotlib.pyplot`` module.

    Example:
        >>> pyplot().__name__
        'matplotlib.pyplot'
    """
    import matplotlib

    if matplotlib.get_backend().lower() == "":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_columns(df: Any, names: Sequence[str | None]) -> None:
    missing = [n for n in names if n is not None and n not in df.columns]
    if missing:
        raise ValueError(f"{missing[0]}: not a column of the table; the columns are {', '.join(map(str, df.columns))}")


def metric_plot(df: Any, x: str, y: str, hue: str | None = None, *, ax: Any = None, title: str | None = None,
                seed: str = "seed", level: float = 0.95, method: str = "bootstrap"):
    """Metric ``y`` against parameter ``x``, one line per value of ``hue``: the mean over seeds with its interval.

    Rows sharing ``(x, hue)`` and a seed are averaged first (pooling any other swept axis), so each
    seed counts once; the line is the mean over seeds, the band its ``level`` interval
    (:func:`wanlab.stats.interval`: a bootstrap over seeds, which needs 6 seeds for 95 %;
    ``method="t"`` assumes normal seed-to-seed variation), the dots each seed's value. The title
    states the seed count and what the band is. Without a ``seed`` column every row counts as a
    seed. A non-numeric ``x`` (e.g. acceleration settings) keeps the table's order, labels
    slanted. NaN rows and rows whose ``status`` is not ``done`` are left out.

    Args:
        df: Any DataFrame with those columns (``SweepResult.df``, ``Store.df``).
        x: The parameter column (the x axis).
        y: The metric column.
        hue: A column whose values get a line each.
        ax: Axes to draw on (a new figure when None).
        title: The title (by default ``y vs x`` and what the band is).
        seed: The column naming the seed.
        level: The interval's confidence level.
        method: ``"bootstrap"`` or ``"t"`` (see :func:`wanlab.stats.interval`).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: A column not in the table, or no values of ``y`` left to plot.

    Example:
        >>> import pandas as pd
        >>> from wanlab import plots
        >>> df = pd.DataFrame({"guidance_scale": [1.0, 1.0, 5.0, 5.0], "seed": [0, 1, 0, 1],
        ...                    "smoothness": [0.90, 0.92, 0.97, 0.95]})
        >>> fig = plots.metric_plot(df, x="guidance_scale", y="smoothness")
        >>> fig.axes[0].get_ylabel()
        'smoothness (0..1, 1 = smooth)'
    """
    from .stats import interval, min_seeds

    _check_columns(df, [x, y, hue])
    data = df[df["status"] == "done"] if "status" in df.columns else df
    data = data.dropna(subset=[y])
    if data.empty:
        raise ValueError(f"{y}: no values to plot (every row is NaN or the table is empty)")
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
    else:
        fig = ax.figure
    numeric_x = data[x].dtype.kind in "iufb"
    unit = seed if seed in data.columns else None
    groups = [(None, data)] if hue is None else list(data.groupby(hue, sort=True))
    counts: list[int] = []
    banded = False
    rng = np.random.default_rng(0)
    for value, part in groups:
        keys = [x] + ([unit] if unit else [])
        per_seed = part.groupby(keys, sort=numeric_x)[y].mean() if unit else part.set_index(x)[y]
        points = [(k, interval(v.to_numpy(), level=level, method=method, rng=rng))
                  for k, v in per_seed.groupby(level=0, sort=numeric_x)]
        xs = np.asarray([k for k, _ in points], dtype=object if not numeric_x else float)
        means = np.array([iv.mean for _, iv in points])
        low, high = np.array([iv.low for _, iv in points]), np.array([iv.high for _, iv in points])
        counts += [iv.n for _, iv in points]
        label = None if hue is None else f"{hue}={value:g}" if isinstance(value, float) else f"{hue}={value}"
        line = ax.plot(xs, means, marker="o", label=label)[0]
        if np.isfinite(low).any():
            banded = True
            ax.fill_between(xs, low, high, alpha=0.18, color=line.get_color(), where=np.isfinite(low))
        if max(iv.n for _, iv in points) > 1:
            ax.scatter(per_seed.index.get_level_values(0), per_seed.to_numpy(), s=10, alpha=0.5, color=line.get_color())
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if not numeric_x:
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    what = "seeds" if unit else "runs"
    n = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    if max(counts) <= 1:
        detail = f"one {what[:-1]} each"
    elif banded:
        detail = f"mean and {level:.0%} {'bootstrap' if method == 'bootstrap' else 't'} CI over {n} {what}"
    else:
        detail = f"mean of {n} {what}; {min_seeds(level)} needed for a {level:.0%} bootstrap CI"
    # the detail on a line of its own and every line wrapped to the figure: a title is never clipped
    ax.set_title(wrap_title(title or f"{y} vs {x}\n({detail})", fig), fontsize=10)
    if hue is not None:  # beside the axes, never over the points
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def wrap_title(text: str, fig: Any, fontsize: float = 10.0) -> str:
    """``text`` with each line wrapped to fit the width of ``fig`` at ``fontsize`` (about 0.6 em a character).

    Args:
        text: The title; its own line breaks are kept.
        fig: The figure it goes on.
        fontsize: Points.

    Returns:
        The wrapped text.

    Example:
        >>> fig = pyplot().figure(figsize=(2, 2))
        >>> len(wrap_title("a long title " * 4, fig).splitlines()) > 1
        True
    """
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def distinct_decimals(values: Any, max_decimals: int = 6) -> int:
    """The fewest decimals with which values that differ also look different.

    At least 3 significant digits for the largest value: 0.98047, 0.98053 and 0.97999 need 5
    (0.98047 / 0.98053 / 0.97999), not ``.3g``'s 0.98 / 0.981 / 0.98.

    Args:
        values: Numbers (NaN and inf are ignored).
        max_decimals: The most decimals returned.

    Returns:
        The number of decimals (0 for no finite values).

    Example:
        >>> distinct_decimals([0.98047, 0.98053, 0.97999])
        5
    """
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return 0
    top = float(np.abs(arr).max())
    start = max(0, 2 - int(np.floor(np.log10(top)))) if top > 0 else 0
    target = len(np.unique(np.round(arr, max_decimals)))
    for d in range(min(start, max_decimals), max_decimals + 1):
        if len(np.unique(np.round(arr, d))) == target:
            return d
    return max_decimals


def heatmap(df: Any, x: str, y: str, value: str, *, ax: Any = None, title: str | None = None, fmt: str | None = None):
    """Mean of ``value`` over the grid of ``x`` (columns) and ``y`` (rows), annotated in every cell.

    Args:
        df: Any DataFrame with those columns (``SweepResult.df``, ``Store.df``).
        x: The column across.
        y: The column up.
        value: The column averaged in each cell (NaN rows left out).
        ax: Axes to draw on (a new figure when None).
        title: The title (``mean <value>`` by default).
        fmt: A format spec for the labels; by default every cell shows the same number of decimals,
            as many as it takes for cells whose values differ to read differently (:func:`distinct_decimals`).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: A column not in the table, or no values left to plot.

    Example:
        >>> import pandas as pd
        >>> from wanlab import plots
        >>> df = pd.DataFrame({"steps": [10, 10, 30, 30], "guidance_scale": [1.0, 5.0, 1.0, 5.0],
        ...                    "smoothness": [0.90, 0.92, 0.97, 0.95]})
        >>> fig = plots.heatmap(df, x="steps", y="guidance_scale", value="smoothness")
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['0.900', '0.970', '0.920', '0.950']
    """
    _check_columns(df, [x, y, value])
    data = df.dropna(subset=[value])
    if data.empty:
        raise ValueError(f"{value}: no values to plot (every row is NaN or the table is empty)")
    table = data.pivot_table(index=y, columns=x, values=value, aggfunc="mean").sort_index().sort_index(axis=1)
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.8 * table.shape[0] + 1.5))
    else:
        fig = ax.figure
    arr = table.to_numpy(dtype=float)
    image = ax.imshow(arr, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    finite = arr[np.isfinite(arr)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    fmt = fmt or f".{distinct_decimals(arr)}f"
    for (r, c), v in np.ndenumerate(arr):
        if np.isfinite(v):
            ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=8,
                    color="black" if v > mid else "white")
    fig.colorbar(image, ax=ax, label=axis_label(value))
    ax.set_title(wrap_title(title or f"mean {value}", fig), fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
