"""The pipeline: determinism, each parameter's effect, LoRAs, folder loading and load errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import wanlab
from wanlab import LoadError, LoRAError, ParamError, Params
from wanlab.taskstatus import TaskStatus

#: sha256 of the tiny model's weights and vocabulary: the same on every machine (fixed seeds).
TINY_FINGERPRINT = "aedea0b8717dd26540e3842411403a107e352950ebdbe43638ea525fa02398a7"
PROMPT = "a red fox running through fresh snow"


@pytest.fixture()
def base(small):
    return Params(prompt=PROMPT, seed=11, **small)


def test_tiny_weights_fingerprint_is_fixed(pipe):
    assert pipe.fingerprint == TINY_FINGERPRINT
    assert pipe.model_info == {"id": "tiny", "fingerprint": TINY_FINGERPRINT, "source": "builtin"}


def test_video_shape_dtype_and_record(pipe, base):
    video = pipe.generate(base)
    assert video.frames.shape == (5, 32, 32, 3) and video.frames.dtype == np.uint8
    assert video.fps == 16 and video.params == base and video.seed == 11
    assert set(video.timings) == {"loras", "encode", "denoise", "decode", "total"}
    assert video.record["settings"]["max_sequence_length"] == 512
    assert video.record["model"]["fingerprint"] == TINY_FINGERPRINT
    assert video.record["environment"]["torch_threads"] >= 1


def test_same_params_same_digest_other_seed_other_digest(pipe, base):
    a, b = pipe.generate(base), pipe.generate(base)
    assert a.digest == b.digest and np.array_equal(a.frames, b.frames)
    assert pipe.generate(base.replace(seed=12)).digest != a.digest


def test_seed_minus_one_is_drawn_and_recorded(pipe, base):
    video = pipe.generate(base.replace(seed=-1))
    assert 0 <= video.seed <= 9_999_999_999
    assert pipe.generate(base.replace(seed=video.seed)).digest == video.digest


def test_equals_a_direct_diffusers_call(pipe, base):
    import torch

    from wanlab.pipeline import to_uint8

    video = pipe.generate(base)
    direct = pipe.diffusers(
        prompt=PROMPT, height=32, width=32, num_frames=5, num_inference_steps=2, guidance_scale=5.0,
        generator=torch.Generator().manual_seed(11), max_sequence_length=512, output_type="np",
    ).frames[0]
    assert np.array_equal(to_uint8(direct), video.frames)


@pytest.mark.parametrize("field, other", [("flow_shift", 2.0), ("guidance_scale", 3.0), ("steps", 3)])
def test_each_parameter_changes_the_frames(pipe, base, field, other):
    assert pipe.generate(base.replace(**{field: other})).digest != pipe.generate(base).digest


def test_flow_shift_leaves_no_state_between_calls(pipe, base):
    a1 = pipe.generate(base.replace(flow_shift=3.0))
    b = pipe.generate(base.replace(flow_shift=8.0))
    a2 = pipe.generate(base.replace(flow_shift=3.0))
    assert a1.digest == a2.digest != b.digest


def test_negative_prompt_matters_only_with_guidance(pipe, base):
    neg = "blurred, static"
    assert pipe.generate(base.replace(negative_prompt=neg)).digest != pipe.generate(base).digest
    plain = base.replace(guidance_scale=1.0)
    assert pipe.generate(plain.replace(negative_prompt=neg)).digest == pipe.generate(plain).digest


def test_prompt_embedding_cache_is_bit_identical(pipe, base):
    warm = pipe.generate(base)
    pipe.forget_embeddings()
    assert pipe.generate(base).digest == warm.digest


def test_on_step_reports_each_step(pipe, base):
    seen = []
    pipe.generate(base.replace(steps=3), on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_native_settings_fill_unspecified_fields(pipe):
    p = pipe.params(prompt="x")
    assert (p.width, p.height, p.num_frames) == (128, 128, 33)
    assert pipe.params(prompt="x", width=64).width == 64
    with pytest.raises(ParamError, match="^prompt: must be given"):
        pipe.params(width=64)
    with pytest.raises(ParamError, match="^colour: must be one of"):
        pipe.generate(prompt="x", colour="red")


def test_lora_scale_changes_frames_and_zero_or_none_is_the_base(pipe, base, lora_files):
    path = str(lora_files["diffusers"])
    plain = pipe.generate(base).digest
    full = pipe.generate(base.replace(loras=[(path, 1.0)]))
    half = pipe.generate(base.replace(loras=[(path, 0.5)]))
    assert len({plain, full.digest, half.digest}) == 3
    assert pipe.generate(base.replace(loras=[(path, 0.0)])).digest == plain
    assert pipe.generate(base).digest == plain  # no LoRAs after LoRAs
    assert pipe.generate(base.replace(loras=[(path, 1.0)])).digest == full.digest
    assert full.record["loras"][0]["sha256"] and full.record["loras"][0]["scale"] == 1.0


def test_original_wan_lora_format_equals_diffusers_format(pipe, base, lora_files):
    a = pipe.generate(base.replace(loras=[(str(lora_files["diffusers"]), 0.7)]))
    b = pipe.generate(base.replace(loras=[(str(lora_files["wan"]), 0.7)]))
    assert a.digest == b.digest


def test_two_loras_combine(pipe, base, lora_files):
    one = pipe.generate(base.replace(loras=[(str(lora_files["diffusers"]), 1.0)]))
    two = pipe.generate(base.replace(loras=[(str(lora_files["diffusers"]), 1.0), (str(lora_files["other"]), 1.0)]))
    assert one.digest != two.digest


def test_missing_and_corrupt_lora_files_are_clear_errors(pipe, base, tmp_path):
    with pytest.raises(LoRAError, match=r"^loras.path: no such LoRA file: .*nope.safetensors$"):
        pipe.generate(base.replace(loras=[(str(tmp_path / "nope.safetensors"), 1.0)]))
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(LoRAError, match=r"^loras.path: could not load LoRA .*corrupt.safetensors into this model"):
        pipe.generate(base.replace(loras=[(str(bad), 1.0)]))
    assert pipe.generate(base).digest  # the pipeline still works afterwards


def test_folder_load_equals_in_memory(pipe, base, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "tiny")
    loaded = wanlab.load(folder, progress=False)
    assert loaded.source == "folder" and loaded.model_id == str(folder.resolve())
    assert loaded.generate(base).digest == pipe.generate(base).digest
    assert len(loaded.fingerprint) == 64


def test_load_errors_are_one_clear_sentence(tmp_path):
    with pytest.raises(LoadError, match=r"^no such model folder: .*missing\.$"):
        wanlab.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match=r"is not a diffusers pipeline folder: it has no model_index.json\.$"):
        wanlab.load(tmp_path / "empty")
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(LoadError, match=r"holds a StableDiffusionPipeline pipeline, not a Wan"):
        wanlab.load(other)
    with pytest.raises(LoadError, match=r"^'Wan-AI/Wan2.1-T2V-1.3B-Diffusers' is not in the local Hugging Face cache "
                                        r"\(.*\): download it where there is internet \(huggingface-cli download"):
        wanlab.load("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    with pytest.raises(LoadError, match=r"^unknown model 'tinyy': use a built-in model \(tiny"):
        wanlab.load("tinyy")
    with pytest.raises(ParamError, match=r"^dtype: must be one of"):
        wanlab.load("tiny", dtype="float64")
    with pytest.raises(ParamError, match=r"^device: must be"):
        wanlab.load("tiny", device="gpu")


def test_progress_per_call_does_not_stick(pipe, base):
    from wanlab.models import internals

    before = internals.progress_bar_config(pipe.diffusers)
    pipe.generate(base, progress=True)
    assert internals.progress_bar_config(pipe.diffusers) == before


def test_stage_timings_wait_for_gpu_work(monkeypatch):
    """On CUDA the denoising loop returns before its kernels finish; timings must wait for them."""
    import torch

    from wanlab.pipeline import synchronize

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    synchronize("cpu")
    assert calls == []
    synchronize("cuda:1")
    assert calls == ["cuda:1"]


def _broken_lora(pipe, path):
    """A diffusers-format LoRA whose up-projection holds NaN: a deliberately broken adapter."""
    import torch
    from safetensors.torch import save_file

    # on the attention's output projection: NaN in a query is hidden by CPU attention kernels
    layer = pipe.diffusers.transformer.get_submodule("blocks.0.attn1.to_out.0")
    save_file({"transformer.blocks.0.attn1.to_out.0.lora_A.weight": torch.ones(2, layer.in_features),
               "transformer.blocks.0.attn1.to_out.0.lora_B.weight": torch.full((layer.out_features, 2), float("nan"))},
              str(path))
    return str(path)


def test_non_finite_latents_fail_the_run_naming_the_step(pipe, base, tmp_path):
    from wanlab.errors import GenerationError

    broken = _broken_lora(pipe, tmp_path / "nan.safetensors")
    with pytest.raises(GenerationError, match=r"non-finite values \(NaN or inf\) in the latents after denoising "
                                              r"step 1 of 2"):
        pipe.generate(base.replace(loras=[(broken, 1.0)]))
    assert pipe.generate(base).digest == pipe.generate(base).digest  # the pipeline is unharmed


def test_a_broken_adapter_is_a_recorded_failure_in_sweeps_and_tasks(pipe, base, tmp_path):
    from wanlab.store import Store
    from wanlab.sweep import Sweep

    broken = _broken_lora(pipe, tmp_path / "nan.safetensors")
    sweep = Sweep(base=base.to_dict(), grid={"loras": [[], [{"path": broken, "scale": 1.0}]]}, name="nan")
    result = sweep.run(pipe, tmp_path / "store", progress=False, metrics=False)
    assert list(result.df["status"]) == ["done", "failed"]
    assert "GenerationError: non-finite values" in result.df["error"][1]
    assert len(Store(tmp_path / "store")) == 1  # garbage is never a stored run
    from wanlab.tasks import TaskQueue

    queue = TaskQueue(pipe, tmp_path / "tasks")
    done = queue.wait(queue.submit(base.replace(loras=[(broken, 1.0)])), timeout=60)
    assert done["task"]["status"] == TaskStatus.FAILED and "non-finite values" in done["task"]["reason"]
