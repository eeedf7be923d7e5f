"""Loading a Wan 2.1 model's weights from a built-in name, a local folder or the local hub cache.

The model is resolved once first (:mod:`wanlab.models.resolution`: a missing hub id fails at once,
without retries), then loaded with diffusers' own classes, cast and placed, and identified
(:mod:`wanlab.models.identity`) from the same resolution and the loaded weights.
:func:`wanlab.load` wraps the result as a :class:`~wanlab.pipeline.Pipeline`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import LoadError
from ..inputs import AccelLike
from ..values import check_bool
from . import internals
from .identity import (
    ModelIdentity,
    check_load_options,
    identify,
    recorded_fingerprint,
    scheduler_settings,
    tensors_fingerprint,
)
from .registry import DEFAULT_MODEL
from .resolution import ResolvedModel, resolve


def torch_dtype(name: str) -> Any:
    """The torch dtype of a dtype name (``float32``, ``float16``, ``bfloat16``)."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def realign(*modules: Any) -> None:
    """Clone every parameter and buffer: safetensors leaves CPU tensors unaligned, which changes results.

    After this, weights loaded from a folder give the same outputs, bit for bit, as the same
    weights built in memory (measured: 1.8e-7 differences without it).
    """
    import torch

    with torch.no_grad():
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                tensor.data = tensor.data.clone()


def cast(pipe: Any, dtype: Any) -> None:
    """Cast text encoder and transformer to ``dtype``, keeping the modules Wan needs in float32."""
    import torch

    pipe.text_encoder.to(dtype=dtype)
    transformer = pipe.transformer
    keep = internals.keep_in_fp32_modules(transformer)
    torch.nn.Module.to(transformer, dtype=dtype)
    for name, module in transformer.named_modules():
        if name.split(".")[-1] in keep:
            torch.nn.Module.to(module, dtype=torch.float32)
    for name, param in transformer.named_parameters():
        if name.split(".")[-1] in keep:
            param.data = param.data.to(torch.float32)


def quiet_loading() -> None:
    """Silence diffusers' and transformers' loading bars and notices (wanlab reports its own errors)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()


def from_folder(folder: str, dtype: Any) -> Any:
    """Load diffusers' ``WanPipeline`` from a checkpoint folder, offline, with the VAE in float32."""
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline

    try:
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32, local_files_only=True)
        return WanPipeline.from_pretrained(folder, vae=vae, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise LoadError(f"could not load the Wan pipeline in {folder}: {exc}".rstrip(".") + ".") from exc


def apply_group_offload(pipe: Any, mode: str, device: str) -> None:
    """Turn on diffusers' pipeline-level group offloading (every component) onto ``device`` (CUDA).

    A CUDA stream overlaps transfers and compute. Not measured by wanlab: this workplace has no GPU.
    """
    import torch

    pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                              offload_type=mode, num_blocks_per_group=1 if mode == "block_level" else None,
                              use_stream=True)


def _weights(source: ResolvedModel, dtype: Any) -> Any:
    if source.builtin is not None and source.builtin.build is not None:
        pipe = source.builtin.build()
        cast(pipe, dtype)
        return pipe
    assert source.folder is not None
    pipe = from_folder(str(source.folder), dtype)
    for module in (pipe.text_encoder, pipe.transformer, pipe.vae):
        module.eval().requires_grad_(False)
    return pipe


def _fingerprint(source: ResolvedModel, pipe: Any) -> str:
    """The weights' fingerprint: recorded (checked for a model built in code), else the files' hashes."""
    from .identity import files_fingerprint

    recorded = recorded_fingerprint(source)
    if source.builtin is not None and source.builtin.build is not None:
        actual = tensors_fingerprint(pipe)
        if recorded is not None and actual != recorded:
            warnings.warn(f"the built-in {source.model_id} model built on this machine has other weights than the "
                          f"recorded ones (fingerprint {actual[:12]}, recorded {recorded[:12]}: another torch "
                          "version draws other random numbers); its runs are keyed by the weights built here",
                          stacklevel=3)
        return actual
    if recorded is not None:
        return recorded
    assert source.folder is not None
    return files_fingerprint(source.folder)


@dataclass(frozen=True)
class Loaded:
    """A loaded model: diffusers' pipeline, its identity, the device it runs on and its default acceleration."""

    diffusers: Any
    identity: ModelIdentity
    device: str
    accel: AccelLike


def load_weights(model: str | os.PathLike[str] = DEFAULT_MODEL, *, device: str | None = None, dtype: Any = None,
                 cpu_offload: bool = False, vae_tiling: bool = False, max_sequence_length: int | None = None,
                 progress: bool | None = None, accel: AccelLike = None,
                 group_offload: str | bool | None = None) -> Loaded:
    """Resolve, identify and load a model with diffusers' own classes (see :func:`wanlab.load`).

    The model is resolved once (:func:`~wanlab.models.resolution.resolve`); its weights are loaded from
    that, and its identity made from that and the loaded weights and scheduler.

    Args:
        model: a built-in name, a diffusers folder or a hub id in the local cache.
        device: as :func:`wanlab.load`.
        dtype: as :func:`wanlab.load`.
        cpu_offload: as :func:`wanlab.load`.
        vae_tiling: as :func:`wanlab.load`.
        max_sequence_length: as :func:`wanlab.load`.
        progress: as :func:`wanlab.load`.
        accel: as :func:`wanlab.load`.
        group_offload: as :func:`wanlab.load`.

    Returns:
        The :class:`Loaded` model: diffusers' pipeline, its identity, device and default acceleration.

    Raises:
        ParamError: a bad option.
        LoadError: no such model, or weights that do not load.

    Example:
        >>> loaded = load_weights("tiny", device="cpu")  # doctest: +SKIP
        >>> loaded.identity.model_id, loaded.device  # doctest: +SKIP
        ('tiny', 'cpu')
    """
    from ..accel.setting import Accel

    options = check_load_options(device=device, dtype=dtype, cpu_offload=cpu_offload, vae_tiling=vae_tiling,
                                 max_sequence_length=max_sequence_length, group_offload=group_offload)
    device_, dtype_, offload = options.device, options.dtype, options.group_offload
    default_accel = Accel.coerce(accel)
    if progress is not None:
        check_bool("progress", progress)
    source = resolve(model)
    if not progress:  # None (the default) and False: no loading bars ("Loading pipeline components", weights)
        quiet_loading()
    else:  # asked for: shown, even after an earlier quiet load turned them off
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.enable_progress_bar()
        tlog.enable_progress_bar()
    pipe = _weights(source, torch_dtype(dtype_))
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device_ if device_ != "cpu" else None)
    elif offload is not None:
        apply_group_offload(pipe, offload, device_)
    else:
        pipe.to(device_)
    if source.folder is not None and device_ == "cpu":
        realign(pipe.text_encoder, pipe.transformer, pipe.vae)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=progress is False, leave=False)  # denoising bars: on unless False
    identity = identify(source, options, fingerprint=_fingerprint(source, pipe),
                        scheduler=scheduler_settings(type(pipe.scheduler), pipe.scheduler.config))
    return Loaded(pipe, identity, device_, default_accel)
