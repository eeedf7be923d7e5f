"""wanlab.plots.metric_plot: the mean over seeds with its interval, and the seed count in the title."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wanlab import stats
from wanlab.plots import metric_plot


def table(seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [dict(seed=s, guidance_scale=g, flow_shift=f, status="done", score=g + rng.normal(0, 0.5))
            for s in range(seeds) for g in (3.0, 5.0) for f in (2.0, 6.0)]
    rows.append(dict(seed=0, guidance_scale=3.0, flow_shift=2.0, status="failed", score=100.0))
    return pd.DataFrame(rows)


def test_band_is_the_interval_over_seeds_and_the_title_counts_them() -> None:
    df = table(8)
    fig = metric_plot(df, x="guidance_scale", y="score")
    ax = fig.axes[0]
    assert ax.get_title() == "score vs guidance_scale\n(mean and 95% bootstrap CI over 8 seeds)"
    done = df[df.status == "done"]
    per_seed = done.groupby(["guidance_scale", "seed"])["score"].mean()  # flow_shift pooled per seed
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx(per_seed.groupby(level=0).mean().tolist())
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    iv = stats.interval(per_seed.loc[3.0].to_numpy(), rng=np.random.default_rng(0))
    assert band.min() == pytest.approx(iv.low) and iv.low < 3.0 < iv.high


def test_too_few_seeds_show_means_only_and_say_why() -> None:
    fig = metric_plot(table(3), x="guidance_scale", y="score", hue="flow_shift")
    ax = fig.axes[0]
    assert ax.get_title() == "score vs guidance_scale\n(mean of 3 seeds; 6 needed for a 95% bootstrap CI)"
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2  # the seeds' dots, no band
    fig = metric_plot(table(3), x="guidance_scale", y="score", method="t")
    assert "mean and 95% t CI over 3 seeds" in fig.axes[0].get_title()


def test_categorical_axis_and_one_run_each() -> None:
    df = pd.DataFrame({"accel": ["exact", "fbc", "mag"], "score": [1.0, 2.0, 1.5]})
    ax = metric_plot(df, x="accel", y="score").axes[0]
    assert ax.get_title() == "score vs accel\n(one run each)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["exact", "fbc", "mag"]
