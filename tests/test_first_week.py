"""Issue 24, the first week in JupyterLab: displays that say what runs, sweep files that run the
study they describe, one PSNR per name, what the toy knows, warnings at the caller's line."""
from __future__ import annotations

import subprocess
import sys

import pytest

import wanlab
from wanlab import Params
from wanlab.backend import IdentityBackend


# --- 1. what you see is what runs ---------------------------------------------------------------------
def test_params_repr_shows_only_the_fields_set():
    p = Params(prompt="a red square", seed=1)
    assert repr(p) == "Params(prompt='a red square', seed=1)"
    assert "832" not in repr(p) and "steps" not in repr(p)
    back = eval(repr(p), {"Params": Params})
    assert back == p and back.explicit_fields() == p.explicit_fields()
    assert repr(p.replace(steps=30)) == "Params(prompt='a red square', seed=1, steps=30)"


def test_describe_marks_set_fields_and_defaults():
    described = Params(prompt="a fox", seed=1, steps=9).describe()
    lines = {line.split()[0]: line.split()[-1] for line in described.splitlines()}
    assert lines["seed"] == "set" and lines["steps"] == "set" and lines["prompt"] == "set"
    assert lines["width"] == "default" and lines["guidance_scale"] == "default"


def test_the_resolved_request_shows_what_the_toy_runs():
    toy = IdentityBackend(wanlab.identity("toy"))
    resolved = toy.params(Params(prompt="a red square", seed=1))
    assert repr(resolved) == ("Params(prompt='a red square', width=64, height=64, seed=1, steps=25, "
                              "guidance_scale=2.0, flow_shift=3.0, num_frames=17)")


def test_ipython_display_names_the_unset_fields():
    from IPython.lib.pretty import pretty

    shown = pretty(Params(prompt="a fox", seed=1))
    assert shown.startswith("Params(prompt='a fox', seed=1)") and "unset" in shown and "steps" in shown
    assert "pipe.params(p)" in shown


# --- 7. what the toy knows; warnings at the caller's line --------------------------------------------
@pytest.fixture(scope="module")
def toy():
    return wanlab.load("toy", progress=False)


TINY_RUN = dict(steps=1, seed=1)


def test_the_toy_card_lists_the_words_it_was_trained_on():
    from wanlab.models.registry import builtin
    from wanlab.toy import data

    spec = builtin("toy")
    words = {w for entries in spec.vocabulary.values() for e in entries for w in e.split()}
    assert words == set(data.WORDS)
    assert spec.vocabulary["colours"] == tuple(data.COLOURS) and spec.vocabulary["shapes"] == data.SHAPES
    assert dict(spec.trained) == {"width": data.WIDTH, "height": data.HEIGHT, "num_frames": data.NUM_FRAMES}


def test_wanlab_models_prints_the_vocabulary_and_trained_size(capsys):
    from wanlab.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "colours: red, green, blue, yellow, white" in out and "shapes: square, circle, triangle" in out
    assert "slowly, quickly" in out and "standing still" in out and "trained at 64x64, 17 frames" in out


def test_unknown_words_warn_naming_them_at_the_callers_line(toy):
    from wanlab.errors import PromptWarning

    with pytest.warns(PromptWarning, match=r"never saw: 'purple', 'fox'") as seen:
        toy.generate(prompt="a purple fox moving right quickly", **TINY_RUN)
    assert seen[0].filename == __file__
    assert "colours: red, green, blue, yellow, white" in str(seen[0].message)


def test_known_words_and_the_trained_size_warn_nothing(toy):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        toy.advise(toy.params(prompt="a blue circle moving left slowly.", **TINY_RUN))
        toy.advise(toy.params(prompt="a white square standing still", **TINY_RUN))


def test_capitals_are_unknown_to_the_toy_and_the_warning_says_so(toy):
    from wanlab.errors import PromptWarning

    with pytest.warns(PromptWarning, match=r"'Yellow'.*lower-case words only: yellow"):
        toy.advise(toy.params(prompt="a Yellow square moving up quickly", **TINY_RUN))


def test_a_size_away_from_the_trained_one_warns_at_the_callers_line(toy):
    from wanlab.errors import TrainedSizeWarning

    with pytest.warns(TrainedSizeWarning,
                      match=r"trained at 64x64, 17 frames; this request is 48x48, 5 frames") as seen:
        toy.generate(prompt="a yellow triangle moving up quickly", width=48, height=48, num_frames=5, **TINY_RUN)
    assert seen[0].filename == __file__


def test_sweep_warnings_point_at_the_sweep_call_not_a_worker_thread(toy, tmp_path):
    from wanlab.errors import PromptWarning

    sweep = wanlab.Sweep(base=Params(prompt="a red dragon moving right quickly", steps=1), grid={"seed": [1, 2]})
    with pytest.warns(PromptWarning, match="'dragon'") as seen:
        sweep.run(toy, store=tmp_path / "s", progress=False)
    mine = [w for w in seen if issubclass(w.category, PromptWarning)]
    assert len(mine) == 1 and mine[0].filename == __file__  # once per prompt, at this line


def test_truncation_warning_points_at_the_caller_from_a_started_job(toy):
    from wanlab.backend import Job
    from wanlab.errors import PromptWarning

    long = " ".join(["a red square moving right quickly"] * 4)
    with pytest.warns(PromptWarning, match=r"tokens long; this model reads 16") as seen:
        toy.start(Job(toy.params(prompt=long, seed=3, steps=1))).result()
    assert all(w.filename == __file__ for w in seen if issubclass(w.category, PromptWarning))


# --- 2. sweep files that run the study they describe ----------------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["guidance_x_shift", "seed_variance", "steps_convergence", "demo", "acceleration"])
def test_shipped_sweeps_name_the_toy_and_speak_its_vocabulary(name):
    from wanlab.models.scope import scope_of

    sweep = wanlab.Sweep.load(REPO / "sweeps" / f"{name}.toml")
    assert sweep.model == "toy"
    scope = scope_of("toy", "builtin")
    toy = IdentityBackend(wanlab.identity("toy"))
    for p in sweep.points(toy):
        assert scope.unknown_words(p.prompt) == [] and scope.unknown_words(p.negative_prompt) == []
        assert scope.off_size(p) == {}


def test_a_sweep_naming_another_model_warns_at_the_run_call(pipe, tmp_path):
    from wanlab.errors import ModelMismatchWarning

    sweep = wanlab.Sweep(base=Params(prompt="a red square", steps=1, width=32, height=32, num_frames=5),
                         grid={"seed": [1]}, name="mismatch", model="toy")
    with pytest.warns(ModelMismatchWarning, match=r"names model 'toy', but it runs on 'tiny'") as seen:
        sweep.run(pipe, store=tmp_path / "s", progress=False, metrics=False)
    assert [w.filename for w in seen if w.category is ModelMismatchWarning] == [__file__]


def test_a_sweep_on_the_model_it_names_warns_nothing(pipe, tmp_path):
    import warnings

    from wanlab.errors import ModelMismatchWarning

    sweep = wanlab.Sweep(base=Params(prompt="a red square", steps=1, width=32, height=32, num_frames=5),
                         grid={"seed": [1]}, name="match", model="tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        sweep.run(pipe, store=tmp_path / "s", progress=False, metrics=False)
        sweep.replace(model=None).run(pipe, store=tmp_path / "s", progress=False, metrics=False)


def test_wanlab_sweep_with_model_on_the_command_line_does_not_warn(tmp_path):
    import warnings

    from wanlab.cli import main
    from wanlab.errors import ModelMismatchWarning

    file = tmp_path / "one.toml"
    file.write_text('# Question: q\nname = "one"\nmodel = "toy"\n[base]\nprompt = "a red square"\nwidth = 32\n'
                    'height = 32\nnum_frames = 5\nsteps = 1\n[grid]\nseed = [1]\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        assert main(["sweep", str(file), "--model", "tiny", "--store", str(tmp_path / "runs"), "--quiet",
                     "--no-metrics"]) == 0


# --- 3. one name, one definition: psnr --------------------------------------------------------------------
def _pair_with_one_identical_frame():
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    b = a.copy()
    b[1] = np.clip(a[1].astype(int) + 4, 0, 255).astype(np.uint8)  # frame 1 differs
    b[2] = np.clip(a[2].astype(int) + rng.integers(-20, 21, a[2].shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_is_the_pooled_one_in_compare_and_psnr_frame_mean_the_mean():
    import math

    import numpy as np

    from wanlab import metrics

    a, b = _pair_with_one_identical_frame()
    mse = ((a.astype(float) - b.astype(float)) ** 2).mean()
    expected = 10 * math.log10(255**2 / mse)
    scores = metrics.psnr(a, b)
    assert scores.pooled == pytest.approx(expected) and math.isinf(scores.mean)
    got = metrics.compare(a, b)
    assert got["psnr"] == pytest.approx(expected) and math.isinf(got["psnr_frame_mean"])
    c = b.copy()
    c[0] = np.clip(a[0].astype(int) + 2, 0, 255).astype(np.uint8)
    per = scores.per_frame
    assert metrics.compare(a, c)["psnr_frame_mean"] > metrics.compare(a, c)["psnr"]  # the mean of logs is higher
    assert np.isinf(per[0]) and np.isfinite(per[1:]).all()


def test_compare_widget_and_accel_study_use_the_same_psnr():
    from wanlab.accel.tradeoff import fidelity
    from wanlab.widgets.compare import compare_metrics

    a, b = _pair_with_one_identical_frame()
    table = compare_metrics({"ref": a, "other": b}, motion=False)
    study = fidelity(b, a)
    assert table.loc["other", "psnr"] == pytest.approx(study["psnr"])
    assert table.loc["other", "psnr_frame_mean"] == study["psnr_frame_mean"]


# --- 6. the explorer's axes; 10. its metric menu ------------------------------------------------------------
def _seed_only_table():
    import numpy as np
    import pandas as pd

    from wanlab.frames import as_frames  # noqa: F401  (frames are uint8 (T, H, W, 3))

    seeds = [1_234_567_890, 987_654_321, 5_555_555_555, 42, 7_000_000_001, 3_141_592_653, 2_718_281_828, 1]
    rng = np.random.default_rng(1)
    frames = {s: rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8) for s in seeds}
    df = pd.DataFrame({"point": range(8), "seed": seeds, "status": "done", "flow_magnitude": rng.random(8) + 1,
                       "dynamic_threshold": 6.0, "static": 0.0, "warped_flicker": rng.random(8)})
    return df, (lambda row: frames[row["seed"]])


def test_explorer_shows_seeds_as_categories_without_a_trend_line():
    from wanlab.widgets import SweepExplorer

    df, loader = _seed_only_table()
    ex = SweepExplorer(df, params=["seed"], loader=loader)
    assert ex.x == "seed"
    ax = ex.figure.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert sorted(labels) == sorted(str(s) for s in df["seed"])  # one category per seed, no "1e9" offset
    assert ax.xaxis.get_offset_text().get_text() == ""
    assert all(line.get_linestyle() in ("None", "none", "") for line in ax.get_lines())  # no line joins seeds


def test_explorer_metric_menu_has_no_thresholds_or_constants():
    from wanlab.widgets import SweepExplorer

    df, loader = _seed_only_table()
    ex = SweepExplorer(df, params=["seed"], loader=loader)
    menu = list(ex.metric_dropdown.options)
    assert "dynamic_threshold" not in menu and "static" not in menu
    assert "flow_magnitude" in menu and "warped_flicker" in menu
    ex.select(seed=int(df["seed"][0]))
    assert "dynamic_threshold" in ex.table.value  # still shown with the selected run's values


def test_explorer_effects_sit_under_the_plot_across_the_width():
    import numpy as np
    import pandas as pd

    from wanlab.widgets import SweepExplorer

    rng = np.random.default_rng(2)
    rows = [{"point": i, "seed": s, "guidance_scale": g, "status": "done", "flow_magnitude": g + rng.random()}
            for i, (s, g) in enumerate((s, g) for s in range(1, 7) for g in (1.0, 5.0))]
    frames = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    ex = SweepExplorer(pd.DataFrame(rows), params=["seed", "guidance_scale"], loader=lambda row: frames)
    assert ex.children[-1] is ex.effects_pane and ex.effects_pane.layout.width == "100%"
    assert "verdict" in ex.effects_pane.value


# --- 10. quiet and exact ----------------------------------------------------------------------------------
def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_loading_shows_no_bars_by_default():
    # one process: the default load first (quiet), then one asking for bars (they show)
    done = _run("import sys, wanlab; wanlab.load('toy'); print('=== asked', file=sys.stderr, flush=True); "
                "wanlab.load('toy', progress=True)")
    assert done.returncode == 0, done.stderr
    quiet, loud = done.stderr.split("=== asked")
    assert "Loading" not in quiet and "it/s" not in quiet, quiet
    assert "Loading pipeline components" in loud


def test_generate_refuses_an_out_of_range_field_before_importing_torch(tmp_path):
    code = ("import sys\nfrom wanlab.cli import main\n"
            f"rc = main(['generate', '--prompt', 'a red square', '--steps', '99', '--out', r'{tmp_path / 'x.mp4'}'])\n"
            "print('rc', rc, 'torch' in sys.modules)")
    done = _run(code)
    assert "rc 2 False" in done.stdout, (done.stdout, done.stderr)
    assert "steps" in done.stderr and "99" in done.stderr


# --- 5. players you can use ---------------------------------------------------------------------------------
def test_a_small_video_plays_at_the_size_wanlab_show_uses():
    import re

    import numpy as np

    from wanlab.video import Video

    rng = np.random.default_rng(3)
    video = Video(rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8), fps=16.0,
                  params=Params(prompt="a red square moving right quickly", seed=1, width=64, height=64, num_frames=5))
    markup = video._repr_html_()
    tag = re.search(r"<video [^>]*>", markup).group(0)
    assert 'width="256" height="256"' in tag and "pixelated" in tag and "controls" in tag
    shown = wanlab.show(video).to_html()
    assert 'width="256" height="256"' in shown
    big = Video(rng.integers(0, 256, (2, 480, 832, 3), dtype=np.uint8), fps=16.0)
    assert 'width="832" height="480"' in big._repr_html_()


# --- 8. notebooks that conclude -------------------------------------------------------------------------
def test_notebook_02_runs_enough_seeds_for_intervals_and_states_its_answer():
    import ast

    import nbformat

    book = nbformat.read(REPO / "notebooks" / "02_sweeps.ipynb", as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    sweep_cell = next(c.source for c in book.cells if c.cell_type == "code" and "wanlab.Sweep(" in c.source)
    grid_text = sweep_cell.split("grid=", 1)[1].split(",\n", 1)[0]
    grid = ast.literal_eval(grid_text.replace("list(range(1, 9))", "[1,2,3,4,5,6,7,8]"))
    assert len(grid["seed"]) >= 6  # stats.effects' bootstrap needs 6 or more seeds
    assert "effects(result.df" in code
    answer = [c.source for c in book.cells if c.cell_type == "markdown" and c.source.startswith("**The answer**")]
    assert answer and "[" in answer[0] and "px/frame" in answer[0]  # numbers with intervals


def test_readme_no_longer_claims_guidance_simply_speeds_clips_up():
    readme = (REPO / "README.md").read_text()
    assert "guidance makes clips faster" not in readme
    assert "toward the speed its caption asks for" in readme


# --- 4. nothing cut off (figures and tables; the browser test checks the pages at 1280 px) ----------------
def _demo_like_table(seeds=(1, 2)):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(4)
    rows = [{"seed": s, "guidance_scale": g, "flow_shift": f, "status": "done",
             "flow_magnitude": 1.6 + 0.1 * g + rng.normal(0, 0.2),
             "warped_flicker": 0.98 + 1e-4 * g + rng.normal(0, 3e-4)}
            for s in seeds for g in (1.0, 2.0, 5.0) for f in (1.0, 3.0, 6.0)]
    return pd.DataFrame(rows)


def _extent(artist, fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return artist.get_window_extent(canvas.get_renderer())


def test_metric_plot_title_fits_the_figure():
    from wanlab.plots import metric_plot

    fig = metric_plot(_demo_like_table(), x="guidance_scale", y="flow_magnitude", hue="flow_shift")
    box = _extent(fig.axes[0].title, fig)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    assert "6 needed" in fig.axes[0].get_title()


def test_metric_plot_legend_covers_no_point():
    import numpy as np
    import pandas as pd

    from wanlab.plots import metric_plot

    rows = [{"seed": s, "guidance_scale": g, "flow_shift": f, "status": "done",
             "flow_magnitude": 1.0 + ((7 * s + 3 * g + 5 * f) % 17) / 8}  # points over the whole axes
            for s in range(1, 9) for g in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0) for f in (1.0, 3.0, 6.0)]
    table = pd.DataFrame(rows)
    fig = metric_plot(table, x="guidance_scale", y="flow_magnitude", hue="flow_shift")
    ax = fig.axes[0]
    legend = _extent(ax.get_legend(), fig)
    points = np.vstack([ax.transData.transform(line.get_xydata()) for line in ax.get_lines()]
                       + [ax.transData.transform(c.get_offsets()) for c in ax.collections if len(c.get_offsets())])
    inside = ((points[:, 0] >= legend.x0) & (points[:, 0] <= legend.x1)
              & (points[:, 1] >= legend.y0) & (points[:, 1] <= legend.y1))
    assert not inside.any()
    assert legend.x1 <= fig.bbox.width  # and the legend itself is inside the figure


def test_heatmap_labels_show_the_differences_their_colours_show():
    from wanlab.plots import heatmap

    fig = heatmap(_demo_like_table(), x="guidance_scale", y="flow_shift", value="warped_flicker")
    labels = [t.get_text() for t in fig.axes[0].texts]
    table = _demo_like_table().pivot_table(index="flow_shift", columns="guidance_scale", values="warped_flicker")
    assert len(set(labels)) == table.size  # every cell reads differently, as its colour differs
    assert len({len(t.split(".")[1]) for t in labels}) == 1  # one number of decimals for all


def test_effects_html_says_a_shared_note_once_and_keeps_the_verdict_before_it():
    from wanlab.stats import effects

    html = effects(_demo_like_table(), "flow_magnitude", by="guidance_scale", axes=["flow_shift"]).to_html()
    assert html.count("needs 6 seeds") == 1  # once above the tables, not in every row
    head = html.split("<thead>")[2].split("</thead>")[0]
    assert "verdict" in head and "note" not in head


def test_report_metrics_table_links_come_first_with_a_short_text():
    import pandas as pd

    from wanlab.tables import html_table

    df = pd.DataFrame({"seed": [1], "flow_magnitude": [1.5]})
    table = html_table(df, links={0: "videos/seed1_gs1.0_fs1.0_a_red_square.mp4"})
    head = table.split("<thead>")[1]
    assert head.index("video") < head.index("seed")
    assert ">mp4</a>" in table and 'title="seed1_gs1.0_fs1.0_a_red_square.mp4"' in table


def test_frame_grid_labels_are_readable_and_horizontal():
    import numpy as np

    from wanlab.plots import compare_grid

    rng = np.random.default_rng(5)
    videos = {f"seed=1\ngs={g}\nfs=3.0": rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8) for g in (1, 2)}
    fig = compare_grid(videos, n=3, width=1.4, fontsize=11)
    label = fig.axes[0].yaxis.label
    assert label.get_fontsize() >= 11 and label.get_rotation() == 0
    assert fig.axes[0].title.get_fontsize() >= 11
    box = _extent(label, fig)
    assert box.x0 >= 0  # the label is inside the figure


def test_report_frame_grid_is_capped_with_a_note(pipe, tmp_path):
    from wanlab.report import MAX_GRID_ROWS, write_sweep_report

    sweep = wanlab.Sweep(base=Params(prompt="a red square", width=32, height=32, num_frames=5, steps=1),
                         grid={"seed": list(range(1, 11))}, name="grid-cap")
    result = sweep.run(pipe, store=tmp_path / "s", progress=False, metrics=False)
    page = write_sweep_report(result, tmp_path / "report").read_text()
    assert MAX_GRID_ROWS <= 9
    assert f"the first {MAX_GRID_ROWS} of 10 videos; every video plays in the Videos section above" in page


# --- 9. getting to the notebooks ------------------------------------------------------------------------------
def test_make_lab_installs_the_lab_extra_and_opens_the_notebooks():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lab = " ".join(extras["lab"])
    assert "jupyterlab" in lab and "ipykernel" in lab and "fastapi" in lab
    assert "ray" not in lab and "pytest" not in lab and "playwright" not in lab
    dry = subprocess.run(["make", "-n", "lab"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "scripts/setup.sh lab" in dry.stdout and "-m jupyterlab notebooks/" in dry.stdout
    bad = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "nope"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and "must be test or lab" in bad.stderr
    assert "make lab" in (REPO / "README.md").read_text()


def test_notebook_06_rounds_the_service_timings_it_prints():
    import nbformat

    book = nbformat.read(REPO / "notebooks" / "06_service.ipynb", as_version=4)
    cell = next(c.source for c in book.cells if c.cell_type == "code" and "service timings" in c.source)
    assert "round(seconds, 3)" in cell and "lossy.timings)" not in cell
