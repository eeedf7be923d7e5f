"""The trained ``toy`` model: shipped checkpoint, training command determinism, evaluator, quality floor.

CI never runs the full training: only the ``test`` recipe (a few steps per stage).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wanlab.models.registry import TOY_FOLDER, builtins

BUILTINS = builtins()

WEIGHT_FILES = ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors", "tokenizer/tokenizer.json")


@pytest.fixture(scope="module")
def toy():
    import wanlab

    return wanlab.load("toy", progress=False)


def _digests(folder: Path) -> dict[str, str]:
    from wanlab.fsutil import sha256_file

    return {name: sha256_file(folder / name) for name in WEIGHT_FILES}


# --------------------------------------------------------------------------- shipped checkpoint
def test_checkpoint_matches_its_hashes_and_is_small():
    from wanlab.toy.train import check_sha256sums

    assert (TOY_FOLDER / "SHA256SUMS").is_file()
    listed = [line.split("  ", 1)[1] for line in (TOY_FOLDER / "SHA256SUMS").read_text().splitlines()]
    assert set(WEIGHT_FILES) <= set(listed)
    assert all(name.endswith((".json", ".jsonl", ".safetensors")) for name in listed)
    assert check_sha256sums(TOY_FOLDER) == []
    total = sum(p.stat().st_size for p in TOY_FOLDER.rglob("*") if p.is_file())
    assert total < 15e6
    recipe = json.loads((TOY_FOLDER / "recipe.json").read_text())
    assert recipe["threads"] == 1 and recipe["seed"] == recipe["recipe"]["seed"]
    assert (TOY_FOLDER / "training_log.jsonl").stat().st_size > 0


def test_load_toy_offline_with_native_settings(toy):
    from diffusers import WanPipeline

    spec = BUILTINS["toy"]
    assert isinstance(toy.diffusers, WanPipeline)
    assert toy.max_sequence_length == 16 == spec.max_sequence_length
    assert (spec.native["width"], spec.native["height"], spec.native["num_frames"]) == (64, 64, 17)
    assert toy.native["steps"] == spec.native["steps"] and toy.native["flow_shift"] == spec.native["flow_shift"]
    assert toy.diffusers.vae_scale_factor_temporal == 2
    p = toy.params(prompt="a red square moving right quickly")
    assert (p.width, p.height, p.num_frames, p.steps, p.guidance_scale, p.flow_shift) == (
        64, 64, 17, spec.native["steps"], spec.native["guidance_scale"], spec.native["flow_shift"])
    # the tiny model keeps its own settings
    assert BUILTINS["tiny"].native == {"width": 128, "height": 128, "num_frames": 33}


def test_tokenizer_reloads_with_the_same_ids(toy):
    from wanlab.toy import data
    from wanlab.toy.train import build_tokenizer, tokenize

    texts = list(data.all_captions()[:20]) + ["", "a purple cat"]
    a, ma = tokenize(build_tokenizer(), texts, 16)
    b, mb = tokenize(toy.diffusers.tokenizer, texts, 16)
    assert (a == b).all() and (ma == mb).all()
    ids = toy.diffusers.tokenizer("a red square moving right quickly").input_ids
    assert len(ids) == 7  # six words, one token each, plus </s>


def test_generate_records_native_fields_and_is_reproducible(toy):
    a = toy.generate(prompt="a blue circle moving left quickly", seed=3, steps=4)
    b = toy.generate(prompt="a blue circle moving left quickly", seed=3, steps=4)
    assert a.frames.shape == (17, 64, 64, 3)
    assert a.params.guidance_scale == BUILTINS["toy"].native["guidance_scale"]
    assert a.record["settings"]["max_sequence_length"] == 16
    assert np.array_equal(a.frames, b.frames)


# --------------------------------------------------------------------------- evaluator
def test_evaluator_scores_ground_truth_perfectly():
    from wanlab.toy import data, evaluate_clips

    rng = np.random.default_rng(7)
    captions = data.all_captions()
    picks = [captions[i] for i in rng.permutation(len(captions))[:45]]
    clips = [data.make_clip(np.random.default_rng([7, i]), c) for i, c in enumerate(picks)]
    report = evaluate_clips(clips)
    acc = report.accuracy()
    assert acc == {"direction": 1.0, "speed": 1.0, "colour": 1.0, "shape": 1.0, "n": 45}


def test_held_out_captions_are_never_trained():
    from wanlab.toy import data

    assert len(data.HELD_OUT) == 15 and not set(data.HELD_OUT) & set(data.TRAIN_CAPTIONS)
    for attr in ("colour", "shape", "direction", "speed"):
        seen = {data.parse_caption(c)[attr] for c in data.TRAIN_CAPTIONS}
        held = {data.parse_caption(c)[attr] for c in data.HELD_OUT}
        assert held <= seen  # held-out combinations use only words seen in training


def test_generated_clips_follow_the_caption_direction(toy):
    from wanlab.toy import evaluate

    report = evaluate(toy, n_prompts=8, seeds=[11], steps=10)
    assert len(report.rows) == 8
    assert report.accuracy()["direction"] >= 0.85


# --------------------------------------------------------------------------- training command
def test_short_training_is_bit_identical_resumable_and_across_processes(tmp_path):
    from wanlab.toy.train import StopTraining, train

    a = train(tmp_path / "a", "test", work=str(tmp_path / "wa"), progress=False)

    stopped = []

    def stop(stage: str, step: int) -> bool:
        if stage == "transformer" and step == 2 and not stopped:
            stopped.append(step)
            return True
        return False

    with pytest.raises(StopTraining):
        train(tmp_path / "b", "test", work=str(tmp_path / "wb"), progress=False, stop_after=stop)
    b = train(tmp_path / "b", "test", work=str(tmp_path / "wb"), progress=False)  # resumes
    assert stopped == [2]
    assert _digests(a) == _digests(b)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "wanlab.toy.train", "--out", str(tmp_path / "c"), "--recipe", "test",
                    "--work", str(tmp_path / "wc"), "--quiet"], check=True, env=env, capture_output=True)
    assert _digests(a) == _digests(tmp_path / "c")
    from wanlab.toy.train import check_sha256sums

    assert check_sha256sums(a) == []
    recipe = json.loads((a / "recipe.json").read_text())
    assert recipe["threads"] == 1 and recipe["recipe"]["name"] == "test"
    stages = [json.loads(line) for line in (a / "training_log.jsonl").read_text().splitlines()]
    from wanlab.toy.train import STAGES

    assert [s["summary"]["stage"] for s in stages if "summary" in s] == list(STAGES)
