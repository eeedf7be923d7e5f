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

    texts = [*data.all_captions()[:20], "", "a purple cat"]
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
    assert acc == {"direction": 1.0, "speed": 1.0, "colour": 1.0, "shape": 1.0, "visible": 1.0, "n": 45}


def _shifted(clip, dx_per_frame: float, dy_per_frame: float):
    """The clip with frame t translated by (t * dx, t * dy) px (integer-rounded), background filled in."""
    frames = clip.frames.copy()
    bg = np.median(frames[0].reshape(-1, 3), axis=0).astype(np.uint8)
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        sx, sy = round(t * dx_per_frame), round(t * dy_per_frame)
        out[t] = bg
        h, w = frame.shape[:2]
        src = frame[max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)]
        out[t, max(0, sy):max(0, sy) + src.shape[0], max(0, sx):max(0, sx) + src.shape[1]] = src
    return out


def test_strict_direction_rejects_drift_across_the_axis():
    from wanlab.toy import data, score_frames
    from wanlab.toy.scoring import classify_direction

    assert classify_direction(1.25, 0.29) == "right" and classify_direction(1.25, 0.31) == "diagonal"
    assert classify_direction(0.29, -0.29) == "still" and classify_direction(-0.31, 0.0) == "left"
    clip = data.make_clip(np.random.default_rng(5), "a blue square moving left slowly")
    assert score_frames(clip.frames)["direction"] == "left"
    # the same clip drifting up by 0.5 px/frame (the first checkpoint's failure): no longer "left"
    drifting = _shifted(clip, 0.0, -0.5)
    pred = score_frames(drifting)
    assert pred["direction"] == "diagonal" and pred["velocity"][1] == pytest.approx(-0.5, abs=0.05)
    still = data.make_clip(np.random.default_rng(6), "a red circle standing still")
    assert score_frames(_shifted(still, 0.0, 0.4))["direction"] == "down"  # 0.4 px/frame is motion


def test_visible_requires_one_whole_shape_in_every_frame():
    from wanlab.toy import data, score_frames

    clip = data.make_clip(np.random.default_rng(8), "a green circle moving right slowly")
    assert score_frames(clip.frames)["visible"]
    two = clip.frames.copy()
    two[0, 2:8, 2:8] = two[0][clip.coverage[0] > 0.9][0]  # a second blob in frame 0 only
    pred = score_frames(two)
    assert not pred["visible"] and pred["components"][0] == 2 and pred["components"][1:] == [1] * 16
    faded = clip.frames.astype(np.float64)
    bg = np.median(faded[9].reshape(-1, 3), axis=0)
    faded[9] = bg + (faded[9] - bg) * 0.4  # one frame fades to 40 % of the clip's contrast
    assert not score_frames(faded.round().astype(np.uint8))["visible"]
    split = clip.frames.copy()
    ys, xs = np.nonzero(clip.coverage[4] > 0)
    middle = (xs.min() + xs.max()) // 2
    split[4, :, middle - 1:middle + 2] = np.median(clip.frames[4].reshape(-1, 3), axis=0)
    pred = score_frames(split)  # a stripe of background through the shape in one frame: two pieces
    assert not pred["visible"] and pred["components"][4] == 2
    grown = clip.frames.copy()
    ys, xs = np.nonzero(clip.coverage[12] > 0.5)
    colour = clip.frames[12][clip.coverage[12] > 0.9][0]
    grown[12, ys.min() - 7:ys.min() + 2, xs.min():xs.max() + 1] = colour  # a band on top, joined to the shape
    pred = score_frames(grown)  # one whole shape, but in one frame well over 30 % larger
    assert pred["components"] == [1] * 17 and pred["area_range"][1] > 1.3 * pred["area_range"][2]
    assert not pred["visible"]


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
    # by the strict rule (along-axis > 0.3 px/frame with the caption's sign, across-axis < 0.3) the shipped
    # checkpoint gets 5 of these 8 right (55 % of seen captions at its native guidance: TRAINING.md); chance
    # is under 20 %, and one clip may flip on another CPU's rounding
    assert report.accuracy()["direction"] >= 0.5


# --------------------------------------------------------------------------- training command
def test_frame_aligned_vae_codes_every_latent_frame_like_the_first():
    import torch
    from diffusers import AutoencoderKLWan

    from wanlab.toy import data
    from wanlab.toy.autoencoder import clips_tensor, decode_unclamped, encode_mean, init_frame_aligned
    from wanlab.toy.recipe import VAE_CONFIG

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**{**VAE_CONFIG, "base_dim": 8}).eval()
    init_frame_aligned(vae)
    x, _ = clips_tensor([data.make_clip(np.random.default_rng(1), width=32, height=32, num_frames=9)])
    with torch.no_grad():
        z = encode_mean(vae, x)  # latent k encodes frame 2k, as latent 0 encodes frame 0
        alone = torch.cat([encode_mean(vae, x[:, :, t:t + 1]) for t in range(0, 9, 2)], 2)
        assert z.shape[2] == 5 and torch.allclose(z, alone, atol=1e-5)
        y = decode_unclamped(vae, z)  # latent k decodes to frames 2k-1 and 2k, each its image decode
        for k in range(5):
            image = decode_unclamped(vae, z[:, :, k:k + 1])[:, :, 0]
            for t in ([0] if k == 0 else [2 * k - 1, 2 * k]):
                assert torch.allclose(y[:, :, t], image, atol=1e-5)


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
    assert not [p for p in (tmp_path / "wb").rglob("*") if p.name.endswith(".tmp")]  # atomic writes left nothing


def test_warm_recipe_starts_from_its_pinned_checkpoint(tmp_path):
    import copy

    import torch
    from diffusers import WanTransformer3DModel

    from wanlab.fsutil import sha256_file
    from wanlab.toy.recipe import TEST_WARM_RECIPE
    from wanlab.toy.train import Trainer, train

    base = train(tmp_path / "base", "test", work=str(tmp_path / "wb"), progress=False)  # stands in for generation 1
    recipe = copy.deepcopy(TEST_WARM_RECIPE)
    pins = recipe["transformer"]["init"]["sha256"]
    recipe["transformer"]["init"]["sha256"] = {name: sha256_file(base / name) for name in pins}
    out = train(tmp_path / "warm", recipe, work=str(tmp_path / "w"), progress=False, init=base)
    start = WanTransformer3DModel.from_pretrained(str(base / "transformer")).state_dict()
    warm = WanTransformer3DModel.from_pretrained(str(out / "transformer")).state_dict()
    drift = max(float((warm[k] - start[k]).abs().max()) for k in start)
    assert 0 < drift < 0.05  # four small steps away from the checkpoint it started from, not a fresh model

    recipe["transformer"]["init"]["sha256"]["transformer/diffusion_pytorch_model.safetensors"] = "0" * 64
    trainer = Trainer(tmp_path / "x", recipe, tmp_path / "wx", progress=False, init=base)
    with pytest.raises(RuntimeError, match="diffusion_pytorch_model.safetensors is not the checkpoint"):
        trainer.warm_start(recipe["transformer"]["init"], WanTransformer3DModel(**recipe["transformer"]["config"]),
                           torch.nn.Module())
