"""The speed/fidelity study of acceleration settings: the exact baseline and each setting on the same requests.

:func:`study` runs them on any backend and returns one row per (request, setting): speedup of the
denoising loop, PSNR/SSIM of the frames and relative L2 of the final latents against the exact
run, and the work the cache skipped; :func:`summarize` aggregates per setting and
:func:`plot_study` draws speed against PSNR with the Pareto front marked.
``SweepResult.accel_study`` gives the same table from a sweep over ``accel`` kept in a store.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..backend import Backend, Job
from ..errors import ParamError
from ..frames import pooled_psnr
from ..inputs import AccelLike
from ..values import check_choice, check_int
from .setting import Accel

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..params import Params

def _settings(settings: Any) -> list[tuple[str, Accel]]:
    if isinstance(settings, (str, Accel)) or (isinstance(settings, Mapping) and "cache" in settings):
        settings = [settings]
    if isinstance(settings, Mapping):
        items = [(str(label), Accel.coerce(value, f"settings[{label!r}]")) for label, value in settings.items()]
    elif isinstance(settings, (list, tuple)):
        items = []
        for i, value in enumerate(settings):
            accel = Accel.coerce(value, f"settings[{i}]")
            items.append((accel.label, accel))
    else:
        raise ParamError("settings", "a list of Accel / preset names / mappings, or a mapping label -> setting",
                         settings)
    out: list[tuple[str, Accel]] = [("exact", Accel())]
    for label, accel in items:
        if accel.is_default:
            continue  # the exact baseline is always run
        if any(label == lo for lo, _ in out):
            raise ParamError("settings", "settings with distinct labels (give a mapping label -> setting)", label)
        out.append((label, accel))
    return out




def _points(backend: Any, points: Any) -> list[Params]:
    from ..params import Params

    if hasattr(points, "points") and callable(points.points) and not isinstance(points, Mapping):
        items = list(dict.fromkeys(points.points(backend)))  # a wanlab.Sweep (its requests, once each)
    elif isinstance(points, (Params, Mapping)):
        items = [points]
    elif isinstance(points, (list, tuple)) and points:
        items = list(points)
    else:
        raise ParamError("points", "a Params, a mapping of Params fields, a list of those, or a Sweep", points)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Params):
            p = backend.params(item)  # the one rule: fields it leaves unset come from the model
        elif isinstance(item, Mapping):
            p = backend.params(**dict(item))
        else:
            raise ParamError(f"points[{i}]", "a Params or a mapping of Params fields", item)
        out.append(p.resolved())  # one seed per point, shared by the baseline and every setting
    return out


def rel_l2(a: Any, b: Any) -> float:
    """Relative L2 error of ``a`` against reference ``b``: ``|a - b| / |b|`` over all elements (float64).

    Args:
        a: An array (or tensor).
        b: The reference, same shape.

    Returns:
        The error (``|a - b|`` when ``b`` is all zero).

    Raises:
        ValueError: The shapes differ.

    Example:
        >>> rel_l2([0.0, 4.0], [0.0, 5.0])
        0.2
    """
    import numpy as np

    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"rel_l2: shapes differ: {a64.shape} vs {b64.shape}")
    norm = float(np.linalg.norm(b64))
    return float(np.linalg.norm(a64 - b64) / norm) if norm else float(np.linalg.norm(a64 - b64))


def study(backend: Backend, points: Any, settings: Iterable[AccelLike] | Mapping[str, AccelLike], *,
          repeats: int = 1, warmup: str | bool = "auto",
          timing: str = "median", progress: bool = False) -> pd.DataFrame:
    """Run the exact baseline and each acceleration setting on the same requests; one row per (point, setting).

    Args:
        backend: A loaded pipeline or any backend (a Ray pool runs each request's settings on one
            worker, so timings compare like with like).
        points: A :class:`~wanlab.Params`, a mapping of fields (the model's native settings fill
            the rest), a list of those, or a :class:`~wanlab.Sweep` (its points). Seeds of -1 are
            drawn once per point, so the baseline and every setting see the same noise.
        settings: A list of :class:`Accel` / preset names / mappings, or a mapping label -> setting.
            The exact baseline (label ``"exact"``) is always run first and need not be listed.
        repeats: Runs per (point, setting), interleaved (the order of the settings alternates).
            Outputs must repeat bit for bit (checked: ``repeatable``).
        warmup: ``"auto"`` runs the exact baseline once untimed before timing anything, and each
            compiled setting once per point (compilation is not what a study measures); True warms
            every setting; False none.
        timing: ``"median"`` or ``"min"`` of the repeats' denoising times (``"min"``, best of N, is
            the steadier one on a loaded machine).
        progress: Print a line per run.

    Returns:
        A pandas DataFrame. Columns: ``point``, the request fields, ``setting`` (label), ``cache``, ``compile``,
    ``attention_backend``, ``accel_key``, ``denoise_s`` (denoising loop only; MagCache calibration
    and hook setup are in ``setup_s``), ``speedup`` (exact ``denoise_s`` / this ``denoise_s`` on the
    same point), ``psnr`` (dB, from the mean squared error over all frames against the exact frames,
    i.e. :func:`pooled_psnr` of :func:`wanlab.metrics.psnr`'s per-frame values: finite unless every
    frame is identical), ``psnr_frame_mean`` (:func:`wanlab.metrics.psnr`'s ``mean``, of per-frame dB
    values: ``inf`` as soon as one frame is identical), ``ssim`` (:func:`wanlab.metrics.ssim`'s
    ``mean``), ``rel_l2`` (relative L2 error of the final latents), ``max_abs`` (latents),
    ``identical`` (frames bit-identical to exact), ``calls``, ``calls_full``, ``calls_skipped``,
    ``calls_partial``, ``block_work`` (see :class:`CallCounter`; NaN under compile),
    ``repeatable``, ``digest``. ``df.attrs`` holds the machine (threads, device) and the settings.

    Raises:
        ParamError: Bad points, settings (or labels that repeat), repeats, warmup or timing.

    Example:
        >>> df = wanlab.accel.study(pipe, {"prompt": "a fox", "seed": 1}, ["fbc", "mag"], repeats=3)  # doctest: +SKIP
        >>> wanlab.accel.summarize(df)[["setting", "speedup", "psnr", "pareto"]]  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from ..record import environment

    check_int("repeats", repeats, 1, 100)
    check_choice("warmup", warmup, ("auto", True, False), "'auto', True or False")
    check_choice("timing", timing, ("median", "min"), "'median' or 'min'")
    pick = np.median if timing == "median" else np.min
    plan = _settings(settings)
    todo = _points(backend, points)
    total = len(todo) * len(plan) * repeats
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="accel study", unit="run", dynamic_ncols=True)

    def run(p: Params, accel: Accel):
        # one affinity per request: a pool runs every setting of it on the same worker
        return backend.start(Job(p, accel, affinity=f"study:{p.to_dict()}")).result()

    rows = []
    try:
        if warmup in ("auto", True) and todo:
            run(todo[0], plan[0][1])
        for index, p in enumerate(todo):
            if warmup is True or warmup == "auto":
                for _label, accel in plan[1:]:
                    if warmup is True or accel.compile != "off":
                        run(p, accel)
            results: dict[str, list[Any]] = {label: [] for label, _ in plan}
            for r in range(repeats):
                order = plan if r % 2 == 0 else [plan[0], *reversed(plan[1:])]
                for label, accel in order:
                    results[label].append(run(p, accel))
                    if bar is not None:
                        bar.update(1)
            exact_runs = results["exact"]
            exact = exact_runs[0]
            exact_time = float(pick([v.timings["denoise"] for v in exact_runs]))
            for label, accel in plan:
                videos = results[label]
                video = videos[0]
                row = {"point": index, **{k: v for k, v in p.to_dict().items() if k != "loras"},
                       "loras": len(p.loras),
                       **study_row(label, accel, denoise=float(pick([v.timings["denoise"] for v in videos])),
                                   setup=float(np.median([(v.record.get("accel_stats") or {}).get("setup_s", 0.0)
                                                          for v in videos])),
                                   exact_denoise=exact_time, stats=video.record.get("accel_stats"),
                                   fidelity=fidelity(video.frames, exact.frames, video.latents, exact.latents,
                                                     identical=video.digest == exact.digest)),
                       "repeatable": all(v.digest == video.digest for v in videos), "digest": video.digest}
                rows.append(row)
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows)
    identity = backend.identity
    device = getattr(backend, "device", "remote")
    env = environment(device)
    df.attrs.update({"model": identity.model_id, "fingerprint": identity.fingerprint, "device": device,
                     "torch_threads": env["torch_threads"], "device_name": env["device_name"],
                     "repeats": repeats, "timing": timing, "settings": {label: a.to_dict() for label, a in plan}})
    return df


def fidelity(frames: Any, exact_frames: Any, latents: Any = None, exact_latents: Any = None, *,
             identical: bool | None = None) -> dict[str, Any]:
    """How far a run is from the exact run of the same request.

    Args:
        frames: The run's uint8 (T, H, W, 3) frames.
        exact_frames: The exact run's frames.
        latents: The run's final latents, or None.
        exact_latents: The exact run's final latents, or None.
        identical: Whether the frames are bit-identical, when already known (e.g. from digests);
            computed when None.

    Returns:
        ``psnr`` (pooled over frames, see :func:`pooled_psnr`), ``psnr_frame_mean``, ``ssim`` (by
        :func:`wanlab.metrics.compare`), of the final latents ``rel_l2`` and ``max_abs`` (NaN when
        either run has none), and ``identical``.

    Example:
        >>> import numpy as np
        >>> frames = np.zeros((2, 8, 8, 3), np.uint8)
        >>> fidelity(frames, frames)["psnr"], fidelity(frames, frames)["rel_l2"]
        (inf, nan)
    """
    import numpy as np

    from ..metrics import compare

    frames, exact_frames = np.asarray(frames), np.asarray(exact_frames)
    if identical is None:
        identical = frames.shape == exact_frames.shape and bool(np.array_equal(frames, exact_frames))
    if identical:
        out: dict[str, Any] = {"psnr": float("inf"), "psnr_frame_mean": float("inf"), "ssim": 1.0}
    else:
        out = dict(compare(frames, exact_frames))  # the one definition of psnr / psnr_frame_mean / ssim
    if latents is None or exact_latents is None:
        out.update(rel_l2=float("nan"), max_abs=float("nan"))
    else:
        out.update(rel_l2=rel_l2(latents, exact_latents),
                   max_abs=float(np.abs(np.asarray(latents, np.float64) - np.asarray(exact_latents, np.float64)).max()))
    out["identical"] = bool(identical)
    return out


#: Work counters a run records (``record["accel_stats"]``), as study columns.
STAT_COLUMNS = ("calls", "calls_full", "calls_skipped", "calls_partial", "block_work")


def study_row(label: str, accel: Accel, *, denoise: float, setup: float, exact_denoise: float,
              fidelity: Mapping[str, Any], stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row :func:`study` (and ``SweepResult.accel_study``) gives one (request, setting).

    Args:
        label: The setting's label.
        accel: The setting.
        denoise: Its denoising seconds.
        setup: Its setup seconds (MagCache calibration, hooks).
        exact_denoise: The exact run's denoising seconds on the same request.
        fidelity: What :func:`fidelity` returned.
        stats: The run's work counters (``record["accel_stats"]``), or None.

    Returns:
        The setting, its timings and speedup over exact, its fidelity and its work counters
        (:data:`STAT_COLUMNS`, NaN where not counted).

    Example:
        >>> row = study_row("fbc", Accel.preset("fbc"), denoise=2.0, setup=0.1, exact_denoise=3.0,
        ...                 fidelity={"psnr": 40.0}, stats=None)
        >>> row["speedup"], row["calls_skipped"]
        (1.5, nan)
    """
    stats = stats or {}
    row = {"setting": label, "cache": accel.cache, "compile": accel.compile,
           "attention_backend": accel.attention_backend, "accel_key": accel.key(), "denoise_s": denoise,
           "setup_s": setup, "speedup": exact_denoise / denoise if denoise > 0 else float("nan"), **fidelity}
    for k in STAT_COLUMNS:
        value = stats.get(k)
        row[k] = float("nan") if value is None else value
    return row


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setting of a study, in study order.

    Args:
        df: The DataFrame :func:`study` (or ``SweepResult.accel_study``) returned.

    Returns:
        A DataFrame: mean ``speedup`` (and the worst, ``speedup_min``), ``psnr`` pooled over points
        (:func:`pooled_psnr`), mean ``ssim``/``rel_l2`` over points, ``calls_skipped`` as a fraction
        of all calls (``skipped``), mean ``block_work``, the mean of every ``<metric>_change`` column
        (a metric's change from the exact run, e.g. ``adherence_change``, when the sweep measured
        it), and ``pareto`` (True when no other setting is both at least as fast and at least as
        faithful, one of them strictly).

    Raises:
        ValueError: Not a study's table.

    Example:
        >>> wanlab.accel.summarize(df)[["setting", "speedup", "psnr", "pareto"]]  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    if "setting" not in df or df.empty:
        raise ValueError("summarize: needs the DataFrame returned by wanlab.accel.study")
    rows = []
    for label, group in df.groupby("setting", sort=False):
        calls = group["calls"].sum(min_count=1)  # NaN when not counted (compile)
        rows.append({"setting": label, "cache": group["cache"].iloc[0], "compile": group["compile"].iloc[0],
                     "points": len(group), "speedup": float(group["speedup"].mean()),
                     "speedup_min": float(group["speedup"].min()),
                     "denoise_s": float(group["denoise_s"].mean()),
                     "psnr": pooled_psnr(group["psnr"]), "ssim": float(group["ssim"].mean()),
                     "rel_l2": float(group["rel_l2"].mean()),
                     "calls": float(calls) if not np.isnan(calls) else float("nan"),
                     "skipped": float(group["calls_skipped"].sum() / calls) if calls and not np.isnan(calls)
                     else float("nan"),
                     "block_work": float(group["block_work"].mean()),
                     "identical": bool(group["identical"].all()),
                     # what the setting costs in the measured metrics (accel_study's <name>_change columns)
                     **{c: float(group[c].mean()) for c in group.columns if c.endswith("_change")}})
    out = pd.DataFrame(rows)
    out["pareto"] = pareto_mask(out["speedup"].to_numpy(), out["psnr"].to_numpy())
    return out


def pareto_mask(speed: Sequence[float], fidelity: Sequence[float]) -> list[bool]:
    """Which points no other point dominates (higher-or-equal in both, strictly higher in one).

    Args:
        speed: Speed per point (higher is better).
        fidelity: Fidelity per point (higher is better).

    Returns:
        True for the Pareto front (False for points with NaN).

    Example:
        >>> pareto_mask([1.0, 2.0, 1.5], [40.0, 30.0, 25.0])
        [True, True, False]
    """
    pts = list(zip([float(s) for s in speed], [float(f) for f in fidelity]))
    out = []
    for i, (s, f) in enumerate(pts):
        dominated = any((s2 >= s and f2 >= f) and (s2 > s or f2 > f) for j, (s2, f2) in enumerate(pts) if j != i)
        out.append(not dominated and not (math.isnan(s) or math.isnan(f)))
    return out


def plot_study(df: pd.DataFrame, *, title: str | None = None):
    """Speedup (x) against ``psnr`` vs exact (y; pooled over frames and points), one point per setting.

    The Pareto front is drawn as a line; settings bit-identical to exact (PSNR = inf) sit on a band
    at the top.

    Args:
        df: A study's table, or its :func:`summarize`.
        title: The title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> wanlab.accel.plot_study(df)  # doctest: +SKIP
    """
    import numpy as np

    from ..plots import pyplot

    plt = pyplot()
    summary = df if "pareto" in df else summarize(df)
    psnr = summary["psnr"].to_numpy(dtype=float)
    finite = psnr[np.isfinite(psnr)]
    top = (finite.max() + 5.0) if finite.size else 60.0
    shown = np.where(np.isfinite(psnr), psnr, top)
    speed = summary["speedup"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    front = summary["pareto"].to_numpy(dtype=bool)
    ax.scatter(speed[~front], shown[~front], color="tab:gray", label="dominated", zorder=2)
    ax.scatter(speed[front], shown[front], color="tab:red", label="Pareto front", zorder=3)
    order = np.argsort(speed[front])
    ax.plot(speed[front][order], shown[front][order], color="tab:red", lw=1.2, zorder=2)
    for x, y, label in zip(speed, shown, summary["setting"]):
        ax.annotate(str(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if not np.isfinite(psnr).all():
        ax.axhline(top, color="tab:green", lw=0.8, ls=":", label="identical to exact (PSNR = inf)")
    ax.axvline(1.0, color="black", lw=0.6, ls="--")
    ax.set_xlabel("speedup (exact denoise time / setting's)")
    ax.set_ylabel("PSNR vs exact (dB; psnr: the MSE over all frames and points)")
    ax.set_title(title or "acceleration: speed vs fidelity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    plt.close(fig)
    return fig
