"""Sweeps: definition and validation, TOML files, running into a store, resume after SIGKILL, failures,
shards, prompt-embedding reuse, the ``wanlab sweep`` command."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wanlab import LoRA, ParamError, Params
from wanlab.cli import main
from wanlab.report import write_sweep_report
from wanlab.store import Store
from wanlab.sweep import Sweep, check_shard, draw_seeds

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(prompt="a red fox running through fresh snow", width=32, height=32, num_frames=5, steps=2)
KEY_DIR = re.compile(r"^[0-9a-f]{16}$")


def stored_keys(folder: Path) -> list[str]:
    """Run folders that are whole (have their record), read straight from disk."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if KEY_DIR.match(p.name) and (p / "record.json").is_file())


def small_sweep(**kw) -> Sweep:
    kw.setdefault("grid", {"seed": [1, 2], "guidance_scale": [3.0, 5.0]})
    return Sweep(base=dict(SMALL), name=kw.pop("name", "small"), **kw)


# --- definition -------------------------------------------------------------------------------------
def test_points_are_the_product_of_the_axes_in_a_fixed_order():
    sweep = Sweep(base=Params(**SMALL), seeds=[7, 8], points=[{}, {"steps": 3, "negative_prompt": "blur"}],
                  zip={"width": [32, 48], "height": [48, 32]}, grid={"guidance_scale": [3.0, 5.0]})
    assert len(sweep) == 2 * 2 * 2 * 2 == len(sweep.points())
    over = sweep.overrides()
    # seeds outermost, then points, then zip, then grid (last varies fastest)
    assert over[0] == {"seed": 7, "width": 32, "height": 48, "guidance_scale": 3.0}
    assert over[1] == {"seed": 7, "width": 32, "height": 48, "guidance_scale": 5.0}
    assert over[2] == {"seed": 7, "width": 48, "height": 32, "guidance_scale": 3.0}
    assert over[4]["steps"] == 3 and over[4]["negative_prompt"] == "blur"
    assert over[8]["seed"] == 8
    points = sweep.points()
    assert all(isinstance(p, Params) for p in points)
    assert (points[2].width, points[2].height, points[4].steps, points[0].steps) == (48, 32, 3, 2)
    assert sweep.swept == ["seed", "steps", "negative_prompt", "width", "height", "guidance_scale"]
    # the same definition gives the same points, every time
    again = Sweep(base=Params(**SMALL), seeds=[7, 8], points=[{}, {"steps": 3, "negative_prompt": "blur"}],
                  zip={"width": [32, 48], "height": [48, 32]}, grid={"guidance_scale": [3.0, 5.0]})
    assert again.points() == points and list(again) == points
    assert sweep.label(4) == "seed=7, steps=3, negative_prompt=blur, width=32, height=48, guidance_scale=3.0"


def test_seed_counts_and_unset_seeds_are_drawn_from_the_recorded_sweep_seed():
    a = Sweep(base=SMALL, seeds=4, name="study")
    b = Sweep(base=SMALL, seeds=4, name="study")
    assert a.seeds == b.seeds == draw_seeds(a.sweep_seed, 4) and len(set(a.seeds)) == 4
    assert [p.seed for p in a.points()] == a.seeds
    assert Sweep(base=SMALL, seeds=4, name="other").seeds != a.seeds
    c = Sweep(base=SMALL, seeds=4, sweep_seed=123)
    assert c.sweep_seed == 123 and c.seeds == draw_seeds(123, 4)
    assert "sweep_seed = 123" in c.to_toml()
    # base seed -1 (the default) and no seed axis: every point gets the one drawn seed
    d = Sweep(base=SMALL, grid={"steps": [1, 2]}, name="steps")
    assert {p.seed for p in d.points()} == {d.one_seed} and d.one_seed != -1
    assert f"sweep_seed = {d.sweep_seed}" in d.to_toml()
    # explicit seeds need no sweep seed in the file
    assert "sweep_seed" not in small_sweep().to_toml()


def test_unset_fields_come_from_the_models_native_settings(pipe):
    sweep = Sweep(base={"prompt": "a fox"}, grid={"steps": [1, 2]})
    assert sweep.points()[0].width == Params(prompt="x").width  # no pipeline: Params' defaults
    native = sweep.points(pipe)
    assert (native[0].width, native[0].height, native[0].num_frames) == (
        pipe.native["width"], pipe.native["height"], pipe.native["num_frames"])


def test_a_bad_point_is_rejected_before_anything_runs_naming_point_and_field():
    with pytest.raises(ParamError) as info:
        Sweep(base=SMALL, grid={"seed": [1], "guidance_scale": [3.0, 12.0]})
    assert info.value.field == "guidance_scale" and info.value.point == 1
    assert "sweep point 1" in str(info.value) and "guidance_scale" in str(info.value) and "12" in str(info.value)
    with pytest.raises(ParamError, match="sweep point 1 .*num_frames"):
        Sweep(base=SMALL, points=[{}, {"num_frames": 6}])
    with pytest.raises(ParamError, match="grid.sampler"):
        Sweep(base=SMALL, grid={"sampler": ["unipc"]})
    with pytest.raises(ParamError, match="zip: must be lists of equal length"):
        Sweep(base=SMALL, zip={"steps": [1, 2], "flow_shift": [3.0]})
    with pytest.raises(ParamError, match="seed: must be varied by one axis only"):
        Sweep(base=SMALL, seeds=[1, 2], grid={"seed": [3]})
    with pytest.raises(ParamError, match="grid.steps: must be a non-empty list"):
        Sweep(base=SMALL, grid={"steps": []})
    with pytest.raises(ParamError, match="repeats point 0"):
        Sweep(base=SMALL, grid={"seed": [1, 1]})
    with pytest.raises(ParamError, match="prompt"):
        Sweep(base={"width": 32}, grid={"seed": [1]})
    with pytest.raises(ParamError, match="seeds"):
        Sweep(base=SMALL, seeds=0)


def test_shards_split_round_robin_and_cover_everything():
    sweep = small_sweep(grid={"seed": [1, 2, 3], "steps": [1, 2, 3]})
    shares = [sweep.shard(i, 4) for i in range(4)]
    assert shares[1] == [1, 5]
    assert sorted(i for share in shares for i in share) == list(range(len(sweep)))
    assert check_shard("1/3") == (1, 3) and check_shard((0, 1)) == (0, 1)
    for bad in ("3/3", "1/0", "-1/2", "a/b", (2, 2)):
        with pytest.raises(ParamError, match="shard"):
            check_shard(bad)


# --- TOML -------------------------------------------------------------------------------------------
def test_toml_round_trip_keeps_everything_and_the_question(tmp_path):
    sweep = Sweep(base={**SMALL, "loras": [LoRA("styles/a.safetensors", 0.5)]},
                  grid={"guidance_scale": [3.0, 5.0], "loras": [[], [{"path": "b.safetensors", "scale": 0.8}]]},
                  zip={"steps": [2, 3], "flow_shift": [3.0, 5.0]}, points=[{}, {"negative_prompt": "blur"}],
                  seeds=3, name="everything", model="tiny", question="does everything survive a round trip?",
                  reference={"guidance_scale": 5.0})
    path = sweep.save(tmp_path / "s.toml")
    text = path.read_text()
    assert text.splitlines()[0] == "# Question: does everything survive a round trip?"
    loaded = Sweep.load(path)
    assert loaded == sweep
    assert loaded.points() == sweep.points() and loaded.seeds == sweep.seeds
    assert (loaded.question, loaded.model, loaded.name) == (sweep.question, "tiny", "everything")
    assert Sweep.load(loaded.save(tmp_path / "again.toml")).to_toml() == text


def test_a_sweep_is_a_value_changed_only_through_replace():
    sweep = small_sweep(question="q?")
    with pytest.raises(TypeError):
        sweep.grid["steps"] = [1]  # type: ignore[index]
    wider = sweep.replace(grid={**sweep.grid, "flow_shift": [3.0, 5.0]})
    assert len(wider) == 2 * len(sweep) and wider.question == "q?" and wider.name == sweep.name
    assert wider.points()[1::2] == sweep.points()  # flow_shift 5.0 is the default the first sweep used
    assert sweep.replace() == sweep
    with pytest.raises(ParamError, match="nonsense"):
        sweep.replace(nonsense=1)


def test_the_design_example_loads(tmp_path):
    (tmp_path / "g.toml").write_text(textwrap.dedent('''\
        # Question: how do guidance and flow_shift trade prompt adherence against motion?
        name = "guidance-x-shift"
        model = "tiny"             # optional; `--model` on the command line overrides it
        [base]                     # any Params field
        prompt = "a red fox running through fresh snow"
        width = 128
        height = 128
        num_frames = 17
        steps = 10
        [grid]                     # cartesian product, in this order
        seed = [1, 2]
        guidance_scale = [3.0, 5.0]
        flow_shift = [3.0, 5.0]
        '''))
    sweep = Sweep.load(tmp_path / "g.toml")
    assert len(sweep) == 8 and sweep.name == "guidance-x-shift" and sweep.model == "tiny"
    assert sweep.question == "how do guidance and flow_shift trade prompt adherence against motion?"
    assert [(p.seed, p.guidance_scale, p.flow_shift) for p in sweep.points()[:3]] == [
        (1, 3.0, 3.0), (1, 3.0, 5.0), (1, 5.0, 3.0)]
    (tmp_path / "bad.toml").write_text('name = "x"\n[base]\nprompt = "a"\n[grid]\nsteps = [10, 50]\n')
    with pytest.raises(ParamError, match=r"bad.toml: sweep point 1 \(steps=50\): steps"):
        Sweep.load(tmp_path / "bad.toml")


def test_shipped_study_files_state_their_question_and_load():
    files = sorted((REPO / "sweeps").glob("*.toml"))
    names = {f.stem for f in files}
    assert {"demo", "seed_variance", "guidance_x_shift", "steps_convergence", "acceleration"} <= names
    for file in files:
        assert file.read_text().startswith("# Question: "), file
        sweep = Sweep.load(file)
        assert sweep.question and len(sweep) >= 8
    assert len(Sweep.load(REPO / "sweeps" / "seed_variance.toml").seeds) == 8
    steps = {p.steps for p in Sweep.load(REPO / "sweeps" / "steps_convergence.toml").points()}
    assert min(steps) == 5 and max(steps) == 40
    accel = Sweep.load(REPO / "sweeps" / "acceleration.toml")
    assert accel.swept == ["seed", "accel"] and accel.grid["accel"][0] == "exact"
    assert {a.label for a in accel.accels()} >= {"exact", "fbc", "mag", "taylorseer", "pab", "seacache", "compile"}


def test_cli_dry_run_lists_acceleration_settings(tmp_path, capsys):
    assert main(["sweep", str(REPO / "sweeps" / "acceleration.toml"), "--model", "tiny", "--store",
                 str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "accel" in out and "taylorseer-fast" in out and "a run would generate 30" in out


# --- running ----------------------------------------------------------------------------------------
def test_run_fills_the_store_and_a_rerun_skips_everything(pipe, tmp_path):
    sweep = small_sweep()
    result = sweep.run(pipe, store=tmp_path / "runs", progress=False)
    df = result.df
    assert list(df.columns[:4]) == ["point", "seed", "guidance_scale", "status"]
    assert {"error", "seconds", "digest", "flow_magnitude", "warp_error", "key", "path"} <= set(df.columns)
    assert list(df["status"]) == ["done"] * 4 and result.complete and result.ran == [0, 1, 2, 3]
    assert df["flow_magnitude"].notna().all() and (df["seconds"] > 0).all()
    assert all(Path(p).is_file() and p.endswith(".mp4") for p in df["path"])
    assert stored_keys(tmp_path / "runs") == sorted(df["key"])
    # the same params through the pipeline give the stored frames
    video = result.video(seed=2, guidance_scale=5.0)
    assert video.digest == pipe.generate(sweep.points()[3], progress=False).digest == df["digest"][3]
    videos = result.videos(seed=1)
    assert list(videos) == ["guidance_scale=3.0", "guidance_scale=5.0"]
    with pytest.raises(LookupError, match="2 points match"):
        result.video(seed=1)
    with pytest.raises(ValueError, match="nonsense"):
        result.select(nonsense=1)
    again = sweep.run(pipe, store=tmp_path / "runs", progress=False)
    assert again.ran == [] and again.df.equals(df)
    assert sweep.result(pipe, tmp_path / "runs").df.equals(df)


def test_a_failing_point_is_recorded_and_the_rest_go_on(pipe, tmp_path):
    missing = str(tmp_path / "no-such-style.safetensors")
    sweep = small_sweep(points=[{}, {"loras": [{"path": missing, "scale": 1.0}]}, {"steps": 1}],
                        grid={"seed": [1]})
    store = tmp_path / "runs"
    result = sweep.run(pipe, store=store, progress=False)
    df = result.df
    assert list(df["status"]) == ["done", "failed", "done"]  # the point after the failure ran too
    assert df["error"][1].startswith("LoRAError:") and "no-such-style.safetensors" in df["error"][1]
    assert df["error"][[0, 2]].isna().all() and df["digest"][[1]].isna().all()
    assert len(stored_keys(store)) == 2 and len(Store(store).failures()) == 1
    assert result.counts == {"done": 2, "failed": 1, "pending": 0} and not result.complete
    page = write_sweep_report(result, tmp_path / "report").read_text()
    assert page.count("<video ") == 2 and '<tr class="failed">' in page and "no such LoRA file" in page
    # max_failures stops gracefully: the rest stay pending, the result says why
    fresh = tmp_path / "fresh"
    ordered = Sweep(base=SMALL, points=[{"loras": [{"path": missing}]}, {}], grid={"seed": [1, 2]}, name="stop")
    with pytest.warns(UserWarning, match="max_failures=1"):
        stopped = ordered.run(pipe, store=fresh, progress=False, max_failures=1)
    assert list(stopped.df["status"]) == ["failed", "pending", "pending", "pending"]
    assert "max_failures=1" in stopped.stopped and stopped.ran == []
    with pytest.raises(ParamError, match="max_failures"):
        ordered.run(pipe, store=fresh, max_failures=0)
    # once the file exists the point runs (failures are retried by default)
    from tests.helpers import make_lora_files

    files = make_lora_files(pipe, tmp_path / "made")
    os.replace(files["diffusers"], missing)
    retried = sweep.run(pipe, store=store, progress=False)
    assert list(retried.df["status"]) == ["done"] * 3 and retried.ran == [1]
    assert Store(store).failures() == {}


def test_shards_writing_one_store_give_the_table_of_one_process(pipe, tmp_path):
    sweep = small_sweep(grid={"seed": [1, 2, 3]})
    first = sweep.run(pipe, store=tmp_path / "shared", shard=(0, 2), progress=False, metrics=False)
    assert first.ran == [0, 2]
    assert list(first.df["status"]) == ["done", "pending", "done"]
    second = sweep.run(pipe, store=tmp_path / "shared", shard="1/2", progress=False, metrics=False)
    assert second.ran == [1] and second.complete
    whole = sweep.run(pipe, store=tmp_path / "whole", progress=False, metrics=False)
    same = ["point", "seed", "status", "error", "digest", "key"]
    assert second.df[same].equals(whole.df[same])
    # any process reading the shared store sees the same table
    assert sweep.result(pipe, tmp_path / "shared").df.equals(second.df)


def test_prompt_embeddings_are_encoded_once_and_reuse_is_bit_identical(pipe, tmp_path, monkeypatch):
    sweep = Sweep(base={**SMALL, "negative_prompt": "blurry"},
                  grid={"prompt": ["a red fox running", "a cat walking"], "seed": [1, 2], "guidance_scale": [3.0]},
                  name="embeds")
    calls = []
    encoder = pipe.diffusers.text_encoder
    original = encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    pipe.forget_embeddings()
    monkeypatch.setattr(encoder, "forward", counting)
    result = sweep.run(pipe, store=tmp_path / "runs", metrics=False, progress=False)
    assert len(result.ran) == 4 and len(calls) == 3  # 3 texts (2 prompts, 1 negative prompt), 4 runs
    monkeypatch.undo()
    assert "flow_magnitude" not in result.df.columns
    for params, digest in zip(sweep.points(), result.df["digest"]):
        pipe.forget_embeddings()  # no reuse: every text encoded afresh
        assert pipe.generate(params, progress=False).digest == digest


SLOW_RUNNER = """
import sys, time
import wanlab
from wanlab.sweep import Sweep
pipe = wanlab.load("tiny", progress=False)
generate = pipe.generate
def slow(*args, **kwargs):
    video = generate(*args, **kwargs)
    time.sleep(0.3)
    return video
pipe.generate = slow
print("started", flush=True)
Sweep.load(sys.argv[1]).run(pipe, store=sys.argv[2], progress=False)
print("finished", flush=True)
"""


def test_a_sweep_killed_with_sigkill_resumes_with_no_run_lost_or_duplicated(pipe, tmp_path):
    sweep = small_sweep(name="killed", grid={"seed": [1, 2, 3, 4, 5]})
    n = len(sweep)
    file = sweep.save(tmp_path / "killed.toml")
    store = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUNNER, str(file), str(store)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        while len(stored_keys(store)) < 2:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the sweep never stored two runs"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    landed = stored_keys(store)
    assert 2 <= len(landed) < n, "killed too late to test resuming"
    before = sweep.result(pipe, store)
    assert before.counts["done"] == len(landed) and before.counts["pending"] == n - len(landed)

    resumed = sweep.run(pipe, store=store, progress=False)
    assert resumed.complete and len(resumed.ran) == n - len(landed)
    assert not set(resumed.df["key"][resumed.ran]) & set(landed)  # nothing that had landed was redone
    keys = stored_keys(store)
    assert len(keys) == n and sorted(resumed.df["key"]) == keys
    table = Store(store).df
    assert len(table) == n and table["key"].is_unique
    for params, digest in zip(sweep.points()[:2], resumed.df["digest"][:2]):
        assert pipe.generate(params, progress=False).digest == digest


def test_compare_against_a_reference_point_and_its_report(pipe, tmp_path):
    sweep = Sweep(base=SMALL, grid={"seed": [1], "steps": [1, 2]}, reference={"steps": 2}, name="conv",
                  question="how many steps?")
    result = sweep.run(pipe, store=tmp_path / "runs", progress=False, metrics=False)
    table = result.compare()
    refs, others = table[table["steps"] == 2], table[table["steps"] == 1]
    assert (refs["ssim_vs_ref"] == 1.0).all() and (refs["psnr_vs_ref"] == float("inf")).all()
    assert (others["ssim_vs_ref"] < 1.0).all() and others["psnr_vs_ref"].between(0, 100).all()
    assert result.compare(steps=2).equals(table)
    with pytest.raises(ValueError, match="guidance_scale: not a swept field"):
        result.compare(guidance_scale=5.0)
    with pytest.raises(ParamError, match="reference.steps"):
        Sweep(base=SMALL, grid={"steps": [1, 2]}, reference={"steps": 3})
    report = write_sweep_report(result, tmp_path / "report")
    assert (tmp_path / "report" / "vs_reference.png").is_file() and "ssim_vs_ref" in report.read_text()
    assert "ssim_vs_ref" in (tmp_path / "report" / "metrics.csv").read_text().splitlines()[0]
    assert Sweep.load(sweep.save(tmp_path / "conv.toml")).reference == {"steps": 2}


def test_effects_over_seeds_in_the_result_and_its_report(pipe, tmp_path):
    sweep = Sweep(base=dict(SMALL, steps=1), grid={"seed": list(range(6)), "guidance_scale": [1.0, 5.0]}, name="fx")
    result = sweep.run(pipe, store=tmp_path / "runs", progress=False)
    found = result.effects("flow_magnitude", by="guidance_scale")
    assert list(found.means["guidance_scale"]) == [1.0, 5.0] and (found.means["seeds"] == 6).all()
    table = result.df
    for g, mean in zip(found.means["guidance_scale"], found.means["mean"]):
        assert mean == pytest.approx(table[table["guidance_scale"] == g]["flow_magnitude"].mean())
    (diff,) = found.differences.to_dict("records")
    paired = table.pivot(index="seed", columns="guidance_scale", values="flow_magnitude")
    assert diff["difference"] == pytest.approx((paired[5.0] - paired[1.0]).mean())
    assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"]
    with pytest.raises(ValueError, match="by: must be a swept field other than seed"):
        result.effects("flow_magnitude", by="steps")
    page = write_sweep_report(result, tmp_path / "report").read_text()
    assert "Effects on flow_magnitude, over seeds" in page and "paired on seeds" in page

    one = Sweep(base=dict(SMALL, steps=1), grid={"seed": [1], "guidance_scale": [1.0, 5.0]}, name="one")
    single = one.run(pipe, store=tmp_path / "runs", progress=False)
    with pytest.raises(ValueError, match="one seed"):
        single.effects("flow_magnitude", by="guidance_scale")
    page = write_sweep_report(single, tmp_path / "report1").read_text()
    assert "cannot be told from seed-to-seed noise" in page


# --- the command ------------------------------------------------------------------------------------
def test_cli_sweep_shard_then_dry_run_then_the_rest(pipe, tmp_path, capsys):
    file = small_sweep(name="cli", question="does the command work?", grid={"seed": [1, 2, 3]}, model="tiny").save(
        tmp_path / "cli.toml")
    store = tmp_path / "runs"
    assert main(["sweep", str(file), "--store", str(store), "--shard", "0/2", "--quiet", "--no-metrics"]) == 0
    out = capsys.readouterr().out
    assert "3 points, 2 done, 0 failed, 1 pending; 2 run now" in out
    before = stored_keys(store)

    assert main(["sweep", str(file), "--store", str(store), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert stored_keys(store) == before  # a dry run runs nothing
    assert "question: does the command work?" in out
    lines = [line.split() for line in out.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert [(row[0], row[-2]) for row in lines] == [("0", "done"), ("1", "pending"), ("2", "done")]
    assert all(KEY_DIR.match(row[-1]) for row in lines)
    assert "2 done, 0 failed, 1 pending; a run would generate 1 (dry run: nothing was run)" in out

    csv = tmp_path / "table.csv"
    assert main(["sweep", str(file), "--store", str(store), "--quiet", "--no-metrics", "--csv", str(csv)]) == 0
    assert "3 done" in capsys.readouterr().out and len(csv.read_text().splitlines()) == 4

    assert main(["sweep", str(file), "--store", str(store), "--shard", "2/2"]) == 2
    assert "shard: must be i/N" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2


def test_cli_sweep_exit_code_is_1_when_a_point_fails(pipe, tmp_path, capsys):
    sweep = Sweep(base=SMALL, points=[{}, {"loras": [{"path": str(tmp_path / "gone.safetensors")}]}],
                  grid={"seed": [1]}, name="fails", model="tiny")
    file = sweep.save(tmp_path / "fails.toml")
    assert main(["sweep", str(file), "--store", str(tmp_path / "runs"), "--quiet", "--no-metrics"]) == 1
    out = capsys.readouterr().out
    assert "1 done, 1 failed" in out and "failed: point 1" in out and "no such LoRA file" in out


def test_storing_overlaps_generation_only_where_cpu_is_free(pipe, monkeypatch):
    """A pipeline keeps 2 jobs in flight (storing one overlaps the next generation) only where that
    leaves CPU free: on a GPU, or with torch on fewer threads than there are cores."""
    import torch

    from wanlab.pipeline import Pipeline

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    gpu = Pipeline(pipe.diffusers, pipe.identity, device="cuda:0")  # only its device is read here
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert pipe.max_in_flight == 1 and gpu.max_in_flight == 2
        torch.set_num_threads(1)
        assert pipe.max_in_flight == 2
    finally:
        torch.set_num_threads(saved)


def test_jobs_run_with_the_thread_count_of_the_thread_that_starts_them(pipe, tmp_path):
    """torch keeps its thread count per thread: a sweep (on the pipeline's worker thread) and a task
    (started by the queue's dispatcher) run with the caller's count, so they give generate's frames."""
    import torch

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        p = Params(**SMALL, seed=77)
        direct = pipe.generate(p, progress=False)
        swept = Sweep(base=dict(SMALL), grid={"seed": [77]}, name="threads").run(
            pipe, tmp_path / "runs", progress=False, metrics=False)
        run = swept.get(seed=77)
        assert run.digest == direct.digest and run.record["environment"]["torch_threads"] == 1
        task = pipe.wait(pipe.submit(p, store=tmp_path / "tasks"), timeout=60)
        assert Store(tmp_path / "tasks").get(task["extra"]["wanlab"]["run_key"]).digest == direct.digest
    finally:
        torch.set_num_threads(saved)
