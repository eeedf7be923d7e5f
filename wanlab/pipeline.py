"""Loading a Wan 2.1 pipeline (built-in, local folder or hub id) and generating validated videos with it."""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .builtin import BUILTINS, REAL_MAX_SEQUENCE_LENGTH, REAL_NATIVE
from .errors import GenerationError, LoadError, ParamError
from .params import Params
from .record import environment, now_iso
from .video import WAN_FPS, Video

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt")
EMBED_CACHE_SIZE = 64


def _torch_dtype(dtype: Any, device: str):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ParamError("dtype", f"one of {', '.join(names)} or a torch.dtype", dtype)
    return names[dtype]


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?|mps)$", device):
        raise ParamError("device", "'cpu', 'cuda', 'cuda:N' or 'mps'", device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device {device!r} was asked for, but torch sees no CUDA GPU on this machine.")
    return device


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device`` (CUDA and MPS run kernels asynchronously), so a stage's
    time is its own; nothing to do on CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def tensors_fingerprint(pipe: Any) -> str:
    """sha256 over every weight of text encoder, transformer and VAE plus the tokenizer's vocabulary."""
    import torch

    digest = hashlib.sha256()
    for part in ("text_encoder", "transformer", "vae"):
        module = getattr(pipe, part)
        for key, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{part}.{key}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    vocab = sorted(pipe.tokenizer.get_vocab().items())
    digest.update(json.dumps(vocab).encode())
    return digest.hexdigest()


def files_fingerprint(folder: Path) -> str:
    """sha256 over the relative names and sha256s of a checkpoint folder's files (cached on disk)."""
    from .fsutil import sha256_file, write_json

    cache_file = Path(os.environ.get("WANLAB_CACHE", Path.home() / ".cache" / "wanlab")) / "file-hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    digest = hashlib.sha256()
    changed = False
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        real = file.resolve()
        stat = real.stat()
        key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = sha256_file(real)
            changed = True
        digest.update(f"{file.relative_to(folder).as_posix()}:{cache[key]};".encode())
    if changed:
        try:
            write_json(cache_file, cache)
        except OSError:
            pass
    return digest.hexdigest()


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


def _realign(pipe: Any) -> None:
    """:func:`realign` every weight-carrying component of a pipeline."""
    realign(pipe.text_encoder, pipe.transformer, pipe.vae)


def _cast(pipe: Any, torch_dtype: Any) -> None:
    """Cast text encoder and transformer to ``torch_dtype``, keeping the modules Wan needs in float32."""
    import torch

    pipe.text_encoder.to(dtype=torch_dtype)
    transformer = pipe.transformer
    keep = set(transformer._keep_in_fp32_modules or ())
    torch.nn.Module.to(transformer, dtype=torch_dtype)
    for name, module in transformer.named_modules():
        if name.split(".")[-1] in keep:
            torch.nn.Module.to(module, dtype=torch.float32)
    for name, param in transformer.named_parameters():
        if name.split(".")[-1] in keep:
            param.data = param.data.to(torch.float32)


def _quiet_loading() -> None:
    """Silence diffusers' and transformers' loading bars and notices (wanlab reports its own errors)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()


def _check_folder(folder: Path) -> None:
    index = folder / "model_index.json"
    if not index.is_file():
        raise LoadError(f"{folder} is not a diffusers pipeline folder: it has no model_index.json.")
    try:
        cls = json.loads(index.read_text()).get("_class_name", "")
    except ValueError as exc:
        raise LoadError(f"{folder}/model_index.json is not valid JSON: {exc}.") from exc
    if not str(cls).startswith("Wan"):
        raise LoadError(f"{folder} holds a {cls or 'unnamed'} pipeline, not a Wan text-to-video pipeline.")


def _from_pretrained(source: str, torch_dtype: Any, *, local: bool) -> Any:
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline

    try:
        vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", dtype=torch.float32)
        return WanPipeline.from_pretrained(source, vae=vae, dtype=torch_dtype)
    except (OSError, ValueError, EnvironmentError) as exc:
        if local:
            raise LoadError(f"could not load the Wan pipeline in {source}: {exc}".rstrip(".") + ".") from exc
        raise LoadError(
            f"could not load {source!r}: it is not in the local Hugging Face cache and the hub cannot be "
            "reached from here; download it where there is internet (huggingface-cli download "
            f"{source}) or pass a local folder."
        ) from exc


def load(model: str | os.PathLike[str] = "tiny", *, device: str | None = None, dtype: Any = None,
         cpu_offload: bool = False, vae_tiling: bool = False, max_sequence_length: int | None = None,
         progress: bool = True, accel: Any = None, group_offload: str | bool | None = None) -> "Pipeline":
    """Load a Wan 2.1 text-to-video pipeline.

    ``model`` is a built-in name (``"tiny"``), a local diffusers folder, or a hub id such as
    ``"Wan-AI/Wan2.1-T2V-14B-Diffusers"`` (read from the local Hugging Face cache; this
    workplace has no internet). ``dtype`` applies to transformer and text encoder (default
    bfloat16 on CUDA, float32 on CPU); the VAE stays float32, as Wan recommends.

    ``accel`` is the default acceleration setting of every call (a :class:`wanlab.accel.Accel`, a
    preset name such as ``"fbc"`` or a mapping; default exact); ``pipe.generate(..., accel=...)``
    overrides it per call. ``group_offload`` (``"block_level"``, ``"leaf_level"`` or True; CUDA only)
    uses diffusers' group offloading instead of moving the whole pipeline to the device.
    """
    from .accel import Accel, apply_group_offload, check_group_offload

    resolved_device = _resolve_device(device)
    default_accel = Accel.coerce(accel)
    torch_dtype = _torch_dtype(dtype, resolved_device)
    name = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(name, str) or not name:
        raise ParamError("model", "a built-in name, a folder or a hub id", model)
    for flag, value in (("cpu_offload", cpu_offload), ("vae_tiling", vae_tiling), ("progress", progress)):
        if not isinstance(value, bool):
            raise ParamError(flag, "True or False", value)
    if max_sequence_length is not None and (isinstance(max_sequence_length, bool)
                                            or not isinstance(max_sequence_length, int)
                                            or not 1 <= max_sequence_length <= 512):
        raise ParamError("max_sequence_length", "an integer in 1..512", max_sequence_length)
    offload_mode = check_group_offload(group_offload, resolved_device, cpu_offload)

    folder = Path(name).expanduser()
    if not progress:
        _quiet_loading()
    if name in BUILTINS:
        spec = BUILTINS[name]
        pipe = spec.build()
        source, native, msl = "builtin", dict(spec.native), spec.max_sequence_length
        fingerprint: str | None = tensors_fingerprint(pipe)
    elif folder.exists():
        if not folder.is_dir():
            raise LoadError(f"{folder} is a file; a model is a built-in name, a diffusers folder or a hub id.")
        _check_folder(folder)
        pipe = _from_pretrained(str(folder), torch_dtype, local=True)
        source, native, msl, fingerprint = "folder", dict(REAL_NATIVE), REAL_MAX_SEQUENCE_LENGTH, None
        name = str(folder.resolve())
    elif HUB_ID.match(name) and not name.startswith((".", "/", "~")):
        pipe = _from_pretrained(name, torch_dtype, local=False)
        source, native, msl, fingerprint = "hub", dict(REAL_NATIVE), REAL_MAX_SEQUENCE_LENGTH, None
    elif any(sep in name for sep in ("/", os.sep)) or name.startswith((".", "~")):
        raise LoadError(f"no such model folder: {folder}.")
    else:
        raise LoadError(
            f"unknown model {name!r}: use a built-in model ({', '.join(BUILTINS)}), a local diffusers "
            "folder, or a hub id such as 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'."
        )

    if source == "builtin":
        _cast(pipe, torch_dtype)
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=resolved_device if resolved_device != "cpu" else None)
    elif offload_mode is not None:
        apply_group_offload(pipe, offload_mode, resolved_device)
    else:
        pipe.to(resolved_device)
    if source != "builtin" and resolved_device == "cpu":
        _realign(pipe)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    settings = {
        "dtype": str(torch_dtype).replace("torch.", ""), "vae_dtype": "float32", "device": resolved_device,
        "cpu_offload": cpu_offload, "vae_tiling": vae_tiling,
    }
    if offload_mode is not None:
        settings["group_offload"] = offload_mode
    return Pipeline(pipe, model_id=name, source=source, native=native,
                    max_sequence_length=max_sequence_length or msl, settings=settings, fingerprint=fingerprint,
                    accel=default_accel)


class Pipeline:
    """A loaded Wan pipeline: validated requests in, :class:`Video` out.

    ``pipe.diffusers`` is the underlying ``diffusers.WanPipeline`` for anything wanlab does not wrap.
    """

    def __init__(self, pipe: Any, *, model_id: str, source: str, native: Mapping[str, Any],
                 max_sequence_length: int, settings: Mapping[str, Any], fingerprint: str | None = None,
                 accel: Any = None) -> None:
        from .accel import Accel
        from .lora import LoRASet

        self.diffusers = pipe
        self.model_id = model_id
        self.source = source
        self.native = dict(native)
        self.max_sequence_length = max_sequence_length
        self.settings = dict(settings)
        self.device = self.settings["device"]
        self._fingerprint = fingerprint
        self._scheduler_class = type(pipe.scheduler)
        self._scheduler_config = dict(pipe.scheduler.config)
        self._embeds: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.RLock()
        self.loras = LoRASet(pipe)
        #: The default acceleration setting (``wanlab.accel.Accel``); ``generate(accel=...)`` overrides it.
        self.accel = Accel.coerce(accel)
        # what store.key_for records for calls that use the default (the record's "accel")
        self.accel_settings = lambda: Accel.coerce(self.accel).to_dict()
        self._tasks: Any = None

    def __repr__(self) -> str:
        return f"Pipeline(model={self.model_id!r}, device={self.device!r}, dtype={self.settings['dtype']!r})"

    # --- identity ----------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """sha256 identifying the weights (tensors for built-ins, files for folders and hub ids)."""
        if self._fingerprint is None:
            folder = Path(self.model_id)
            if not folder.is_dir():
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(self.model_id, local_files_only=True))
            self._fingerprint = files_fingerprint(folder)
        return self._fingerprint

    @property
    def model_info(self) -> dict[str, str]:
        return {"id": self.model_id, "fingerprint": self.fingerprint, "source": self.source}

    def generation_settings(self) -> dict[str, Any]:
        """Every setting besides the request that changes frames: part of records and run keys."""
        return {
            "dtype": self.settings["dtype"], "vae_dtype": self.settings["vae_dtype"],
            "max_sequence_length": self.max_sequence_length,
            "scheduler": {"class": self._scheduler_class.__name__,
                          "config": {k: v for k, v in self._scheduler_config.items()
                                     if not k.startswith("_") and k != "flow_shift"}},
            "cpu_offload": self.settings["cpu_offload"], "vae_tiling": self.settings["vae_tiling"],
            **({"group_offload": self.settings["group_offload"]} if self.settings.get("group_offload") else {}),
        }

    # --- requests ----------------------------------------------------------------------------------
    def params(self, params: Params | None = None, **fields: Any) -> Params:
        """The validated request: ``params`` with ``fields`` applied, or the model's native settings
        with ``fields`` applied when no ``params`` is given."""
        if params is not None:
            if not isinstance(params, Params):
                raise ParamError("params", "a wanlab.Params", params)
            return params.replace(**fields) if fields else params
        unknown = set(fields) - set(Params.field_names())
        if unknown:
            name = sorted(unknown)[0]
            raise ParamError(name, f"one of {', '.join(Params.field_names())}", fields[name])
        if "prompt" not in fields:
            raise ParamError("prompt", "given", None)
        return Params(**{**self.native, **fields})

    def encode(self, text: str) -> Any:
        """Text-encoder embedding of ``text`` at this model's sequence length, cached per text.

        Bit-identical to letting diffusers encode the prompt inside its call.
        """
        import torch

        key = (text, self.max_sequence_length)
        with self._lock:
            if key in self._embeds:
                self._embeds.move_to_end(key)
                return self._embeds[key]
            with torch.inference_mode():
                embeds, _ = self.diffusers.encode_prompt(
                    prompt=text, do_classifier_free_guidance=False,
                    max_sequence_length=self.max_sequence_length, device=self.diffusers._execution_device,
                )
            self._embeds[key] = embeds
            while len(self._embeds) > EMBED_CACHE_SIZE:
                self._embeds.popitem(last=False)
            return embeds

    def generate(self, params: Params | None = None, *, progress: bool | None = None,
                 on_step: Callable[[int, int], None] | None = None, accel: Any = None, **fields: Any) -> Video:
        """Generate one video. Unspecified fields come from the model's native settings.

        A ``seed`` of -1 is drawn and recorded; the same model, request and environment give
        bit-identical frames. ``on_step(done, total)`` is called after each denoising step.
        ``accel`` (an :class:`wanlab.accel.Accel`, a preset name or a mapping) overrides the
        pipeline's default acceleration for this call only; it is recorded and part of the run key.
        """
        from .accel import Accel

        accel_ = Accel.coerce(self.accel if accel is None else accel)
        p = self.params(params, **fields).resolved()
        with self._lock:
            return self._generate(p, progress=progress, on_step=on_step, accel=accel_)

    def _generate(self, p: Params, *, progress: bool | None, on_step: Callable[[int, int], None] | None,
                  accel: Any = None) -> Video:
        import torch

        from .accel import Accel, applied

        accel_ = Accel.coerce(self.accel if accel is None else accel)

        pipe = self.diffusers
        t_start = time.perf_counter()
        loras = self.loras.apply(p.loras)
        pipe.scheduler = self._scheduler_class.from_config(self._scheduler_config, flow_shift=p.flow_shift)
        cfg = p.guidance_scale > 1.0
        t_encode = time.perf_counter()
        prompt_embeds = self.encode(p.prompt)
        negative_embeds = self.encode(p.negative_prompt) if cfg else None
        synchronize(self.device)
        t_accel = time.perf_counter()
        def callback(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            check_finite(kwargs["latents"], f"the latents after denoising step {i + 1} of {p.steps}")
            if on_step is not None:
                on_step(i + 1, p.steps)
            return {}
        saved_bar = dict(getattr(pipe, "_progress_bar_config", {}))
        if progress is not None:
            pipe.set_progress_bar_config(disable=not progress, leave=False)
        generator = torch.Generator("cpu").manual_seed(p.seed)
        # acceleration (MagCache calibration, attention backend, cache hook, compile, work counters) is
        # applied around the denoising loop only and always undone, so exact calls stay bit-identical
        try:
            with applied(self, accel_, p) as acc:
                synchronize(self.device)
                t_denoise = time.perf_counter()
                with torch.inference_mode():
                    latents = pipe(
                        prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=p.height,
                        width=p.width, num_frames=p.num_frames, num_inference_steps=p.steps,
                        guidance_scale=p.guidance_scale, generator=generator, output_type="latent",
                        max_sequence_length=self.max_sequence_length, callback_on_step_end=callback,
                    ).frames
                synchronize(self.device)  # GPU kernels run asynchronously: the loop ends when they do
                t_decode = time.perf_counter()
        finally:
            pipe._progress_bar_config = saved_bar
        with torch.inference_mode():
            frames = self.decode(latents)
        if not frames.any():
            raise GenerationError(f"every frame is black (all {frames.size} values are 0): the model produced "
                                  "nothing to look at; not stored")
        t_end = time.perf_counter()
        timings = {"loras": t_encode - t_start, "encode": t_accel - t_encode, "denoise": t_decode - t_denoise,
                   "decode": t_end - t_decode, "total": t_end - t_start}
        record = {
            "params": p.to_dict(), "model": self.model_info, "settings": self.generation_settings(),
            "accel": acc.record(), "loras": loras, "environment": environment(self.device),
            "created": now_iso(),
        }
        if acc.calibration_record() is not None:
            record["accel_calibration"] = acc.calibration_record()
        record["accel_stats"] = {**acc.stats(), "setup_s": t_denoise - t_accel}
        return Video(frames, fps=WAN_FPS, params=p, model=self.model_info, timings=timings, record=record,
                     latents=latents.float().cpu().numpy())

    def decode(self, latents: Any) -> np.ndarray:
        """VAE-decode final latents to uint8 frames (T, H, W, 3), as diffusers' own call does."""
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        pipe = self.diffusers
        vae = pipe.vae
        latents = latents.to(get_module_execution_device(vae), dtype=vae.dtype)
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        with torch.inference_mode():
            video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
            check_finite(video, "the decoded frames (VAE output)")
            video = pipe.video_processor.postprocess_video(video, output_type="np")
        return to_uint8(video[0])

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Save the base pipeline, without LoRA adapters (loadable with ``wanlab.load(folder)``)."""
        target = Path(folder)
        with self._lock:
            self.loras.unload()
            self.diffusers.save_pretrained(str(target))
        return target

    # --- tasks: the hosted API's asynchronous shape (wanlab.tasks) -----------------------------------
    def submit(self, params: Params | None = None, *, store: Any = None, **fields: Any) -> str:
        """Queue a generation for the background worker; returns its task id (a uuid4 string).

        The request is validated now (bad fields raise ParamError); the run goes into ``store``
        (default: the store given on first submit, else ``$WANLAB_STORE`` or ``runs/tasks``).
        """
        from .tasks import queue_for

        return queue_for(self, store).submit(params, store=store, **fields)

    def task_result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape (``task``, ``videos``, ``extra``)."""
        from .tasks import queue_for

        return queue_for(self).result(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished and return its result (TaskTimeout after ``timeout`` s)."""
        from .tasks import queue_for

        return queue_for(self).wait(task_id, timeout=timeout)

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task (it ends FAILED, reason "cancelled ..."); TaskError once it has started."""
        from .tasks import queue_for

        return queue_for(self).cancel(task_id)


def check_finite(tensor: Any, what: str) -> None:
    """Raise :class:`GenerationError` when ``tensor`` holds NaN or infinity: garbage is never a result.

    Checked after every denoising step (so the message names the first bad step) and after decoding.
    """
    import torch

    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise GenerationError(f"non-finite values (NaN or inf) in {what}: {bad} of {tensor.numel()} values; "
                              "a broken LoRA or an unstable setting can cause this; the run is not stored")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8, rounding to nearest (diffusers' ``numpy_to_pil`` rule)."""
    return np.ascontiguousarray((np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8))
