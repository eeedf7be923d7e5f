"""Every private name of diffusers (and torch) that wanlab's probes rely on, in one place.

Probes look inside ``WanTransformer3DModel`` while it generates. What they touch that is not
diffusers' public API lives here, each with a test in ``tests/test_internals.py`` that fails when a
diffusers release moves it:

- the block list ``transformer.blocks``, each block's self-attention ``block.attn1`` (whose first input
  is the timestep-modulated input) and cross-attention ``block.attn2``
  (``WanTransformerBlock``: self-attention ``attn1``, cross-attention ``attn2``, feed-forward ``ffn``);
- how ``WanAttnProcessor`` turns a cross-attention's inputs into queries and keys
  (``diffusers.models.transformers.transformer_wan._get_qkv_projections``, then ``norm_q``/``norm_k``
  and a split into heads): :func:`cross_attention_qk` repeats it so attention probabilities can be
  computed beside the model's own attention, never instead of it;
- the scheduler's ``step(model_output, timestep, sample)``, wrapped on the per-call scheduler
  instance (:func:`wrap_scheduler_step`), and its ``sigmas``, ``step_index`` and
  ``index_for_timestep`` (:func:`step_sigma`);
- the prompt cleaning diffusers applies before tokenizing (``pipeline_wan.prompt_clean``).

Nothing here changes a tensor the model uses: each helper reads, or computes on the side.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


def transformer_blocks(transformer: Any) -> list[Any]:
    """The transformer's blocks in the order they run (``WanTransformer3DModel.blocks``)."""
    return list(transformer.blocks)


def self_attention(block: Any) -> Any:
    """A block's self-attention module, ``block.attn1``: its first input is the block's timestep-modulated
    input ``norm1(h) * (1 + scale_msa) + shift_msa`` (what TeaCache compares between steps)."""
    return block.attn1


def cross_attention(block: Any) -> Any:
    """A block's cross-attention module (video tokens attend to the prompt's tokens): ``block.attn2``."""
    return block.attn2


def cross_attention_qk(attn: Any, hidden_states: Any, encoder_hidden_states: Any) -> tuple[Any, Any]:
    """Queries ``(B, N, heads, d)`` and keys ``(B, L, heads, d)`` of a cross-attention, computed as
    ``WanAttnProcessor`` computes them (projections, RMS norms, split into heads; no rotary embedding
    in cross-attention). The image branch of image-to-video models (``add_k_proj``) is not read."""
    from diffusers.models.transformers.transformer_wan import _get_qkv_projections

    query, key, _value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
    query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
    key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
    return query, key


def step_sigma(scheduler: Any, timestep: Any) -> Any:
    """The sigma of the step the scheduler is about to take at ``timestep`` (its ``sigmas`` at its
    ``step_index``, or at ``index_for_timestep`` before the first step initialises that index)."""
    index = scheduler.step_index
    if index is None:
        index = scheduler.index_for_timestep(timestep)
    return scheduler.sigmas[index]


@contextlib.contextmanager
def wrap_scheduler_step(scheduler: Any, observe: Callable[[Any, Any, Any, Any], None]) -> Iterator[None]:
    """Call ``observe(model_output, timestep, sample, sigma)`` before each ``scheduler.step``, for as long
    as the context lasts; ``step`` itself runs unchanged (the wrapper is an instance attribute, removed
    on exit). ``model_output`` is the guided prediction the pipeline hands the scheduler."""
    had = "step" in scheduler.__dict__
    original = scheduler.step

    def step(model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        observe(model_output, timestep, sample, step_sigma(scheduler, timestep))
        return original(model_output, timestep, sample, *args, **kwargs)

    scheduler.step = step
    try:
        yield
    finally:
        if had:
            scheduler.step = original
        else:
            del scheduler.__dict__["step"]


def prompt_clean(text: str) -> str:
    """The text diffusers' Wan pipeline tokenizes for ``text`` (ftfy, HTML entities, whitespace)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean as clean

    return clean(text)
