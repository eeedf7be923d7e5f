"""verify: re-generate a stored run from its record; 'identical', or exactly what differs."""
from __future__ import annotations

import json
import math
import shutil

import pytest

import wanlab
from tests.helpers import key_for
from wanlab import Params
from wanlab.cli import main
from wanlab.reproduce import format_report
from wanlab.store import Run, Store

PROMPT = "a lighthouse beam sweeping over a stormy sea"


@pytest.fixture(scope="module")
def stored(pipe, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("verify") / "store")
    video = pipe.generate(Params(prompt=PROMPT, seed=5, width=32, height=32, num_frames=5, steps=2))
    return store, store.put(video)


def _edited(run: Run, folder, edit) -> Run:
    """A copy of ``run`` whose record.json was edited by ``edit(record)``."""
    target = folder / run.key
    shutil.copytree(run.path, target)
    record = json.loads((target / "record.json").read_text())
    edit(record)
    (target / "record.json").write_text(json.dumps(record, indent=2))
    return Run(target)


def test_unchanged_run_verifies_identical(pipe, stored):
    _, run = stored
    result = wanlab.verify(run, pipe=pipe)
    assert result["identical"] is True and result["frames_identical"] is True
    assert result["digest_actual"] == result["digest_expected"] == run.digest and result["key"] == run.key
    assert result["environment_changes"] == {} and result["param_changes"] == {} and result["setting_changes"] == {}
    assert result["frames"] is None and result["shape_expected"] == result["shape_actual"] == [5, 32, 32, 3]
    assert result["notes"] == []
    assert format_report(result).startswith(f"identical: run {run.key}")


def test_edited_thread_count_is_reported_as_exactly_that(pipe, stored, tmp_path):
    _, run = stored
    now = run.record["environment"]["torch_threads"]
    edited = _edited(run, tmp_path, lambda rec: rec["environment"].__setitem__("torch_threads", now + 5))
    result = wanlab.verify(edited, pipe=pipe)
    assert result["identical"] is False and result["frames_identical"] is True and result["frames"] is None
    assert result["environment_changes"] == {"torch_threads": (now + 5, now)}
    assert result["param_changes"] == {} and result["setting_changes"] == {}
    report = format_report(result)
    assert report.startswith("different:") and "frames: bit-identical" in report
    assert f"torch_threads: {now + 5} -> {now}" in report


def test_edited_param_is_reported_with_the_frame_differences(pipe, stored, tmp_path):
    _, run = stored
    edited = _edited(run, tmp_path, lambda rec: rec["params"].__setitem__("guidance_scale", 3.0))
    result = wanlab.verify(edited, pipe=pipe)
    assert result["identical"] is False and result["frames_identical"] is False
    assert result["param_changes"] == {"guidance_scale": (5.0, 3.0)}  # made with 5.0; the record now says 3.0
    assert result["environment_changes"] == {} and result["setting_changes"] == {}
    frames = result["frames"]
    assert len(frames["max_abs_delta"]) == len(frames["psnr"]) == 5
    assert frames["max_abs_delta_max"] == max(frames["max_abs_delta"]) > 0
    assert frames["psnr_min"] == min(frames["psnr"]) and math.isfinite(frames["psnr_min"])
    assert result["digest_actual"] != result["digest_expected"]
    report = format_report(result)
    assert "guidance_scale: 5 -> 3" in report and "PSNR per frame" in report


def test_cli_verify_by_key_and_by_folder_with_exit_codes(stored, tmp_path, capsys):
    store, run = stored
    assert main(["verify", run.key, "--store", str(store.path)]) == 0  # loads the recorded model ("tiny")
    assert capsys.readouterr().out.startswith(f"identical: run {run.key}")

    edited = _edited(run, tmp_path, lambda rec: rec["environment"].__setitem__("torch_threads", 64))
    assert main(["verify", str(edited.path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["identical"] is False and list(out["environment_changes"]) == ["torch_threads"]
    assert out["environment_changes"]["torch_threads"][0] == 64

    assert main(["verify", str(tmp_path / "no-such-run")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["verify", "abcdef12", "--store", str(tmp_path / "empty")]) == 2
    assert "no run 'abcdef12'" in capsys.readouterr().err


def test_pipe_and_model_together_are_ambiguous(pipe, stored):
    with pytest.raises(ValueError, match="not both"):
        wanlab.verify(stored[1], pipe=pipe, model="tiny")


def test_an_accelerated_run_is_regenerated_with_its_setting(pipe, tmp_path):
    video = pipe.generate(Params(prompt=PROMPT, seed=8, width=32, height=32, num_frames=5, steps=3), accel="fbc")
    run = Store(tmp_path).put(video)
    assert run.record["accel"]["cache"] == "first_block"
    result = wanlab.verify(run, pipe=pipe)
    assert result["identical"] is True and result["setting_changes"] == {}


def test_a_saved_video_and_a_video_in_memory_verify_from_their_records(pipe, tmp_path, capsys):
    video = pipe.generate(Params(prompt=PROMPT, seed=6, width=32, height=32, num_frames=5, steps=2), progress=False)
    result = wanlab.verify(video, pipe=pipe)
    assert result["identical"] is True and result["key"] == key_for(pipe, video.params)

    saved = video.save(tmp_path / "clip.mp4")
    result = wanlab.verify(saved, pipe=pipe)
    assert result["identical"] is True and result["run"] == str(saved) and result["notes"] == []
    assert main(["verify", str(saved)]) == 0  # the sidecar names the model: "tiny" is loaded
    assert capsys.readouterr().out.startswith(f"identical: run {result['key']}")

    # an edited sidecar (another seed) is reported with the frame differences
    sidecar = tmp_path / "clip.json"
    record = json.loads(sidecar.read_text())
    record["params"]["seed"] = 7
    sidecar.write_text(json.dumps(record))
    result = wanlab.verify(saved, pipe=pipe)
    assert result["identical"] is False and result["frames"]["frames_differing"] > 0

    # without a lossless copy the frames are h264: compared by digest only, and said so
    lossy = video.save(tmp_path / "lossy.mp4", lossless=False)
    result = wanlab.verify(lossy, pipe=pipe)
    assert result["identical"] is True and "no lossless copy" in result["notes"][0]

    # a video without its record cannot be repeated: a clear error
    (tmp_path / "bare").mkdir()
    shutil.copy(saved, tmp_path / "bare" / "clip.mp4")
    with pytest.raises(wanlab.WanlabError, match=r"clip.mp4: no sidecar clip.json beside it"):
        wanlab.verify(tmp_path / "bare" / "clip.mp4", pipe=pipe)
    with pytest.raises(wanlab.WanlabError, match="holds no generation record"):
        wanlab.verify(wanlab.Video(video.frames), pipe=pipe)


@pytest.mark.parametrize("damage", ["missing lossless", "truncated lossless", "missing mp4", "one bit of the mp4"])
def test_a_run_whose_files_are_missing_or_damaged_is_never_identical(pipe, stored, tmp_path, damage):
    _, run = stored
    copy = tmp_path / run.key
    shutil.copytree(run.path, copy)
    name = "video.mp4" if "mp4" in damage else "video.lossless.mkv"
    data = (copy / name).read_bytes()
    if damage.startswith("missing"):
        (copy / name).unlink()
    elif damage.startswith("truncated"):
        (copy / name).write_bytes(data[: len(data) // 3])
    else:
        (copy / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    result = wanlab.verify(Run(copy), pipe=pipe)
    assert result["identical"] is False and name in result["damage"]
    assert any("the stored run is damaged" in note for note in result["notes"])
    assert result["digest_actual"] == run.digest  # the model still reproduces the recorded digest
    assert Run(run.path).damage(deep=True) is None and wanlab.verify(run, pipe=pipe)["damage"] is None
