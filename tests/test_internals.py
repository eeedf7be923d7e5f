"""One test per private name of diffusers that wanlab.models.internals relies on: each fails when a
diffusers release moves or changes it."""
from __future__ import annotations

import pytest
import torch

from wanlab.models import internals


def test_blocks_and_cross_attention_are_where_wan_keeps_them(pipe):
    transformer = pipe.diffusers.transformer
    blocks = internals.transformer_blocks(transformer)
    assert len(blocks) == transformer.config.num_layers
    assert type(blocks[0]).__name__ == "WanTransformerBlock"
    assert type(internals.self_attention(blocks[0])).__name__ == "WanAttention"
    attn = internals.cross_attention(blocks[0])
    assert type(attn).__name__ == "WanAttention" and attn.add_k_proj is None
    for unit in ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2"):  # the work units the probes count
        blocks[0].get_submodule(unit)


def test_cross_attention_qk_reproduces_the_processors_attention(pipe):
    """softmax(q k^T / sqrt(d)) v with our q, k and the module's own v, then its output projection,
    equals the module's forward: our queries and keys are the processor's."""
    attn = internals.cross_attention(internals.transformer_blocks(pipe.diffusers.transformer)[0])
    g = torch.Generator().manual_seed(0)
    dim = attn.to_q.in_features
    hidden = torch.randn(1, 24, dim, generator=g)
    context = torch.randn(1, 7, attn.to_k.in_features, generator=g)
    with torch.inference_mode():
        q, k = internals.cross_attention_qk(attn, hidden, context)
        v = attn.to_v(context).unflatten(2, (attn.heads, -1))
        p = torch.softmax(torch.einsum("bnhd,blhd->bhnl", q, k) / q.shape[-1] ** 0.5, dim=-1)
        out = attn.to_out[0](torch.einsum("bhnl,blhd->bnhd", p, v).flatten(2, 3))
        expected = attn(hidden, context, None, None)
    assert torch.allclose(out, expected, atol=1e-5)


def test_step_sigma_is_the_schedulers_sigma_of_the_coming_step(pipe):
    scheduler = type(pipe.diffusers.scheduler).from_config(pipe.diffusers.scheduler.config)
    scheduler.set_timesteps(4)
    first = scheduler.timesteps[0]
    assert scheduler.step_index is None
    assert internals.step_sigma(scheduler, first) == scheduler.sigmas[0]
    sample = torch.zeros(1, 2, 1, 2, 2)
    scheduler.step(torch.zeros_like(sample), first, sample)
    assert internals.step_sigma(scheduler, scheduler.timesteps[1]) == scheduler.sigmas[1]


def test_wrap_scheduler_step_observes_and_is_removed(pipe):
    scheduler = type(pipe.diffusers.scheduler).from_config(pipe.diffusers.scheduler.config)
    scheduler.set_timesteps(2)
    seen = []
    sample = torch.ones(1, 2, 1, 2, 2)
    with internals.wrap_scheduler_step(scheduler, lambda out, t, s, sigma: seen.append(float(sigma))):
        scheduler.step(torch.zeros_like(sample), scheduler.timesteps[0], sample)
    assert seen == [float(scheduler.sigmas[0])]
    assert "step" not in scheduler.__dict__
    with pytest.raises(RuntimeError):
        with internals.wrap_scheduler_step(scheduler, lambda *a: None):
            raise RuntimeError("boom")
    assert "step" not in scheduler.__dict__


def test_prompt_clean_is_diffusers_cleaning():
    assert internals.prompt_clean("  a  red &amp; square ") == "a red & square"


def test_self_attentions_first_input_is_the_timestep_modulated_input(pipe):
    """What TeaCache compares: norm1(h) * (1 + scale_msa) + shift_msa, from the block's table and temb."""
    block = internals.transformer_blocks(pipe.diffusers.transformer)[0]
    seen = {}
    hooks = [block.register_forward_pre_hook(lambda m, a: seen.setdefault("block", a)),
             internals.self_attention(block).register_forward_pre_hook(lambda m, a: seen.setdefault("attn", a[0]))]
    try:
        pipe.generate(prompt="a red square", width=32, height=32, num_frames=5, steps=1, seed=1, progress=False)
    finally:
        for h in hooks:
            h.remove()
    hidden, _context, temb, _rotary = seen["block"]
    shift, scale = (block.scale_shift_table + temb.float()).chunk(6, dim=1)[:2]
    expected = (block.norm1(hidden.float()) * (1 + scale) + shift).type_as(hidden)
    assert torch.equal(seen["attn"], expected)
