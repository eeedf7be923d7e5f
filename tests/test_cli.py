"""The command line: success prints the file and seed; bad input is one line, exit code 2, no traceback."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from wanlab import Video, __version__
from wanlab.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wanlab.cli", *args], capture_output=True, text=True, timeout=300)


def test_generate_end_to_end_in_a_subprocess(tmp_path):
    out = tmp_path / "fox.mp4"
    result = run_cli("generate", "--prompt", "a red fox", "--seed", "5", "--steps", "2", "--width", "32",
                     "--height", "48", "--num-frames", "5", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (seed 5, 5 frames, 32x48")
    video = Video.load(out)
    assert video.frames.shape == (5, 48, 32, 3) and video.seed == 5


def test_generate_with_lora_and_all_fields(tmp_path, lora_files, capsys):
    out = tmp_path / "styled.mkv"
    code = main(["generate", "--prompt", "a cat", "--negative-prompt", "blur", "--seed", "3", "--steps", "2",
                 "--guidance-scale", "4", "--flow-shift", "3", "--width", "32", "--height", "32",
                 "--num-frames", "5", "--lora", f"{lora_files['diffusers']}:0.5", "--out", str(out), "--quiet",
                 "--model", "tiny"])
    assert code == 0
    assert "seed 3" in capsys.readouterr().out
    video = Video.load(out)
    assert video.params.loras[0].scale == 0.5 and video.params.guidance_scale == 4.0
    assert video.frames.dtype == np.uint8


def test_generate_with_an_acceleration_setting(tmp_path, capsys):
    out = tmp_path / "fast.mp4"
    code = main(["generate", "--prompt", "a cat", "--seed", "3", "--steps", "8", "--width", "32", "--height", "32",
                 "--num-frames", "5", "--accel", '{"cache": "first_block", "cache_params": {"threshold": 0.3}}',
                 "--out", str(out), "--quiet"])
    assert code == 0
    assert "accel first_block(threshold=0.3):" in capsys.readouterr().out
    assert Video.load(out).record["accel"] == {"cache": "first_block", "cache_params": {"threshold": 0.3}}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "wanlab: error: steps: must be an integer in 1..40; got 0"),
        (["--num-frames", "80"], "wanlab: error: num_frames: must be 4k+1 in 1..257 (e.g. 17, 33, 81); got 80"),
        (["--width", "100"], "wanlab: error: width: must be a multiple of 16 in 16..2048; got 100"),
        (["--guidance-scale", "11"], "wanlab: error: guidance_scale: must be a number in 0..10; got 11.0"),
        (["--lora", "/no/such.safetensors:0.5"], "wanlab: error: loras.path: no such LoRA file: /no/such.safetensors"),
        (["--lora", "x.safetensors:9"], "wanlab: error: loras.scale: must be a number in 0..4; got 9.0"),
        (["--model", "/no/such/folder"], "wanlab: error: no such model folder: /no/such/folder."),
        (["--accel", "turbo"], "wanlab: error: accel: must be an Accel, a mapping or a preset name (exact, fbc, "
                               "fbc-fast, mag, mag-fast, taylorseer, taylorseer-fast, pab, seacache, compile); got "
                               "'turbo'"),
        (["--accel", '{"cache": "pab", "cache_params": {"per_branch": 1}}'],
         "wanlab: error: cache_params.per_branch: must be True or False; got 1"),
        (["--accel", "{cache: pab}"], "wanlab: error: accel: must be a preset name or a JSON object; got '{cache: pab} "
                                      "(Expecting property name enclosed in double quotes)'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys, tmp_path):
    code = main(["generate", "--prompt", "x", "--quiet", "--out", str(tmp_path / "x.mp4"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == message and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_unparsable_value_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--prompt", "x", "--steps", "two"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "wanlab: error: argument --steps: invalid int value: 'two'"


def test_missing_prompt_and_version_in_a_subprocess():
    result = run_cli("generate", "--steps", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("the following arguments are required: --prompt")
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"wanlab {__version__}"
