"""What a new user meets in the first hour: the command speaks for itself, bad values fail before any
model loads, long prompts are never cut silently, the terminal stays quiet, files say where they go,
and damaged runs say what is wrong."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import wanlab
from wanlab import ParamError, Params, Sweep, Video
from wanlab.cli import main
from wanlab.store import Store
from wanlab.taskstatus import TaskStatus

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(width=32, height=32, num_frames=5, steps=2)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wanlab.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def broken_model(tmp_path_factory, pipe):
    """A model folder whose weights cannot be read: anything that fails with it before a LoadError was
    checked before loading."""
    folder = pipe.save_pretrained(tmp_path_factory.mktemp("broken") / "model")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    return folder


# --- the command speaks for itself -------------------------------------------------------------------
def test_generate_help_gives_every_fields_rule_and_default_and_the_default_model(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for rule in ("denoising steps, 1..40", "0..10; classifier-free guidance runs only above 1",
                 "4k+1 in 1..257", "-1..9999999999; -1 draws one", "default: the model's native setting, else 30"):
        assert rule in text, rule
    assert "default: toy (trained on moving shapes; 'tiny' is random weights, for tests)" in text
    assert "toy: 64x64, 17 frames, 25 steps, guidance 2, shift 3" in text


def test_generate_without_a_model_uses_the_toy_and_says_what_it_will_make(tmp_path):
    out = tmp_path / "square.mp4"
    result = run_cli("generate", "--prompt", "a red square moving right quickly", "--seed", "4", "--steps", "4",
                     "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "toy request: 64x64, 17 frames, 4 steps, guidance 2, shift 3, seed 4" in result.stderr
    video = Video.load(out)
    assert video.model["id"] == "toy" and video.frames.shape == (17, 64, 64, 3)
    assert "peft" not in result.stderr and "Warning" not in result.stderr  # a quiet terminal


def test_wanlab_models_lists_the_built_ins(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: seeded random weights") and "\ntoy: trained by wanlab" in out
    assert "steps=25" in out and "MB on disk" in out and "Wan-AI/Wan2.1-T2V-14B-Diffusers" in out


@pytest.mark.parametrize("args, message", [
    (["--out", "clip.avi"], "path: must end in .mp4, .mkv, .gif or .npz; got 'clip.avi'"),
    (["--steps", "99"], "steps: must be an integer in 1..40; got 99"),
    (["--lora", "/no/such/style.safetensors"], "loras.path: no such LoRA file: /no/such/style.safetensors"),
    (["--accel", "warp"], "accel: must be an Accel"),
])
def test_every_value_is_checked_before_the_model_loads(broken_model, tmp_path, capsys, args, message):
    argv = ["generate", "--prompt", "x", "--model", str(broken_model), "--quiet", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "x.mp4")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "could not load" not in err  # the broken weights were never read


def test_a_sweep_file_is_checked_before_the_model_loads(broken_model, tmp_path, capsys):
    sweep = Sweep(base={"prompt": "x", **SMALL}, points=[{}, {"loras": [{"path": "/gone.safetensors"}]}],
                  name="checked")
    file = sweep.save(tmp_path / "s.toml")
    assert main(["sweep", str(file), "--model", str(broken_model), "--store", str(tmp_path / "runs"),
                 "--dry-run"]) == 0  # nothing loads for a dry run
    assert "a run would generate 2" in capsys.readouterr().out
    assert main(["sweep", str(file), "--model", str(broken_model), "--store", str(tmp_path / "runs")]) == 2
    assert "could not load the Wan pipeline" in capsys.readouterr().err  # only now, once every point was checked


# --- no silent truncation ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_reader():
    """The tiny model reading 4 tokens: a long prompt is cut by its text encoder."""
    return wanlab.load("tiny", progress=False, max_sequence_length=4)


def test_a_prompt_longer_than_the_model_reads_warns_once_and_is_recorded(short_reader):
    long_a = Params(prompt="a red fox running through snow", seed=1, **SMALL)
    long_b = long_a.replace(prompt="a red fox running past a cat")
    with pytest.warns(UserWarning, match=r"prompt is \d+ tokens long; this model reads 4 \(max_sequence_length\)"):
        a = short_reader.generate(long_a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per text: the second call is silent
        again = short_reader.generate(long_a)
    assert a.record["truncated"] is True and a.record["prompt_tokens"] > 4 and again.digest == a.digest
    with pytest.warns(UserWarning):
        b = short_reader.generate(long_b)
    assert b.digest == a.digest  # what silent truncation did: two prompts, one video
    short = short_reader.generate(long_a.replace(prompt="a fox"))
    assert short.record["truncated"] is False
    with pytest.raises(ParamError, match=r"^prompt: must be at most 4 tokens .*; got '\d+ tokens'"):
        short_reader.generate(long_a, truncate="error")


def test_truncation_is_in_the_store_table_and_a_sweep_can_refuse_it(short_reader, tmp_path):
    sweep = Sweep(base=SMALL, points=[{"prompt": "a fox"}, {"prompt": "a red fox running in the forest"},
                                      {"prompt": "a cat"}], grid={"seed": [1]}, name="cut")
    with pytest.warns(UserWarning):
        sweep.run(short_reader, tmp_path / "runs", progress=False, metrics=False)
    df = Store(tmp_path / "runs").df.set_index("prompt")
    assert not df.loc["a fox", "truncated"] and df.loc["a red fox running in the forest", "truncated"]
    assert df.loc["a red fox running in the forest", "prompt_tokens"] > 4
    with pytest.warns(UserWarning, match="stopped"):
        strict = sweep.run(short_reader, tmp_path / "strict", progress=False, metrics=False, truncate="error")
    assert list(strict.df["status"]) == ["done", "failed", "pending"]
    assert "at most 4 tokens" in strict.df["error"][1] and "stopped" in strict.stopped


# --- a quiet terminal --------------------------------------------------------------------------------
def test_sweeps_leak_no_library_warnings(pipe, lora_files, tmp_path):
    sweep = Sweep(base={"prompt": "a fox", **SMALL}, points=[
        {"loras": [{"path": str(lora_files["diffusers"]), "scale": 0.5}]},
        {"loras": [{"path": str(lora_files["other"]), "scale": 0.5}]}], grid={"seed": [3]}, name="quiet")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sweep.run(pipe, tmp_path / "runs", progress=False, metrics=False)
    assert not [w for w in seen if "peft" in str(w.filename) or "peft_config" in str(w.message)]


# --- files say where they go -------------------------------------------------------------------------
def test_the_first_task_says_where_its_store_is(pipe, tmp_path, monkeypatch, capsys):
    from wanlab.pipeline import Pipeline

    monkeypatch.setenv("WANLAB_STORE", str(tmp_path / "tasks-here"))
    fresh = Pipeline(pipe.diffusers, pipe.identity, device=pipe.device)  # a pipeline with no task queue yet
    task_id = fresh.submit(prompt="a fox", seed=1, **SMALL)
    assert f"tasks and their videos go to {tmp_path / 'tasks-here'}" in capsys.readouterr().err
    assert fresh.wait(task_id, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    fresh.close()


def test_video_load_takes_a_run_folder_and_names_a_file_it_cannot_read(pipe, tmp_path):
    run = Store(tmp_path / "runs").put(pipe.generate(Params(prompt="a fox", seed=2, **SMALL)))
    by_folder, by_mp4 = Video.load(run.path), Video.load(run.mp4)
    assert by_folder.digest == by_mp4.digest == run.digest  # exact frames (the lossless copy)
    assert by_mp4.params == run.params and by_mp4.record["key"] == run.key  # the run's record.json
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    with pytest.raises(wanlab.WanlabError, match=r"junk.mp4: not a readable video file") as info:
        Video.load(junk)
    assert "\n" not in str(info.value) and "ffmpeg version" not in str(info.value)
    with pytest.raises(wanlab.WanlabError, match="not a wanlab run folder"):
        Video.load(tmp_path)


# --- verify on damaged runs --------------------------------------------------------------------------
def test_verify_names_a_corrupt_record_and_says_when_it_compared_digests_only(pipe, tmp_path, capsys):
    store = Store(tmp_path / "runs")
    run = store.put(pipe.generate(Params(prompt="a fox", seed=5, **SMALL)))
    copy = tmp_path / "copy" / run.key
    shutil.copytree(run.path, copy)
    copy.joinpath("video.lossless.mkv").unlink()
    result = wanlab.verify(copy, backend=pipe)  # a run missing a file is never identical (issue 22)
    assert not result["identical"] and result["digest_actual"] == result["digest_expected"]
    assert any("compared by digest only" in n for n in result["notes"]) and "missing" in result["damage"]
    assert main(["verify", str(copy)]) == 1
    assert "note: the run's lossless copy video.lossless.mkv is missing" in capsys.readouterr().out
    (run.path / "record.json").write_text("{ damaged")
    assert main(["verify", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert f"{run.path / 'record.json'}: the run's record cannot be read" in err and "Traceback" not in err


# --- the report --------------------------------------------------------------------------------------
def test_the_report_folds_constant_columns_and_captions_prompts(pipe, tmp_path):
    from wanlab.report import write_sweep_report

    sweep = Sweep(base={**SMALL, "negative_prompt": "blurry"},
                  grid={"prompt": ["a red fox", "a grey cat"], "seed": [1]}, name="wide")
    result = sweep.run(pipe, tmp_path / "runs", progress=False)
    page = write_sweep_report(result, tmp_path / "report").read_text()
    folded = page.split("The same in every row: ", 1)[1].split("</p>", 1)[0]
    assert "seed = 1" in folded and "status" not in folded  # constant values once; status stays a column
    table = page.split('<div class="scroll"><table class=\'metrics\'', 1)[1].split("</table>", 1)[0]
    assert "<th style='padding:2px 8px;text-align:right;white-space:nowrap'>seed</th>" not in table
    assert "<i>a red fox</i>" in page and "<i>a grey cat</i>" in page
    assert "Wan's VAE is causal in time" in page
    fig = wanlab.plots.metric_plot(result.df, x="prompt", y="flow_magnitude")
    assert fig.axes[0].get_ylabel() == "flow_magnitude (px/frame)"


def test_a_bad_lora_scale_on_the_command_line_is_one_line(capsys):
    assert main(["generate", "--prompt", "x", "--lora", "a.safetensors:abc", "--out", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("wanlab: error: --lora: must be PATH or PATH:SCALE with a number for SCALE; "
                           "got 'a.safetensors:abc'")


def test_token_counts_follow_the_cleaning_diffusers_applies(pipe):
    raw = "a red fox &amp; a cat &amp; a dog"
    assert pipe.prompt_tokens(raw) == pipe.prompt_tokens("a red fox & a cat & a dog")


def test_one_damaged_record_leaves_the_tables_standing(pipe, tmp_path):
    sweep = Sweep(base={"prompt": "a fox", **SMALL}, grid={"seed": [1, 2]}, name="damaged")
    result = sweep.run(pipe, tmp_path / "runs", progress=False, metrics=False)
    bad = result.get(seed=2)
    (bad.path / "record.json").write_text("{ damaged")
    store = Store(tmp_path / "runs")
    df = store.df  # the damaged run is listed with its status and reason, not dropped (issue 22)
    assert list(df.loc[df["status"] == "stored", "seed"]) == [1] and list(df["status"]) == ["stored", "damaged"]
    assert "record cannot be read" in df["reason"].iloc[1]
    table = sweep.result(pipe, store).df
    assert list(table["status"]) == ["done", "failed"] and "record cannot be read" in table["error"][1]


def test_import_wanlab_and_a_request_load_no_heavy_library():
    """``import wanlab`` and building a request stay fast: numpy, torch, diffusers, cv2, matplotlib, ipywidgets,
    fastapi, httpx and ray load only when something needs them."""
    heavy = ["numpy", "torch", "diffusers", "cv2", "matplotlib", "ipywidgets", "fastapi", "httpx", "ray"]
    code = ("import sys, wanlab; wanlab.Params(prompt='a fox').duration; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
