"""LoRA state-dict keys split into (module as the file names it, role): the grammar of every convention.

``transformer.blocks.0.attn1.to_q.lora_A.default.weight`` -> (``blocks.0.attn1.to_q``, ``down``) with
prefix ``transformer.``; ``lora_unet_blocks_0_ffn_0.alpha`` -> (``blocks_0_ffn_0``, ``alpha``) with
prefix ``lora_unet_``. Roles: ``down``/``up`` (the two factors), ``up_bias`` (peft's ``lora_B.bias``),
``alpha``, ``diff`` (a full weight delta) and ``diff_b`` (a bias delta).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: factor names -> role, longest first so ``lora_linear_layer.down`` wins over ``down``
FACTOR_NAMES = {
    "lora_linear_layer.down": "down", "lora_linear_layer.up": "up",
    "lora_down": "down", "lora_up": "up", "lora_A": "down", "lora_B": "up", "lora.down": "down", "lora.up": "up",
}
#: single-tensor suffixes -> role (``w_norm``/``b_norm``: LyCORIS norm deltas, read as ComfyUI does)
DELTA_SUFFIXES = {"alpha": "alpha", "diff": "diff", "diff_b": "diff_b", "w_norm": "diff", "b_norm": "diff_b"}
#: key fragments of adapter types that are not plain LoRA -> their name, for the refusal
UNSUPPORTED = {
    ".hada_": "LyCORIS LoHa", ".lokr_": "LyCORIS LoKr", ".dora_scale": "DoRA", ".lora_magnitude_vector": "DoRA",
    ".lora_mid.": "LyCORIS LoCon (Tucker)", ".a1.weight": "GLoRA", ".oft_": "OFT", ".boft_": "BOFT",
}
#: prefixes before the module name, dotted ones may stack (``base_model.model.transformer.``)
DOTTED_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "pipe.dit.",
                   "dit.")
UNDERSCORE_PREFIXES = ("lora_unet__", "lora_unet_", "lycoris_", "lora_transformer_")


@dataclass(frozen=True)
class Key:
    """One parsed key (:func:`parse`).

    Attributes:
        key: The key as the file writes it.
        prefix: The prefix before the module (``transformer.``, ``lora_unet_``, ...).
        module: The module as the file names it.
        role: ``down``/``up`` (the two factors), ``up_bias`` (peft's ``lora_B.bias``), ``down_bias``,
            ``alpha``, ``diff`` (a full weight delta) or ``diff_b`` (a bias delta).
        tag: peft's adapter tag (``default``), or None.

    Example:
        >>> parse("transformer.blocks.0.attn1.to_q.lora_A.default.weight").tag
        'default'
    """

    key: str
    prefix: str
    module: str
    role: str
    tag: str | None = None


def parse(key: str) -> Key | None:
    """Split one LoRA key into (module as the file names it, role).

    Args:
        key: A state-dict key.

    Returns:
        The :class:`Key`, or None when it is not a LoRA key (a plain ``.weight``, say).

    Example:
        >>> key = parse("diffusion_model.blocks.0.self_attn.q.lora_down.weight")
        >>> key.prefix, key.module, key.role
        ('diffusion_model.', 'blocks.0.self_attn.q', 'down')
        >>> parse("lora_unet_blocks_0_ffn_0.alpha").role
        'alpha'
    """
    stem, _, last = key.rpartition(".")
    if not stem:
        return None
    if last in DELTA_SUFFIXES:
        return _keyed(key, stem, DELTA_SUFFIXES[last], None)
    if last not in ("weight", "bias"):
        return None
    for factor, role in FACTOR_NAMES.items():
        match = re.match(rf"^(.+)\.{re.escape(factor)}(?:\.([A-Za-z0-9_-]+))?$", stem)
        if match:
            if last == "bias":
                role = "up_bias" if role == "up" else "down_bias"
            return _keyed(key, match.group(1), role, match.group(2))
    return None


def _keyed(key: str, path: str, role: str, tag: str | None) -> Key:
    prefix, module = split_prefix(path)
    return Key(key=key, prefix=prefix, module=module, role=role, tag=tag)


def split_prefix(path: str) -> tuple[str, str]:
    """Split the convention's prefix from a module path (dotted prefixes may stack).

    Args:
        path: A module path as a file writes it.

    Returns:
        ``(prefix, module)``: ``("diffusion_model.", "blocks.0.ffn.0")`` from ``"diffusion_model.blocks.0.ffn.0"``.

    Example:
        >>> split_prefix("lora_unet_blocks_0_ffn_0")
        ('lora_unet_', 'blocks_0_ffn_0')
    """
    for prefix in UNDERSCORE_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix, path[len(prefix):]
    prefix = ""
    while True:
        found = next((p for p in DOTTED_PREFIXES if path.startswith(p) and len(path) > len(p)), None)
        if found is None:
            return prefix, path
        prefix, path = prefix + found, path[len(found):]


def unsupported_kind(keys: list[str]) -> tuple[str, str] | None:
    """The LyCORIS/DoRA/OFT variant a file holds, which wanlab cannot apply.

    Args:
        keys: The file's keys.

    Returns:
        ``(adapter type, example key)``, or None for plain LoRA.

    Example:
        >>> unsupported_kind(["blocks.0.attn1.to_q.hada_w1_a"])
        ('LyCORIS LoHa', 'blocks.0.attn1.to_q.hada_w1_a')
    """
    for key in keys:
        for fragment, kind in UNSUPPORTED.items():
            if fragment in f".{key}":
                return kind, key
    return None


def foreign_model(keys: list[str]) -> str | None:
    """The model family a LoRA's key names point to when they are not Wan's (for the refusal).

    Args:
        keys: The file's keys (the first 2000 are read).

    Returns:
        The family in words, or None.

    Example:
        >>> foreign_model(["lora_unet_down_blocks_0_attentions_0.lora_down.weight"])
        'a Stable Diffusion / SDXL UNet LoRA'
    """
    text = " ".join(keys[:2000])
    checks = (
        (("lora_te_", "lora_te1_", "lora_te2_", "text_encoder.", "text_model."), "a text-encoder LoRA"),
        (("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block"),
         "a Stable Diffusion / SDXL UNet LoRA"),
        (("double_blocks", "single_blocks", "single_transformer_blocks"), "a Flux or HunyuanVideo LoRA"),
        (("joint_blocks", "context_embedder", "transformer_blocks"),
         "a LoRA for another diffusion transformer (SD3, LTX-Video, CogVideoX, Mochi)"),
    )
    for fragments, family in checks:
        if any(fragment in text for fragment in fragments):
            return family
    return None
