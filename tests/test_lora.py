"""LoRA files as researchers download them: every convention gives the diffusers file's frames, refusals
are one sentence, a LoRA that changes nothing says so, and the base model comes back bit for bit.

Every file is built here from the tiny model's shapes (tests/helpers.py), in the key conventions
of diffusers/peft, ComfyUI, diffusion-pipe/ai-toolkit, DiffSynth-Studio and kohya/musubi-tuner.
"""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from tests.helpers import (
    CONVENTIONS,
    TOP_LINEARS,
    base_linear,
    block_modules,
    original_name,
    random_delta,
    write_lora,
    write_tensors,
)
from wanlab import LoRAError, Params
from wanlab.errors import LoRAWarning

PROMPT = "a paper boat drifting down a rainy street"
SCALE = 0.7


@pytest.fixture()
def base(small):
    return Params(prompt=PROMPT, seed=5, **small)


@pytest.fixture(scope="module")
def delta(pipe):
    """One delta on every Linear layer of both blocks: the same numbers written in every convention."""
    return random_delta(pipe, block_modules(), seed=3)


@pytest.fixture(scope="module")
def reference(pipe, delta, tmp_path_factory):
    """The diffusers file holding ``delta`` and the digest of its frames at SCALE."""
    path = write_lora(tmp_path_factory.mktemp("ref") / "reference.safetensors", delta, "diffusers")
    video = pipe.generate(Params(prompt=PROMPT, seed=5, width=32, height=32, num_frames=5, steps=2,
                                 loras=[(str(path), SCALE)]))
    return path, video


def _run(pipe, base, path, scale=SCALE):
    return pipe.generate(base.replace(loras=[(str(path), scale)]))


@pytest.mark.parametrize("convention", [c for c in CONVENTIONS if c != "diffusers"])
def test_every_convention_gives_the_diffusers_files_frames_bit_for_bit(pipe, base, delta, reference, convention,
                                                                       tmp_path):
    path = write_lora(tmp_path / f"{convention}.safetensors", delta, convention)
    video = _run(pipe, base, path)
    assert video.digest == reference[1].digest
    entry = video.record["loras"][0]
    assert entry["modules"] == reference[1].record["loras"][0]["modules"] == block_modules()
    assert entry["source"] == "file" and len(entry["sha256"]) == 64 and "warning" not in entry
    expected = {"diffusers": "diffusers/peft names", "original": "original Wan names",
                "underscore": "kohya/musubi-tuner names"}[CONVENTIONS[convention][1]]
    assert entry["format"].startswith(expected)


def test_the_reference_changes_the_frames_and_scale_zero_or_none_is_the_base(pipe, base, reference):
    plain = pipe.generate(base).digest
    assert reference[1].digest != plain
    assert _run(pipe, base, reference[0], 0.0).digest == plain
    assert pipe.generate(base).digest == plain  # no LoRA after LoRAs


def test_an_alpha_that_is_not_a_power_of_two_matches_within_float_rounding(pipe, base, delta, reference, tmp_path):
    """alpha/rank = 0.75 folds into the factors with one float32 rounding per value: latents agree to 1e-5."""
    path = write_lora(tmp_path / "alpha3.safetensors", delta, "comfyui", file_scale=0.75)
    video = _run(pipe, base, path)
    ref = reference[1]
    assert np.max(np.abs(video.latents - ref.latents)) <= 1e-5 * max(1.0, float(np.max(np.abs(ref.latents))))
    assert np.max(np.abs(video.frames.astype(int) - ref.frames.astype(int))) <= 1


@pytest.mark.parametrize("convention", ["comfyui", "musubi", "diffsynth"])
def test_alpha_on_every_module_kind_embeddings_time_projection_and_head(pipe, base, convention, tmp_path):
    modules = [*block_modules(blocks=(0,), names=("attn1.to_q", "ffn.net.2")), *TOP_LINEARS]
    delta = random_delta(pipe, modules, seed=8, std=0.3)
    ref = _run(pipe, base, write_lora(tmp_path / "ref.safetensors", delta, "diffusers"))
    video = _run(pipe, base, write_lora(tmp_path / f"{convention}.safetensors", delta, convention))
    assert video.digest == ref.digest != pipe.generate(base).digest
    assert sorted(video.record["loras"][0]["modules"]) == sorted(modules)


@pytest.mark.parametrize("subset", ["attention_only", "block_1_only", "ffn_only"])
@pytest.mark.parametrize("convention", ["musubi", "musubi_no_alpha", "comfyui"])
def test_partial_files_load_and_match_the_diffusers_file_of_the_same_subset(pipe, base, delta, subset, convention,
                                                                           tmp_path):
    keep = {"attention_only": lambda m: ".attn" in m, "block_1_only": lambda m: m.startswith("blocks.1."),
            "ffn_only": lambda m: ".ffn." in m}[subset]
    part = {m: pair for m, pair in delta.items() if keep(m)}
    ref = _run(pipe, base, write_lora(tmp_path / "ref.safetensors", part, "diffusers"))
    video = _run(pipe, base, write_lora(tmp_path / f"{convention}.safetensors", part, convention))
    assert video.digest == ref.digest
    assert video.record["loras"][0]["modules"] == [m for m in block_modules() if keep(m)]


def test_alphas_from_diffusers_metadata_and_peft_adapter_config(pipe, base, delta, reference, tmp_path):
    """lora_alpha saved by diffusers (file metadata) or peft (adapter_config.json, here with rsLoRA)."""
    rank = 4
    scaled = {m: (down / 2, up) for m, (down, up) in delta.items()}  # both files run at alpha-scale 2
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": rank, "transformer.lora_alpha": 2 * rank})}
    with_meta = write_lora(tmp_path / "meta" / "lora.safetensors", scaled, "diffusers", metadata=meta)
    assert _run(pipe, base, with_meta).digest == reference[1].digest
    folder = tmp_path / "peft"
    write_lora(folder / "adapter_model.safetensors", scaled, "peft")
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": rank, "use_rslora": True}))
    assert _run(pipe, base, folder / "adapter_model.safetensors").digest == reference[1].digest  # 4/sqrt(4) = 2


def _deltas_file(pipe, path, with_diffs=True):
    """A ComfyUI-style file mixing a LoRA pair, full weight deltas (.diff) and bias deltas (.diff_b)."""
    import torch

    g = torch.Generator().manual_seed(21)
    tensors, expected = {}, {}
    for module, kind in (("blocks.0.attn1.to_q", "diff"), ("blocks.0.ffn.net.0.proj", "diff"),
                         ("blocks.1.ffn.net.2", "diff"), ("blocks.0.attn1.to_k", "diff_b"),
                         ("condition_embedder.time_proj", "diff_b"), ("blocks.1.attn2.to_v", "lora")):
        layer = base_linear(pipe, module)
        stem = "diffusion_model." + original_name(module)
        if kind == "diff" and with_diffs:
            d = torch.randn(layer.out_features, layer.in_features, generator=g) * 0.2
            b = torch.randn(layer.out_features, generator=g) * 0.2
            tensors[f"{stem}.diff"], tensors[f"{stem}.diff_b"] = d, b
            expected[module] = (d, b)
        elif kind == "diff_b":
            b = torch.randn(layer.out_features, generator=g) * 0.2
            tensors[f"{stem}.diff_b"] = b
            expected[module] = (torch.zeros(layer.out_features, layer.in_features), b)
        elif kind == "lora":
            down = torch.randn(2, layer.in_features, generator=g)
            up = torch.randn(layer.out_features, 2, generator=g)
            tensors.update({f"{stem}.lora_down.weight": down * 4, f"{stem}.lora_up.weight": up,
                            f"{stem}.alpha": torch.tensor(0.5)})  # alpha/rank = 1/4
            expected[module] = (up @ down, torch.zeros(layer.out_features))
    return write_tensors(path, tensors), expected


def test_weight_and_bias_deltas_apply_exactly_what_the_file_says(pipe, base, tmp_path):
    """Known answer per module: adapted(x) - base(x) = scale * (D x + b), for .diff, .diff_b and lora pairs."""
    import torch

    path, expected = _deltas_file(pipe, tmp_path / "deltas.safetensors")
    entry = pipe.loras.apply([pipe.params(prompt="x", loras=[(str(path), 0.6)]).loras[0]])[0]
    assert sorted(entry["modules"]) == sorted(expected) and "diff" in entry["format"]
    with torch.no_grad():
        for module, (d, b) in expected.items():
            layer = pipe.diffusers.transformer.get_submodule(module)
            inputs = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(1))
            got = layer(inputs) - layer.base_layer(inputs)
            want = 0.6 * (inputs @ d.T + b)
            assert torch.allclose(got, want, atol=2e-5, rtol=1e-5), module
    with_diffs = _run(pipe, base, path, 1.0).digest
    without, _ = _deltas_file(pipe, tmp_path / "no_diffs.safetensors", with_diffs=False)
    assert with_diffs != _run(pipe, base, without, 1.0).digest  # .diff is applied, never silently dropped
    assert _run(pipe, base, path, 0.0).digest == pipe.generate(base).digest


def test_zero_norm_deltas_are_dropped_and_non_zero_ones_refused(pipe, base, delta, reference, tmp_path):
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(write_lora(tmp_path / "c.safetensors", delta, "comfyui")))
    tensors["diffusion_model.blocks.0.norm3.diff"] = torch.zeros(24)
    tensors["diffusion_model.blocks.0.self_attn.norm_q.diff"] = torch.zeros(24)
    zero = write_tensors(tmp_path / "zero_norms.safetensors", tensors)
    assert _run(pipe, base, zero).digest == reference[1].digest
    tensors["diffusion_model.blocks.0.norm3.diff"] = torch.full((24,), 0.1)
    bad = write_tensors(tmp_path / "norms.safetensors", tensors)
    with pytest.raises(LoRAError, match=r"holds non-zero weight deltas for 1 module outside the Linear layers "
                                         r"\(e\.g\. 'blocks\.0\.norm2'\); wanlab applies deltas to Linear layers only"):
        _run(pipe, base, bad)


def _flux(pipe, path):
    import torch

    return write_tensors(path, {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(4, 3072),
                                "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(3072, 4),
                                "transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight": torch.ones(4, 3072),
                                "transformer.transformer_blocks.0.attn.add_k_proj.lora_B.weight": torch.ones(3072, 4)})


def _full_weights(pipe, path):
    return write_tensors(path, {k: v.detach().clone() for k, v in pipe.diffusers.transformer.state_dict().items()
                                if "lora" not in k and "base_layer" not in k})


def _wan14b(pipe, path):
    """A musubi-tuner LoRA for the 14B (width 5120) on the tiny model's two blocks."""
    import torch

    tensors = {}
    for b in range(2):
        for proj in ("q", "k", "v", "o"):
            stem = f"lora_unet_blocks_{b}_self_attn_{proj}"
            tensors.update({f"{stem}.lora_down.weight": torch.zeros(2, 5120), f"{stem}.lora_up.weight":
                            torch.zeros(5120, 2), f"{stem}.alpha": torch.tensor(2.0)})
    return write_tensors(path, tensors)


def _no_module(pipe, path):
    import torch

    return write_tensors(path, {f"transformer.blocks.{b}.attn1.to_q.lora_{f}.weight": torch.ones(2, 24)
                                for b in (7, 8) for f in "AB"})


def _mixed(pipe, path):
    """A LoRA that also carries a full weight (peft's modules_to_save would write one)."""
    import torch

    return write_tensors(path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.ones(2, 24),
                                "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.ones(24, 2),
                                "transformer.blocks.0.norm2.weight": torch.ones(24)})


def _dora(pipe, path):
    import torch

    return write_tensors(path, {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.ones(2, 24),
                                "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.ones(24, 2),
                                "diffusion_model.blocks.0.self_attn.q.dora_scale": torch.ones(24, 1)})


def _empty(pipe, path):
    return write_tensors(path, {})


def _loha(pipe, path):
    import torch

    return write_tensors(path, {"lycoris_blocks_0_self_attn_q.hada_w1_a": torch.ones(24, 2),
                                "lycoris_blocks_0_self_attn_q.hada_w1_b": torch.ones(2, 24)})


def _half_pair(pipe, path):
    import torch

    return write_tensors(path, {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.ones(2, 24)})


REFUSALS = {
    "flux": (_flux, r"is a Flux or HunyuanVideo LoRA \(keys like 'transformer\.single_transformer_blocks\.0\.attn\."
                    r"to_q\.lora_A\.weight'\), not a Wan LoRA: none of its 2 modules is a module of this Wan "
                    r"transformer \(2 blocks, width 24\)$"),
    "full_weights": (_full_weights, r"holds full Wan transformer weights \(\d+ tensors such as '[\w.]+'\), not a "
                                    r"LoRA: a LoRA holds lora_A/lora_B \(or lora_down/lora_up\) factor pairs"),
    "wan_14b": (_wan14b, r"is a Wan LoRA \(kohya/musubi-tuner names \(lora_unet_\*\), lora_down/lora_up, alpha\) for "
                         r"a transformer of width 5120, as in Wan 2\.1/2\.2 14B, but this model has width 24; its "
                         r"shapes do not fit: blocks\.0\.attn1\.to_q has 5120 inputs and 5120 outputs in the file, 24 "
                         r"and 24 in this model \(and 7 more modules\)$"),
    "no_module": (_no_module, r"holds LoRA weights \(diffusers/peft names \(transformer\.\*\), lora_A/lora_B\), but "
                              r"none of its 2 modules \(e\.g\. 'blocks\.7\.attn1\.to_q'\) is a module of this Wan "
                              r"transformer \(2 blocks, width 24\)$"),
    "mixed": (_mixed, r"holds 1 tensor that is neither a LoRA factor nor a weight delta \(e\.g\. "
                      r"'transformer\.blocks\.0\.norm2\.weight'\) beside its LoRA weights; wanlab refuses rather "
                      r"than apply part of the file$"),
    "dora": (_dora, r"is a DoRA file \(keys like 'diffusion_model\.blocks\.0\.self_attn\.q\.dora_scale'\); wanlab "
                    r"applies plain LoRA factor pairs"),
    "empty": (_empty, r"is an empty safetensors file: it holds no tensors, so there is no LoRA to apply$"),
    "loha": (_loha, r"is a LyCORIS LoHa file \(keys like 'lycoris_blocks_0_self_attn_q\.hada_w1_a'\); wanlab applies "
                    r"plain LoRA factor pairs"),
    "half_pair": (_half_pair, r"has an incomplete LoRA pair for 'blocks\.0\.attn1\.to_q' \(only "
                              r"diffusion_model\.blocks\.0\.self_attn\.q\.lora_down\.weight\)$"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_is_one_sentence_naming_the_file_what_was_recognised_and_what_is_wrong(pipe, base, case,
                                                                                            tmp_path):
    build, message = REFUSALS[case]
    path = build(pipe, tmp_path / f"{case}.safetensors")
    with pytest.raises(LoRAError) as refused:
        _run(pipe, base, path)
    text = str(refused.value)
    assert text.startswith(f"loras.path: {path} ")
    assert not re.search(r"[.!?]\s+[A-Z]", text.replace(str(path), "")) and not text.endswith(".")  # one sentence
    assert re.search(message, text), text
    assert pipe.generate(base).digest == pipe.generate(base).digest  # nothing half-loaded stays behind


def test_a_lora_that_changes_nothing_warns_with_the_count_and_runs_as_the_base(pipe, base, delta, tmp_path):
    zero = {m: (down, up * 0) for m, (down, up) in delta.items()}
    path = write_lora(tmp_path / "untrained.safetensors", zero, "musubi")
    with pytest.warns(LoRAWarning, match=r"changes nothing at scale 1: the delta is zero in all 20 modules it names; "
                                         r"it touches 0 modules$"):
        video = _run(pipe, base, path, 1.0)
    assert video.digest == pipe.generate(base).digest
    entry = video.record["loras"][0]
    assert entry["modules"] == [] and "changes nothing" in entry["warning"] and len(entry["sha256"]) == 64


def test_keys_matching_no_module_beside_real_ones_warn_and_are_listed(pipe, base, delta, tmp_path):
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(write_lora(tmp_path / "d.safetensors", delta, "diffusers")))
    tensors["transformer.blocks.9.attn1.to_q.lora_A.weight"] = torch.ones(4, 24)
    tensors["transformer.blocks.9.attn1.to_q.lora_B.weight"] = torch.ones(24, 4)
    path = write_tensors(tmp_path / "forty_blocks.safetensors", tensors)
    with pytest.warns(LoRAWarning, match=r"forty_blocks\.safetensors names 1 module this model lacks, ignored "
                                         r"\(e\.g\. 'blocks\.9\.attn1\.to_q'\); it touches 20 modules$"):
        video = _run(pipe, base, path)
    entry = video.record["loras"][0]
    assert entry["unmatched"] == ["blocks.9.attn1.to_q"] and len(entry["modules"]) == 20


def test_inspect_says_what_a_file_holds_without_loading_it(pipe, delta, tmp_path):
    path = write_lora(tmp_path / "inspect.safetensors", delta, "diffsynth_default")
    before = set(getattr(pipe.diffusers.transformer, "peft_config", {}))
    info = pipe.loras.inspect(str(path))
    assert info.format == "original Wan names without prefix (DiffSynth-Studio), lora_A/lora_B (.default)"
    assert list(info.modules) == block_modules() and info.unmatched == () and info.zero == ()
    assert set(getattr(pipe.diffusers.transformer, "peft_config", {})) == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file warns about nothing
        pipe.loras.inspect(str(path))


def test_converter_alone_on_the_model_layout(pipe, delta):
    """formats.convert is usable without a pipeline: canonical keys, alpha folded exactly."""
    import torch

    from wanlab.lora import ModelLayout, convert

    layout = ModelLayout.of(pipe.diffusers.transformer)
    assert layout.width == 24 and layout.blocks == 2 and layout.linear["blocks.0.ffn.net.0.proj"] == (24, 32)
    tensors = {}
    for module, (down, up) in delta.items():
        stem = "lora_unet_" + module.replace("attn1.to_q", "self_attn_q").replace(".", "_")
        if "self_attn_q" in stem:
            tensors.update({f"{stem}.lora_down.weight": down * 4, f"{stem}.lora_up.weight": up,
                            f"{stem}.alpha": torch.tensor(1.0)})
    converted = convert(tensors, layout, name="q.safetensors")
    assert converted.modules == ("blocks.0.attn1.to_q", "blocks.1.attn1.to_q")
    down, up = delta["blocks.1.attn1.to_q"]
    folded = converted.state_dict  # alpha/rank = 1/4, split in powers of two between the factors: exact
    product = folded["transformer.blocks.1.attn1.to_q.lora_B.weight"] @ folded[
        "transformer.blocks.1.attn1.to_q.lora_A.weight"]
    assert torch.equal(product, up @ down)
