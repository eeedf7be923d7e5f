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


# --- LoRA files in every community convention, built from the tiny model's shapes -------------------

#: the Linear layers inside each transformer block, by diffusers name
BLOCK_LINEARS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
                 "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")
#: the Linear layers outside the blocks (embeddings, time projection, output head)
TOP_LINEARS = ("condition_embedder.time_embedder.linear_1", "condition_embedder.time_embedder.linear_2",
               "condition_embedder.text_embedder.linear_1", "condition_embedder.text_embedder.linear_2",
               "condition_embedder.time_proj", "proj_out")
#: diffusers name -> the original Wan name (Wan's own model code, which ComfyUI, musubi-tuner and DiffSynth use)
_ORIGINAL_BLOCK = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
                   "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
                   "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "ffn.net.0.proj": "ffn.0",
                   "ffn.net.2": "ffn.2", "attn1.norm_q": "self_attn.norm_q", "norm2": "norm3"}
_ORIGINAL_TOP = {"condition_embedder.time_embedder.linear_1": "time_embedding.0",
                 "condition_embedder.time_embedder.linear_2": "time_embedding.2",
                 "condition_embedder.text_embedder.linear_1": "text_embedding.0",
                 "condition_embedder.text_embedder.linear_2": "text_embedding.2",
                 "condition_embedder.time_proj": "time_projection.1", "proj_out": "head.head"}

#: convention -> (prefix, naming, down/up factor names, peft ".default" tag, writes ".alpha")
CONVENTIONS = {
    "diffusers": ("transformer.", "diffusers", ("lora_A", "lora_B"), False, False),
    "diffusers_default": ("transformer.", "diffusers", ("lora_A", "lora_B"), True, False),
    "peft": ("", "diffusers", ("lora_A", "lora_B"), False, False),
    "peft_model": ("base_model.model.", "diffusers", ("lora_A", "lora_B"), True, False),
    "diffusion_model_diffusers": ("diffusion_model.", "diffusers", ("lora_A", "lora_B"), False, False),
    "comfyui": ("diffusion_model.", "original", ("lora_down", "lora_up"), False, True),
    "diffusion_pipe": ("diffusion_model.", "original", ("lora_A", "lora_B"), False, False),
    "diffsynth": ("", "original", ("lora_A", "lora_B"), False, False),
    "diffsynth_default": ("", "original", ("lora_A", "lora_B"), True, False),
    "musubi": ("lora_unet_", "underscore", ("lora_down", "lora_up"), False, True),
    "musubi_no_alpha": ("lora_unet_", "underscore", ("lora_down", "lora_up"), False, False),
    "wan_fun": ("lora_unet__", "underscore", ("lora_down", "lora_up"), False, True),
}


def original_name(module: str) -> str:
    """The original Wan name of a diffusers module name (``blocks.0.attn1.to_q`` -> ``blocks.0.self_attn.q``)."""
    if module.startswith("blocks."):
        _, index, rest = module.split(".", 2)
        return f"blocks.{index}.{_ORIGINAL_BLOCK[rest]}"
    return _ORIGINAL_TOP[module]


def base_linear(pipe, module: str):
    """The tiny model's Linear layer ``module`` (under a peft wrapper when adapters are loaded)."""
    layer = pipe.diffusers.transformer.get_submodule(module)
    return getattr(layer, "base_layer", layer)


def random_delta(pipe, modules, rank: int = 4, seed: int = 0, std: float = 0.5) -> dict:
    """A LoRA delta for ``modules``: diffusers module name -> (down (rank x in), up (out x rank)), float32."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    delta = {}
    for module in modules:
        layer = base_linear(pipe, module)
        down = torch.randn(rank, layer.in_features, generator=generator) * std
        up = torch.randn(layer.out_features, rank, generator=generator) * std
        delta[module] = (down, up)
    return delta


def block_modules(blocks=(0, 1), names=BLOCK_LINEARS) -> list[str]:
    """Diffusers names of ``names`` in each of ``blocks``."""
    return [f"blocks.{b}.{name}" for b in blocks for name in names]


def write_lora(path: Path, delta: dict, convention: str = "diffusers", *, file_scale: float = 0.5,
               metadata: dict | None = None) -> Path:
    """Write ``delta`` as a LoRA file in ``convention`` (see CONVENTIONS) holding exactly that delta.

    Conventions with ``.alpha`` store alpha = ``file_scale`` x rank and a down factor divided by
    ``file_scale``, as trainers do with alpha != rank; a power-of-two ``file_scale`` keeps it exact.
    """
    import torch
    from safetensors.torch import save_file

    prefix, naming, (down_name, up_name), tagged, with_alpha = CONVENTIONS[convention]
    tag = ".default" if tagged else ""
    tensors = {}
    for module, (down, up) in delta.items():
        name = module if naming == "diffusers" else original_name(module)
        if naming == "underscore":
            name = name.replace(".", "_")
        rank = down.shape[0]
        if with_alpha:
            tensors[f"{prefix}{name}.{down_name}{tag}.weight"] = (down / file_scale).contiguous()
            tensors[f"{prefix}{name}.alpha"] = torch.tensor(file_scale * rank)
        else:
            tensors[f"{prefix}{name}.{down_name}{tag}.weight"] = down.contiguous()
        tensors[f"{prefix}{name}.{up_name}{tag}.weight"] = up.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def write_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    """Write raw ``tensors`` (made contiguous) as a safetensors file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def accepted(server, prompt: str) -> list[dict]:
    """The requests a test server accepted (its task files) with this prompt."""
    import contextlib
    import json

    out = []
    for file in (server.store / "tasks").glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(file.read_text())
            if (data.get("params") or {}).get("prompt") == prompt:
                out.append(data)
    return out
