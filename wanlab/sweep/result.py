"""A sweep's table (:class:`SweepResult`), one row per point, read from the store.

It is the same from every process, and selects, compares, plots and tests effects over the sweep's seeds.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WanlabError
from ..metrics import ADHERENCE_KEYS, MOTION_KEYS, QUALITY_KEYS
from ..metrics.suite import error_keys
from ..params import Params
from .values import ACCEL, column_value

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..store import Run, Store
    from ..video import Video
    from .definition import Sweep

STATUSES = ("done", "failed", "pending")
#: Columns a sweep over ``accel`` adds to its table.
ACCEL_COLUMNS = ("denoise_s", "calls_skipped")
#: Measured metrics :meth:`SweepResult.accel_study` compares with the reference run (``<name>_change``).
STUDY_METRICS = ("flow_magnitude", *ADHERENCE_KEYS[:1], *QUALITY_KEYS)
#: Metric columns come in this order (``metrics.motion``'s, then adherence and the reference metrics), any others after.
METRIC_ORDER = (*MOTION_KEYS, *ADHERENCE_KEYS, *QUALITY_KEYS)


class SweepResult:
    """The sweep's table, one row per point, read from the store (the same from every process).

    :meth:`Sweep.run <wanlab.sweep.definition.Sweep.run>` and :meth:`Sweep.result
    <wanlab.sweep.definition.Sweep.result>` make it. A point's status is ``done`` (the run is in the
    store: ran now, earlier, or in another shard), ``failed`` (the last attempt failed; ``error``
    holds ``"ExceptionType: message"``) or ``pending`` (not run yet: another shard's share, or a sweep
    stopped by ``max_failures``).

    Attributes:
        df: the table. Columns: ``point`` (index in sweep order), the swept fields (``sweep.swept``;
            ``accel`` as the setting's label), ``status``, ``error``, ``seconds`` (generation time),
            ``digest`` (sha256 of the frames), for a sweep over ``accel`` also ``denoise_s`` and
            ``calls_skipped``, one column per metric, ``key`` (the run key) and ``path`` (the mp4).
        sweep: the :class:`~wanlab.sweep.definition.Sweep`.
        store: the :class:`~wanlab.Store` the runs are in.
        points: each point's resolved request.
        ran: the points this call generated.
        stopped: why a run stopped early (None: it did not).

    Example:
        >>> import tempfile
        >>> from wanlab.sweep import Sweep
        >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2], grid={"guidance_scale": [3.0, 5.0]})
        >>> result = sweep.result("tiny", tempfile.mkdtemp())  # what the store holds: nothing yet
        >>> result.counts
        {'done': 0, 'failed': 0, 'pending': 4}
        >>> result.select(seed=1)[["point", "guidance_scale", "status"]]
           point  guidance_scale   status
        0      0             3.0  pending
        1      1             5.0  pending
    """

    def __init__(self, sweep: Sweep, store: Store, backend: Any, *, points: list[Params], keys: list[str],
                 ran: Sequence[int] = (), stopped: str | None = None, shard: tuple[int, int] = (0, 1)) -> None:
        self.sweep = sweep
        self.store = store
        self.backend = backend
        self.points = points
        self.accels = sweep.accels()
        self.keys = keys
        self.ran = list(ran)
        self.stopped = stopped
        self.shard = shard
        self.df = self._table()

    def _table(self) -> pd.DataFrame:
        import pandas as pd

        failures = self.store.failures()
        rows: list[dict[str, Any]] = []
        metric_names: list[str] = []
        timing = list(ACCEL_COLUMNS) if ACCEL in self.sweep.swept else []
        for i, (params, key) in enumerate(zip(self.points, self.keys)):
            row: dict[str, Any] = {"point": i}
            for name in self.sweep.swept:
                row[name] = self.sweep.value_of(i, params, name) if name == ACCEL else column_value(params, name)
            metrics: dict[str, Any] = {}
            run = self.store.get(key) if self.store.has(key) else None
            try:
                record = run.record if run is not None else {}
            except WanlabError as exc:  # a damaged record.json: the point says so, the table stands
                run, failures = None, {**failures, key: {"error": str(exc)}}
            if run is not None:
                metrics = dict(run.metrics)
                metrics_error = metrics.pop("metrics_error", None) or (record.get("extra") or {}).get("metrics_error")
                errors = [f"metrics: {metrics_error}"] if metrics_error else []
                for name in [n for n in metrics if n in error_keys()]:  # a metric set that failed (suite.error_key)
                    message = metrics.pop(name)
                    if message:
                        errors.append(f"{name[:-len('_error')]}: {message}")
                metrics = {n: v for n, v in metrics.items() if v is None or isinstance(v, (int, float))}
                row.update(status="done", error="; ".join(errors) or None,
                           seconds=_seconds(record), digest=run.digest)
                if timing:
                    row.update(_accel_columns(record))
                path = str(run.mp4)
            elif key in failures:
                row.update(status="failed", error=_failure_error(failures[key]), seconds=math.nan, digest=None)
                path = None
            else:
                row.update(status="pending", error=None, seconds=math.nan, digest=None)
                path = None
            for name in timing:
                row.setdefault(name, math.nan)
            for name in metrics:
                if name not in metric_names:
                    metric_names.append(name)
            row["_metrics"] = metrics
            row["key"] = key
            row["path"] = path
            rows.append(row)
        metric_names = [n for n in METRIC_ORDER if n in metric_names] + [n for n in metric_names
                                                                          if n not in METRIC_ORDER]
        for row in rows:
            metrics = row.pop("_metrics")
            key, path = row.pop("key"), row.pop("path")
            for name in metric_names:
                row[name] = float(metrics[name]) if name in metrics and metrics[name] is not None else math.nan
            row["key"], row["path"] = key, path
        columns = ["point", *self.sweep.swept, "status", "error", "seconds", "digest", *timing, *metric_names, "key",
                   "path"]
        df = pd.DataFrame(rows, columns=columns)
        return df

    # --- summary ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    @property
    def counts(self) -> dict[str, int]:
        """How many points are done, failed and pending."""
        values = self.df["status"].value_counts().to_dict() if len(self.df) else {}
        return {status: int(values.get(status, 0)) for status in STATUSES}

    @property
    def complete(self) -> bool:
        """Whether every point of the sweep is done."""
        return self.counts["done"] == len(self.df)

    @property
    def metric_names(self) -> list[str]:
        """The table's metric columns (every column but the point, swept fields and bookkeeping)."""
        fixed = {"point", *self.sweep.swept, "status", "error", "seconds", "digest", "key", "path", *ACCEL_COLUMNS}
        return [c for c in self.df.columns if c not in fixed]

    def summary(self) -> str:
        """One line: points done, failed and pending, what this call ran, the store (and why it stopped)."""
        c = self.counts
        text = (f"sweep {self.sweep.name or ''}: {len(self)} points, {c['done']} done, {c['failed']} failed, "
                f"{c['pending']} pending; {len(self.ran)} run now; store {self.store.path}")
        text = text.replace("sweep :", "sweep:")
        if self.stopped:
            text += f" ({self.stopped})"
        return text

    def __repr__(self) -> str:
        return f"SweepResult({self.summary()})"

    def _repr_html_(self) -> str:
        import html

        from ..tables import html_table

        return f"<p>{html.escape(self.summary())}</p>" + html_table(self.df.drop(columns=["key", "path"]),
                                                                  row_class="status", cut={"digest": 12})

    # --- selecting ---------------------------------------------------------------------------------------
    def select(self, **filters: Any) -> pd.DataFrame:
        """Rows whose columns (or Params fields) equal the given values.

        Args:
            **filters: column or Params field names and the values to keep (a list, tuple or set: any of them).

        Returns:
            The matching rows of :attr:`df`.

        Raises:
            ValueError: a name that is neither a column nor a Params field.

        Example:
            >>> result.select(seed=1, status="done")  # doctest: +SKIP
        """
        mask = [self._matches(i, filters) for i in range(len(self.df))]
        return self.df[mask]

    def _matches(self, i: int, filters: Mapping[str, Any]) -> bool:
        row = self.df.iloc[i]
        for name, wanted in filters.items():
            if name == ACCEL and not isinstance(wanted, (str, list, tuple, set)):
                wanted = self.sweep.cell_of(ACCEL, wanted)  # an Accel or a mapping: its label
            if name in self.df.columns:
                value = row[name]
            elif name in Params.field_names():
                value = column_value(self.points[i], name)
            else:
                raise ValueError(f"{name}: not a column of the sweep table or a Params field; the columns are "
                                 f"{', '.join(self.df.columns)}")
            if isinstance(wanted, (list, tuple, set)) and not isinstance(value, (list, tuple)):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True

    def runs(self, **filters: Any) -> list[Run]:
        """The stored runs of the done points that match ``filters``, in sweep order.

        Args:
            **filters: as :meth:`select`.

        Returns:
            A :class:`~wanlab.store.Run` per matching done point.

        Example:
            >>> [run.video().digest[:8] for run in result.runs(guidance_scale=5.0)]  # doctest: +SKIP
        """
        rows = self.select(**filters)
        return [self.store.get(key) for key in rows.loc[rows["status"] == "done", "key"]]

    def get(self, **filters: Any) -> Run:
        """The stored run of the one point that matches ``filters``.

        Args:
            **filters: as :meth:`select`; together they must pick exactly one point.

        Returns:
            Its :class:`~wanlab.store.Run`.

        Raises:
            LookupError: no point or several match, or the one that matches is not done (its error said).

        Example:
            >>> result.get(seed=1, guidance_scale=5.0)  # doctest: +SKIP
            Run(...)
        """
        rows = self.select(**filters)
        if len(rows) != 1:
            raise LookupError(f"{len(rows)} points match {filters or 'no filter'}; give filters that pick exactly "
                              f"one (swept: {', '.join(self.sweep.swept)})")
        row = rows.iloc[0]
        if row["status"] != "done":
            i = int(row["point"])
            reason = f": {row['error']}" if row["status"] == "failed" else ""
            raise LookupError(f"point {i} ({self.sweep.label(i, self.points[i])}) is {row['status']}{reason}")
        return self.store.get(row["key"])

    def video(self, **filters: Any) -> Video:
        """The video of the one point that matches ``filters``.

        Args:
            **filters: as :meth:`select`; together they must pick exactly one point.

        Returns:
            Its :class:`~wanlab.Video`.

        Raises:
            LookupError: no point or several match, or the one that matches is not done.

        Example:
            >>> result.video(seed=1, guidance_scale=5)  # doctest: +SKIP
        """
        return self.get(**filters).video()

    def videos(self, **filters: Any) -> dict[str, Video]:
        """Videos of the done points matching ``filters``, labelled by the swept fields the filters leave free.

        Args:
            **filters: swept fields and their values (a list, tuple or set: any of them), as :meth:`select`.

        Returns:
            Label to :class:`~wanlab.Video`, ready for ``wanlab.show`` and ``plots.compare_grid``.

        Example:
            >>> wanlab.show(result.videos(seed=1))  # doctest: +SKIP
        """
        rows = self.select(**filters)
        rows = rows[rows["status"] == "done"]
        free = [n for n in self.sweep.swept if n not in filters or isinstance(filters[n], (list, tuple, set))]
        if len(rows) > 1:
            free = [n for n in free if rows[n].astype(str).nunique() > 1] or free
        out: dict[str, Video] = {}
        for _, row in rows.iterrows():
            i = int(row["point"])
            out[self.sweep.label(i, self.points[i], free) or f"point {i}"] = self.store.get(row["key"]).video()
        return out

    def compare(self, **reference: Any) -> pd.DataFrame:
        """The table plus each done point's frames compared with its reference point's.

        ``psnr_vs_ref`` (dB, ``psnr`` as :func:`wanlab.metrics.compare` defines it: from the MSE over all
        frames) and ``ssim_vs_ref`` compare each done point with the reference point that shares its other
        swept values, e.g. ``compare(steps=40)`` in a steps sweep compares every step count with the
        40-step run of the same seed. The reference itself scores ``inf`` / 1.0.

        Args:
            **reference: swept fields and their reference values (none: the sweep's own ``reference``).

        Returns:
            The sweep table (a DataFrame) with ``psnr_vs_ref`` and ``ssim_vs_ref``.

        Raises:
            ValueError: no reference given and the sweep has none, or a field that is not swept.

        Example:
            >>> result.compare(steps=40)[["steps", "seed", "psnr_vs_ref"]]  # doctest: +SKIP
        """
        from ..metrics import compare

        reference = reference or dict(self.sweep.reference or {})
        if not reference:
            raise ValueError("compare: name the reference point, e.g. compare(steps=40) (or set the sweep's "
                             "reference)")
        for name in reference:
            if name not in self.sweep.swept:
                raise ValueError(f"{name}: not a swept field; the swept fields are {', '.join(self.sweep.swept)}")
        df = self.df.copy()
        df["psnr_vs_ref"] = math.nan
        df["ssim_vs_ref"] = math.nan
        cache: dict[str, Any] = {}

        def frames(key: str) -> Any:
            if key not in cache:
                cache[key] = self.store.get(key).video()
            return cache[key]

        for index, row, ref in self._reference_pairs(reference):
            scores = compare(frames(row["key"]), frames(ref["key"]))
            df.loc[index, "psnr_vs_ref"] = scores["psnr"]
            df.loc[index, "ssim_vs_ref"] = scores["ssim"]
        return df

    def _reference_pairs(self, reference: Mapping[str, Any]) -> list[tuple[Any, Any, Any]]:
        """``(index, row, reference row)`` for each done point whose reference is done.

        The done point with the ``reference`` values (settings by label) and the same other swept
        values.
        """
        reference = {n: self.sweep.cell_of(n, v) for n, v in reference.items()}
        others = [n for n in self.sweep.swept if n not in reference]
        done = self.df[self.df["status"] == "done"]
        refs = {tuple(row[n] for n in others): row for _, row in done.iterrows()
                if all(row[n] == v for n, v in reference.items())}
        pairs = []
        for index, row in done.iterrows():
            ref = refs.get(tuple(row[n] for n in others))
            if ref is not None:
                pairs.append((index, row, ref))
        return pairs

    def effects(self, metric: str, by: str, **options: Any) -> Any:
        """What changing ``by`` does to ``metric``, over the sweep's seeds.

        Per setting the mean and its 95 % bootstrap interval, and the paired differences between
        settings on the same seeds, Holm-adjusted, flagging those that exclude zero
        (:func:`wanlab.stats.effects`; the other swept axes are pooled per seed unless ``hold=True``).

        Args:
            metric: a metric column, e.g. ``"flow_magnitude"``.
            by: a swept field other than ``seed``.
            **options: passed to :func:`wanlab.stats.effects` (``hold``, ``confidence``, ...).

        Returns:
            The :class:`wanlab.stats.Effects` (``means``, ``differences``).

        Raises:
            ValueError: ``by`` is not a swept field other than seed, or the sweep has one seed.

        Example:
            >>> result.effects("flow_magnitude", by="guidance_scale").differences  # doctest: +SKIP
        """
        from ..stats import effects

        if by not in self.sweep.swept or by == "seed":
            raise ValueError("by: must be a swept field other than seed ("
                             f"{', '.join(n for n in self.sweep.swept if n != 'seed')}); "
                             f"got {by!r}")
        if self.df["seed"].nunique() < 2:
            raise ValueError("effects: the sweep has one seed; differences need several seeds to tell from noise "
                             "(give it seeds = N)")
        axes = [a for a in self.sweep.swept if a not in (by, "seed")]
        return effects(self.df, metric, by, axes=axes, **options)

    def accel_study(self, reference: Any = None) -> pd.DataFrame:
        """For a sweep over ``accel``: the table of :func:`wanlab.accel.study`, from the stored runs.

        One row per done point (``point``, the other swept fields, ``setting`` = the accel label,
        ``cache``, ``compile``, ``attention_backend``, ``accel_key``, ``denoise_s``, ``setup_s``,
        ``speedup`` = the reference run's denoising time / this one's, ``psnr``, ``psnr_frame_mean``,
        ``ssim``, ``rel_l2`` and ``max_abs`` of the final latents, ``identical``, the work counters,
        for each measured metric of :data:`STUDY_METRICS` (flow magnitude, adherence, the reference quality
        metrics) its value and ``<name>_change`` from the reference run, ``digest``, ``key``), compared
        with the run of the ``reference`` setting (default: the sweep's ``reference`` accel when it names
        one, else ``"exact"``) that shares its other swept values;
        points whose reference is not done are left out. Feed it to :func:`wanlab.accel.summarize`
        and :func:`wanlab.accel.plot_study`. Times are single runs
        (``wanlab.accel.study`` repeats and interleaves them, for steadier speedups).
        """
        import pandas as pd

        from ..accel.setting import Accel
        from ..accel.tradeoff import fidelity, study_row

        if ACCEL not in self.sweep.swept:
            raise ValueError(f"accel_study: this sweep does not vary accel (it varies {', '.join(self.sweep.swept)})")
        if reference is None:
            reference = (self.sweep.reference or {}).get(ACCEL, "exact")
        ref_label = self.sweep.cell_of(ACCEL, reference)
        others = [n for n in self.sweep.swept if n != ACCEL]
        pairs = self._reference_pairs({ACCEL: ref_label})
        if not pairs:  # a done reference run pairs at least with itself
            labels = ", ".join(dict.fromkeys(self.df[ACCEL]))
            raise ValueError(f"accel_study: no done run has the reference setting {ref_label!r} (the sweep's settings: "
                             f"{labels}); run the sweep, or name another reference")
        loaded: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        changed = [m for m in STUDY_METRICS if m in self.df.columns]  # what a setting costs in adherence, quality

        def load(key: str) -> tuple[Any, Any, dict[str, Any]]:
            if key not in loaded:
                run = self.store.get(key)
                loaded[key] = (run.video().frames, run.latents(), run.record)
            return loaded[key]

        rows = []
        for _, row, ref in pairs:
            i = int(row["point"])
            frames, latents, record = load(row["key"])
            ref_frames, ref_latents, ref_record = load(ref["key"])
            stats = record.get("accel_stats") or {}
            accel = self.accels[i] if self.accels[i] is not None else Accel.from_dict(record.get("accel") or {})
            rows.append({"point": i, **{n: row[n] for n in others},
                         **study_row(str(row[ACCEL]), accel, denoise=float(record["timings"]["denoise"]),
                                     setup=float(stats.get("setup_s", 0.0)),
                                     exact_denoise=float(ref_record["timings"]["denoise"]), stats=stats,
                                     fidelity=fidelity(frames, ref_frames, latents, ref_latents,
                                                       identical=row["digest"] == ref["digest"])),
                         **_metric_changes(row, ref, changed),
                         "digest": row["digest"], "key": row["key"]})
        df = pd.DataFrame(rows)
        df.attrs.update({"reference": ref_label, "sweep": self.sweep.name, "store": str(self.store.path)})
        return df

    # --- output -------------------------------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV (atomically).

        Args:
            path: the file to write.

        Returns:
            The path written.

        Example:
            >>> result.to_csv("runs/fox/table.csv")  # doctest: +SKIP
        """
        from ..fsutil import write_text

        return write_text(Path(path), self.df.to_csv(index=False))

    def plot(self, y: str = "flow_magnitude", x: str | None = None, hue: str | None = None):
        """Metric ``y`` against swept field ``x``, one line per ``hue`` value, mean and spread over the other axes.

        Args:
            y: a metric column.
            x: a swept field (None: the first swept numeric field other than ``seed`` that varies).
            hue: a swept field for the lines (None: the next such field, or none).

        Returns:
            The matplotlib figure.

        Example:
            >>> result.plot("flow_magnitude", x="guidance_scale")  # doctest: +SKIP
        """
        from ..plots import metric_plot

        x, hue = self.default_axes(x, hue)
        return metric_plot(self.df[self.df["status"] == "done"], x=x, y=y, hue=hue)

    def heatmap(self, value: str = "flow_magnitude", x: str | None = None, y: str | None = None):
        """Mean of ``value`` over a grid of two swept fields.

        Args:
            value: a metric column.
            x: the columns' field (None: as :meth:`default_axes`).
            y: the rows' field (None: as :meth:`default_axes`).

        Returns:
            The matplotlib figure.

        Raises:
            ValueError: the sweep varies fewer than two fields to draw.

        Example:
            >>> result.heatmap("flow_magnitude", x="guidance_scale", y="flow_shift")  # doctest: +SKIP
        """
        from ..plots import heatmap

        x, y = self.default_axes(x, y)
        if y is None:
            raise ValueError("heatmap: needs two swept fields (x and y)")
        return heatmap(self.df[self.df["status"] == "done"], x=x, y=y, value=value)

    def default_axes(self, x: str | None, second: str | None) -> tuple[str, str | None]:
        """The plot's x axis and line (or heatmap row) field.

        Args:
            x: the x field given (None: the first swept numeric field other than seed that varies; accel
                for an acceleration sweep).
            second: the line or row field given (None: the next such field, or None).

        Returns:
            ``(x, second)``.
        """
        numeric = [n for n in self.sweep.swept if n != "seed" and n in self.df.columns
                   and self.df[n].nunique() > 1 and self.df[n].dtype.kind in "if"]
        if x is None:
            x = numeric[0] if numeric else ACCEL if ACCEL in self.sweep.swept else "seed"
        if second is None:
            rest = [n for n in numeric if n != x]
            second = rest[0] if rest else None
        return x, second



def _accel_columns(record: Mapping[str, Any]) -> dict[str, float]:
    """``denoise_s`` and ``calls_skipped`` of a stored run (NaN where not recorded)."""
    stats = record.get("accel_stats") or {}
    denoise = (record.get("timings") or {}).get("denoise")
    skipped = stats.get("calls_skipped")
    return {"denoise_s": float(denoise) if denoise is not None else math.nan,
            "calls_skipped": float(skipped) if skipped is not None else math.nan}


def _metric_changes(row: Any, ref: Any, names: Sequence[str]) -> dict[str, float]:
    """Each measured metric of a run and its change from the reference run (NaN where either is missing)."""
    out: dict[str, float] = {}
    for name in names:
        value, base = float(row[name]), float(ref[name])
        out[name] = value
        out[f"{name}_change"] = value - base
    return out


def _seconds(record: Mapping[str, Any]) -> float:
    timings = record.get("timings") or {}
    value = timings.get("total")
    return float(value) if value is not None else math.nan


def _failure_error(failure: Any) -> str:
    if isinstance(failure, Mapping):
        return str(failure.get("error", failure))
    return str(getattr(failure, "error", failure))
