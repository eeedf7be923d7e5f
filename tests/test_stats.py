"""wanlab.stats: on sweep tables whose true effects are known, real effects are found and null ones are not,
at the stated rates over repeated draws (seeded, so the test is deterministic)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from wanlab import stats

GUIDANCE = (3.0, 5.0, 7.0)
SHIFT = (3.0, 5.0)


def sweep_table(rng: np.random.Generator, seeds: int = 8, effect: float = 0.5, noise: float = 0.3) -> pd.DataFrame:
    """A sweep over seed x guidance_scale x flow_shift whose score rises by ``effect`` per guidance step
    (0.5 per 2 units) and does not depend on flow_shift. Each seed shifts all its runs by N(0, 1), as a
    shared starting noise does; each run adds N(0, noise)."""
    seed_effect = rng.normal(0, 1, seeds)
    rows = [dict(seed=s, guidance_scale=g, flow_shift=f, status="done",
                 score=seed_effect[s] + effect * (g - 3) / 2 + rng.normal(0, noise))
            for s in range(seeds) for g in GUIDANCE for f in SHIFT]
    return pd.DataFrame(rows)


def test_known_effect_is_found_and_the_null_is_not_at_the_stated_rate() -> None:
    rng = np.random.default_rng(2024)
    draws = 150
    found = null_flagged = family_errors = covered = 0
    for r in range(draws):
        df = sweep_table(rng)
        g = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"], n_boot=1000, random_state=r)
        found += bool(g.differences["significant"].all())
        truth = 0.5 * (g.means["guidance_scale"] - 3) / 2  # the seed effects average 0 over seeds drawn
        covered += int(((g.means["ci_low"] <= truth) & (truth <= g.means["ci_high"])).sum())
        f = stats.effects(df, "score", "flow_shift", axes=["guidance_scale"], n_boot=1000, random_state=r)
        null_flagged += bool(f.differences["significant"].any())
        none = stats.effects(sweep_table(rng, effect=0.0), "score", "guidance_scale", axes=["flow_shift"],
                             n_boot=1000, random_state=r)
        family_errors += bool(none.differences["significant"].any())
    # paired per-seed differences have sd 0.3: t = 0.5 / (0.3 / sqrt(8)) = 4.7, so nearly every draw finds all three
    assert found / draws >= 0.9
    # one comparison at 5 %: 7.5 expected flags in 150 draws (binomial sd 2.7)
    assert 0.01 <= null_flagged / draws <= 0.10
    # Holm over three comparisons keeps the chance of any false flag at <= 5 %
    assert family_errors / draws <= 0.09
    # 95 % intervals of the means cover the true mean
    assert 0.92 <= covered / (3 * draws) <= 0.98


def test_pairing_on_seeds_sees_what_unpaired_means_cannot() -> None:
    df = sweep_table(np.random.default_rng(1), seeds=8, effect=0.5)
    fx = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"])
    first = fx.means.set_index("guidance_scale")
    # seed-to-seed spread (sd 1) makes the means' intervals overlap ...
    assert first.loc[3.0, "ci_high"] > first.loc[5.0, "ci_low"]
    # ... while the paired difference on the same seeds excludes zero
    row = fx.differences.query("a == 3.0 and b == 5.0").iloc[0]
    assert row["excludes_zero"] and row["significant"] and row["seeds"] == 8
    assert row["difference"] == pytest.approx(0.5, abs=0.25)
    assert "guidance_scale=5: " in str(fx) and "5 - 3: +" in str(fx) and "-> differs" in str(fx)


def test_pooled_held_and_reference_shapes() -> None:
    df = sweep_table(np.random.default_rng(3))
    held = stats.effects(df, "score", "flow_shift", axes=["guidance_scale"], hold=True)
    assert list(held.means.columns[:2]) == ["guidance_scale", "flow_shift"] and len(held.means) == 6
    assert len(held.differences) == 3 and held.held == ("guidance_scale",) and held.pooled == ()
    ref = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"], reference=5.0)
    assert list(zip(ref.differences["a"], ref.differences["b"])) == [(5.0, 3.0), (5.0, 7.0)]
    pooled_by_hand = df.groupby(["seed", "guidance_scale"])["score"].mean().unstack()
    expected = (pooled_by_hand[7.0] - pooled_by_hand[3.0]).mean()
    every = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"])
    assert every.differences.query("a == 3.0 and b == 7.0")["difference"].iloc[0] == pytest.approx(expected)


def test_only_done_runs_with_values_count_and_missing_runs_unpair() -> None:
    df = sweep_table(np.random.default_rng(4))
    extra = pd.DataFrame([dict(seed=0, guidance_scale=3.0, flow_shift=3.0, status="failed", score=np.nan),
                          dict(seed=1, guidance_scale=3.0, flow_shift=5.0, status="done", score=np.nan)])
    df = pd.concat([df[~((df.seed == 2) & (df.guidance_scale == 7.0))], extra], ignore_index=True)
    fx = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"])
    assert fx.dropped == 1 and fx.notes == ("1 runs without a score value left out",)
    assert fx.means.set_index("guidance_scale").loc[7.0, "seeds"] == 7
    assert fx.differences.query("a == 3.0 and b == 7.0")["seeds"].iloc[0] == 7


def test_too_few_seeds_say_so_and_t_intervals_assume_normality() -> None:
    df = sweep_table(np.random.default_rng(5), seeds=4)
    boot = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"])
    assert boot.means["ci_low"].isna().all() and not boot.differences["significant"].any()
    assert boot.means["note"].iloc[0].startswith("needs 6 seeds for a 95% bootstrap interval, has 4")
    t = stats.effects(df, "score", "guidance_scale", axes=["flow_shift"], method="t")
    assert t.means["ci_low"].notna().all() and (t.means["note"] == "").all()
    x = df.groupby(["seed", "guidance_scale"])["score"].mean().unstack()[3.0]
    from scipy import stats as scipy_stats

    half = scipy_stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert t.means["ci_low"].iloc[0] == pytest.approx(x.mean() - half)
    assert stats.min_seeds(0.95) == 6 and stats.min_seeds(0.9) == 5 and stats.min_seeds(0.99) == 8


def test_bootstrap_interval_and_p_value_match_the_t_test_on_normal_data() -> None:
    from scipy import stats as scipy_stats

    x = 0.7 + scipy_stats.norm.ppf((np.arange(12) + 0.5) / 12)  # normal and symmetric, as the t test assumes

    iv = stats.interval(x, rng=np.random.default_rng(0))
    t = scipy_stats.ttest_1samp(x, 0)
    ci = t.confidence_interval(0.95)
    assert iv.p == pytest.approx(t.pvalue, rel=0.25)
    assert iv.low == pytest.approx(ci.low, abs=0.15) and iv.high == pytest.approx(ci.high, abs=0.15)
    assert stats.interval([1.0] * 8).p == 0.0 and stats.interval([0.0] * 8).p == 1.0


def test_holm_adjustment() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = stats.holm([0.2, math.nan, 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(metric="nope"),
     "nope: must be a column of the table; the columns are seed, guidance_scale, flow_shift, status, score"),
    (dict(axes=["cfg"]), "cfg: must be a column of the table"),
    (dict(method="wald"), "method: must be one of ('bootstrap', 't'); got 'wald'"),
    (dict(adjust="bh"), "adjust: must be one of ('holm', 'none'); got 'bh'"),
    (dict(level=95), "level: must be a number in [0.5, 1); got 95"),
    (dict(n_boot=10), "n_boot: must be an integer >= 100; got 10"),
    (dict(reference=4.0),
     "reference: must be a value of guidance_scale with results; got 4.0 (values: [3.0, 5.0, 7.0])"),
])
def test_bad_input_is_named(kwargs: dict, message: str) -> None:
    metric = kwargs.pop("metric", "score")
    with pytest.raises(ValueError, match=re.escape(message)):
        stats.effects(sweep_table(np.random.default_rng(0)), metric, "guidance_scale", **kwargs)
