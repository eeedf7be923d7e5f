"""Which differences in a sweep are real: means with bootstrap intervals over seeds, paired differences.

:func:`effects` (the table a notebook asks for, an :class:`Effects`), :func:`interval` (one mean
with its interval, an :class:`Interval`), :func:`holm` and :func:`min_seeds`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

LEVEL = 0.95
N_BOOT = 4000
METHODS = ("bootstrap", "t")
ADJUSTMENTS = ("holm", "none")
#: Bootstrap means beyond 0 needed to read a p-value off their share (else: their normal tail).
TAIL_COUNT = 20


def min_seeds(level: float = LEVEL) -> int:
    """Fewest seeds for which a percentile bootstrap interval can cover the mean with probability ``level``.

    A percentile interval never extends beyond the sample, which misses the mean with probability
    ``2^(1-n)``.

    Args:
        level: The confidence level.

    Returns:
        The number of seeds (6 for 95 %).

    Example:
        >>> min_seeds(0.95), min_seeds(0.9)
        (6, 5)
    """
    return max(2, math.ceil(1 + math.log2(1 / (1 - level)) - 1e-12))


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its interval (:func:`interval`).

    Attributes:
        n: The number of seeds (finite values).
        mean: Their mean.
        sd: Their sd across seeds (ddof 1).
        low: The interval's lower end (NaN when it cannot be had).
        high: Its upper end.
        p: The two-sided p-value of "the mean is 0".
        note: Why the interval is NaN, else empty.

    Example:
        >>> interval([0.2, 0.4]).note
        "needs 6 seeds for a 95% bootstrap interval, has 2; method='t' assumes normal seed-to-seed variation"
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float
    p: float
    note: str = ""


@lru_cache(maxsize=256)
def _expanded_alpha(alpha: float, n: int) -> float:
    from scipy import stats

    return float(2 * stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf(1 - alpha / 2, n - 1)))


def _expanded_p(percentile_p: float, n: int) -> float:
    """The ``alpha`` whose expanded interval just touches 0, given the bootstrap's two-sided tail share."""
    from scipy import stats

    z = stats.norm.ppf(1 - percentile_p / 2)
    return float(min(1.0, 2 * (1 - stats.t.cdf(z * math.sqrt((n - 1) / n), n - 1))))


def _bootstrap_p(boot: np.ndarray, mean: float, n: int) -> float:
    """Two-sided p-value of "the mean is 0" from the bootstrap means, on the expanded interval's scale.

    The share of bootstrap means beyond 0 while at least ``TAIL_COUNT`` of them are; further out
    (a strong effect) the normal tail of the bootstrap distribution, which resolves p-values far
    below ``1 / n_boot`` (then the p-value is the t-test's, as the expansion is built to be).
    """
    from scipy import stats

    beyond = min(np.count_nonzero(boot <= 0), np.count_nonzero(boot >= 0))
    share: float
    if beyond >= TAIL_COUNT:
        share = 2.0 * beyond / boot.size
    else:
        spread = float(boot.std())
        if spread == 0:
            return 1.0 if mean == 0 else 0.0
        share = float(2 * stats.norm.sf(abs(mean) / spread))
    return _expanded_p(min(share, 1.0), n) if share < 1 else 1.0


def interval(values: Any, *, level: float = LEVEL, method: str = "bootstrap", n_boot: int = N_BOOT,
             rng: np.random.Generator | None = None) -> Interval:
    """Mean of ``values`` (one per seed) with its ``level`` interval and the p-value for a zero mean.

    Intervals are *expanded percentile* bootstrap intervals (Hesterberg 2015, "What teachers should
    know about the bootstrap", The American Statistician 69(4)): percentiles of the bootstrap means
    at ``alpha' = 2 Phi(-sqrt(n / (n - 1)) t_{n-1, 1 - alpha/2})``, which corrects the plain
    percentile interval's under-coverage at small n. No percentile interval can reach 95 % with
    fewer than 6 seeds (:func:`min_seeds`), so with fewer seeds the interval is NaN and ``note``
    says why; ``method="t"`` gives Student-t intervals instead, which assume normal seed-to-seed
    variation.

    Args:
        values: One value per seed (NaN and inf are left out).
        level: The confidence level.
        method: ``"bootstrap"`` or ``"t"``.
        n_boot: Bootstrap resamples.
        rng: The random generator (a fixed seed 0 when None, so results are reproducible).

    Returns:
        The :class:`Interval`.

    Example:
        >>> iv = interval([0.2, 0.4, 0.1, 0.3, 0.5, 0.2, 0.3, 0.4])
        >>> round(iv.mean, 2), round(iv.low, 2), round(iv.high, 2)
        (0.3, 0.2, 0.41)
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    alpha = 1 - level
    if method == "t":
        if n < 2:
            return Interval(n, mean, sd, math.nan, math.nan, math.nan, f"needs 2 seeds for a t interval; has {n}")
        from scipy import stats

        se = sd / math.sqrt(n)
        half = stats.t.ppf(1 - alpha / 2, n - 1) * se
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else float(mean == 0)
        return Interval(n, mean, sd, mean - half, mean + half, p)
    needed = min_seeds(level)
    if n < needed:
        return Interval(n, mean, sd, math.nan, math.nan, math.nan,
                        f"needs {needed} seeds for a {level:.0%} bootstrap interval, has {n}; method='t' assumes "
                        "normal seed-to-seed variation")
    rng = rng if rng is not None else np.random.default_rng(0)
    boot = x[rng.integers(0, n, (n_boot, n))].mean(axis=1)
    tail = _expanded_alpha(alpha, n) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(n, mean, sd, float(low), float(high), _bootstrap_p(boot, mean, n))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count as a comparison).

    Args:
        p: p-values.

    Returns:
        The adjusted p-values, in the same order.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    values = np.asarray(p, dtype=np.float64)
    out = np.full_like(values, np.nan)
    ok = np.flatnonzero(np.isfinite(values))
    order = ok[np.argsort(values[ok], kind="stable")]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(values[i])))
        out[i] = running
    return out


@dataclass(frozen=True)
class Effects:
    """What :func:`effects` found: ``means`` per setting and paired ``differences`` between settings.

    Shows itself as tables in a notebook and as sentences when printed.

    Attributes:
        metric: The metric.
        by: The column whose settings are compared.
        means: DataFrame: (held axes), ``by``, seeds, mean, sd, ci_low, ci_high, note.
        differences: DataFrame: (held axes), a, b, seeds, difference (b - a), ci_low, ci_high,
            excludes_zero, p, p_adjusted, significant, note.
        level: The confidence level.
        method: ``"bootstrap"`` or ``"t"``.
        adjust: ``"holm"`` or ``"none"``.
        pooled: The axes averaged over.
        held: The axes held fixed (estimated separately).
        dropped: Runs left out for a NaN metric.
        notes: What the tables share (e.g. runs left out).

    Example:
        >>> import pandas as pd
        >>> from wanlab import stats
        >>> df = pd.DataFrame({"seed": list(range(6)) * 2, "guidance_scale": [1.0] * 6 + [5.0] * 6,
        ...                    "smoothness": [0.90, 0.91, 0.89, 0.92, 0.90, 0.91, 0.95, 0.96, 0.95, 0.97, 0.94, 0.96]})
        >>> fx = stats.effects(df, "smoothness", by="guidance_scale")
        >>> fx.differences[["a", "b", "seeds", "significant"]].values.tolist()
        [[1.0, 5.0, 6, True]]
    """

    metric: str
    by: str
    means: Any
    differences: Any
    level: float
    method: str
    adjust: str
    pooled: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    dropped: int = 0
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """The tables as sentences: one line per setting and per difference, the real ones marked.

        Returns:
            The text ``print(fx)`` shows.

        Example:
            >>> print(fx.summary())  # doctest: +SKIP
            smoothness by guidance_scale (mean and 95% bootstrap interval over seeds)
              guidance_scale=1: 0.905 [0.8933, 0.915] (6 seeds)
              guidance_scale=5: 0.955 [0.9445, 0.965] (6 seeds)
              5 - 1: +0.05 [0.04333, 0.05667] (6 paired seeds, Holm-adjusted p 0) -> differs
        """
        how = f"mean and {self.level:.0%} {'bootstrap' if self.method == 'bootstrap' else 't'} interval over seeds"
        axes = (f"; averaged over {', '.join(self.pooled)}" if self.pooled else "") + \
               (f"; per {', '.join(self.held)}" if self.held else "")
        lines = [f"{self.metric} by {self.by} ({how}{axes})"]
        lines += [f"  note: {n}" for n in self.notes]
        for row in self.means.to_dict("records"):
            lines.append(f"  {_where(row, self.held)}{self.by}={_fmt(row[self.by])}: {_num(row['mean'])} "
                         f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}] ({row['seeds']} seeds){_note(row)}")
        adjust = "Holm-adjusted " if self.adjust == "holm" else ""
        for row in self.differences.to_dict("records"):
            verdict = " -> differs" if row["significant"] else ""
            lines.append(f"  {_where(row, self.held)}{_fmt(row['b'])} - {_fmt(row['a'])}: "
                         f"{_num(row['difference'], '+')} "
                         f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}] ({row['seeds']} paired seeds, "
                         f"{adjust}p {_num(row['p_adjusted'])}){verdict}{_note(row)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_html(self, css_class: str = "wanlab-table") -> str:
        """Both tables as HTML, under the line that says what they are.

        A difference whose interval excludes zero after the adjustment is marked "differs"; a note
        every row shares is said once, above the tables.

        Args:
            css_class: The tables' CSS class.

        Returns:
            An HTML fragment (what a notebook shows).
        """
        import html

        from .tables import html_table

        diffs = self.differences.copy()
        diffs["verdict"] = ["differs" if s else "" for s in diffs["significant"]]
        means = self.means.copy()
        # a note every row shares is said once, above the tables, so the tables stay narrow (the verdict in view)
        shared = [*self.notes]
        for table in (means, diffs):
            found = set(table["note"]) if "note" in table.columns and len(table) else set()
            if len(found) == 1:  # the same note in every row (or none at all)
                shared += [n for n in found if n and n not in shared]
                table.drop(columns="note", inplace=True)
        shown = [c for c in diffs.columns if c not in ("significant", "p", "note", "verdict")] + ["verdict"] \
            + (["note"] if "note" in diffs.columns else [])
        notes = "".join(f"<p style='font-size:.85em;color:#666'>note: {html.escape(n)}</p>" for n in shared)
        return (f"<p><b>{html.escape(self.summary().splitlines()[0])}</b></p>{notes}"
                f"{html_table(means, css_class=css_class)}<br>"
                f"{html_table(diffs, columns=shown, css_class=css_class)}")

    def _repr_html_(self) -> str:
        return self.to_html()


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _num(value: float, sign: str = "") -> str:
    return "nan" if not np.isfinite(value) else format(value, f"{sign}.4g")


def _note(row: dict) -> str:
    return f" ({row['note']})" if row.get("note") else ""


def _where(row: dict, held: Sequence[str]) -> str:
    return "".join(f"{a}={_fmt(row[a])}, " for a in held)


def _check(df: Any, names: Sequence[str]) -> None:
    for name in names:
        if name not in df.columns:
            raise ValueError(f"{name}: must be a column of the table; "
                             f"the columns are {', '.join(map(str, df.columns))}")


def _ordered(values: Any) -> list:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique)
    except TypeError:
        return unique


def _codes(labels: Any) -> tuple[np.ndarray, int]:
    """Integer code per row for each distinct label, and how many there are."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].ravel()
    return codes, int(codes.max()) + 1 if codes.size else 0


def _per_seed(values: np.ndarray, codes: np.ndarray, count: int) -> np.ndarray:
    """Mean of ``values`` per seed code over its finite entries (NaN where a seed has none)."""
    ok = np.isfinite(values)
    total = np.bincount(codes[ok], weights=values[ok], minlength=count)
    n = np.bincount(codes[ok], minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / n


def effects(df: Any, metric: str, by: str, *, seed: str = "seed", axes: Sequence[str] = (), hold: bool = False,
            reference: Any = None, level: float = LEVEL, method: str = "bootstrap", n_boot: int = N_BOOT,
            adjust: str = "holm", random_state: int = 0) -> Effects:
    """Mean of ``metric`` per setting of ``by`` with its interval over seeds, and paired differences between settings.

    The seed is the random unit: for each setting of ``by``, every seed gives one value, and the
    interval of the mean comes from resampling seeds (:func:`interval`). Two settings run on the
    same seeds are compared seed by seed (paired: the shared starting noise cancels), and a
    difference counts as real when its interval excludes zero after the Holm-Bonferroni
    adjustment over all the comparisons of the table.

    Args:
        df: One row per run (``SweepResult.df``): a ``seed`` column, the ``by`` column, the metric,
            and optionally ``status`` (only ``done`` rows count). Rows whose metric is NaN are left
            out and counted in ``dropped`` (e.g. ``temporal_flicker`` of moving clips).
        metric: The metric column.
        by: The column whose settings are compared.
        seed: The seed column.
        axes: The other swept columns. By default (``hold=False``) they are *pooled*: each seed's
            value for a setting is the mean of its runs over those axes, and a paired difference
            compares runs that share seed and axes values, then averages per seed; the effect is
            the average over the other axes' grid.
        hold: Estimate everything separately for each combination of ``axes`` instead (more
            comparisons, fewer runs each).
        reference: Compare every setting with this one (else every pair, later minus earlier).
        level: The confidence level, in [0.5, 1).
        method: ``"bootstrap"`` (expanded percentile, needs 6 seeds for 95 %) or ``"t"``.
        n_boot: Bootstrap resamples (>= 100).
        adjust: ``"holm"`` controls the chance of any false "differs" over all comparisons returned
            at ``1 - level``; ``"none"`` tests each at ``1 - level``.
        random_state: Seed of the bootstrap (reproducible results).

    Returns:
        The :class:`Effects`: ``means``, ``differences``, and ``print(fx)`` as sentences.

    Raises:
        ValueError: An unknown method or adjustment, a bad level or n_boot, a column not in the
            table, or a reference that is not a setting with results.

    Example:
        >>> import pandas as pd
        >>> from wanlab import stats
        >>> df = pd.DataFrame({"seed": list(range(6)) * 2, "guidance_scale": [1.0] * 6 + [5.0] * 6,
        ...                    "smoothness": [0.90, 0.91, 0.89, 0.92, 0.90, 0.91, 0.95, 0.96, 0.95, 0.97, 0.94, 0.96]})
        >>> fx = stats.effects(df, "smoothness", by="guidance_scale")
        >>> round(float(fx.differences["difference"][0]), 3), bool(fx.differences["significant"][0])
        (0.05, True)
    """
    import pandas as pd

    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}; got {method!r}")
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"adjust: must be one of {ADJUSTMENTS}; got {adjust!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.5 <= level < 1:
        raise ValueError(f"level: must be a number in [0.5, 1); got {level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot: must be an integer >= 100; got {n_boot!r}")
    axes = tuple(a for a in axes if a not in (by, seed))
    _check(df, [metric, by, seed, *axes])
    rows = df[df["status"] == "done"] if "status" in df.columns else df
    values = pd.to_numeric(rows[metric], errors="coerce")
    dropped = int(values.isna().sum())
    rows = rows.assign(**{metric: values}).dropna(subset=[metric])
    settings = _ordered(rows[by])
    if reference is not None and reference not in settings:
        raise ValueError(f"reference: must be a value of {by} with results; got {reference!r} (values: {settings})")
    pairs = [(reference, b) for b in settings if b != reference] if reference is not None else \
        [(a, b) for i, a in enumerate(settings) for b in settings[i + 1:]]
    held, pooled = (axes, ()) if hold else ((), axes)
    rng = np.random.default_rng(random_state)
    mean_rows, diff_rows = [], []
    groups = rows.groupby(list(held), sort=True, dropna=False) if held else [((), rows)]
    for key, part in groups:
        where = dict(zip(held, key if isinstance(key, tuple) else (key,)))
        cells = part.groupby([seed, *pooled, by], sort=False)[metric].mean().unstack(by)
        seeds_of, seed_count = _codes(cells.index.get_level_values(seed) if pooled else cells.index)
        column = {s: cells[s].to_numpy(dtype=float) if s in cells else None for s in settings}
        for s in settings:
            values = column[s]
            per_seed = _per_seed(values, seeds_of, seed_count) if values is not None else np.array([])
            iv = interval(per_seed, level=level, method=method, n_boot=n_boot, rng=rng)
            mean_rows.append({**where, by: s, "seeds": iv.n, "mean": iv.mean, "sd": iv.sd, "ci_low": iv.low,
                              "ci_high": iv.high, "note": iv.note})
        for a, b in pairs:
            first, second = column[a], column[b]
            if first is not None and second is not None:
                per_seed = _per_seed(second - first, seeds_of, seed_count)
            else:
                per_seed = np.array([])
            iv = interval(per_seed, level=level, method=method, n_boot=n_boot, rng=rng)
            diff_rows.append({**where, "a": a, "b": b, "seeds": iv.n, "difference": iv.mean, "ci_low": iv.low,
                              "ci_high": iv.high, "excludes_zero": bool(iv.low > 0 or iv.high < 0), "p": iv.p,
                              "note": iv.note})
    means = pd.DataFrame(mean_rows, columns=[*held, by, "seeds", "mean", "sd", "ci_low", "ci_high", "note"])
    columns = [*held, "a", "b", "seeds", "difference", "ci_low", "ci_high", "excludes_zero", "p"]
    differences = pd.DataFrame(diff_rows, columns=[*columns, "note"])
    p = differences["p"].to_numpy(dtype=float)
    differences.insert(len(columns), "p_adjusted", holm(p) if adjust == "holm" else p)
    differences.insert(len(columns) + 1, "significant", differences["p_adjusted"] < 1 - level)
    notes = (f"{dropped} runs without a {metric} value left out",) if dropped else ()
    return Effects(metric, by, means, differences, float(level), method, adjust, pooled, held, dropped, notes)
