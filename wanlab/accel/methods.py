"""The cache methods wanlab runs on Wan, one :class:`CacheMethod` spec each.

A spec holds the method's parameters (default and check, named as diffusers' config fields), how
the resolved parameters become the diffusers config (diffusers is imported only then), an extra
cross-parameter check, and for methods wanlab refuses, why.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParamError
from ..values import check_bool, check_choice, check_int, check_number, check_text, is_number

#: Wan's transformer submodules TaylorSeer may predict, per block.
TAYLORSEER_MODULES = ("attn1", "attn2", "ffn")
#: The fixed request MagCache is calibrated on (with the request's size, frames, steps, guidance, shift).
CALIBRATION_PROMPT = "a red fox running through fresh snow in a quiet forest at dawn"
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class BuildContext:
    """What a cache method's diffusers config may depend on besides its parameters.

    Attributes:
        steps: The request's denoising steps.
        transformer_dtype: The transformer's dtype (TaylorSeer's ``taylor_factors_dtype="auto"``).
        current_timestep: A callable giving the scheduler's current timestep.
        mag_ratios: MagCache's calibrated magnitude ratios.

    Example:
        >>> BuildContext(steps=30).steps
        30
    """

    steps: int
    transformer_dtype: Any = None
    current_timestep: Callable[[], Any] | None = None
    mag_ratios: list[float] | None = None


Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class CacheMethod:
    """One cache method wanlab runs on Wan (or refuses).

    Attributes:
        name: The method's name (``Accel.cache``).
        summary: One line on what it is and where it comes from.
        params: Each parameter (named as diffusers' config field) to ``(default, check)``.
        build: Turns the resolved parameters and a :class:`BuildContext` into the diffusers config
            (diffusers is imported only then).
        validate: An extra cross-parameter check (raises ParamError).
        refused: Why wanlab does not run it, for methods it refuses.

    Example:
        >>> METHODS["first_block"].params["threshold"][0]
        0.05
    """

    name: str
    summary: str
    params: Mapping[str, tuple[Any, Check]] = field(default_factory=dict)
    build: Callable[[Mapping[str, Any], BuildContext], Any] | None = None
    validate: Callable[[Mapping[str, Any]], None] | None = None
    refused: str | None = None


# --------------------------------------------------------------------------------------------------
# parameter checks
def _number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    rule = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return lambda name, value: check_number(name, value, lo, hi, lo_open=lo_open, hi_open=hi_open, rule=rule)


def _integer(lo: int, hi: int, optional: bool = False) -> Check:
    return lambda name, value: check_int(name, value, lo, hi, optional=optional)


def _choice(*options: Any) -> Check:
    return lambda name, value: check_choice(name, value, options)


def _text(name: str, value: Any) -> str:
    if isinstance(value, str) and not value.strip():
        raise ParamError(name, "a non-empty string of at most 2000 characters", value)
    return check_text(name, value, 1, 2000)


def _timestep_range(name: str, value: Any) -> tuple[float, float]:
    rule = "two timesteps [low, high] with 0 <= low < high <= 1000"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ParamError(name, rule, value)
    lo, hi = (check_number(name, v, rule=rule) for v in value)
    if not 0 <= lo < hi <= 1000:
        raise ParamError(name, rule, value)
    return (lo, hi)


def _mag_ratios(name: str, value: Any) -> str | tuple[float, ...]:
    rule = "'auto' (calibrated by wanlab) or a list of positive numbers (one per step)"
    if isinstance(value, str) and value == "auto":
        return "auto"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        raise ParamError(name, rule, value)
    for v in value:
        if not is_number(v) or not v > 0 or v == float("inf"):
            raise ParamError(name, rule, value if len(value) <= 8 else f"<list of {len(value)}, with {v!r}>")
    return tuple(float(v) for v in value)


def _modules(name: str, value: Any) -> tuple[str, ...]:
    rule = f"a non-empty list of {', '.join(TAYLORSEER_MODULES)}"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        raise ParamError(name, rule, value)
    if any(v not in TAYLORSEER_MODULES for v in value) or len(set(value)) != len(value):
        raise ParamError(name, rule, value)
    return tuple(m for m in TAYLORSEER_MODULES if m in value)


def _skip_range(name: str, value: Any) -> int | None:
    return check_int(name, value, 2, 100, optional=True,
                     rule="an integer in 2..100 (compute once every N calls) or None (never skip)")


# --------------------------------------------------------------------------------------------------
# the methods: each a parameter table and its diffusers config
def _first_block(cp: Mapping[str, Any], ctx: BuildContext) -> Any:
    from diffusers.hooks import FirstBlockCacheConfig

    return FirstBlockCacheConfig(threshold=cp["threshold"])


def _mag(cp: Mapping[str, Any], ctx: BuildContext) -> Any:
    import torch
    from diffusers.hooks import MagCacheConfig

    ratios = ctx.mag_ratios if ctx.mag_ratios is not None else list(cp["mag_ratios"])
    return MagCacheConfig(threshold=cp["threshold"], max_skip_steps=cp["max_skip_steps"],
                          retention_ratio=cp["retention_ratio"], num_inference_steps=ctx.steps,
                          mag_ratios=torch.tensor(ratios, dtype=torch.float32))


def _taylorseer(cp: Mapping[str, Any], ctx: BuildContext) -> Any:
    import torch
    from diffusers.hooks import TaylorSeerCacheConfig

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    choice = cp["taylor_factors_dtype"]
    factors = ctx.transformer_dtype if choice == "auto" else dtypes[choice]
    pattern = r"blocks\.\d+\.(" + "|".join(cp["modules"]) + ")"
    return TaylorSeerCacheConfig(cache_interval=cp["cache_interval"],
                                 disable_cache_before_step=cp["disable_cache_before_step"],
                                 disable_cache_after_step=cp["disable_cache_after_step"], max_order=cp["max_order"],
                                 taylor_factors_dtype=factors, cache_identifiers=[pattern])


def _pab(cp: Mapping[str, Any], ctx: BuildContext) -> Any:
    from diffusers.hooks import PyramidAttentionBroadcastConfig

    if ctx.current_timestep is None:
        raise ValueError("pyramid attention broadcast needs the pipeline's current timestep (BuildContext)")
    return PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=cp["spatial_attention_block_skip_range"],
        cross_attention_block_skip_range=cp["cross_attention_block_skip_range"],
        spatial_attention_timestep_skip_range=tuple(cp["spatial_attention_timestep_skip_range"]),
        cross_attention_timestep_skip_range=tuple(cp["cross_attention_timestep_skip_range"]),
        current_timestep_callback=ctx.current_timestep)


def _pab_validate(cp: Mapping[str, Any]) -> None:
    if cp["spatial_attention_block_skip_range"] is None and cp["cross_attention_block_skip_range"] is None:
        raise ParamError("cache_params.spatial_attention_block_skip_range",
                         "set (or cross_attention_block_skip_range set): with both None PAB skips nothing", None)


def _seacache(cp: Mapping[str, Any], ctx: BuildContext) -> Any:
    from diffusers.hooks import SeaCacheConfig

    return SeaCacheConfig(**dict(cp))


METHODS: dict[str, CacheMethod] = {m.name: m for m in (
    CacheMethod("none", "no cache: every block of every transformer call runs (exact)"),
    CacheMethod("first_block", "FirstBlockCache: skip the rest of the blocks while the first block's output "
                "changes less than threshold", {"threshold": (0.05, _number(0.0, 1.0, lo_open=True))}, _first_block),
    CacheMethod("mag", "MagCache: skip steps while the accumulated residual-magnitude ratio error stays small", {
        "threshold": (0.06, _number(0.0, 1.0, lo_open=True)),
        "max_skip_steps": (3, _integer(1, 100)),
        "retention_ratio": (0.2, _number(0.0, 1.0, hi_open=True)),
        "mag_ratios": ("auto", _mag_ratios),
        "calibration_prompt": (CALIBRATION_PROMPT, _text),
        "calibration_seed": (CALIBRATION_SEED, _integer(0, 9_999_999_999)),
    }, _mag),
    CacheMethod("taylorseer", "TaylorSeer: predict attention and feed-forward outputs of Wan's blocks from a "
                "Taylor expansion between full computations", {
        "cache_interval": (5, _integer(1, 100)),
        "disable_cache_before_step": (3, _integer(0, 1000)),
        "disable_cache_after_step": (None, _integer(0, 1000, optional=True)),
        "max_order": (1, _integer(0, 4)),
        "taylor_factors_dtype": ("auto", _choice("auto", "float32", "bfloat16", "float16")),
        "modules": (TAYLORSEER_MODULES, _modules),
    }, _taylorseer),
    CacheMethod("pab", "pyramid attention broadcast: reuse attention outputs of earlier steps", {
        "spatial_attention_block_skip_range": (2, _skip_range),
        "cross_attention_block_skip_range": (None, _skip_range),
        "spatial_attention_timestep_skip_range": ((100.0, 800.0), _timestep_range),
        "cross_attention_timestep_skip_range": ((100.0, 800.0), _timestep_range),
        "per_branch": (True, check_bool),
    }, _pab, _pab_validate),
    CacheMethod("seacache", "SeaCache: skip blocks while a spectrum-weighted change estimate stays small", {
        "threshold": (0.25, _number(0.0, 10.0)),
        "residual_order": (1, _choice(0, 1)),
        "retention_steps": (1, _integer(0, 1000)),
        "cache_end_steps": (1, _integer(0, 1000)),
        "max_consecutive_cached": (2, _integer(0, 1000)),
        "power_exp": (3.0, _number(0.0, 100.0, lo_open=True)),
    }, _seacache),
    CacheMethod("faster", "FasterCache", refused=(
        "FasterCache cannot run on Wan in diffusers: it expects the conditional and unconditional "
        "branches batched into one transformer call, but WanPipeline makes two calls per step, so its "
        "default config crashes (IndexError); use first_block, mag, taylorseer, pab or seacache")),
)}
#: The methods wanlab runs, in order.
CACHE_METHODS = tuple(name for name, m in METHODS.items() if m.refused is None)
