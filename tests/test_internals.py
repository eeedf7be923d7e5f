"""One test per private name of diffusers and torch that wanlab.models.internals relies on: each fails,
naming the private name and the installed versions, when a release moves or changes it."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from importlib.metadata import version

import pytest
import torch

from wanlab.models import internals


@contextlib.contextmanager
def relied_on(name: str) -> Iterator[None]:
    """Turn a failure inside into one that names the private name and the installed diffusers and torch."""
    try:
        yield
    except (AttributeError, ImportError, KeyError, TypeError, ValueError, AssertionError) as exc:
        pytest.fail(f"{name}: wanlab.models.internals relies on it, and with diffusers {version('diffusers')} and "
                    f"torch {version('torch')} it is gone or changed ({type(exc).__name__}: {exc}); update "
                    "wanlab/models/internals.py")


@relied_on("WanTransformer3DModel.blocks, WanTransformerBlock.attn1/attn2/ffn")
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


@relied_on("transformer_wan._get_qkv_projections")
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


@relied_on("scheduler.step_index / sigmas / index_for_timestep")
def test_step_sigma_is_the_schedulers_sigma_of_the_coming_step(pipe):
    scheduler = type(pipe.diffusers.scheduler).from_config(pipe.diffusers.scheduler.config)
    scheduler.set_timesteps(4)
    first = scheduler.timesteps[0]
    assert scheduler.step_index is None
    assert internals.step_sigma(scheduler, first) == scheduler.sigmas[0]
    sample = torch.zeros(1, 2, 1, 2, 2)
    scheduler.step(torch.zeros_like(sample), first, sample)
    assert internals.step_sigma(scheduler, scheduler.timesteps[1]) == scheduler.sigmas[1]


@relied_on("scheduler.step(model_output, timestep, sample)")
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


@relied_on("pipeline_wan.prompt_clean")
def test_prompt_clean_is_diffusers_cleaning():
    assert internals.prompt_clean("  a  red &amp; square ") == "a red & square"


@relied_on("WanTransformerBlock.attn1's first input")
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


@relied_on("DiffusionPipeline._execution_device")
def test_execution_device_is_where_the_pipeline_runs(pipe):
    assert internals.execution_device(pipe.diffusers) == torch.device(pipe.device)


@relied_on("DiffusionPipeline._progress_bar_config")
def test_progress_bar_config_is_what_the_bars_are_made_with(pipe):
    dpipe = pipe.diffusers
    saved = internals.progress_bar_config(dpipe)
    try:
        sink = io.StringIO()
        dpipe.set_progress_bar_config(desc="wanlab", file=sink)
        assert internals.progress_bar_config(dpipe) == {"desc": "wanlab", "file": sink}
        bar = dpipe.progress_bar(total=1)
        bar.close()
        assert sink.getvalue().lstrip("\r").startswith("wanlab")
    finally:
        internals.restore_progress_bar_config(dpipe, saved)
    assert internals.progress_bar_config(dpipe) == saved


@relied_on("WanPipeline.__call__'s latents de-normalisation (VAE config latents_mean / latents_std)")
def test_denormalize_latents_is_what_the_pipeline_hands_the_vae(pipe):
    dpipe = pipe.diffusers
    seen = {}
    decode = dpipe.vae.decode

    def spy(z, *args, **kwargs):
        seen["vae_input"] = z.clone()
        return decode(z, *args, **kwargs)

    def last(_pipe, _i, _t, kwargs):
        seen["latents"] = kwargs["latents"].clone()
        return {}

    embeds = pipe.encode("a red square")
    dpipe.vae.decode = spy
    try:
        with torch.inference_mode():
            dpipe(prompt_embeds=embeds, guidance_scale=1.0, height=32, width=32, num_frames=5, num_inference_steps=1,
                  generator=torch.Generator("cpu").manual_seed(0), output_type="np", callback_on_step_end=last)
    finally:
        del dpipe.vae.decode
    latents = seen["latents"].to(dpipe.vae.dtype)
    assert torch.equal(internals.denormalize_latents(dpipe.vae, latents), seen["vae_input"])
    std = torch.tensor(dpipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
    mean = torch.tensor(dpipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    assert torch.allclose(internals.denormalize_latents(dpipe.vae, latents), latents * std + mean, atol=1e-6)


@relied_on("ModelMixin._keep_in_fp32_modules")
def test_keep_in_fp32_modules_names_modules_of_the_transformer(pipe):
    transformer = pipe.diffusers.transformer
    keep = internals.keep_in_fp32_modules(transformer)
    assert {"scale_shift_table", "norm1", "time_embedder"} <= keep
    names = {part for name, _ in [*transformer.named_modules(), *transformer.named_parameters()]
             for part in name.split(".")}
    assert keep <= names | {"rope"}


@relied_on("ModelMixin._repeated_blocks")
def test_repeated_block_names_are_the_transformer_blocks(pipe):
    transformer = pipe.diffusers.transformer
    assert internals.repeated_block_names(transformer) == ("WanTransformerBlock",)
    assert internals.repeated_block_names(torch.nn.Linear(2, 2)) == ()


@relied_on("module._diffusers_hook (diffusers.hooks.HookRegistry)")
def test_hook_registry_is_where_diffusers_keeps_a_modules_hooks(pipe):
    from diffusers.hooks import FirstBlockCacheConfig, HookRegistry

    transformer = pipe.diffusers.transformer
    before = internals.hook_state(transformer)
    assert internals.hooked_modules(transformer) == []
    transformer.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    try:
        hooked = internals.hooked_modules(transformer)
        assert hooked and all(name == "<root>" or name.startswith("blocks.") for name in hooked)
        block = internals.transformer_blocks(transformer)[0]
        assert internals.hook_registry(block) is HookRegistry.check_if_exists_or_initialize(block)
    finally:
        transformer.disable_cache()
    assert internals.hooked_modules(transformer) == []
    internals.restore_hook_state(transformer, before)
    # the submodules are as they were; the model's own registry stays (restore_hook_state keeps the root's),
    # so whether it exists depends on what ran on this session-wide pipeline before
    after = internals.hook_state(transformer)
    assert {k: v for k, v in after.items() if k != id(transformer)} == \
        {k: v for k, v in before.items() if k != id(transformer)}
    assert all(internals.hook_registry(m) is None for m in transformer.modules()
               if m is not transformer and not before[id(m)][1])  # the registries this test made are gone


@relied_on("ModelHook._is_stateful")
def test_a_stateful_hook_is_reset_by_the_registry():
    from diffusers.hooks.hooks import HookRegistry, ModelHook

    resets = []

    class Counting(internals.stateful_hook_base()):
        def reset_state(self, module):
            resets.append(module)
            return module

    assert ModelHook._is_stateful is False
    module = torch.nn.Linear(2, 2)
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(Counting(), "counting")
    registry.reset_stateful_hooks()
    assert resets == [module]


@relied_on("attention_dispatch._AttentionBackendRegistry and processors' _attention_backend")
def test_attention_backends_are_restored(pipe):
    transformer = pipe.diffusers.transformer
    processors = [m.processor for m in transformer.modules() if getattr(m, "processor", None) is not None]
    assert processors and all(hasattr(p, "_attention_backend") for p in processors)
    saved = [p._attention_backend for p in processors]
    from diffusers.models.attention_dispatch import AttentionBackendName

    active = internals.active_attention_backend()
    assert isinstance(active, AttentionBackendName)
    with internals.attention_backends_restored(transformer):
        transformer.set_attention_backend("_native_math")
        assert all(p._attention_backend == AttentionBackendName("_native_math") for p in processors)
        assert internals.active_attention_backend() == AttentionBackendName("_native_math")
    assert [p._attention_backend for p in processors] == saved
    assert internals.active_attention_backend() == active


@relied_on("torch.nn.Module._compiled_call_impl")
def test_compiled_calls_swap_the_modules_compiled_callable():
    module = torch.nn.Linear(2, 2)
    assert module._compiled_call_impl is None
    with internals.compiled_calls([module]):
        compiled = module._compiled_call_impl
        assert compiled is not None and compiled is module._wanlab_compiled
    assert module._compiled_call_impl is None
    with internals.compiled_calls([module]):
        assert module._compiled_call_impl is compiled  # made once, reused
    assert module._compiled_call_impl is None


@relied_on("AutoencoderKLWan._encode")
def test_vae_encode_is_the_posteriors_parameters(pipe):
    vae = pipe.diffusers.vae
    x = torch.randn(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        moments = internals.vae_encode(vae, x)
        posterior = vae.encode(x).latent_dist
    z = vae.config.z_dim
    assert moments.shape[1] == 2 * z
    assert torch.equal(moments[:, :z], posterior.mean)


@relied_on("AutoencoderKLWan._decode's feature cache (_feat_map, _conv_idx)")
def test_vae_decode_unclamped_is_decode_before_its_clamp(pipe):
    vae = pipe.diffusers.vae
    z = 3.0 * torch.randn(1, vae.config.z_dim, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        raw = internals.vae_decode_unclamped(vae, z)
        stock = vae.decode(z).sample
    assert raw.shape == stock.shape and raw.shape[2] == 5
    assert torch.equal(raw.clamp(-1.0, 1.0), stock)


@relied_on("WanResample.time_conv")
def test_vae_time_convs_are_the_temporal_resampling_convolutions(pipe):
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    vae = pipe.diffusers.vae
    convs = internals.vae_time_convs(vae)
    assert len(convs) == 2 * sum(vae.config.temperal_downsample)  # encoder downsampling, decoder upsampling
    assert all(isinstance(c, WanCausalConv3d) and c.kernel_size == (3, 1, 1) for c in convs)
    ids = {id(c) for c in internals.vae_causal_convs(vae)}
    assert all(id(c) in ids for c in convs)


@relied_on("WanCausalConv3d._padding")
def test_causal_conv_padding_is_what_the_convolution_pads_with(pipe):
    import torch.nn.functional as F

    conv = next(c for c in internals.vae_causal_convs(pipe.diffusers.vae) if c.kernel_size == (3, 3, 3))
    pad = internals.causal_conv_padding(conv)
    assert pad == (1, 1, 1, 1, 2, 0)
    x = torch.randn(1, conv.in_channels, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = F.conv3d(F.pad(x, pad), conv.weight, conv.bias, conv.stride)
        assert torch.allclose(conv(x), expected, atol=1e-6)


#: wanlab's own objects reached by a private name from another function (not diffusers' or torch's), and the
#: standard library's documented underscore names.
OWN_PRIVATE = {("errors.py", "_getframe"), ("server/run.py", "_exit"), ("probes/projection.py", "_probe_projection"),
               ("server/testing.py", "_cond"), ("server/testing.py", "_seen")}


def test_no_module_but_internals_reaches_a_private_name():
    """diffusers' and torch's private names are touched in wanlab/models/internals.py only: an attribute
    ``x._name`` of anything but ``self``/``cls``, a ``getattr``-family call or ``__dict__`` key naming
    ``"_name"``, or ``from library import _name`` anywhere else is reported with its file and line."""
    import ast
    from pathlib import Path

    import wanlab

    root = Path(wanlab.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "models/internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name)
                                                        and node.value.id in ("self", "cls")):
                names = [node.attr]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1:
                first = node.args[0]
                if not (isinstance(first, ast.Name) and first.id in ("self", "cls")) and isinstance(
                        node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                    names = [node.args[1].value]
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and \
                    node.value.attr == "__dict__" and isinstance(node.slice, ast.Constant):
                names = [str(node.slice.value)]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("wanlab"):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("_") and not name.startswith("__") and (rel, name) not in OWN_PRIVATE:
                    found.append(f"wanlab/{rel}:{node.lineno}: {name}")
    assert found == [], ("private names reached outside wanlab/models/internals.py (move diffusers'/torch's there, "
                         f"with a test here; give wanlab's own a public name): {found}")
