"""The demo: ``wanlab demo`` runs the demo sweep and writes videos, frame grid, metrics CSV, a plot and a
self-contained HTML report. The suite runs it on a shrunken copy of demo.toml (same axes, tiny sizes)."""
from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import pandas as pd
import pytest

import wanlab
from wanlab import Video
from wanlab.cli import main
from wanlab.demo import DEMO_SWEEP_ENV, PACKAGE_DEMO, REPO_DEMO, demo_sweep_path, run_demo
from wanlab.plots import heatmap, metric_plot
from wanlab.sweep import Sweep

REPO = Path(__file__).resolve().parents[1]


def test_the_package_copy_of_the_demo_sweep_is_identical_to_the_repositorys():
    assert REPO_DEMO == REPO / "sweeps" / "demo.toml"
    assert PACKAGE_DEMO.read_bytes() == REPO_DEMO.read_bytes()
    assert demo_sweep_path() == REPO_DEMO


def test_the_demo_sweep_is_small_and_on_its_model():
    sweep = Sweep.load(REPO_DEMO)
    assert sweep.model == "toy" and sweep.question
    assert sweep.swept == ["seed", "guidance_scale", "flow_shift"] and len(sweep) == 48
    assert len(sweep.grid["seed"]) >= 6  # effects get 95 % intervals over seeds
    assert sweep.metrics == ("motion", "adherence")
    p = sweep.points()[0]
    assert (p.width, p.height, p.num_frames, p.steps) == (64, 64, 17, 25)


@pytest.fixture()
def small_demo(tmp_path, monkeypatch) -> Path:
    """demo.toml with its axes kept and sizes shrunk, named by $WANLAB_DEMO_SWEEP."""
    sweep = Sweep.load(REPO_DEMO)
    base = {**sweep.base_fields, "width": 32, "height": 32, "num_frames": 5, "steps": 2}
    small = Sweep(base=base, grid={"seed": [1, 2], "guidance_scale": [3.0, 6.0], "flow_shift": [2.0]},
                  name="demo", model=sweep.model, question=sweep.question, metrics=sweep.metrics,
                  probes=sweep.probes)
    path = small.save(tmp_path / "demo-small.toml")
    monkeypatch.setenv(DEMO_SWEEP_ENV, str(path))
    return path


def test_wanlab_demo_writes_videos_grid_csv_plot_and_a_self_contained_report(small_demo, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    report = out / "report.html"
    assert printed[-1] == f"report: {report}"

    videos = sorted((out / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["seed1_gs3.0_fs2.0.mp4", "seed1_gs6.0_fs2.0.mp4",
                                        "seed2_gs3.0_fs2.0.mp4", "seed2_gs6.0_fs2.0.mp4"]
    exact = Video.load(videos[0])  # the lossless copy and record come along: frames read back exactly
    assert exact.params.seed == 1 and exact.params.guidance_scale == 3.0
    assert exact.digest == wanlab.load("toy", progress=False).generate(exact.params, progress=False).digest

    for png in ("frame_grid.png", "metric_vs_param.png", "adherence_vs_param.png", "adherence_visible_vs_param.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    assert all(float(r["flow_magnitude"]) >= 0 for r in rows)
    assert {"seed", "guidance_scale", "flow_shift", "digest", "seconds", "warp_error", "adherence"} <= set(rows[0])
    assert all(0 <= float(r["adherence"]) <= 1 for r in rows)

    page = report.read_text()
    assert page.startswith("<!doctype html>") and "Question: " in page
    # self-contained: every src is a data URI, nothing is fetched
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    assert not re.search(r"<(script|link)\b", page)
    embedded = re.findall(r'<video src="data:video/mp4;base64,([^"]+)"[^>]*autoplay loop muted playsinline', page)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(v.read_bytes() for v in videos)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) >= 2
    assert page.count('<tr class="done">') == 4 and "flow_magnitude" in page
    assert "<h2>adherence vs guidance_scale</h2>" in page
    assert "when is the video decided?" in page and "trajectory_decided_step" in page

    # again: everything comes from the store, nothing is generated
    again = run_demo(out, progress=False)
    assert again == report
    assert len(list((out / "store").glob("*/record.json"))) == 4


def test_metric_plot_and_heatmap_take_any_table():
    df = pd.DataFrame({"guidance_scale": [3.0, 3.0, 5.0, 5.0, 3.0, 5.0], "flow_shift": [2.0, 2.0, 2.0, 2.0, 6.0, 6.0],
                       "seed": [1, 2, 1, 2, 1, 1], "flow_magnitude": [1.0, 1.2, 2.0, 2.2, 0.5, float("nan")]})
    fig = metric_plot(df, x="guidance_scale", y="flow_magnitude", hue="flow_shift")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "guidance_scale" and len(ax.get_lines()) == 2
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([1.1, 2.1])  # mean over seeds
    fig = heatmap(df, x="guidance_scale", y="flow_shift", value="flow_magnitude")
    assert fig.axes[0].get_xlabel() == "guidance_scale"
    with pytest.raises(ValueError, match="nope: not a column"):
        metric_plot(df, x="nope", y="flow_magnitude")
