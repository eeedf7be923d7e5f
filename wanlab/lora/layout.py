"""The Wan transformer's modules as LoRA files name them: diffusers names, original Wan names, kohya underscores.

Original Wan (``self_attn.q``, ``ffn.0``, ``head.head``) and diffusers (``attn1.to_q``, ``ffn.net.0.proj``,
``proj_out``) name the same layers differently; the table below is the one diffusers' single-file
converter uses for full checkpoints (note the swapped ``norm2``/``norm3``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: original Wan name inside ``blocks.N.`` -> diffusers name
BLOCK_NAMES = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "self_attn.norm_q": "attn1.norm_q", "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0", "cross_attn.norm_q": "attn2.norm_q", "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
    "norm1": "norm1", "norm2": "norm3", "norm3": "norm2", "modulation": "scale_shift_table",
}
#: original Wan name outside the blocks -> diffusers name
TOP_NAMES = {
    "patch_embedding": "patch_embedding",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out", "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_ORIGINAL = {v: k for k, v in BLOCK_NAMES.items()}
_TOP_ORIGINAL = {v: k for k, v in TOP_NAMES.items()}

#: the published Wan 2.x transformers by width, to say what a LoRA of another width was made for
KNOWN_WIDTHS = {1536: "Wan 2.1 1.3B", 3072: "Wan 2.2 5B", 5120: "Wan 2.1/2.2 14B"}


def diffusers_name(original: str) -> str | None:
    """The diffusers name of an original Wan module name.

    Args:
        original: An original Wan name (``blocks.3.self_attn.q``, ``head.head``).

    Returns:
        The diffusers name, or None if it is not one.

    Example:
        >>> diffusers_name("blocks.3.self_attn.q")
        'blocks.3.attn1.to_q'
    """
    match = _BLOCK.match(original)
    if match:
        inner = BLOCK_NAMES.get(match.group(2))
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return TOP_NAMES.get(original)


def original_name(diffusers: str) -> str | None:
    """The original Wan name of a diffusers module name (the inverse of :func:`diffusers_name`).

    Args:
        diffusers: A diffusers module name.

    Returns:
        The original Wan name, or None if it has none.

    Example:
        >>> original_name("blocks.3.norm3")
        'blocks.3.norm2'
    """
    match = _BLOCK.match(diffusers)
    if match:
        inner = _BLOCK_ORIGINAL.get(match.group(2))
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _TOP_ORIGINAL.get(diffusers)


@dataclass(frozen=True)
class ModelLayout:
    """What a LoRA may target in one transformer: Linear shapes and every other parameter's shape.

    Attributes:
        linear: A diffusers module name to ``(in_features, out_features)``.
        other: The name of every other module with weights (norms, the patch embedding) to
            ``{"weight": shape, "bias": shape}``, and each bare parameter (``blocks.0.scale_shift_table``)
            to ``{"": shape}``.
        width: The transformer's width (heads x head dim).
        blocks: Its number of blocks.

    Example:
        >>> layout = ModelLayout(linear={"blocks.0.attn1.to_q": (24, 24)}, other={}, width=24, blocks=1)
        >>> layout.resolve("blocks.0.self_attn.q"), layout.resolve("blocks_0_attn1_to_q")
        ('blocks.0.attn1.to_q', 'blocks.0.attn1.to_q')
    """

    linear: Mapping[str, tuple[int, int]]
    other: Mapping[str, Mapping[str, tuple[int, ...]]]
    width: int
    blocks: int
    _underscored: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in (*self.linear, *self.other):
            self._underscored[name.replace(".", "_")] = name
            original = original_name(name)
            if original is not None:
                self._underscored.setdefault(original.replace(".", "_"), name)

    @classmethod
    def of(cls, transformer: Any) -> ModelLayout:
        """The layout of a diffusers ``WanTransformer3DModel`` (peft-wrapped layers count as their base).

        Args:
            transformer: The transformer.

        Returns:
            Its layout.

        Example:
            >>> layout = ModelLayout.of(wanlab.load("tiny").diffusers.transformer)  # doctest: +SKIP
            >>> layout.linear["blocks.0.attn1.to_q"]  # doctest: +SKIP
            (24, 24)
        """
        import torch

        linear: dict[str, tuple[int, int]] = {}
        other: dict[str, dict[str, tuple[int, ...]]] = {}
        for name, module in transformer.named_modules():
            if ".lora_" in f".{name}" or name.endswith(".base_layer"):
                continue
            base = getattr(module, "base_layer", module)  # a peft LoRA layer wraps the original Linear
            if isinstance(base, torch.nn.Linear):
                linear[name] = (base.in_features, base.out_features)
                continue
            for key, param in module.named_parameters(recurse=False):
                if key in ("weight", "bias"):  # a norm or the patch embedding: deltas name the module
                    other.setdefault(name, {})[key] = tuple(param.shape)
                else:  # a bare parameter (scale_shift_table): deltas name the parameter itself
                    other[f"{name}.{key}" if name else key] = {"": tuple(param.shape)}
        config = transformer.config
        width = int(config.num_attention_heads) * int(config.attention_head_dim)
        return cls(linear=linear, other=other, width=width, blocks=int(config.num_layers))

    def resolve(self, name: str) -> str | None:
        """The diffusers name of a module name in this model.

        Args:
            name: A module name in diffusers, original Wan or kohya underscore form.

        Returns:
            The diffusers name, or None when no module of this model has that name.
        """
        if name in self.linear or name in self.other:
            return name
        converted = diffusers_name(name)
        if converted is not None and (converted in self.linear or converted in self.other):
            return converted
        if "." not in name:
            return self._underscored.get(name)
        return None

    def describe_width(self, width: int) -> str:
        """A transformer width and the published model that has it.

        Args:
            width: A transformer width.

        Returns:
            ``"width 5120, as in Wan 2.1/2.2 14B"`` (the width alone when no published model has it).

        Example:
            >>> ModelLayout({}, {}, 24, 1).describe_width(5120)
            'width 5120, as in Wan 2.1/2.2 14B'
        """
        known = KNOWN_WIDTHS.get(width)
        return f"width {width}" + (f", as in {known}" if known else "")
