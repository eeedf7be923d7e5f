"""Test helpers that build real inputs (LoRA files) for the tiny model."""
from __future__ import annotations

from pathlib import Path


def make_lora_files(pipe, folder: Path, rank: int = 4, seed: int = 7) -> dict[str, Path]:
    """Write random LoRAs for ``pipe``'s transformer in diffusers key format and in original Wan format.

    Both files hold the same weights (alpha = rank, so scale 1 means the plain product B @ A).
    """
    import torch
    from diffusers import WanPipeline
    from safetensors.torch import save_file

    transformer = pipe.diffusers.transformer
    generator = torch.Generator().manual_seed(seed)
    diffusers_keys, wan_keys = {}, {}
    wan_names = {"attn1": "self_attn", "attn2": "cross_attn"}
    proj_names = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o"}
    for b, _ in enumerate(transformer.blocks):
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                layer = transformer.get_submodule(f"blocks.{b}.{attn}.{proj}")
                a = torch.randn(rank, layer.in_features, generator=generator) * 0.5
                bb = torch.randn(layer.out_features, rank, generator=generator) * 0.5
                diffusers_keys[f"transformer.blocks.{b}.{attn}.{proj}.lora_A.weight"] = a
                diffusers_keys[f"transformer.blocks.{b}.{attn}.{proj}.lora_B.weight"] = bb
                stem = f"diffusion_model.blocks.{b}.{wan_names[attn]}.{proj_names[proj]}"
                wan_keys[f"{stem}.lora_down.weight"] = a.clone()
                wan_keys[f"{stem}.lora_up.weight"] = bb.clone()
                wan_keys[f"{stem}.alpha"] = torch.tensor(float(rank))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"diffusers": folder / "style_diffusers.safetensors", "wan": folder / "style_wan.safetensors"}
    save_file(diffusers_keys, str(paths["diffusers"]))
    save_file(wan_keys, str(paths["wan"]))
    other = {k: v * -1.0 for k, v in diffusers_keys.items() if k.endswith("lora_B.weight")}
    other.update({k: v for k, v in diffusers_keys.items() if k.endswith("lora_A.weight")})
    paths["other"] = folder / "other_diffusers.safetensors"
    save_file(other, str(paths["other"]))
    assert WanPipeline  # the keys above follow WanPipeline.save_lora_weights' format
    return paths


def key_for(backend, params, accel=None) -> str:
    """The run key ``backend`` gives ``params`` with ``accel`` (None: its default), before generating."""
    from wanlab.keys import run_key

    return run_key(backend.key_parts(params, accel))


def record_key(video_or_record) -> str:
    """The run key a generated Video's record (or a stored record) hashes to."""
    from wanlab.keys import record_key_parts, run_key

    data = video_or_record.to_record() if hasattr(video_or_record, "to_record") else video_or_record
    return run_key(record_key_parts(data))
