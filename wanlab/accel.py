"""Acceleration settings (cache hooks, torch.compile, attention backend) and the speed/fidelity study.

diffusers ships the mechanisms; wanlab makes each one a validated, recorded setting and measures
what it costs. An :class:`Accel` is part of a run's key and record, set per pipeline
(``wanlab.load(..., accel=...)``) or per call (``pipe.generate(..., accel=...)``):

- ``cache``: ``"none"`` (exact), ``"first_block"`` (FirstBlockCache), ``"mag"`` (MagCache),
  ``"taylorseer"`` (TaylorSeer), ``"pab"`` (pyramid attention broadcast) or ``"seacache"``
  (SeaCache), with ``cache_params`` validated per method (the names are diffusers' config fields;
  :data:`CACHE_PARAMS` lists each method's parameters and defaults). ``"faster"`` (FasterCache) is
  refused: it needs the conditional and unconditional branches batched into one transformer call,
  and diffusers' ``WanPipeline`` makes two calls, so its default config crashes (IndexError).
- ``compile``: ``"off"``, ``"transformer"`` (``torch.compile`` of the whole transformer) or
  ``"blocks"`` (regional compilation of the repeated transformer blocks).
- ``attention_backend``: ``None`` (diffusers' default) or a diffusers attention backend name.

Loading-time options that do not change per call live in :func:`wanlab.load`: ``cpu_offload``,
``group_offload`` (CUDA only) and ``vae_tiling``.

What wanlab adds on top of diffusers, each measured on the tiny model:

- TaylorSeer's default module patterns match no module of Wan's transformer (it silently does
  nothing); wanlab targets ``blocks.N.attn1``, ``blocks.N.attn2`` and ``blocks.N.ffn`` and refuses a
  configuration that would hook nothing. FasterCache is refused (above).
- MagCache needs magnitude ratios measured on the model: with ``mag_ratios="auto"`` (the default)
  wanlab calibrates them for the exact model, LoRAs, step count, guidance, size, frames, flow shift
  and settings, on a fixed calibration prompt and seed, and caches them in memory and on disk
  (``$WANLAB_CACHE/magcache/``, default ``~/.cache/wanlab``). The record says which ratios were used
  (``record["accel_calibration"]``, with their sha256).
- Pyramid attention broadcast in diffusers keeps one cache and one call counter per attention
  layer, shared by the two transformer calls per step that classifier-free guidance makes, so what
  is reused depends on the parity of the skip range: with 2, every unconditional call reuses the
  conditional call's attention of the same step; with 3, the branches reuse each other's older
  outputs. wanlab keeps one cache per branch (``per_branch=True``, the method as published:
  each branch reuses its own previous step). Measured (64x64x17, 30 steps, rel. L2 of latents,
  2 / 8 layers): skip 2 per-branch 1.0e-3 / 2.0e-3, shared 2.8e-4 / 1.1e-3; skip 3 per-branch
  1.9e-3 / 5.2e-3, shared 5.2e-3 / 1.4e-2. ``per_branch=False`` gives diffusers' behaviour.
- Setting an attention backend in diffusers changes the process-wide default and
  ``reset_attention_backend()`` does not restore it; wanlab restores both.
- Every hook is enabled just before the denoising loop and removed right after it (also on
  errors), so a later exact call gives output bit-identical to one made before.
- Work skipped is counted per call: transformer calls made, calls whose block stack was served
  from the cache, and the fraction of attention/feed-forward computations that ran
  (``record["accel_stats"]``; not counted under ``torch.compile``).

:func:`study` runs the exact baseline and each setting on the same requests and returns a
DataFrame of speedup and fidelity; :func:`summarize` aggregates it per setting and
:func:`plot_study` draws speed against PSNR with the Pareto front marked.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from .errors import ParamError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .params import Params
    from .pipeline import Pipeline

CACHE_METHODS = ("none", "first_block", "mag", "taylorseer", "pab", "seacache")
#: Methods diffusers has that wanlab refuses, with the reason.
REFUSED_METHODS = {
    "faster": (
        "FasterCache cannot run on Wan in diffusers: it expects the conditional and unconditional "
        "branches batched into one transformer call, but WanPipeline makes two calls per step, so its "
        "default config crashes (IndexError); use first_block, mag, taylorseer, pab or seacache"
    ),
}
COMPILE_MODES = ("off", "transformer", "blocks")
#: diffusers 0.42 attention backends (``AttentionBackendName``); the usable ones depend on the machine.
ATTENTION_BACKENDS = (
    "native", "_native_math", "_native_flash", "_native_efficient", "_native_cudnn", "_native_npu",
    "_native_xla", "flex", "flash", "flash_hub", "flash_varlen", "flash_varlen_hub", "flash_4_hub", "_flash_3",
    "_flash_varlen_3", "_flash_3_hub", "_flash_3_varlen_hub", "aiter_fa2_hub", "sage", "sage_hub",
    "sage_blackwell_hub", "sage_varlen", "_sage_qk_int8_pv_fp8_cuda", "_sage_qk_int8_pv_fp8_cuda_sm90",
    "_sage_qk_int8_pv_fp16_cuda", "_sage_qk_int8_pv_fp16_triton", "xformers",
)
#: Backends that run on CPU (measured: the others raise there, some only at the first attention call).
CPU_ATTENTION_BACKENDS = ("native", "_native_math", "_native_flash", "flex")
#: Wan's transformer submodules TaylorSeer may predict, per block.
TAYLORSEER_MODULES = ("attn1", "attn2", "ffn")
#: One "unit" of block work: the output projection of each attention and of the feed-forward layer.
WORK_UNITS = ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2")
#: The fixed request MagCache is calibrated on (with the request's size, frames, steps, guidance, shift).
CALIBRATION_PROMPT = "a red fox running through fresh snow in a quiet forest at dawn"
CALIBRATION_SEED = 0
CALIBRATION_VERSION = 1


# --------------------------------------------------------------------------------------------------
# validation of cache parameters
def _number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str, Any], float]:
    rule = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamError(name, rule, value)
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise ParamError(name, rule, value)
        return float(value)

    check.rule = rule  # type: ignore[attr-defined]
    return check


def _integer(lo: int, hi: int, *, optional: bool = False) -> Callable[[str, Any], int | None]:
    rule = f"an integer in {lo}..{hi}" + (" or None" if optional else "")

    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ParamError(name, rule, value)
        return int(value)

    return check


def _choice(*options: Any) -> Callable[[str, Any], Any]:
    rule = "one of " + ", ".join(repr(o) for o in options)

    def check(name: str, value: Any) -> Any:
        for option in options:
            if type(option) is type(value) and option == value:
                return option
        raise ParamError(name, rule, value)

    return check


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParamError(name, "True or False", value)
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise ParamError(name, "a non-empty string of at most 2000 characters", value)
    return value


def _timestep_range(name: str, value: Any) -> tuple[float, float]:
    rule = "two timesteps [low, high] with 0 <= low < high <= 1000"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ParamError(name, rule, value)
    lo, hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ParamError(name, rule, value)
    if not 0 <= lo < hi <= 1000:
        raise ParamError(name, rule, value)
    return (float(lo), float(hi))


def _mag_ratios(name: str, value: Any) -> str | tuple[float, ...]:
    rule = "'auto' (calibrated by wanlab) or a list of positive numbers (one per step)"
    if isinstance(value, str) and value == "auto":
        return "auto"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        raise ParamError(name, rule, value)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ParamError(name, rule, value if len(value) <= 8 else f"<list of {len(value)}, with {v!r}>")
        out.append(float(v))
    return tuple(out)


def _modules(name: str, value: Any) -> tuple[str, ...]:
    rule = f"a non-empty list of {', '.join(TAYLORSEER_MODULES)}"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        raise ParamError(name, rule, value)
    if any(v not in TAYLORSEER_MODULES for v in value) or len(set(value)) != len(value):
        raise ParamError(name, rule, value)
    return tuple(m for m in TAYLORSEER_MODULES if m in value)


def _skip_range(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 100:
        raise ParamError(name, "an integer in 2..100 (compute once every N calls) or None (never skip)", value)
    return int(value)


#: Per cache method: parameter -> (default, checker). Names follow diffusers' config classes
#: (``FirstBlockCacheConfig``, ``MagCacheConfig``, ...); wanlab's own are documented in :class:`Accel`.
CACHE_PARAMS: dict[str, dict[str, tuple[Any, Callable[[str, Any], Any]]]] = {
    "none": {},
    "first_block": {
        "threshold": (0.05, _number(0.0, 1.0, lo_open=True)),
    },
    "mag": {
        "threshold": (0.06, _number(0.0, 1.0, lo_open=True)),
        "max_skip_steps": (3, _integer(1, 100)),
        "retention_ratio": (0.2, _number(0.0, 1.0, hi_open=True)),
        "mag_ratios": ("auto", _mag_ratios),
        "calibration_prompt": (CALIBRATION_PROMPT, _text),
        "calibration_seed": (CALIBRATION_SEED, _integer(0, 9_999_999_999)),
    },
    "taylorseer": {
        "cache_interval": (5, _integer(1, 100)),
        "disable_cache_before_step": (3, _integer(0, 1000)),
        "disable_cache_after_step": (None, _integer(0, 1000, optional=True)),
        "max_order": (1, _integer(0, 4)),
        "taylor_factors_dtype": ("auto", _choice("auto", "float32", "bfloat16", "float16")),
        "modules": (TAYLORSEER_MODULES, _modules),
    },
    "pab": {
        "spatial_attention_block_skip_range": (2, _skip_range),
        "cross_attention_block_skip_range": (None, _skip_range),
        "spatial_attention_timestep_skip_range": ((100.0, 800.0), _timestep_range),
        "cross_attention_timestep_skip_range": ((100.0, 800.0), _timestep_range),
        "per_branch": (True, _flag),
    },
    "seacache": {
        "threshold": (0.25, _number(0.0, 10.0)),
        "residual_order": (1, _choice(0, 1)),
        "retention_steps": (1, _integer(0, 1000)),
        "cache_end_steps": (1, _integer(0, 1000)),
        "max_consecutive_cached": (2, _integer(0, 1000)),
        "power_exp": (3.0, _number(0.0, 100.0, lo_open=True)),
    },
}


def _plain(value: Any) -> Any:
    """JSON form of a validated parameter (tuples as lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# the setting
@dataclass(frozen=True)
class Accel:
    """One acceleration setting: validated on construction, part of a run's key and record.

    - ``cache``: one of :data:`CACHE_METHODS`; ``cache_params``: that method's parameters (missing
      ones take :data:`CACHE_PARAMS`' defaults; unknown or out-of-range ones raise
      :class:`~wanlab.ParamError`). wanlab's own parameters: MagCache ``mag_ratios="auto"``
      (calibrate, see the module docstring), ``calibration_prompt``, ``calibration_seed``;
      TaylorSeer ``modules`` (which of attn1, attn2, ffn to predict) and ``taylor_factors_dtype="auto"``
      (the transformer's dtype); PAB ``per_branch``.
    - ``compile``: one of :data:`COMPILE_MODES`.
    - ``attention_backend``: ``None`` or a diffusers backend name (:data:`ATTENTION_BACKENDS`;
      on CPU only :data:`CPU_ATTENTION_BACKENDS` work).
    - ``name``: a label for tables and plots (presets set it); not part of the identity.

    ``Accel.preset(name)`` gives the tuned settings in :data:`PRESETS`; ``Accel.coerce`` accepts an
    Accel, a preset name, a mapping (:meth:`from_dict`) or None (exact).
    """

    cache: str = "none"
    cache_params: Mapping[str, Any] = field(default_factory=dict)
    compile: str = "off"
    attention_backend: str | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if isinstance(self.cache, str) and self.cache in REFUSED_METHODS:
            raise ParamError("cache", f"a method that works with Wan ({REFUSED_METHODS[self.cache]})", self.cache)
        if not isinstance(self.cache, str) or self.cache not in CACHE_METHODS:
            raise ParamError("cache", f"one of {', '.join(CACHE_METHODS)}", self.cache)
        params = self.cache_params
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ParamError("cache_params", "a mapping of parameter names to values", params)
        spec = CACHE_PARAMS[self.cache]
        unknown = sorted((k for k in params if k not in spec), key=str)
        if unknown:
            allowed = ", ".join(spec) or "none"
            raise ParamError(f"cache_params.{unknown[0]}", f"a parameter of cache={self.cache!r} ({allowed})",
                             params[unknown[0]])
        resolved = {}
        for key, (default, check) in spec.items():
            resolved[key] = check(f"cache_params.{key}", params[key]) if key in params else default
        if self.cache == "pab" and resolved["spatial_attention_block_skip_range"] is None \
                and resolved["cross_attention_block_skip_range"] is None:
            raise ParamError("cache_params.spatial_attention_block_skip_range",
                             "set (or cross_attention_block_skip_range set): with both None PAB skips nothing", None)
        set_("cache_params", MappingProxyType(resolved))
        if not isinstance(self.compile, str) or self.compile not in COMPILE_MODES:
            raise ParamError("compile", f"one of {', '.join(COMPILE_MODES)}", self.compile)
        backend = self.attention_backend
        if backend is not None:
            if not isinstance(backend, str) or backend.lower() not in ATTENTION_BACKENDS:
                raise ParamError("attention_backend", "None or a diffusers attention backend "
                                 f"({', '.join(b for b in ATTENTION_BACKENDS if not b.startswith('_'))}, ...)", backend)
            set_("attention_backend", backend.lower())
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ParamError("name", "None or a non-empty string", self.name)

    # --- identity --------------------------------------------------------------------------------
    def __hash__(self) -> int:
        return hash(self.key())

    def __reduce__(self) -> tuple[Any, ...]:  # cache_params is a read-only mapping proxy
        return (_rebuild, (self.to_dict(), self.name))

    @property
    def is_default(self) -> bool:
        return self.cache == "none" and self.compile == "off" and self.attention_backend is None

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON form, what records and run keys hold: ``{"cache": ...}`` plus only the
        fields that differ from the default (all of the method's parameters, defaults filled in).
        The exact setting is ``{"cache": "none"}``."""
        out: dict[str, Any] = {"cache": self.cache}
        if self.cache != "none":
            out["cache_params"] = {k: _plain(v) for k, v in self.cache_params.items()}
        if self.compile != "off":
            out["compile"] = self.compile
        if self.attention_backend is not None:
            out["attention_backend"] = self.attention_backend
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Accel":
        """Inverse of :meth:`to_dict` (also accepts ``name``); unknown keys raise ParamError."""
        if not isinstance(data, Mapping):
            raise ParamError("accel", "a mapping with cache, cache_params, compile, attention_backend", data)
        known = ("cache", "cache_params", "compile", "attention_backend", "name")
        unknown = sorted((k for k in data if k not in known), key=str)
        if unknown:
            raise ParamError(unknown[0], f"an acceleration field ({', '.join(known)})", data[unknown[0]])
        return cls(**dict(data))

    def key(self) -> str:
        """16 hex digits identifying the setting (sha256 of :meth:`to_dict`), the same in every process."""
        from .record import stable_hash

        return stable_hash(self.to_dict())

    def replace(self, **changes: Any) -> "Accel":
        """A new validated Accel with ``changes`` applied (``cache_params`` are merged when the
        method stays the same)."""
        fields_ = {"cache": self.cache, "cache_params": dict(self.cache_params), "compile": self.compile,
                   "attention_backend": self.attention_backend, "name": None}
        unknown = sorted(set(changes) - set(fields_))
        if unknown:
            raise ParamError(unknown[0], f"an acceleration field ({', '.join(fields_)})", changes[unknown[0]])
        if "cache" in changes and changes["cache"] != self.cache:
            fields_["cache_params"] = {}
        if "cache_params" in changes and isinstance(changes["cache_params"], Mapping):
            changes = {**changes, "cache_params": {**fields_["cache_params"], **changes["cache_params"]}}
        fields_.update(changes)
        return Accel(**fields_)

    def changed_params(self) -> dict[str, Any]:
        """The cache parameters that differ from the method's defaults (JSON form)."""
        defaults = {k: d for k, (d, _) in CACHE_PARAMS[self.cache].items()}
        return {k: _plain(v) for k, v in self.cache_params.items() if v != defaults[k]}

    @property
    def label(self) -> str:
        """``name`` when set, else the name of the preset it equals (``fbc``), else a short description
        such as ``first_block(threshold=0.3)+compile``; the same for a setting read back from a record."""
        if self.name:
            return self.name
        for preset, spec in PRESETS.items():
            if Accel(**spec) == self:
                return preset
        if self.cache == "none":
            text = "exact"
        else:
            changed = [f"{k}={_short(v)}" for k, v in self.changed_params().items()]
            text = f"{self.cache}({', '.join(changed)})" if changed else self.cache
        if self.compile != "off":
            text += f"+compile:{self.compile}"
        if self.attention_backend:
            text += f"+attn:{self.attention_backend}"
        return text

    def __repr__(self) -> str:
        parts = [f"cache={self.cache!r}"]
        if self.cache != "none":
            parts.append(f"cache_params={dict(self.cache_params)!r}")
        if self.compile != "off":
            parts.append(f"compile={self.compile!r}")
        if self.attention_backend is not None:
            parts.append(f"attention_backend={self.attention_backend!r}")
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"Accel({', '.join(parts)})"

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> "Accel":
        """A named setting from :data:`PRESETS` (``"exact"``, ``"fbc"``, ``"mag"``, ...)."""
        if not isinstance(name, str) or name not in PRESETS:
            raise ParamError("preset", f"one of {', '.join(PRESETS)}", name)
        return cls(**PRESETS[name], name=name)

    @classmethod
    def coerce(cls, value: Any, where: str = "accel") -> "Accel":
        """An Accel from an Accel, a preset name, a mapping (:meth:`from_dict`) or None (exact)."""
        if value is None:
            return cls()
        if isinstance(value, Accel):
            return value
        if isinstance(value, str):
            if value not in PRESETS:
                raise ParamError(where, f"an Accel, a mapping or a preset name ({', '.join(PRESETS)})", value)
            return cls.preset(value)
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise ParamError(where, f"an Accel, a mapping or a preset name ({', '.join(PRESETS)})", value)


def _rebuild(data: Mapping[str, Any], name: str | None) -> Accel:
    return Accel(**dict(data), name=name)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) > 3:
        return f"<{len(value)} values>"
    if isinstance(value, tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


#: Named settings. Thresholds were chosen on the tiny model (2 and 8 layers, 30 steps) to skip
#: work while keeping latents within a few percent of exact (see benchmarks/bench_accel.py);
#: "-fast" variants skip more. TaylorSeer targets Wan's blocks (its default patterns match nothing).
PRESETS: dict[str, dict[str, Any]] = {
    "exact": {},
    "fbc": {"cache": "first_block", "cache_params": {"threshold": 0.1}},
    "fbc-fast": {"cache": "first_block", "cache_params": {"threshold": 0.2}},
    "mag": {"cache": "mag", "cache_params": {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2}},
    "mag-fast": {"cache": "mag", "cache_params": {"threshold": 0.12, "max_skip_steps": 4, "retention_ratio": 0.2}},
    "taylorseer": {"cache": "taylorseer", "cache_params": {"cache_interval": 3, "disable_cache_before_step": 3,
                                                           "max_order": 1}},
    "taylorseer-fast": {"cache": "taylorseer", "cache_params": {"cache_interval": 5, "disable_cache_before_step": 3,
                                                                "max_order": 1}},
    "pab": {"cache": "pab", "cache_params": {"spatial_attention_block_skip_range": 2}},
    "seacache": {"cache": "seacache", "cache_params": {"threshold": 0.25}},
    "compile": {"compile": "blocks"},
}


# --------------------------------------------------------------------------------------------------
# group offload (a load-time option)
GROUP_OFFLOAD_MODES = ("block_level", "leaf_level")


def check_group_offload(value: Any, device: str, cpu_offload: bool) -> str | None:
    """Validate ``load(group_offload=...)``: None, ``"block_level"`` or ``"leaf_level"``, CUDA only."""
    if value is None or value is False:
        return None
    if value is True:
        value = "block_level"
    if not isinstance(value, str) or value not in GROUP_OFFLOAD_MODES:
        raise ParamError("group_offload", f"None, True or one of {', '.join(GROUP_OFFLOAD_MODES)}", value)
    if not device.startswith("cuda"):
        raise ParamError("group_offload", "used with a CUDA device: it streams weight groups from CPU memory to "
                         f"the GPU as they are needed; on {device!r} every weight already lives in that memory, "
                         "so there is nothing to offload", value)
    if cpu_offload:
        raise ParamError("group_offload", "used without cpu_offload (they are two ways to do the same thing)", value)
    return value


def apply_group_offload(pipe: Any, mode: str, device: str) -> None:
    """diffusers' pipeline-level group offloading (every component) onto ``device`` (CUDA), with a
    CUDA stream overlapping transfers and compute. Not measured by wanlab: this workplace has no GPU."""
    import torch

    pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                              offload_type=mode, num_blocks_per_group=1 if mode == "block_level" else None,
                              use_stream=True)


# --------------------------------------------------------------------------------------------------
# MagCache calibration
_CALIBRATIONS: dict[str, dict[str, Any]] = {}
_CALIBRATION_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where calibrations are kept on disk: ``$WANLAB_CACHE/magcache`` (default ``~/.cache/wanlab``)."""
    return Path(os.environ.get("WANLAB_CACHE", Path.home() / ".cache" / "wanlab")) / "magcache"


def clear_calibrations(disk: bool = False) -> None:
    """Forget calibrated MagCache ratios held in memory (and on disk when ``disk=True``)."""
    with _CALIBRATION_LOCK:
        _CALIBRATIONS.clear()
    if disk and cache_dir().is_dir():
        for file in cache_dir().glob("*.json"):
            file.unlink(missing_ok=True)


def calibration_inputs(pipe: "Pipeline", params: "Params", accel: Accel) -> dict[str, Any]:
    """Everything MagCache's calibrated ratios depend on: model weights (and LoRAs), the request's
    shape and sampler settings, the calibration prompt and seed, device, thread count (it changes
    results in the last bits) and library versions."""
    import torch

    from .record import package_version

    cp = accel.cache_params
    return {
        "v": CALIBRATION_VERSION, "model": pipe.fingerprint, "loras": pipe.loras.describe(params.loras),
        "steps": params.steps, "guidance_scale": params.guidance_scale, "flow_shift": params.flow_shift,
        "width": params.width, "height": params.height, "num_frames": params.num_frames,
        "settings": pipe.generation_settings(), "prompt": cp["calibration_prompt"], "negative_prompt": "",
        "seed": cp["calibration_seed"], "device": pipe.device, "torch_threads": torch.get_num_threads(),
        "versions": {"torch": package_version("torch"), "diffusers": package_version("diffusers")},
    }


def calibration_key(pipe: "Pipeline", params: "Params", accel: Accel) -> str:
    from .record import stable_hash

    return stable_hash(calibration_inputs(pipe, params, accel), 24)


def _ratios_sha256(ratios: Sequence[float]) -> str:
    return hashlib.sha256(json.dumps([float(r) for r in ratios]).encode()).hexdigest()


def calibrate(pipe: "Pipeline", params: "Params", accel: Accel | str | Mapping[str, Any] = "mag", *,
              force: bool = False) -> dict[str, Any]:
    """MagCache magnitude ratios for ``params``' step count and settings on ``pipe``'s model.

    Returns ``{"key", "ratios", "cond", "uncond", "sha256", "source", "prompt", "seed", "seconds"}``:
    ``ratios`` (one per step) is what MagCache uses, the mean of the conditional and unconditional
    branches' ratios (``cond``/``uncond``; ``uncond`` is None without guidance), measured as diffusers'
    ``MagCacheConfig(calibrate=True)`` does: mean over tokens of
    ``|residual(step)| / |residual(step - 1)|``, where the residual is the block stack's output minus
    its input. ``source`` says whether the ratios were calibrated now or came from the memory or
    disk cache. The calibration run is an exact generation of the calibration prompt and seed.
    """
    accel = Accel.coerce(accel)
    if accel.cache != "mag":
        raise ParamError("accel.cache", "'mag' to calibrate MagCache", accel.cache)
    key = calibration_key(pipe, params, accel)
    with _CALIBRATION_LOCK:
        if not force and key in _CALIBRATIONS:
            return {**_CALIBRATIONS[key], "source": "memory"}
    file = cache_dir() / f"{key}.json"
    if not force and file.is_file():
        try:
            data = json.loads(file.read_text())
            if data.get("key") == key and len(data.get("ratios") or []) == params.steps:
                with _CALIBRATION_LOCK:
                    _CALIBRATIONS[key] = data
                return {**data, "source": "disk"}
        except (OSError, ValueError):
            pass
    start = time.perf_counter()
    cond, uncond = _measure_ratios(pipe, params, accel)
    ratios = cond if uncond is None else [(a + b) / 2.0 for a, b in zip(cond, uncond)]
    data = {"key": key, "ratios": ratios, "cond": cond, "uncond": uncond, "sha256": _ratios_sha256(ratios),
            "prompt": accel.cache_params["calibration_prompt"], "seed": accel.cache_params["calibration_seed"],
            "steps": params.steps, "seconds": time.perf_counter() - start,
            "inputs": calibration_inputs(pipe, params, accel)}
    with _CALIBRATION_LOCK:
        _CALIBRATIONS[key] = data
    try:
        from .fsutil import write_json

        write_json(file, data)
    except OSError:
        pass
    return {**data, "source": "calibrated"}


def _measure_ratios(pipe: "Pipeline", params: "Params", accel: Accel) -> tuple[list[float], list[float] | None]:
    """One exact run of the calibration request, recording the block stack's residual ratios per branch."""
    import torch

    dpipe = pipe.diffusers
    transformer = dpipe.transformer
    blocks = transformer.blocks
    cfg = params.guidance_scale > 1.0
    branches = ("cond", "uncond") if cfg else ("cond",)  # WanPipeline's call order within a step
    seen: dict[str, Any] = {"calls": 0, "branch": "cond", "input": None}
    previous: dict[str, Any] = {}
    ratios: dict[str, list[float]] = {b: [] for b in branches}

    def on_call(_module: Any, _args: Any) -> None:
        seen["branch"] = branches[seen["calls"] % len(branches)]
        seen["calls"] += 1

    def on_head(_module: Any, args: tuple, kwargs: dict) -> None:
        seen["input"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def on_tail(_module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        residual = out - seen["input"]
        branch = seen["branch"]
        prev = previous.get(branch)
        if prev is None:
            ratio = 1.0
        else:  # diffusers' MagCacheBlockHook._perform_calibration_step, verbatim
            curr_norm = torch.linalg.norm(residual.float(), dim=-1)
            prev_norm = torch.linalg.norm(prev.float(), dim=-1)
            ratio = (curr_norm / (prev_norm + 1e-8)).mean().item()
        ratios[branch].append(ratio)
        previous[branch] = residual

    cp = accel.cache_params
    with pipe._lock:  # the transformer and scheduler are shared with generate (an RLock: re-entered from it)
        pipe.loras.apply(params.loras)  # the request's adapters (already active when called from generate)
        embeds = pipe.encode(cp["calibration_prompt"])
        negative = pipe.encode("") if cfg else None
        saved_scheduler = dpipe.scheduler
        dpipe.scheduler = pipe._scheduler_class.from_config(pipe._scheduler_config, flow_shift=params.flow_shift)
        handles = [transformer.register_forward_pre_hook(on_call),
                   blocks[0].register_forward_pre_hook(on_head, with_kwargs=True),
                   blocks[-1].register_forward_hook(on_tail)]
        try:
            with torch.inference_mode():
                dpipe(prompt_embeds=embeds, negative_prompt_embeds=negative, height=params.height,
                      width=params.width, num_frames=params.num_frames, num_inference_steps=params.steps,
                      guidance_scale=params.guidance_scale,
                      generator=torch.Generator("cpu").manual_seed(cp["calibration_seed"]), output_type="latent",
                      max_sequence_length=pipe.max_sequence_length)
        finally:
            for handle in handles:
                handle.remove()
            dpipe.scheduler = saved_scheduler
    return ratios["cond"], (ratios["uncond"] if cfg else None)


# --------------------------------------------------------------------------------------------------
# applying a setting around one denoising call
class CallCounter:
    """Counts, during one generation, the transformer calls and the attention/feed-forward
    computations that actually ran (output projections of attn1, attn2 and ffn in every block)."""

    def __init__(self, transformer: Any) -> None:
        self.blocks = len(transformer.blocks)
        self.per_call: list[list[int]] = []  # per transformer call: units run in each block
        self._handles = [transformer.register_forward_pre_hook(self._on_call)]
        for index, block in enumerate(transformer.blocks):
            for unit in WORK_UNITS:
                try:
                    module = block.get_submodule(unit)
                except AttributeError:
                    continue
                self._handles.append(module.register_forward_hook(self._unit_hook(index)))

    def _on_call(self, _module: Any, _args: Any) -> None:
        self.per_call.append([0] * self.blocks)

    def _unit_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, _output: Any) -> None:
            if self.per_call:
                self.per_call[-1][index] += 1
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def stats(self) -> dict[str, Any]:
        """``calls`` (transformer calls made: steps x branches), ``calls_full`` (every block computed),
        ``calls_skipped`` (the block stack served from the cache: nothing after the first block ran),
        ``calls_partial`` (the rest) and ``block_work`` (fraction of attention/FFN computations run)."""
        per_unit = len(WORK_UNITS)
        full = skipped = units = 0
        for counts in self.per_call:
            units += sum(counts)
            if all(c >= per_unit for c in counts):
                full += 1
            elif sum(counts[1:] if self.blocks > 1 else counts) == 0:
                skipped += 1
        calls = len(self.per_call)
        expected = calls * self.blocks * per_unit
        return {"calls": calls, "calls_full": full, "calls_skipped": skipped,
                "calls_partial": calls - full - skipped,
                "block_work": (units / expected) if expected else None}


class Applied:
    """What :func:`applied` did for one call: the setting, MagCache's calibration and the counts."""

    def __init__(self, accel: Accel) -> None:
        self.accel = accel
        self.calibration: dict[str, Any] | None = None
        self.counter: CallCounter | None = None
        self.hooked: list[str] = []

    def record(self) -> dict[str, Any]:
        """The record's ``"accel"`` entry: the setting's canonical form (part of the run key)."""
        return self.accel.to_dict()

    def calibration_record(self) -> dict[str, Any] | None:
        """The record's ``"accel_calibration"`` entry for MagCache with calibrated ratios."""
        c = self.calibration
        if c is None:
            return None
        return {"key": c["key"], "sha256": c["sha256"], "ratios": list(c["ratios"]), "source": c["source"],
                "prompt": c["prompt"], "seed": c["seed"]}

    def stats(self) -> dict[str, Any]:
        """The record's ``"accel_stats"``: :meth:`CallCounter.stats` (None values under compile)."""
        if self.counter is None:
            return {"calls": None, "calls_full": None, "calls_skipped": None, "calls_partial": None,
                    "block_work": None}
        return self.counter.stats()


@contextlib.contextmanager
def applied(pipe: "Pipeline", accel: Accel | str | Mapping[str, Any] | None, params: "Params") -> Iterator[Applied]:
    """Apply ``accel`` to ``pipe``'s transformer for one denoising call of ``params``, and undo it.

    Order: MagCache calibration (an exact run, when needed), attention backend, cache hook,
    compilation, work counters; undone in reverse order on exit, also when the call raises, so the
    next exact call is bit-identical to one made before. ``pipe.generate`` uses this.
    """
    accel = Accel.coerce(accel)
    transformer = pipe.diffusers.transformer
    state = Applied(accel)
    if getattr(transformer, "is_cache_enabled", False):
        raise RuntimeError(
            f"a cache hook ({type(transformer._cache_config).__name__}) is already enabled on the transformer, "
            "outside wanlab: call pipe.diffusers.transformer.disable_cache() and pass the setting as accel= instead"
        )
    with contextlib.ExitStack() as stack:
        if accel.cache == "mag" and accel.cache_params["mag_ratios"] == "auto":
            state.calibration = calibrate(pipe, params, accel)
        if accel.attention_backend is not None:
            stack.enter_context(_attention_backend(transformer, accel.attention_backend, pipe.device))
        if accel.cache != "none":
            config = _cache_config(pipe, accel, params, state)
            stack.callback(_restore_modules, transformer, _module_state(transformer))
            _enable_cache(transformer, config)
            stack.callback(transformer.disable_cache)
            if accel.cache == "pab" and accel.cache_params["per_branch"]:
                _pab_per_branch(transformer)
            state.hooked = _hooked_modules(transformer)
            if not state.hooked:
                raise ParamError("cache", f"a method that hooks some module of this transformer "
                                 f"({type(transformer).__name__}); {accel.cache} hooked none", accel.cache)
        if accel.compile != "off":
            stack.enter_context(_compiled(transformer, accel.compile))
        else:
            state.counter = CallCounter(transformer)
            stack.callback(state.counter.remove)
        yield state


def _module_state(transformer: Any) -> dict[int, tuple[bool, bool]]:
    """Per submodule: whether it has an instance ``forward`` and a diffusers hook registry."""
    return {id(m): ("forward" in m.__dict__, "_diffusers_hook" in m.__dict__) for m in transformer.modules()}


def _restore_modules(transformer: Any, before: dict[int, tuple[bool, bool]]) -> None:
    """After ``disable_cache``: drop the instance ``forward`` and the empty hook registries that
    enabling left on the blocks, so every module is as it was (``torch.compile`` guards on them:
    without this, each cached call makes the next compiled call recompile)."""
    for module in transformer.modules():
        had_forward, had_registry = before.get(id(module), (False, False))
        registry = module.__dict__.get("_diffusers_hook")
        if registry is not None and registry.hooks:
            continue  # hooks that are not ours
        if not had_forward and "forward" in module.__dict__:
            del module.__dict__["forward"]
        if not had_registry and registry is not None and module is not transformer:
            del module.__dict__["_diffusers_hook"]
    root = transformer.__dict__.get("_diffusers_hook")
    if root is not None:
        root.invalidate_child_registries_cache()


def _enable_cache(transformer: Any, config: Any) -> None:
    import logging

    from diffusers.utils import logging as dlog

    logger = dlog.get_logger("diffusers.hooks")
    level = logger.level
    logger.setLevel(logging.ERROR)  # MagCache logs each block it hooks at INFO
    try:
        transformer.enable_cache(config)
    finally:
        logger.setLevel(level)


def _cache_config(pipe: "Pipeline", accel: Accel, params: "Params", state: Applied) -> Any:
    import torch
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        SeaCacheConfig,
        TaylorSeerCacheConfig,
    )

    cp = dict(accel.cache_params)
    if accel.cache == "first_block":
        return FirstBlockCacheConfig(threshold=cp["threshold"])
    if accel.cache == "mag":
        ratios = state.calibration["ratios"] if state.calibration is not None else list(cp["mag_ratios"])
        return MagCacheConfig(threshold=cp["threshold"], max_skip_steps=cp["max_skip_steps"],
                              retention_ratio=cp["retention_ratio"], num_inference_steps=params.steps,
                              mag_ratios=torch.tensor(ratios, dtype=torch.float32))
    if accel.cache == "taylorseer":
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        dtype = cp["taylor_factors_dtype"]
        factors = pipe.diffusers.transformer.dtype if dtype == "auto" else dtypes[dtype]
        pattern = r"blocks\.\d+\.(" + "|".join(cp["modules"]) + ")"
        return TaylorSeerCacheConfig(cache_interval=cp["cache_interval"],
                                     disable_cache_before_step=cp["disable_cache_before_step"],
                                     disable_cache_after_step=cp["disable_cache_after_step"],
                                     max_order=cp["max_order"], taylor_factors_dtype=factors,
                                     cache_identifiers=[pattern])
    if accel.cache == "pab":
        dpipe = pipe.diffusers
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=cp["spatial_attention_block_skip_range"],
            cross_attention_block_skip_range=cp["cross_attention_block_skip_range"],
            spatial_attention_timestep_skip_range=tuple(cp["spatial_attention_timestep_skip_range"]),
            cross_attention_timestep_skip_range=tuple(cp["cross_attention_timestep_skip_range"]),
            current_timestep_callback=lambda: dpipe.current_timestep,
        )
    if accel.cache == "seacache":
        return SeaCacheConfig(threshold=cp["threshold"], residual_order=cp["residual_order"],
                              retention_steps=cp["retention_steps"], cache_end_steps=cp["cache_end_steps"],
                              max_consecutive_cached=cp["max_consecutive_cached"], power_exp=cp["power_exp"])
    raise AssertionError(accel.cache)  # pragma: no cover (validated in Accel)


def _hooked_modules(transformer: Any) -> list[str]:
    """Names of the transformer's submodules that carry a cache hook now."""
    names = []
    for name, module in transformer.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.hooks:
            names.append(name or "<root>")
    return names


def _pab_per_branch(transformer: Any) -> None:
    """Give each PAB hook one state per cache context (cond/uncond) instead of one shared state."""
    from diffusers.hooks.hooks import StateManager
    from diffusers.hooks.pyramid_attention_broadcast import (
        _PYRAMID_ATTENTION_BROADCAST_HOOK,
        PyramidAttentionBroadcastHook,
        PyramidAttentionBroadcastState,
    )

    for _, module in transformer.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(_PYRAMID_ATTENTION_BROADCAST_HOOK) if registry is not None else None
        cls = _branch_pab_hook()
        if hook is None or isinstance(hook, cls):
            continue
        assert isinstance(hook, PyramidAttentionBroadcastHook)
        hook.__dict__.pop("state", None)
        hook.state_manager = StateManager(PyramidAttentionBroadcastState)
        hook.__class__ = cls
    registry = getattr(transformer, "_diffusers_hook", None)
    if registry is not None:
        registry.invalidate_child_registries_cache()


def _branch_pab_class() -> type:
    from diffusers.hooks.hooks import CacheContext
    from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

    class BranchPABHook(PyramidAttentionBroadcastHook):
        """PAB with its cache and iteration count kept per cache context (cond / uncond)."""

        @property
        def state(self):  # type: ignore[override]
            manager = self.state_manager
            if manager._context is None:
                manager.set_context(CacheContext(name="inference"))
            return manager.get_state()

        @state.setter
        def state(self, value: Any) -> None:  # initialize_hook assigns one; the manager owns them
            pass

        def reset_state(self, module: Any) -> Any:
            self.state_manager.reset()
            return module

    return BranchPABHook


_BRANCH_PAB: list[type] = []


def _branch_pab_hook() -> type:
    if not _BRANCH_PAB:
        _BRANCH_PAB.append(_branch_pab_class())
    return _BRANCH_PAB[0]


@contextlib.contextmanager
def _attention_backend(transformer: Any, backend: str, device: str) -> Iterator[None]:
    """Set the attention backend of every attention processor and restore it, and diffusers'
    process-wide active backend (which ``reset_attention_backend`` leaves changed), afterwards."""
    import logging

    from diffusers.models import attention_dispatch
    from diffusers.utils import logging as dlog

    if not device.startswith("cuda") and backend not in CPU_ATTENTION_BACKENDS:
        raise ParamError("attention_backend", f"one that runs on {device} ({', '.join(CPU_ATTENTION_BACKENDS)})",
                         backend)
    registry = attention_dispatch._AttentionBackendRegistry
    active = registry._active_backend
    processors = []
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processors.append((processor, processor._attention_backend))
    logger = dlog.get_logger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "Attention backends are an experimental feature" on every call
    try:
        try:
            transformer.set_attention_backend(backend)
        except (RuntimeError, ValueError, ImportError) as exc:
            raise ParamError("attention_backend", f"a backend usable here ({exc})", backend) from None
        yield
    finally:
        logger.setLevel(level)
        for processor, value in processors:
            processor._attention_backend = value
        registry.set_active_backend(active)


@contextlib.contextmanager
def _compiled(transformer: Any, mode: str) -> Iterator[None]:
    """Compile the transformer (or its repeated blocks) with ``torch.compile``, once per module;
    the compiled callables are kept and reused, and the plain ones restored after the call."""
    modules = [transformer] if mode == "transformer" else [
        m for m in transformer.modules() if type(m).__name__ in (getattr(transformer, "_repeated_blocks", None) or ())]
    if not modules:
        raise ParamError("compile", f"'transformer': {type(transformer).__name__} declares no repeated blocks", mode)
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


# --------------------------------------------------------------------------------------------------
# the study
def _settings(settings: Any) -> list[tuple[str, Accel]]:
    if isinstance(settings, (str, Accel)) or (isinstance(settings, Mapping) and "cache" in settings):
        settings = [settings]
    if isinstance(settings, Mapping):
        items = [(str(label), Accel.coerce(value, f"settings[{label!r}]")) for label, value in settings.items()]
    elif isinstance(settings, (list, tuple)):
        items = []
        for i, value in enumerate(settings):
            accel = Accel.coerce(value, f"settings[{i}]")
            items.append((accel.label, accel))
    else:
        raise ParamError("settings", "a list of Accel / preset names / mappings, or a mapping label -> setting",
                         settings)
    out: list[tuple[str, Accel]] = [("exact", Accel())]
    for label, accel in items:
        if accel.is_default:
            continue  # the exact baseline is always run
        if any(label == lo for lo, _ in out):
            raise ParamError("settings", "settings with distinct labels (give a mapping label -> setting)", label)
        out.append((label, accel))
    return out


def _points(pipe: "Pipeline", points: Any) -> list["Params"]:
    from .params import Params

    if hasattr(points, "points") and callable(points.points) and not isinstance(points, Mapping):
        items = list(dict.fromkeys(points.points(pipe)))  # a wanlab.Sweep (its requests, once each)
    elif isinstance(points, (Params, Mapping)):
        items = [points]
    elif isinstance(points, (list, tuple)) and points:
        items = list(points)
    else:
        raise ParamError("points", "a Params, a mapping of Params fields, a list of those, or a Sweep", points)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Params):
            p = item
        elif isinstance(item, Mapping):
            p = pipe.params(**dict(item))
        else:
            raise ParamError(f"points[{i}]", "a Params or a mapping of Params fields", item)
        out.append(p.resolved())  # one seed per point, shared by the baseline and every setting
    return out


def rel_l2(a: Any, b: Any) -> float:
    """``|a - b| / |b|`` over all elements (float64): relative L2 error of ``a`` against reference ``b``."""
    import numpy as np

    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"rel_l2: shapes differ: {a64.shape} vs {b64.shape}")
    norm = float(np.linalg.norm(b64))
    return float(np.linalg.norm(a64 - b64) / norm) if norm else float(np.linalg.norm(a64 - b64))


def study(pipe: "Pipeline", points: Any, settings: Any, *, repeats: int = 1, warmup: str | bool = "auto",
          timing: str = "median", progress: bool = False) -> "pd.DataFrame":
    """Run the exact baseline and each acceleration setting on the same requests; one row per
    (point, setting).

    - ``points``: a :class:`~wanlab.Params`, a mapping of fields (the model's native settings fill
      the rest), a list of those, or a :class:`~wanlab.Sweep` (its points). Seeds of -1 are drawn
      once per point, so the baseline and every setting see the same noise.
    - ``settings``: a list of :class:`Accel` / preset names / mappings, or a mapping label -> setting.
      The exact baseline (label ``"exact"``) is always run first and need not be listed.
    - ``repeats``: runs per (point, setting), interleaved (the order of the settings alternates).
      Outputs must repeat bit for bit (checked: ``repeatable``).
    - ``timing``: ``"median"`` or ``"min"`` of the repeats' denoising times (``"min"``, best of N, is
      the steadier one on a loaded machine).
    - ``warmup``: ``"auto"`` runs the exact baseline once untimed before timing anything, and each
      compiled setting once per point (compilation is not what a study measures); True warms every
      setting; False none.

    Columns: ``point``, the request fields, ``setting`` (label), ``cache``, ``compile``,
    ``attention_backend``, ``accel_key``, ``denoise_s`` (denoising loop only; MagCache calibration
    and hook setup are in ``setup_s``), ``speedup`` (exact ``denoise_s`` / this ``denoise_s`` on the
    same point), ``psnr`` (dB, from the mean squared error over all frames against the exact frames,
    i.e. :func:`pooled_psnr` of :func:`wanlab.metrics.psnr`'s per-frame values: finite unless every
    frame is identical), ``psnr_frame_mean`` (:func:`wanlab.metrics.psnr`'s ``mean``, of per-frame dB
    values: ``inf`` as soon as one frame is identical), ``ssim`` (:func:`wanlab.metrics.ssim`'s
    ``mean``), ``rel_l2`` (relative L2 error of the final latents), ``max_abs`` (latents),
    ``identical`` (frames bit-identical to exact), ``calls``, ``calls_full``, ``calls_skipped``,
    ``calls_partial``, ``block_work`` (see :class:`CallCounter`; NaN under compile),
    ``repeatable``, ``digest``. ``df.attrs`` holds the machine (threads, device) and the settings.
    """
    import numpy as np
    import pandas as pd

    from .record import environment

    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        raise ParamError("repeats", "an integer in 1..100", repeats)
    if warmup not in ("auto", True, False):
        raise ParamError("warmup", "'auto', True or False", warmup)
    if timing not in ("median", "min"):
        raise ParamError("timing", "'median' or 'min'", timing)
    pick = np.median if timing == "median" else np.min
    plan = _settings(settings)
    todo = _points(pipe, points)
    total = len(todo) * len(plan) * repeats
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="accel study", unit="run", dynamic_ncols=True)

    def run(p: "Params", accel: Accel):
        return pipe.generate(p, accel=accel, progress=False)

    rows = []
    try:
        if warmup in ("auto", True) and todo:
            run(todo[0], plan[0][1])
        for index, p in enumerate(todo):
            if warmup is True or warmup == "auto":
                for _label, accel in plan[1:]:
                    if warmup is True or accel.compile != "off":
                        run(p, accel)
            results: dict[str, list[Any]] = {label: [] for label, _ in plan}
            for r in range(repeats):
                order = plan if r % 2 == 0 else [plan[0], *reversed(plan[1:])]
                for label, accel in order:
                    results[label].append(run(p, accel))
                    if bar is not None:
                        bar.update(1)
            exact_runs = results["exact"]
            exact = exact_runs[0]
            exact_time = float(pick([v.timings["denoise"] for v in exact_runs]))
            for label, accel in plan:
                videos = results[label]
                video = videos[0]
                row = {"point": index, **{k: v for k, v in p.to_dict().items() if k != "loras"},
                       "loras": len(p.loras),
                       **study_row(label, accel, denoise=float(pick([v.timings["denoise"] for v in videos])),
                                   setup=float(np.median([(v.record.get("accel_stats") or {}).get("setup_s", 0.0)
                                                          for v in videos])),
                                   exact_denoise=exact_time, stats=video.record.get("accel_stats"),
                                   fidelity=fidelity(video.frames, exact.frames, video.latents, exact.latents,
                                                     identical=video.digest == exact.digest)),
                       "repeatable": all(v.digest == video.digest for v in videos), "digest": video.digest}
                rows.append(row)
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows)
    env = environment(pipe.device)
    df.attrs.update({"model": pipe.model_id, "fingerprint": pipe.fingerprint, "device": pipe.device,
                     "torch_threads": env["torch_threads"], "device_name": env["device_name"],
                     "repeats": repeats, "timing": timing, "settings": {label: a.to_dict() for label, a in plan}})
    return df


def pooled_psnr(values: Sequence[float], peak: float = 255.0) -> float:
    """The PSNR of the mean MSE behind several PSNR values (dB; ``inf`` counts as MSE 0): the PSNR
    of frames or videos of equal size taken together. Equals the values when they are all equal;
    ``inf`` only when all are."""
    import numpy as np

    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        return float("nan")
    mse = np.where(np.isinf(arr), 0.0, peak**2 / np.power(10.0, np.where(np.isinf(arr), 0.0, arr) / 10.0))
    mean = float(mse.mean())
    return float("inf") if mean == 0 else float(10.0 * np.log10(peak**2 / mean))


def fidelity(frames: Any, exact_frames: Any, latents: Any = None, exact_latents: Any = None, *,
             identical: bool | None = None) -> dict[str, Any]:
    """How far a run is from the exact run of the same request: ``psnr`` (pooled over frames, see
    :func:`pooled_psnr`), ``psnr_frame_mean``, ``ssim``, and of the final latents ``rel_l2`` and
    ``max_abs`` (NaN when either run has none), and ``identical`` (frames bit for bit; computed
    unless given, e.g. from digests)."""
    import numpy as np

    from . import metrics

    frames, exact_frames = np.asarray(frames), np.asarray(exact_frames)
    if identical is None:
        identical = frames.shape == exact_frames.shape and bool(np.array_equal(frames, exact_frames))
    if identical:
        out: dict[str, Any] = {"psnr": float("inf"), "psnr_frame_mean": float("inf"), "ssim": 1.0}
    else:
        per_frame = metrics.psnr(frames, exact_frames)
        out = {"psnr": pooled_psnr(per_frame.per_frame), "psnr_frame_mean": per_frame.mean,
               "ssim": metrics.ssim(frames, exact_frames).mean}
    if latents is None or exact_latents is None:
        out.update(rel_l2=float("nan"), max_abs=float("nan"))
    else:
        out.update(rel_l2=rel_l2(latents, exact_latents),
                   max_abs=float(np.abs(np.asarray(latents, np.float64) - np.asarray(exact_latents, np.float64)).max()))
    out["identical"] = bool(identical)
    return out


#: Work counters a run records (``record["accel_stats"]``), as study columns.
STAT_COLUMNS = ("calls", "calls_full", "calls_skipped", "calls_partial", "block_work")


def study_row(label: str, accel: Accel, *, denoise: float, setup: float, exact_denoise: float,
              fidelity: Mapping[str, Any], stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """The columns :func:`study` (and ``SweepResult.accel_study``) give one (request, setting):
    the setting, its timings and speedup over exact, its fidelity and its work counters."""
    stats = stats or {}
    row = {"setting": label, "cache": accel.cache, "compile": accel.compile,
           "attention_backend": accel.attention_backend, "accel_key": accel.key(), "denoise_s": denoise,
           "setup_s": setup, "speedup": exact_denoise / denoise if denoise > 0 else float("nan"), **fidelity}
    for k in STAT_COLUMNS:
        value = stats.get(k)
        row[k] = float("nan") if value is None else value
    return row


def summarize(df: "pd.DataFrame") -> "pd.DataFrame":
    """One row per setting, in study order: mean ``speedup`` (and the worst, ``speedup_min``),
    ``psnr`` pooled over points (:func:`pooled_psnr`), mean ``ssim``/``rel_l2`` over points, ``calls_skipped`` as a fraction of all calls, mean
    ``block_work``, and ``pareto`` (True when no other setting is both at least as fast and at
    least as faithful, one of them strictly)."""
    import numpy as np
    import pandas as pd

    if "setting" not in df or df.empty:
        raise ValueError("summarize: needs the DataFrame returned by wanlab.accel.study")
    rows = []
    for label, group in df.groupby("setting", sort=False):
        calls = group["calls"].sum(min_count=1)  # NaN when not counted (compile)
        rows.append({"setting": label, "cache": group["cache"].iloc[0], "compile": group["compile"].iloc[0],
                     "points": len(group), "speedup": float(group["speedup"].mean()),
                     "speedup_min": float(group["speedup"].min()),
                     "denoise_s": float(group["denoise_s"].mean()),
                     "psnr": pooled_psnr(group["psnr"]), "ssim": float(group["ssim"].mean()),
                     "rel_l2": float(group["rel_l2"].mean()),
                     "calls": float(calls) if not np.isnan(calls) else float("nan"),
                     "skipped": float(group["calls_skipped"].sum() / calls) if calls and not np.isnan(calls)
                     else float("nan"),
                     "block_work": float(group["block_work"].mean()),
                     "identical": bool(group["identical"].all())})
    out = pd.DataFrame(rows)
    out["pareto"] = pareto_mask(out["speedup"].to_numpy(), out["psnr"].to_numpy())
    return out


def pareto_mask(speed: Sequence[float], fidelity: Sequence[float]) -> list[bool]:
    """True for points no other point dominates (higher-or-equal in both, strictly higher in one)."""
    pts = list(zip([float(s) for s in speed], [float(f) for f in fidelity]))
    out = []
    for i, (s, f) in enumerate(pts):
        dominated = any((s2 >= s and f2 >= f) and (s2 > s or f2 > f) for j, (s2, f2) in enumerate(pts) if j != i)
        out.append(not dominated and not (math.isnan(s) or math.isnan(f)))
    return out


def plot_study(df: "pd.DataFrame", *, title: str | None = None):
    """Speedup (x) against PSNR vs exact (y), one point per setting (mean over points), the Pareto
    front drawn as a line; settings bit-identical to exact (PSNR = inf) sit on a band at the top."""
    import matplotlib

    if matplotlib.get_backend().lower() == "":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = df if "pareto" in df else summarize(df)
    psnr = summary["psnr"].to_numpy(dtype=float)
    finite = psnr[np.isfinite(psnr)]
    top = (finite.max() + 5.0) if finite.size else 60.0
    shown = np.where(np.isfinite(psnr), psnr, top)
    speed = summary["speedup"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    front = summary["pareto"].to_numpy(dtype=bool)
    ax.scatter(speed[~front], shown[~front], color="tab:gray", label="dominated", zorder=2)
    ax.scatter(speed[front], shown[front], color="tab:red", label="Pareto front", zorder=3)
    order = np.argsort(speed[front])
    ax.plot(speed[front][order], shown[front][order], color="tab:red", lw=1.2, zorder=2)
    for x, y, label in zip(speed, shown, summary["setting"]):
        ax.annotate(str(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if not np.isfinite(psnr).all():
        ax.axhline(top, color="tab:green", lw=0.8, ls=":", label="identical to exact (PSNR = inf)")
    ax.axvline(1.0, color="black", lw=0.6, ls="--")
    ax.set_xlabel("speedup (exact denoise time / setting's)")
    ax.set_ylabel("PSNR vs exact (dB, mean over frames and points)")
    ax.set_title(title or "acceleration: speed vs fidelity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ = ["Accel", "PRESETS", "CACHE_METHODS", "CACHE_PARAMS", "COMPILE_MODES", "ATTENTION_BACKENDS",
           "applied", "calibrate", "calibration_key", "clear_calibrations", "cache_dir", "study", "summarize",
           "plot_study", "pareto_mask", "pooled_psnr", "rel_l2", "fidelity", "study_row", "CallCounter"]
