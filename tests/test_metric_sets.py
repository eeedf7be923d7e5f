"""metrics= in Sweep.run, sweep files and the CLI; measuring runs already in a store later."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from wanlab import ParamError, Store, Sweep
from wanlab.metrics import ADHERENCE_KEYS, MOTION_KEYS
from wanlab.metrics import evaluators as ev
from wanlab.metrics.suite import check_metrics, compute
from wanlab.sweep.measure import measure_store
from wanlab.toy import data

PROMPT = "a red square moving right quickly"


def test_check_metrics_names_and_errors():
    assert check_metrics(True) == ("motion",) and check_metrics(False) == () and check_metrics(None) == ()
    assert check_metrics("adherence") == ("adherence",)
    assert check_metrics(["adherence", "quality", "clip_score"]) == (
        "adherence", "clip_score", "subject_consistency", "background_consistency", "aesthetic_quality")
    with pytest.raises(ParamError, match=r"metrics: must be names among .*unknown: 'flow', 'psnr'"):
        check_metrics(["motion", "flow", "psnr"])
    with pytest.raises(ParamError, match="metrics: must be True, False or a list"):
        check_metrics(3)


def test_compute_adherence_and_motion_on_a_ground_truth_clip():
    clip = data.make_clip(np.random.default_rng(0), PROMPT)
    assert compute("adherence", clip.frames, PROMPT)["adherence"] == 1.0
    assert list(compute("motion", clip.frames)) == list(MOTION_KEYS)
    with pytest.raises(ParamError, match="prompt: must be the video's prompt"):
        compute("clip_score", clip.frames)


def sweep(**kw):
    return Sweep(base=dict(prompt=PROMPT, width=32, height=32, num_frames=5, steps=2),
                 grid={"guidance_scale": [1.0, 3.0]}, seeds=[1, 2], name="metric-sets", **kw)


def test_sweep_file_keeps_its_metrics(tmp_path):
    s = sweep(metrics=["motion", "adherence"])
    assert s.metrics == ("motion", "adherence") and 'metrics = ["motion", "adherence"]' in s.to_toml()
    s.save(tmp_path / "s.toml")
    assert Sweep.load(tmp_path / "s.toml") == s and Sweep.load(tmp_path / "s.toml").metrics == s.metrics
    assert sweep().metrics is None and "metrics" not in sweep().to_toml()
    (tmp_path / "bad.toml").write_text('metrics = ["motion", "sharpness"]\n[base]\nprompt = "x"\n')
    with pytest.raises(ParamError, match=r"bad.toml: metrics: .*unknown: 'sharpness'"):
        Sweep.load(tmp_path / "bad.toml")


def test_runs_are_measured_with_the_named_sets_and_later_without_regenerating(pipe, tmp_path, monkeypatch):
    from wanlab.metrics import random_evaluators as fake

    store = tmp_path / "runs"
    result = sweep(metrics=["adherence"]).run(pipe, store=store, progress=False)  # True: the sweep's own sets
    df = result.df
    assert (df["status"] == "done").all() and list(df.columns[df.columns.str.startswith("adherence")]) == list(
        ADHERENCE_KEYS)
    assert "flow_magnitude" not in df.columns and df["adherence"].between(0, 1).all()
    digests = list(df["digest"])

    # motion asked later: computed for the stored runs, nothing generated again
    again = sweep().run(pipe, store=store, progress=False, metrics=["motion", "adherence"])
    assert again.ran == [] and list(again.df["digest"]) == digests
    assert again.df["flow_magnitude"].notna().all() and again.df["adherence"].notna().all()
    from wanlab.widgets import SweepExplorer

    menu = SweepExplorer(again).metric_names  # the explorer's metric menu offers them
    assert menu.index("flow_magnitude") < menu.index("adherence") and "adherence_visible" in menu
    assert again.effects("adherence", by="guidance_scale").means is not None  # effects take any measured column

    # clip_score with its evaluator missing: the reason is kept, the runs stay, and it is not retried
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ev.clear()
    counts = measure_store(store, ["clip_score"], progress=False)
    assert counts == {"measured": 0, "failed": 4, "skipped": 0}
    table = sweep().result(pipe, store)
    assert table.df["error"].str.contains("clip_score: EvaluatorMissing: clip_score needs the evaluator").all()
    assert "clip_score" not in table.df.columns and len(Store(store).df) == 4
    assert measure_store(store, ["clip_score"], progress=False)["skipped"] == 4

    # the evaluator arrives: redo computes it, the error goes
    fake.into_hub_cache(fake.save_clip(tmp_path / "clip", seed=1), tmp_path / "hub", ev.CLIP_B32.repo_id)
    assert measure_store(store, "clip_score", progress=False, redo=True) == {"measured": 4, "failed": 0, "skipped": 0}
    table = sweep().result(pipe, store)
    assert table.df["error"].isna().all() and table.df["clip_score"].between(0, 100).all()
    assert list(table.df["digest"]) == digests
    cols = list(table.df.columns)
    assert cols.index("warp_error") < cols.index("adherence") < cols.index("clip_score")  # motion, adherence, quality
    stored = Store(store).df
    assert "clip_score" in stored.columns  # with what scored it: repo id at the cache snapshot's commit
    assert (stored["clip_score_evaluator"] == f"{ev.CLIP_B32.repo_id}@{'0' * 40}").all()
    assert "clip_score_evaluator" not in table.df.columns  # the sweep table keeps numbers
    ev.clear()


def test_metrics_false_and_true_keep_working(pipe, tmp_path):
    result = sweep().run(pipe, store=tmp_path / "a", progress=False, metrics=False)
    assert not any(c in result.df.columns for c in MOTION_KEYS)
    result = sweep().run(pipe, store=tmp_path / "a", progress=False)  # default True: motion, measured now
    assert result.ran == [] and result.df["static"].notna().all() and "adherence" not in result.df.columns


def test_cli_metrics_and_measure(pipe, tmp_path, capsys):
    from wanlab.cli import main

    file = tmp_path / "s.toml"
    sweep().save(file)
    store = tmp_path / "runs"
    assert main(["sweep", str(file), "--store", str(store), "--quiet", "--metrics", "adherence",
                 "--model", "tiny"]) == 0
    df = Store(store).df
    assert df["adherence"].notna().all() and "flow_magnitude" not in df.columns
    assert main(["measure", str(store), "--metrics", "motion,adherence", "--quiet"]) == 0
    assert "4 measured, 0 with a failed metric" in capsys.readouterr().out
    assert Store(store).df["flow_magnitude"].notna().all()
    assert main(["measure", str(store), "--metrics", "nope"]) == 2
    assert "metrics: must be names among" in capsys.readouterr().err
    assert main(["sweep", str(file), "--store", str(store), "--no-metrics", "--metrics", "motion"]) == 2
    stored = json.loads(next((store).glob("*/metrics.json")).read_text())
    assert not math.isnan(stored["adherence"])
