"""Every private name of diffusers and torch that wanlab relies on, in one place.

The pipeline, acceleration, probes and the toy model's training look inside diffusers' and torch's
objects. What they touch that is not public API lives here, each with a test in
``tests/test_internals.py`` that fails, naming the name and the installed versions, when a release
moves it. Probes look inside ``WanTransformer3DModel`` while it generates:

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

The pipeline and acceleration (:mod:`wanlab.pipeline`, :mod:`wanlab.accel`):

- ``DiffusionPipeline._execution_device`` and ``_progress_bar_config`` (:func:`execution_device`,
  :func:`progress_bar_config`, :func:`restore_progress_bar_config`);
- the VAE latents' de-normalisation ``WanPipeline.__call__`` applies before decoding, from the VAE
  config's ``latents_mean`` / ``latents_std`` (:func:`denormalize_latents`);
- ``ModelMixin._keep_in_fp32_modules`` and ``_repeated_blocks`` (:func:`keep_in_fp32_modules`,
  :func:`repeated_block_names`);
- diffusers' hook registry on each module, ``module._diffusers_hook`` (:func:`hook_registry`,
  :func:`hooked_modules`, :func:`hook_state`, :func:`restore_hook_state`) and ``ModelHook._is_stateful``
  (:func:`stateful_hook_base`);
- the attention-backend registry ``attention_dispatch._AttentionBackendRegistry`` and each
  processor's ``_attention_backend`` (:func:`attention_backends_restored`, :func:`active_attention_backend`);
- torch's ``Module._compiled_call_impl``, where ``Module.compile`` keeps the compiled callable
  (:func:`compiled_calls`).

The toy model's VAE training (:mod:`wanlab.toy.autoencoder`): ``AutoencoderKLWan._encode``, its
decoder's feature cache (``_feat_map``, ``_conv_idx``), ``WanResample.time_conv`` and
``WanCausalConv3d._padding`` (:func:`vae_encode`, :func:`vae_decode_unclamped`, :func:`vae_time_convs`,
:func:`vae_causal_convs`, :func:`causal_conv_padding`).

Nothing here changes a tensor the model uses, except where a function says so (the toy's training
helpers): each helper reads, computes on the side, or saves and restores.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any


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


# --- the pipeline ---------------------------------------------------------------------------------------
def execution_device(pipe: Any) -> Any:
    """The device a diffusers pipeline runs its models on (``DiffusionPipeline._execution_device``: the
    onload device under offloading), where it wants prompt embeddings."""
    return pipe._execution_device


def progress_bar_config(pipe: Any) -> dict[str, Any]:
    """A copy of the pipeline's denoising progress-bar settings (``DiffusionPipeline._progress_bar_config``,
    which ``set_progress_bar_config`` replaces; empty before the first call), for
    :func:`restore_progress_bar_config`."""
    return dict(getattr(pipe, "_progress_bar_config", {}))


def restore_progress_bar_config(pipe: Any, config: dict[str, Any]) -> None:
    """Put back settings :func:`progress_bar_config` returned (``set_progress_bar_config`` cannot unset
    a key it never had)."""
    pipe._progress_bar_config = config


def denormalize_latents(vae: Any, latents: Any) -> Any:
    """What ``WanPipeline.__call__`` hands the VAE: latents as the denoising loop leaves them,
    ``latents * latents_std + latents_mean`` per channel (the VAE config's statistics), computed as
    diffusers computes it (dividing by ``1 / latents_std``), in ``latents``' dtype and device."""
    import torch

    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    return latents / inv_std + mean


def keep_in_fp32_modules(model: Any) -> set[str]:
    """Names of the submodules a diffusers model keeps in float32 whatever its dtype
    (``ModelMixin._keep_in_fp32_modules``; for Wan's transformer its norms, rotary and time embedding)."""
    return set(model._keep_in_fp32_modules or ())


def repeated_block_names(model: Any) -> tuple[str, ...]:
    """Class names of a diffusers model's repeated blocks (``ModelMixin._repeated_blocks``: what regional
    compilation compiles); empty when the model declares none."""
    return tuple(getattr(model, "_repeated_blocks", None) or ())


# --- diffusers' hooks -----------------------------------------------------------------------------------
#: The attribute under which diffusers keeps a module's ``HookRegistry`` (``diffusers.hooks.hooks``).
HOOK_REGISTRY = "_diffusers_hook"


def hook_registry(module: Any) -> Any:
    """The diffusers ``HookRegistry`` attached to ``module``, or None when none was ever attached."""
    return module.__dict__.get(HOOK_REGISTRY)


def hooked_modules(model: Any) -> list[str]:
    """Names of ``model``'s submodules that carry a diffusers hook now (``"<root>"`` for the model)."""
    names = []
    for name, module in model.named_modules():
        registry = hook_registry(module)
        if registry is not None and registry.hooks:
            names.append(name or "<root>")
    return names


def hook_state(model: Any) -> dict[int, tuple[bool, bool]]:
    """Per submodule (by ``id``): whether it has an instance ``forward`` and a diffusers hook registry,
    for :func:`restore_hook_state` after hooks are removed."""
    return {id(m): ("forward" in m.__dict__, HOOK_REGISTRY in m.__dict__) for m in model.modules()}


def restore_hook_state(model: Any, before: dict[int, tuple[bool, bool]]) -> None:
    """After ``disable_cache``: drop the instance ``forward`` and the empty hook registries that enabling
    left on the submodules, so every module is as :func:`hook_state` saw it (``torch.compile`` guards on
    them: without this, each cached call makes the next compiled call recompile). Registries that still
    hold hooks (not wanlab's) are left alone."""
    for module in model.modules():
        had_forward, had_registry = before.get(id(module), (False, False))
        registry = hook_registry(module)
        if registry is not None and registry.hooks:
            continue  # hooks that are not ours
        if not had_forward and "forward" in module.__dict__:
            del module.__dict__["forward"]
        if not had_registry and registry is not None and module is not model:
            del module.__dict__[HOOK_REGISTRY]
    root = hook_registry(model)
    if root is not None:
        root.invalidate_child_registries_cache()


def stateful_hook_base() -> type:
    """diffusers' ``ModelHook`` marked stateful (``_is_stateful = True``), so that the registry's
    ``reset_stateful_hooks`` (called by ``cache_context`` users and ``disable_cache``) resets a subclass."""
    from diffusers.hooks.hooks import ModelHook

    class StatefulModelHook(ModelHook):
        _is_stateful = True

    return StatefulModelHook


# --- attention backends and compilation -----------------------------------------------------------------
def _attention_registry() -> Any:
    from diffusers.models import attention_dispatch

    return attention_dispatch._AttentionBackendRegistry


def active_attention_backend() -> Any:
    """diffusers' process-wide active attention backend (``_AttentionBackendRegistry``), which
    ``set_attention_backend`` changes and ``reset_attention_backend`` does not restore."""
    return _attention_registry().get_active_backend()[0]


@contextlib.contextmanager
def attention_backends_restored(model: Any) -> Iterator[None]:
    """Save, and on exit restore, every attention processor's backend under ``model`` (the processors'
    ``_attention_backend``) and diffusers' process-wide active backend."""
    registry = _attention_registry()
    active = registry.get_active_backend()[0]
    processors = []
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processors.append((processor, processor._attention_backend))
    try:
        yield
    finally:
        for processor, value in processors:
            processor._attention_backend = value
        registry.set_active_backend(active)


@contextlib.contextmanager
def compiled_calls(modules: Iterable[Any]) -> Iterator[None]:
    """Run each module through its ``torch.compile`` form for as long as the context lasts.

    ``Module.compile`` keeps the compiled callable in ``Module._compiled_call_impl``; it is made once
    per module (kept as ``_wanlab_compiled``, so later contexts reuse it without recompiling) and the
    plain call is restored on exit.
    """
    modules = list(modules)
    saved = [m._compiled_call_impl for m in modules]
    try:
        for m in modules:
            compiled = getattr(m, "_wanlab_compiled", None)
            if compiled is None:
                m.compile()
                compiled = m._compiled_call_impl
                m._wanlab_compiled = compiled
            m._compiled_call_impl = compiled
        yield
    finally:
        for m, impl in zip(modules, saved):
            m._compiled_call_impl = impl


# --- the VAE (the toy model's training) -----------------------------------------------------------------
def vae_encode(vae: Any, x: Any) -> Any:
    """``AutoencoderKLWan._encode``: the encoder's output (posterior mean and log-variance stacked on
    channels), ``(B, 2 * z_dim, T', H', W')``, without sampling."""
    return vae._encode(x)


def vae_decode_unclamped(vae: Any, z: Any) -> Any:
    """``AutoencoderKLWan._decode`` without its final clamp: one latent frame at a time through the
    causal decoder and its feature cache (``_feat_map``, ``_conv_idx``), then ``unpatchify``."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae.clear_cache()
    x = vae.post_quant_conv(z)
    chunks = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        chunks.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                  first_chunk=(i == 0)))
    vae.clear_cache()
    out = torch.cat(chunks, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out


def vae_time_convs(vae: Any) -> list[Any]:
    """The temporal convolutions of the VAE's resampling layers (``WanResample.time_conv``: the
    encoder's temporal downsampling and the decoder's temporal upsampling), in module order."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample

    return [m.time_conv for m in vae.modules() if isinstance(m, WanResample) and hasattr(m, "time_conv")]


def vae_causal_convs(vae: Any) -> list[Any]:
    """Every causal 3D convolution of the VAE (``WanCausalConv3d``, time convolutions included), in
    module order."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return [m for m in vae.modules() if isinstance(m, WanCausalConv3d)]


def causal_conv_padding(conv: Any) -> tuple[int, ...]:
    """A ``WanCausalConv3d``'s padding as ``F.pad`` takes it (``_padding``: width left/right, height
    top/bottom, time past/future; the past gets ``2 * padding[0]`` and the future none)."""
    return tuple(conv._padding)
