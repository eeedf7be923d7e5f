"""A sweep's report folder: videos, a frame grid, the metrics table, plots and one self-contained HTML page.

:func:`write_sweep_report` writes it (its docstring lists the files); the rest are the HTML pieces the
page is made of.
"""
from __future__ import annotations

import base64
import html
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fsutil import write_text
from .tables import html_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .sweep import Sweep, SweepResult

#: Videos smaller than this (px wide) are shown scaled up by a whole factor, pixels kept sharp.
MIN_SHOWN_WIDTH = 160
#: At most this many videos go into the frame grid (a bigger sweep would make a huge image).
MAX_GRID_ROWS = 9
GRID_FRAMES = 6
#: Besides the report's main metric, these get their own plot and effects when the sweep measured them.
EXTRA_METRICS = ("adherence", "adherence_visible", "clip_score", "subject_consistency", "background_consistency",
                 "aesthetic_quality")
#: Said under the frame grid: frame 0 is shown as generated, and why it may look unlike the rest.
FRAME_ZERO_NOTE = ("Every frame is shown as generated. Wan's VAE is causal in time: latent frame 0 encodes frame 0 "
                   "alone, and each later latent frame covers several frames, so frame 0 may look sharper or "
                   "differently coloured than the frames after it.")

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.question { font-size: 1.1em; font-style: italic; color: #333; }
.meta { color: #666; font-size: .9em; }
.videos { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; text-align: center; }
figcaption { font-size: .8em; color: #444; max-width: 100%; }
video, img.pixel { image-rendering: pixelated; background: #000; }
img.plot { max-width: 100%; }
.scroll { overflow-x: auto; max-width: 100%; }
table.metrics { border-collapse: collapse; font-size: .85em; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
table.metrics th { background: #f4f4f4; }
tr.failed td { background: #fdecea; } tr.pending td { background: #f7f7f7; color: #888; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.failed-list { color: #a00; font-size: .9em; }
"""


def data_uri(path: str | os.PathLike[str], mime: str) -> str:
    """``data:<mime>;base64,...`` of a file's bytes.

    Args:
        path: the file.
        mime: its media type, e.g. ``"image/png"``.

    Returns:
        The data URI.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = path.write_bytes(b"hi")
        >>> data_uri(path, "text/plain")
        'data:text/plain;base64,aGk='
    """
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def video_tag(path: str | os.PathLike[str], width: int, caption: str = "") -> str:
    """A ``<figure>`` with an embedded, looping, muted mp4 (plays inline in every browser).

    Args:
        path: the mp4.
        width: the video's width in pixels (small videos are shown enlarged by a whole factor).
        caption: the figure's caption (HTML).

    Returns:
        The HTML.

    Example:
        >>> video_tag("report/videos/seed1.mp4", 64, "seed=1")  # doctest: +SKIP
    """
    shown = width * max(1, math.ceil(MIN_SHOWN_WIDTH / max(width, 1)))
    return (f'<figure><video src="{data_uri(path, "video/mp4")}" width="{shown}" autoplay loop muted playsinline '
            f'controls></video><figcaption>{caption}</figcaption></figure>')


def image_tag(path: str | os.PathLike[str], alt: str, css: str = "plot") -> str:
    """An ``<img>`` holding the PNG at ``path`` inline (a data URI), so the page stands alone.

    Args:
        path: the PNG.
        alt: its alternative text.
        css: its CSS class.

    Returns:
        The HTML.

    Example:
        >>> image_tag("report/frame_grid.png", "frame grid")  # doctest: +SKIP
    """
    return f'<img class="{css}" alt="{html.escape(alt)}" src="{data_uri(path, "image/png")}">'


def fold_constants(df: pd.DataFrame,
                   keep: tuple[str, ...] = ("point", "status")) -> tuple[dict[str, Any], pd.DataFrame]:
    """Columns with one value in every row (said once, above the table) and the table without them.

    Args:
        df: the table.
        keep: columns never folded.

    Returns:
        ``(constant, table)``: the folded columns' values by name, and the table without them.

    Example:
        >>> import pandas as pd
        >>> constant, table = fold_constants(pd.DataFrame({"point": [0, 1], "steps": [20, 20], "seed": [1, 2]}))
        >>> {k: int(v) for k, v in constant.items()}, list(table.columns)
        ({'steps': 20}, ['point', 'seed'])
    """
    constant = {}
    for name in df.columns:
        if name in keep or len(df) < 2:
            continue
        values = df[name].astype(str).unique()
        if len(values) == 1:
            constant[name] = df[name].iloc[0]
    return constant, df.drop(columns=list(constant))


def metrics_table(df: pd.DataFrame, links: Mapping[int, str]) -> str:
    """The sweep table for the page.

    Bookkeeping columns left out, constant columns folded into one line above it, and the table in its
    own scrolling box (the page never scrolls sideways).

    Args:
        df: the sweep table (``SweepResult.df``).
        links: per row, the relative path its point's link goes to.

    Returns:
        The HTML.
    """
    from .tables import cell_text, html_table

    shown = df.drop(columns=[c for c in ("key", "path") if c in df.columns])
    if "error" in shown.columns and not shown["error"].notna().any():
        shown = shown.drop(columns=["error"])
    constant, shown = fold_constants(shown)
    line = ""
    if constant:
        line = ('<p class="meta">The same in every row: '
                + ", ".join(f"{html.escape(k)} = {html.escape(cell_text(v)[:60])}" for k, v in constant.items())
                + "</p>")
    table = html_table(shown, row_class="status", links=links, cut={"digest": 12}, css_class="metrics")
    return f'{line}<div class="scroll">{table}</div>'


def _copy_run_files(run: Any, target: Path) -> Path:
    """Copy a stored run's mp4, lossless copy and record to ``target`` (.mp4, .lossless.mkv, .json)."""
    from .video import lossless_path, sidecar_path

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.mp4, target)
    if Path(run.lossless).exists():
        shutil.copyfile(run.lossless, lossless_path(target))
    record = Path(run.path) / "record.json"
    if record.exists():
        shutil.copyfile(record, sidecar_path(target))
    return target


def write_sweep_report(result: SweepResult, out: Path, *, metric: str = "flow_magnitude",
                       title: str | None = None, x: str | None = None, hue: str | None = None) -> Path:
    """Write the report folder of a sweep result.

    The files written into ``out``::

        videos/<point>.mp4        one playable mp4 per done point, named by its swept values
                                  (with <point>.lossless.mkv and <point>.json: ``Video.load`` reads them exactly)
        frame_grid.png            rows = videos, columns = the same frame indices
        metrics.csv               the sweep table (``SweepResult.df``; with ``psnr_vs_ref`` and
                                  ``ssim_vs_ref`` when the sweep names a ``reference`` point)
        metric_vs_param.png       a metric against the first swept parameter, one line per the second
        heatmap.png               the metric's mean over two swept parameters (when there are two)
        <metric>_vs_param.png     the same plot for prompt adherence and each reference quality metric the
                                  sweep measured (``adherence``, ``clip_score``, ...), with their effects
        vs_reference.png          SSIM against the reference point (when the sweep names one)
        accel_study.csv           for a sweep over ``accel``: ``SweepResult.accel_study()``, each run
                                  against the exact run of the same request (speedup, PSNR, SSIM, ...)
        accel_speed_vs_psnr.png   its per-setting summary: speedup against PSNR, Pareto front marked
        report.html               all of the above in one file: videos and images embedded as base64,
                                  so it opens anywhere (browsers play the h264 mp4s inline)

    Args:
        result: The sweep's table (``Sweep.run`` or ``Sweep.result``).
        out: The report folder (made when missing; files already there are overwritten).
        metric: The metric the main plot, the heatmap and the effects show.
        title: The page's heading (default ``Sweep: <name>``).
        x: The main plot's x axis (default: the first swept field, :meth:`SweepResult.default_axes`).
        hue: The main plot's lines (default: the second swept field).

    Returns:
        The path of ``out/report.html``.

    Raises:
        OSError: A file cannot be written.

    Example:
        >>> write_sweep_report(Sweep.load("sweeps/demo.toml").result(), Path("report"))  # doctest: +SKIP
        PosixPath('report/report.html')
    """
    from .probes.section import probe_section

    report = _Report.begin(result, Path(out), metric, x, hue)
    video_files = _copy_videos(report)
    csv = write_text(report.out / "metrics.csv", report.table.to_csv(index=False))
    parts = _header(report, title)
    parts += _videos_section(report, video_files)
    parts += _frame_grid_section(report)
    parts += _metric_section(report)
    parts += _extra_metric_sections(report)
    parts += _reference_section(report)
    parts += _accel_section(report)
    parts += probe_section(result, report.out, report.done, image_tag, report.effects)
    parts += _table_section(report, csv, video_files)
    parts += _definition_section(report)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or report.name)}'
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return write_text(report.out / "report.html", page)


@dataclass
class _Report:
    """What every section of one report reads: the result, its table, its done rows and the plot axes."""

    result: SweepResult
    out: Path
    metric: str
    df: pd.DataFrame
    done: pd.DataFrame
    table: pd.DataFrame  # df, with the comparison against the sweep's reference point when it names one
    px: str
    phue: str | None

    @classmethod
    def begin(cls, result: SweepResult, out: Path, metric: str, x: str | None, hue: str | None) -> _Report:
        out.mkdir(parents=True, exist_ok=True)
        df = result.df
        px, phue = result.default_axes(x, hue)
        return cls(result, out, metric, df, df[df["status"] == "done"],
                   result.compare() if result.sweep.reference else df, px, phue)

    @property
    def sweep(self) -> Sweep:
        return self.result.sweep

    @property
    def name(self) -> str:
        return self.sweep.name or "sweep"

    def varied(self) -> list[str]:
        """The swept fields whose value differs between done points (all swept fields when none does)."""
        done = self.done
        return [n for n in self.sweep.swept if len(done) and done[n].astype(str).nunique() > 1] or self.sweep.swept

    def has(self, metric: str) -> bool:
        """Whether some done point has a value of ``metric``."""
        return bool(len(self.done)) and metric in self.df.columns and bool(self.done[metric].notna().any())

    def effects(self, metric: str) -> list[str]:
        return _effects_sections(self.result, metric, self.done)

    def save(self, fig: Any, filename: str, dpi: int = 90) -> Path:
        path = self.out / filename
        fig.savefig(path, dpi=dpi)
        return path


def _copy_videos(report: _Report) -> dict[int, Path]:
    """Each done point's files copied to ``videos/``, named by its point (the mp4 of each point)."""
    result, sweep = report.result, report.sweep
    video_files: dict[int, Path] = {}
    names: set[str] = set()
    for _, row in report.done.iterrows():
        i = int(row["point"])
        name_i = sweep.slug(i, result.points[i])
        if name_i in names:  # two points that print alike (e.g. LoRA files of one name in two folders)
            name_i = f"{name_i}_point{i}"
        names.add(name_i)
        video_files[i] = _copy_run_files(result.store.get(row["key"]), report.out / "videos" / f"{name_i}.mp4")
    return video_files


def _header(report: _Report, title: str | None) -> list[str]:
    """The heading, the sweep's question, and one line of counts, model, environment and version."""
    from . import __version__

    result, df, done = report.result, report.df, report.done
    counts = result.counts
    record: dict[str, Any] = result.store.get(done.iloc[0]["key"]).record if len(done) else {}
    env = record.get("environment") or {}
    model_info = record.get("model") or {}
    meta = [f"{len(df)} points: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending"]
    if model_info:
        meta.append(f"model {html.escape(str(model_info.get('id')))} "
                    f"(weights {html.escape(str(model_info.get('fingerprint', ''))[:12])})")
    if env:
        torch_version = (env.get("versions") or {}).get("torch")
        meta.append(html.escape(f"{env.get('device')}, torch {torch_version}, {env.get('torch_threads')} threads"))
    meta.append(f"wanlab {__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
    parts = [f"<h1>{html.escape(title or f'Sweep: {report.name}')}</h1>"]
    if report.sweep.question:
        parts.append(f'<p class="question">Question: {html.escape(report.sweep.question)}</p>')
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    return parts


def _videos_section(report: _Report, video_files: Mapping[int, Path]) -> list[str]:
    """Every done video, captioned with what varies (and the metric), then the failed points' errors."""
    result, sweep, metric = report.result, report.sweep, report.metric
    free = report.varied()
    figures = []
    for _, row in report.done.iterrows():
        i = int(row["point"])
        caption = html.escape(sweep.label(i, result.points[i], [n for n in free if n != "prompt"]))
        if "prompt" in free:
            caption = f"<i>{html.escape(result.points[i].prompt)}</i><br>{caption}"
        if metric in row and not _missing(row[metric]):
            caption += f"<br>{html.escape(metric)} {row[metric]:.3g}"
        figures.append(video_tag(video_files[i], int(result.points[i].width), caption))
    parts = ["<h2>Videos</h2>",
             f'<div class="videos">{"".join(figures)}</div>' if figures else "<p>No video yet.</p>"]
    failed = report.df[report.df["status"] == "failed"]
    if len(failed):
        items = "".join(
            f"<li>point {i} ({html.escape(sweep.label(i, result.points[i]))}): {html.escape(str(r['error']))}</li>"
            for i, r in ((int(r["point"]), r) for _, r in failed.iterrows()))
        parts.append(f'<p class="failed-list">Failed:</p><ul class="failed-list">{items}</ul>')
    return parts


def _frame_grid_section(report: _Report) -> list[str]:
    """``frame_grid.png``: the first videos' frames side by side, labelled with what varies."""
    from .plots import compare_grid

    result, sweep, done = report.result, report.sweep, report.done
    if not len(done):
        return []
    free = report.varied()
    videos = {sweep.label(int(r["point"]), result.points[int(r["point"])], free, short=True, sep="\n"):
              result.store.get(r["key"]).video() for _, r in done.head(MAX_GRID_ROWS).iterrows()}
    grid_file = report.save(compare_grid(videos, n=GRID_FRAMES, width=1.4, fontsize=11), "frame_grid.png")
    grid_note = ""
    if len(done) > MAX_GRID_ROWS:
        grid_note = f"(the first {MAX_GRID_ROWS} of {len(done)} videos; every video plays in the Videos section above)"
    return [f"<h2>Frame grid {grid_note}</h2>", image_tag(grid_file, "frame grid", "plot pixel"),
            f'<p class="meta">{FRAME_ZERO_NOTE}</p>']


def _metric_section(report: _Report) -> list[str]:
    """``metric_vs_param.png`` (and ``heatmap.png`` over two varied fields), then the metric's effects."""
    result, done, metric, px, phue = report.result, report.done, report.metric, report.px, report.phue
    parts = [f"<h2>{html.escape(metric)} vs {html.escape(px)}</h2>"]
    if not report.has(metric):
        return [*parts, f"<p>{html.escape(f'no {metric} values to plot (metrics off, or no point done)')}</p>"]
    parts.append(image_tag(report.save(result.plot(y=metric, x=px, hue=phue), "metric_vs_param.png"),
                           f"{metric} vs {px}"))
    if phue is not None and px != "seed" and done[px].nunique() > 1 and done[phue].nunique() > 1:
        heat_file = report.save(result.heatmap(value=metric, x=px, y=phue), "heatmap.png")
        parts.append(image_tag(heat_file, f"{metric} heatmap"))
    effects = report.effects(metric)
    if effects:
        parts.append(f"<h2>Effects on {html.escape(metric)}, over seeds</h2>")
        parts.extend(effects)
    return parts


def _extra_metric_sections(report: _Report) -> list[str]:
    """The same plot and effects for prompt adherence and the reference quality metrics the sweep measured."""
    parts = []
    for other in (m for m in EXTRA_METRICS if m != report.metric and report.has(m)):
        other_file = report.save(report.result.plot(y=other, x=report.px, hue=report.phue), f"{other}_vs_param.png")
        parts.append(f"<h2>{html.escape(other)} vs {html.escape(report.px)}</h2>")
        parts.append(image_tag(other_file, f"{other} vs {report.px}"))
        other_effects = report.effects(other)
        if other_effects:
            parts.append(f"<h3>Effects on {html.escape(other)}, over seeds</h3>")
            parts.extend(other_effects)
    return parts


def _reference_section(report: _Report) -> list[str]:
    """``vs_reference.png``: SSIM against the sweep's reference point (when it names one)."""
    from .plots import metric_plot
    from .sweep import format_value

    sweep, table, done = report.sweep, report.table, report.done
    if not sweep.reference or not table["ssim_vs_ref"].notna().any():
        return []
    ref_x = next(iter(sweep.reference))
    ref_hue = next((n for n in sweep.swept if n not in (ref_x, "seed") and done[n].nunique() > 1
                    and done[n].dtype.kind in "if"), None)
    ref_label = ", ".join(f"{k}={format_value(v)}" for k, v in sweep.reference.items())
    fig = metric_plot(table[table["status"] == "done"], x=ref_x, y="ssim_vs_ref", hue=ref_hue,
                      title=f"SSIM against the {ref_label} run of the same other settings")
    return [f"<h2>Against the reference ({html.escape(ref_label)})</h2>",
            image_tag(report.save(fig, "vs_reference.png"), "similarity to the reference run")]


def _accel_section(report: _Report) -> list[str]:
    """For a sweep over ``accel``.

    ``accel_study.csv`` and ``accel_speed_vs_psnr.png``, each setting against the exact run (the
    sweep's accel reference, else ``"exact"``), and their summary table.
    """
    from .accel import plot_study, summarize

    if "accel" not in report.sweep.swept:
        return []
    parts = ["<h2>Acceleration: speed vs fidelity</h2>"]
    if not len(report.done):
        return [*parts, f"<p>{html.escape('no point done yet')}</p>"]
    try:
        study = report.result.accel_study()
    except ValueError as exc:
        return [*parts, f"<p>{html.escape(str(exc) or 'no point done yet')}</p>"]
    write_text(report.out / "accel_study.csv", study.to_csv(index=False))
    summary = summarize(study)
    fig = plot_study(summary, title=f"{report.name}: speed vs fidelity (against {study.attrs['reference']})")
    plot_file = report.save(fig, "accel_speed_vs_psnr.png")
    parts.append(image_tag(plot_file, "speedup against PSNR per acceleration setting"))
    parts.append(f'<div class="scroll">{html_table(summary, css_class="metrics")}</div>')
    parts.append('<p class="meta">Speedup: the exact run\'s denoising time over the setting\'s, one run each '
                 '(see <a href="accel_study.csv">accel_study.csv</a>); PSNR pooled over frames and points, '
                 "SSIM and relative L2 of the final latents averaged over points; skipped: the share of "
                 "transformer calls served from the cache. <code>wanlab.accel.study</code> repeats and "
                 "interleaves runs for steadier speedups.</p>")
    return parts


def _table_section(report: _Report, csv: Path, video_files: Mapping[int, Path]) -> list[str]:
    """The sweep table (links to each point's video), also in ``metrics.csv``."""
    return ["<h2>Metrics</h2>", metrics_table(report.table, {i: f"videos/{p.name}" for i, p in video_files.items()}),
            (f'<p class="meta">Also in <a href="{csv.name}">{csv.name}</a>. Motion metrics are computed with '
             "classical optical flow: proxies for VBench / EvalCrafter scores, not comparable to their "
             "published numbers.</p>")]


def _definition_section(report: _Report) -> list[str]:
    """The sweep's TOML and the store that holds its runs."""
    return ["<h2>Sweep definition</h2>", f"<pre>{html.escape(report.sweep.to_toml())}</pre>",
            (f'<p class="meta">Store: {html.escape(str(Path(report.result.store.path).resolve()))}. Re-run the '
             "same definition to resume; every run there has its full reproducibility record.</p>")]


def _effects_sections(result: SweepResult, metric: str, done: pd.DataFrame) -> list[str]:
    """One block per swept field (other than seed) with several values.

    :meth:`SweepResult.effects` as HTML, or why there is none (one seed cannot tell an effect from
    noise).
    """
    axes = [n for n in result.sweep.swept if n != "seed" and done[n].astype(str).nunique() > 1]
    if not axes:
        return []
    seeds = done["seed"].nunique() if "seed" in done else 1
    if seeds < 2:
        return ['<p class="meta">Every setting ran with one seed, so a difference between settings cannot be told '
                "from seed-to-seed noise. Sweep <code>seed</code> too (e.g. <code>seeds = 5</code>) for means with "
                "95 % intervals and paired differences.</p>"]
    blocks = []
    for axis in axes:
        try:
            found = result.effects(metric, by=axis)
        except ValueError as exc:
            blocks.append(f"<p>{html.escape(axis)}: {html.escape(str(exc))}</p>")
            continue
        blocks.append(f'<div class="scroll effects">{found.to_html(css_class="metrics")}</div>')
    blocks.append(f'<p class="meta">Means with {seeds}-seed bootstrap 95 % intervals; differences are paired on '
                  "seeds (the other swept fields averaged per seed) and Holm-adjusted; \"differs\" marks those "
                  "whose interval excludes zero. See <code>wanlab.stats.effects</code>.</p>")
    return blocks


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

