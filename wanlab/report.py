"""A sweep's report folder: videos, a frame grid, the metrics table, plots and one self-contained HTML page.

:func:`write_sweep_report` writes into ``out``::

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
"""
from __future__ import annotations

import base64
import html
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .fsutil import write_text
from .tables import html_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .sweep import SweepResult

#: Videos smaller than this (px wide) are shown scaled up by a whole factor, pixels kept sharp.
MIN_SHOWN_WIDTH = 160
#: At most this many videos go into the frame grid (a bigger sweep would make a huge image).
MAX_GRID_ROWS = 9
GRID_FRAMES = 6
#: Besides the report's main metric, these get their own plot and effects when the sweep measured them.
EXTRA_METRICS = ("adherence", "adherence_visible", "clip_score", "subject_consistency", "background_consistency", "aesthetic_quality")
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
    """``data:<mime>;base64,...`` of a file's bytes."""
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def video_tag(path: str | os.PathLike[str], width: int, caption: str = "") -> str:
    """A ``<figure>`` with an embedded, looping, muted mp4 (plays inline in every browser)."""
    shown = width * max(1, math.ceil(MIN_SHOWN_WIDTH / max(width, 1)))
    return (f'<figure><video src="{data_uri(path, "video/mp4")}" width="{shown}" autoplay loop muted playsinline '
            f'controls></video><figcaption>{caption}</figcaption></figure>')


def image_tag(path: str | os.PathLike[str], alt: str, css: str = "plot") -> str:
    return f'<img class="{css}" alt="{html.escape(alt)}" src="{data_uri(path, "image/png")}">'


def fold_constants(df: "pd.DataFrame", keep: tuple[str, ...] = ("point", "status")) -> tuple[dict[str, Any], "pd.DataFrame"]:
    """Columns with one value in every row (said once, above the table) and the table without them."""
    constant = {}
    for name in df.columns:
        if name in keep or len(df) < 2:
            continue
        values = df[name].astype(str).unique()
        if len(values) == 1:
            constant[name] = df[name].iloc[0]
    return constant, df.drop(columns=list(constant))


def metrics_table(df: "pd.DataFrame", links: Mapping[int, str]) -> str:
    """The sweep table for the page: bookkeeping columns left out, constant columns folded into one
    line above it, and the table in its own scrolling box (the page never scrolls sideways)."""
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


def write_sweep_report(result: "SweepResult", out: Path, *, metric: str = "flow_magnitude",
                       title: str | None = None, x: str | None = None, hue: str | None = None) -> Path:
    """Write the report folder of a sweep result (see the module docstring); return ``out/report.html``."""
    from . import __version__
    from .plots import compare_grid
    from .probes.section import probe_section
    from .sweep import format_value

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweep, df = result.sweep, result.df
    done = df[df["status"] == "done"]
    name = sweep.name or "sweep"

    # --- videos, named by their point
    video_files: dict[int, Path] = {}
    names: set[str] = set()
    for _, row in done.iterrows():
        i = int(row["point"])
        run = result.store.get(row["key"])
        name_i = sweep.slug(i, result.points[i])
        if name_i in names:  # two points that print alike (e.g. LoRA files of one name in two folders)
            name_i = f"{name_i}_point{i}"
        names.add(name_i)
        video_files[i] = _copy_run_files(run, out / "videos" / f"{name_i}.mp4")

    # --- table (with the comparison against the sweep's reference point, when it names one)
    table = result.compare() if sweep.reference else df
    csv = write_text(out / "metrics.csv", table.to_csv(index=False))

    # --- frame grid
    grid_file: Path | None = None
    grid_note = ""
    if len(done):
        shown = done.head(MAX_GRID_ROWS)
        free = [n for n in sweep.swept if done[n].astype(str).nunique() > 1] or sweep.swept
        videos = {sweep.label(int(r["point"]), result.points[int(r["point"])], free, short=True, sep="\n"):
                  result.store.get(r["key"]).video() for _, r in shown.iterrows()}
        fig = compare_grid(videos, n=GRID_FRAMES, width=1.4, fontsize=11)
        grid_file = out / "frame_grid.png"
        fig.savefig(grid_file, dpi=90)
        if len(done) > MAX_GRID_ROWS:
            grid_note = (f"(the first {MAX_GRID_ROWS} of {len(done)} videos; every video plays in the Videos "
                         "section above)")

    # --- metric plots
    plot_file: Path | None = None
    heat_file: Path | None = None
    plot_note = ""
    have_metric = metric in df.columns and done[metric].notna().any() if len(done) else False
    px, phue = result.default_axes(x, hue)
    if have_metric:
        fig = result.plot(y=metric, x=px, hue=phue)
        plot_file = out / "metric_vs_param.png"
        fig.savefig(plot_file, dpi=90)
        if phue is not None and px != "seed" and done[px].nunique() > 1 and done[phue].nunique() > 1:
            heat_file = out / "heatmap.png"
            result.heatmap(value=metric, x=px, y=phue).savefig(heat_file, dpi=90)
    else:
        plot_note = f"no {metric} values to plot (metrics off, or no point done)"
    ref_file: Path | None = None
    if sweep.reference and table["ssim_vs_ref"].notna().any():
        from .plots import metric_plot

        ref_x = next(iter(sweep.reference))
        ref_hue = next((n for n in sweep.swept if n not in (ref_x, "seed") and done[n].nunique() > 1
                        and done[n].dtype.kind in "if"), None)
        ref_label = ", ".join(f"{k}={format_value(v)}" for k, v in sweep.reference.items())
        fig = metric_plot(table[table["status"] == "done"], x=ref_x, y="ssim_vs_ref", hue=ref_hue,
                          title=f"SSIM against the {ref_label} run of the same other settings")
        ref_file = out / "vs_reference.png"
        fig.savefig(ref_file, dpi=90)

    # --- acceleration: each setting against the exact run (the sweep's accel reference, else "exact")
    accel_file: Path | None = None
    accel_summary = None
    accel_note = ""
    if "accel" in sweep.swept and len(done):
        from .accel import plot_study, summarize

        try:
            study = result.accel_study()
        except ValueError as exc:
            accel_note = str(exc)
        else:
            write_text(out / "accel_study.csv", study.to_csv(index=False))
            accel_summary = summarize(study)
            accel_file = out / "accel_speed_vs_psnr.png"
            plot_study(accel_summary, title=f"{name}: speed vs fidelity (against {study.attrs['reference']})"
                       ).savefig(accel_file, dpi=90)

    # --- effects: what each swept field does to the metric, with intervals over seeds
    effects_html: list[str] = []
    if have_metric:
        effects_html = _effects_sections(result, metric, done)
    # --- the same for prompt adherence and the reference quality metrics, when the sweep measured them
    extra: list[tuple[str, Path | None, list[str]]] = []
    for other in (m for m in EXTRA_METRICS if m != metric and m in df.columns and len(done) and done[m].notna().any()):
        other_file = out / f"{other}_vs_param.png"
        result.plot(y=other, x=px, hue=phue).savefig(other_file, dpi=90)
        extra.append((other, other_file, _effects_sections(result, other, done)))

    # --- the page
    counts = result.counts
    model = done.iloc[0] if len(done) else None
    record: dict[str, Any] = {}
    if model is not None:
        record = result.store.get(model["key"]).record
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

    parts = [f"<h1>{html.escape(title or f'Sweep: {name}')}</h1>"]
    if sweep.question:
        parts.append(f'<p class="question">Question: {html.escape(sweep.question)}</p>')
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')

    parts.append("<h2>Videos</h2>")
    figures = []
    free = [n for n in sweep.swept if len(done) and done[n].astype(str).nunique() > 1] or sweep.swept
    prompts_vary = "prompt" in free
    for _, row in done.iterrows():
        i = int(row["point"])
        caption = html.escape(sweep.label(i, result.points[i], [n for n in free if n != "prompt"]))
        if prompts_vary:
            caption = f"<i>{html.escape(result.points[i].prompt)}</i><br>{caption}"
        if metric in row and not _missing(row[metric]):
            caption += f"<br>{html.escape(metric)} {row[metric]:.3g}"
        width = int(result.points[i].width)
        figures.append(video_tag(video_files[i], width, caption))
    parts.append(f'<div class="videos">{"".join(figures)}</div>' if figures else "<p>No video yet.</p>")
    failed = df[df["status"] == "failed"]
    if len(failed):
        items = "".join(
            f"<li>point {i} ({html.escape(sweep.label(i, result.points[i]))}): {html.escape(str(r['error']))}</li>"
            for i, r in ((int(r["point"]), r) for _, r in failed.iterrows()))
        parts.append(f'<p class="failed-list">Failed:</p><ul class="failed-list">{items}</ul>')

    if grid_file is not None:
        parts.append(f"<h2>Frame grid {grid_note}</h2>")
        parts.append(image_tag(grid_file, "frame grid", "plot pixel"))
        parts.append(f'<p class="meta">{FRAME_ZERO_NOTE}</p>')
    parts.append(f"<h2>{html.escape(metric)} vs {html.escape(px)}</h2>")
    if plot_file is not None:
        parts.append(image_tag(plot_file, f"{metric} vs {px}"))
        if heat_file is not None:
            parts.append(image_tag(heat_file, f"{metric} heatmap"))
    else:
        parts.append(f"<p>{html.escape(plot_note)}</p>")

    if effects_html:
        parts.append(f"<h2>Effects on {html.escape(metric)}, over seeds</h2>")
        parts.extend(effects_html)

    for other, other_file, other_effects in extra:
        parts.append(f"<h2>{html.escape(other)} vs {html.escape(px)}</h2>")
        parts.append(image_tag(other_file, f"{other} vs {px}"))
        if other_effects:
            parts.append(f"<h3>Effects on {html.escape(other)}, over seeds</h3>")
            parts.extend(other_effects)

    if ref_file is not None:
        parts.append(f"<h2>Against the reference ({html.escape(ref_label)})</h2>")
        parts.append(image_tag(ref_file, "similarity to the reference run"))

    if "accel" in sweep.swept:
        parts.append("<h2>Acceleration: speed vs fidelity</h2>")
        if accel_file is not None and accel_summary is not None:
            parts.append(image_tag(accel_file, "speedup against PSNR per acceleration setting"))
            parts.append(f'<div class="scroll">{html_table(accel_summary, css_class="metrics")}</div>')
            parts.append('<p class="meta">Speedup: the exact run\'s denoising time over the setting\'s, one run each '
                         '(see <a href="accel_study.csv">accel_study.csv</a>); PSNR pooled over frames and points, '
                         "SSIM and relative L2 of the final latents averaged over points; skipped: the share of "
                         "transformer calls served from the cache. <code>wanlab.accel.study</code> repeats and "
                         "interleaves runs for steadier speedups.</p>")
        else:
            parts.append(f"<p>{html.escape(accel_note or 'no point done yet')}</p>")

    parts.extend(probe_section(result, out, done, image_tag, lambda metric: _effects_sections(result, metric, done)))

    parts.append("<h2>Metrics</h2>")
    parts.append(metrics_table(table, {i: f"videos/{p.name}" for i, p in video_files.items()}))
    parts.append(f'<p class="meta">Also in <a href="{csv.name}">{csv.name}</a>. Motion metrics are computed with '
                 "classical optical flow: proxies for VBench / EvalCrafter scores, not comparable to their "
                 "published numbers.</p>")

    parts.append("<h2>Sweep definition</h2>")
    parts.append(f"<pre>{html.escape(sweep.to_toml())}</pre>")
    parts.append(f'<p class="meta">Store: {html.escape(str(Path(result.store.path).resolve()))}. Re-run the same '
                 "definition to resume; every run there has its full reproducibility record.</p>")

    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or name)}'
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return write_text(out / "report.html", page)


def _effects_sections(result: "SweepResult", metric: str, done: "pd.DataFrame") -> list[str]:
    """One block per swept field (other than seed) with several values: :meth:`SweepResult.effects`
    as HTML, or why there is none (one seed cannot tell an effect from noise)."""
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

