"""Every private name of diffusers and torch that wanlab relies on, in one place.

Helpers for the transformer and scheduler (probes), the pipeline, diffusers' hooks, attention backends
and compilation (acceleration), and the VAE (the toy model's training). Each private name has a test in
``tests/test_internals.py`` that fails, naming the name and the installed versions, when a release moves
it. Nothing here changes a tensor the model uses, except where a function says so (the toy's training
helpers): each helper reads, computes on the side, or saves and restores.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def transformer_blocks(transformer: Any) -> list[Any]:
    """The transformer's blocks in the order they run (``WanTransformer3DModel.blocks``).

    Each is a ``WanTransformerBlock``: self-attention ``attn1``, cross-attention ``attn2``, feed-forward
    ``ffn``.

    Args:
        transformer: A diffusers ``WanTransformer3DModel``.

    Returns:
        The blocks, as a new list.

    Example:
        >>> transformer = wanlab.load("tiny").diffusers.transformer  # doctest: +SKIP
        >>> len(transformer_blocks(transformer))  # doctest: +SKIP
        2
    """
    return list(transformer.blocks)


def self_attention(block: Any) -> Any:
    """A block's self-attention module, ``block.attn1``.

    Its first input is the block's timestep-modulated input ``norm1(h) * (1 + scale_msa) + shift_msa``
    (what TeaCache compares between steps).

    Args:
        block: A ``WanTransformerBlock``.

    Returns:
        The ``WanAttention`` module.

    Example:
        >>> first = self_attention(transformer_blocks(transformer)[0])  # doctest: +SKIP
    """
    return block.attn1


def cross_attention(block: Any) -> Any:
    """A block's cross-attention module (video tokens attend to the prompt's tokens): ``block.attn2``.

    Args:
        block: A ``WanTransformerBlock``.

    Returns:
        The ``WanAttention`` module.

    Example:
        >>> attn = cross_attention(transformer_blocks(transformer)[-1])  # doctest: +SKIP
    """
    return block.attn2


def cross_attention_qk(attn: Any, hidden_states: Any, encoder_hidden_states: Any) -> tuple[Any, Any]:
    """Queries and keys of a cross-attention, computed as ``WanAttnProcessor`` computes them.

    That is diffusers' ``transformer_wan._get_qkv_projections``, then ``norm_q`` / ``norm_k`` (RMS norms)
    and a split into heads; cross-attention has no rotary embedding. Probes use it to compute attention
    probabilities beside the model's own attention, never instead of it. The image branch of
    image-to-video models (``add_k_proj``) is not read.

    Args:
        attn: A cross-attention module (:func:`cross_attention`).
        hidden_states: Its video-token input, ``(B, N, dim)``.
        encoder_hidden_states: The prompt embeddings, ``(B, L, text dim)``.

    Returns:
        ``(query, key)``: ``(B, N, heads, d)`` and ``(B, L, heads, d)`` tensors.

    Example:
        >>> query, key = cross_attention_qk(attn, hidden, prompt_embeds)  # doctest: +SKIP
        >>> q, k = query.transpose(1, 2), key.transpose(1, 2)  # (B, heads, tokens, d)  # doctest: +SKIP
        >>> probs = (q @ k.mT * q.shape[-1] ** -0.5).softmax(-1)  # doctest: +SKIP
    """
    from diffusers.models.transformers.transformer_wan import _get_qkv_projections

    query, key, _value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
    query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
    key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
    return query, key


def step_sigma(scheduler: Any, timestep: Any) -> Any:
    """The sigma of the step the scheduler is about to take at ``timestep``.

    That is its ``sigmas`` at its ``step_index``, or at ``index_for_timestep`` before the first step
    initialises that index.

    Args:
        scheduler: A diffusers flow scheduler (``UniPCMultistepScheduler``, ...) after ``set_timesteps``.
        timestep: The timestep about to be taken.

    Returns:
        The sigma, a 0-d tensor.

    Example:
        >>> scheduler.set_timesteps(10)  # doctest: +SKIP
        >>> float(step_sigma(scheduler, scheduler.timesteps[0]))  # doctest: +SKIP
    """
    index = scheduler.step_index
    if index is None:
        index = scheduler.index_for_timestep(timestep)
    return scheduler.sigmas[index]


@contextlib.contextmanager
def wrap_scheduler_step(scheduler: Any, observe: Callable[[Any, Any, Any, Any], None]) -> Iterator[None]:
    """Call ``observe(model_output, timestep, sample, sigma)`` before each ``scheduler.step`` while the context lasts.

    ``step`` itself runs unchanged (the wrapper is an instance attribute of this scheduler, removed on
    exit). ``model_output`` is the guided prediction the pipeline hands the scheduler.

    Args:
        scheduler: The scheduler instance the pipeline steps (``pipe.scheduler``).
        observe: Called with the step's model output, timestep, sample and :func:`step_sigma`.

    Yields:
        Nothing; the wrapper is in place inside the block.

    Example:
        >>> seen = []  # doctest: +SKIP
        >>> observe = lambda out, t, x, sigma: seen.append(float(sigma))  # doctest: +SKIP
        >>> with wrap_scheduler_step(pipe.scheduler, observe):  # doctest: +SKIP
        ...     pipe(prompt="a red square moving right quickly", num_inference_steps=4)
    """
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
    """The text diffusers' Wan pipeline tokenizes for ``text`` (ftfy, HTML entities, whitespace).

    Args:
        text: A prompt.

    Returns:
        ``diffusers.pipelines.wan.pipeline_wan.prompt_clean(text)``.

    Example:
        >>> prompt_clean("  a red &amp; blue   square ")  # doctest: +SKIP
        'a red & blue square'
    """
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean as clean

    return clean(text)


# --- the pipeline ---------------------------------------------------------------------------------------
def execution_device(pipe: Any) -> Any:
    """The device a diffusers pipeline runs its models on, where it wants prompt embeddings.

    ``DiffusionPipeline._execution_device``: the onload device under offloading.

    Args:
        pipe: A diffusers pipeline.

    Returns:
        A ``torch.device``.

    Example:
        >>> execution_device(wanlab.load("tiny").diffusers)  # doctest: +SKIP
        device(type='cpu')
    """
    return pipe._execution_device


def progress_bar_config(pipe: Any) -> dict[str, Any]:
    """A copy of the pipeline's denoising progress-bar settings, for :func:`restore_progress_bar_config`.

    ``DiffusionPipeline._progress_bar_config``, which ``set_progress_bar_config`` replaces.

    Args:
        pipe: A diffusers pipeline.

    Returns:
        The settings (``tqdm`` keywords); empty before the first ``set_progress_bar_config``.

    Example:
        >>> from types import SimpleNamespace
        >>> pipe = SimpleNamespace()  # stands for a pipeline never configured
        >>> saved = progress_bar_config(pipe)
        >>> pipe._progress_bar_config = {"disable": True}  # what set_progress_bar_config(disable=True) does
        >>> restore_progress_bar_config(pipe, saved)
        >>> saved, progress_bar_config(pipe)
        ({}, {})
    """
    return dict(getattr(pipe, "_progress_bar_config", {}))


def restore_progress_bar_config(pipe: Any, config: dict[str, Any]) -> None:
    """Put back settings :func:`progress_bar_config` returned (``set_progress_bar_config`` cannot unset a key).

    Args:
        pipe: A diffusers pipeline.
        config: What :func:`progress_bar_config` returned.

    Example:
        See :func:`progress_bar_config`.
    """
    pipe._progress_bar_config = config


def denormalize_latents(vae: Any, latents: Any) -> Any:
    """What ``WanPipeline.__call__`` hands the VAE, from latents as the denoising loop leaves them.

    ``latents * latents_std + latents_mean`` per channel (the VAE config's statistics), computed as
    diffusers computes it (dividing by ``1 / latents_std``), in ``latents``' dtype and device.

    Args:
        vae: A diffusers ``AutoencoderKLWan``.
        latents: ``(B, z_dim, T', H', W')`` latents.

    Returns:
        The de-normalised latents, same shape.

    Example:
        >>> frames = vae.decode(denormalize_latents(vae, latents), return_dict=False)[0]  # doctest: +SKIP
    """
    import torch

    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    return latents / inv_std + mean


def keep_in_fp32_modules(model: Any) -> set[str]:
    """Names of the submodules a diffusers model keeps in float32 whatever its dtype.

    ``ModelMixin._keep_in_fp32_modules``; for Wan's transformer its norms, rotary and time embedding.

    Args:
        model: A diffusers model.

    Returns:
        The names (empty when the model declares none).

    Example:
        >>> sorted(keep_in_fp32_modules(transformer))  # doctest: +SKIP
        ['norm1', 'norm2', 'norm3', 'rope', 'scale_shift_table', 'time_embedder']
    """
    return set(model._keep_in_fp32_modules or ())


def repeated_block_names(model: Any) -> tuple[str, ...]:
    """Class names of a diffusers model's repeated blocks (what regional compilation compiles).

    ``ModelMixin._repeated_blocks``.

    Args:
        model: A diffusers model.

    Returns:
        The class names; empty when the model declares none.

    Example:
        >>> repeated_block_names(transformer)  # doctest: +SKIP
        ('WanTransformerBlock',)
    """
    return tuple(getattr(model, "_repeated_blocks", None) or ())


# --- diffusers' hooks -----------------------------------------------------------------------------------
#: The attribute under which diffusers keeps a module's ``HookRegistry`` (``diffusers.hooks.hooks``).
HOOK_REGISTRY = "_diffusers_hook"


def hook_registry(module: Any) -> Any:
    """The diffusers ``HookRegistry`` attached to ``module``, or None when none was ever attached.

    Args:
        module: A torch module.

    Returns:
        Its ``HookRegistry`` (kept under :data:`HOOK_REGISTRY`), or ``None``.

    Example:
        >>> import torch
        >>> hook_registry(torch.nn.Linear(2, 2)) is None
        True
    """
    return module.__dict__.get(HOOK_REGISTRY)


def hooked_modules(model: Any) -> list[str]:
    """Names of ``model``'s submodules that carry a diffusers hook now (``"<root>"`` for the model).

    Args:
        model: A torch module.

    Returns:
        The names, in ``named_modules`` order.

    Example:
        >>> import torch
        >>> hooked_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))
        []
    """
    names = []
    for name, module in model.named_modules():
        registry = hook_registry(module)
        if registry is not None and registry.hooks:
            names.append(name or "<root>")
    return names


def hook_state(model: Any) -> dict[int, tuple[bool, bool]]:
    """Per submodule (by ``id``): whether it has an instance ``forward`` and a diffusers hook registry.

    Saved before hooks are added, for :func:`restore_hook_state` after they are removed.

    Args:
        model: A torch module.

    Returns:
        ``{id(module): (has instance forward, has hook registry)}`` for every module under ``model``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> hook_state(model) == {id(model): (False, False)}
        True
    """
    return {id(m): ("forward" in m.__dict__, HOOK_REGISTRY in m.__dict__) for m in model.modules()}


def restore_hook_state(model: Any, before: dict[int, tuple[bool, bool]]) -> None:
    """After ``disable_cache``, put every module back as :func:`hook_state` saw it.

    Drops the instance ``forward`` and the empty hook registries that enabling a cache left on the
    submodules (``torch.compile`` guards on them: without this, each cached call makes the next
    compiled call recompile). Registries that still hold hooks (not wanlab's) are left alone.

    Args:
        model: The torch module hooks were added to and removed from.
        before: What :func:`hook_state` returned before they were added.

    Example:
        >>> before = hook_state(transformer)  # doctest: +SKIP
        >>> transformer.enable_cache(config); transformer.disable_cache()  # doctest: +SKIP
        >>> restore_hook_state(transformer, before)  # doctest: +SKIP
    """
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
    """A base class for wanlab's hooks: diffusers' ``ModelHook`` marked stateful (``_is_stateful = True``).

    The registry's ``reset_stateful_hooks`` (called by ``cache_context`` users and ``disable_cache``)
    then resets a subclass.

    Returns:
        A new ``ModelHook`` subclass with ``_is_stateful = True``.

    Example:
        >>> class CountingHook(stateful_hook_base()):  # doctest: +SKIP
        ...     def reset_state(self, module):
        ...         self.calls = 0
        ...         return module
    """
    from diffusers.hooks.hooks import ModelHook

    class StatefulModelHook(ModelHook):
        _is_stateful = True

    return StatefulModelHook


# --- attention backends and compilation -----------------------------------------------------------------
def _attention_registry() -> Any:
    from diffusers.models import attention_dispatch

    return attention_dispatch._AttentionBackendRegistry


def active_attention_backend() -> Any:
    """The process-wide active attention backend of diffusers (``_AttentionBackendRegistry``).

    ``set_attention_backend`` changes it and ``reset_attention_backend`` does not restore it.

    Returns:
        The active ``AttentionBackendName``.

    Example:
        >>> active_attention_backend()  # doctest: +SKIP
        <AttentionBackendName.NATIVE: 'native'>
    """
    return _attention_registry().get_active_backend()[0]


@contextlib.contextmanager
def attention_backends_restored(model: Any) -> Iterator[None]:
    """Save, and on exit restore, every attention processor's backend under ``model`` and the active one.

    That is each processor's ``_attention_backend`` and diffusers' process-wide active backend.

    Args:
        model: A diffusers model.

    Yields:
        Nothing; whatever the block changes is put back on exit, also after an error.

    Example:
        >>> with attention_backends_restored(transformer):  # doctest: +SKIP
        ...     transformer.set_attention_backend("flash")
    """
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

    Args:
        modules: torch modules (e.g. a transformer's repeated blocks).

    Yields:
        Nothing; calls to the modules inside the block run compiled.

    Example:
        >>> blocks = transformer_blocks(transformer)  # doctest: +SKIP
        >>> with compiled_calls(blocks):  # doctest: +SKIP
        ...     pipe(prompt="a red square moving right quickly")
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
    """``AutoencoderKLWan._encode``: the encoder's output, without sampling.

    Args:
        vae: A diffusers ``AutoencoderKLWan``.
        x: Videos ``(B, 3, T, H, W)`` in [-1, 1].

    Returns:
        The posterior mean and log-variance stacked on channels, ``(B, 2 * z_dim, T', H', W')``.

    Example:
        >>> mean = vae_encode(vae, x)[:, : vae.config.z_dim]  # doctest: +SKIP
    """
    return vae._encode(x)


def vae_decode_unclamped(vae: Any, z: Any) -> Any:
    """``AutoencoderKLWan._decode`` without its final clamp (for training the decoder).

    Decodes one latent frame at a time through the causal decoder and its feature cache
    (``_feat_map``, ``_conv_idx``), then ``unpatchify``; the VAE's cache is cleared before and after.

    Args:
        vae: A diffusers ``AutoencoderKLWan``.
        z: Latents ``(B, z_dim, T', H', W')`` as the VAE takes them (de-normalised).

    Returns:
        Videos ``(B, 3, T, H, W)``, not clamped to [-1, 1].

    Example:
        >>> x = vae_decode_unclamped(vae, z)  # doctest: +SKIP
    """
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
    """The temporal convolutions of the VAE's resampling layers (``WanResample.time_conv``), in module order.

    Those are the encoder's temporal downsampling and the decoder's temporal upsampling.

    Args:
        vae: A diffusers ``AutoencoderKLWan``.

    Returns:
        The ``WanCausalConv3d`` modules.

    Example:
        >>> [conv.kernel_size for conv in vae_time_convs(vae)]  # doctest: +SKIP
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample

    return [m.time_conv for m in vae.modules() if isinstance(m, WanResample) and hasattr(m, "time_conv")]


def vae_causal_convs(vae: Any) -> list[Any]:
    """Every causal 3D convolution of the VAE (``WanCausalConv3d``, time convolutions included), in module order.

    Args:
        vae: A diffusers ``AutoencoderKLWan``.

    Returns:
        The modules.

    Example:
        >>> len(vae_causal_convs(vae))  # doctest: +SKIP
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return [m for m in vae.modules() if isinstance(m, WanCausalConv3d)]


def causal_conv_padding(conv: Any) -> tuple[int, ...]:
    """A ``WanCausalConv3d``'s padding as ``F.pad`` takes it (its ``_padding``).

    Args:
        conv: A ``WanCausalConv3d``.

    Returns:
        ``(width left, width right, height top, height bottom, time past, time future)``; the past gets
        ``2 * padding[0]`` and the future none.

    Example:
        >>> pad_w, _, pad_h = causal_conv_padding(conv)[:3]  # doctest: +SKIP
    """
    return tuple(conv._padding)
