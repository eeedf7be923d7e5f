"""The acceleration setting, :class:`Accel`, and its named presets (:data:`PRESETS`).

Validated, canonical, part of every run key and record. Nothing here imports torch or diffusers.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import ParamError
from ..values import check_choice, check_known
from .methods import CACHE_METHODS, METHODS, CacheMethod

__all__ = ["Accel", "PRESETS", "CACHE_METHODS", "COMPILE_MODES", "ATTENTION_BACKENDS", "CPU_ATTENTION_BACKENDS"]

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


def _json(value: Any) -> Any:
    """JSON form of a validated parameter (tuples as lists)."""
    return [_json(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Accel:
    """One acceleration setting: validated on construction, part of a run's key and record.

    Attributes:
        cache: One of :data:`CACHE_METHODS`.
        cache_params: That method's parameters (missing ones take their defaults, see
            ``METHODS[cache].params``). wanlab's own parameters: MagCache ``mag_ratios="auto"``
            (calibrate), ``calibration_prompt``, ``calibration_seed``; TaylorSeer ``modules`` (which
            of attn1, attn2, ffn to predict) and ``taylor_factors_dtype="auto"`` (the transformer's
            dtype); PAB ``per_branch`` (one cache per guidance branch, the method as published).
        compile: One of :data:`COMPILE_MODES`.
        attention_backend: ``None`` or a diffusers backend name (:data:`ATTENTION_BACKENDS`; on CPU
            only :data:`CPU_ATTENTION_BACKENDS` work).
        name: A label for tables and plots (presets set it); not part of the identity.

    Raises:
        ParamError: An unknown or refused method, an unknown or out-of-range parameter, an unknown
            compile mode or attention backend, or an empty name.

    Example:
        >>> from wanlab.accel import Accel
        >>> Accel.coerce("fbc").cache_params["threshold"]
        0.1
        >>> Accel(cache="first_block", cache_params={"threshold": 0.3}).label
        'first_block(threshold=0.3)'
    """

    cache: str = "none"
    cache_params: Mapping[str, Any] = field(default_factory=dict)
    compile: str = "off"
    attention_backend: str | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        method = METHODS.get(self.cache) if isinstance(self.cache, str) else None
        if method is not None and method.refused:
            raise ParamError("cache", f"a method that works with Wan ({method.refused})", self.cache)
        if method is None:
            raise ParamError("cache", f"one of {', '.join(CACHE_METHODS)}", self.cache)
        params = {} if self.cache_params is None else self.cache_params
        if not isinstance(params, Mapping):
            raise ParamError("cache_params", "a mapping of parameter names to values", params)
        check_known("cache_params", params, method.params, f"a parameter of cache={self.cache!r}")
        resolved = {key: check(f"cache_params.{key}", params[key]) if key in params else default
                    for key, (default, check) in method.params.items()}
        if method.validate is not None:
            method.validate(resolved)
        set_("cache_params", MappingProxyType(resolved))
        check_choice("compile", self.compile, COMPILE_MODES, f"one of {', '.join(COMPILE_MODES)}")
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
    def method(self) -> CacheMethod:
        """The cache method's description (:data:`METHODS`)."""
        return METHODS[self.cache]

    @property
    def is_default(self) -> bool:
        """Whether the setting is exact: no cache, no compile, the default attention."""
        return self.cache == "none" and self.compile == "off" and self.attention_backend is None

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON form, what records and run keys hold.

        Returns:
            ``{"cache": ...}`` plus only the fields that differ from the default (all of the
            method's parameters, defaults filled in). The exact setting is ``{"cache": "none"}``.

        Example:
            >>> Accel.preset("fbc").to_dict()
            {'cache': 'first_block', 'cache_params': {'threshold': 0.1}}
        """
        out: dict[str, Any] = {"cache": self.cache}
        if self.cache != "none":
            out["cache_params"] = {k: _json(v) for k, v in self.cache_params.items()}
        if self.compile != "off":
            out["compile"] = self.compile
        if self.attention_backend is not None:
            out["attention_backend"] = self.attention_backend
        return out

    def to_plain(self) -> str | dict[str, Any]:
        """The short TOML form of the setting.

        Returns:
            The preset's name when the setting is one, else a table of what differs from the
            defaults (parameters left at their defaults are left out: TOML has no None).

        Example:
            >>> Accel.preset("fbc").to_plain()
            'fbc'
        """
        if self.name in PRESETS and Accel.preset(self.name) == self:
            return self.name
        changed = self.changed_params()
        out = {k: (changed if k == "cache_params" else v) for k, v in self.to_dict().items()
               if k != "cache_params" or changed}
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Accel:
        """Inverse of :meth:`to_dict`.

        Args:
            data: ``cache``, ``cache_params``, ``compile``, ``attention_backend`` and ``name``, each optional.

        Returns:
            The validated Accel.

        Raises:
            ParamError: Not a mapping, an unknown key, or a value that breaks its rule.

        Example:
            >>> Accel.from_dict({"cache": "none"}) == Accel()
            True
        """
        if not isinstance(data, Mapping):
            raise ParamError("accel", "a mapping with cache, cache_params, compile, attention_backend", data)
        check_known("", data, ("cache", "cache_params", "compile", "attention_backend", "name"),
                    "an acceleration field")
        return cls(**dict(data))

    def key(self) -> str:
        """The setting's identity, the same in every process.

        Returns:
            16 hex digits (sha256 of :meth:`to_dict`).

        Example:
            >>> Accel.preset("fbc").key() == Accel(cache="first_block", cache_params={"threshold": 0.1}).key()
            True
        """
        from ..record import stable_hash

        return stable_hash(self.to_dict())

    def replace(self, **changes: Any) -> Accel:
        """A new validated Accel with ``changes`` applied (its ``name`` dropped).

        Args:
            **changes: New field values; ``cache_params`` are merged when the method stays the same.

        Returns:
            The new Accel.

        Raises:
            ParamError: An unknown field, or a value that breaks its rule.

        Example:
            >>> Accel.preset("fbc").replace(cache_params={"threshold": 0.3})
            Accel(cache='first_block', cache_params={'threshold': 0.3})
        """
        fields_: dict[str, Any] = {"cache": self.cache, "cache_params": dict(self.cache_params),
                                   "compile": self.compile, "attention_backend": self.attention_backend, "name": None}
        check_known("", changes, fields_, "an acceleration field")
        if "cache" in changes and changes["cache"] != self.cache:
            fields_["cache_params"] = {}
        if "cache_params" in changes and isinstance(changes["cache_params"], Mapping):
            changes = {**changes, "cache_params": {**fields_["cache_params"], **changes["cache_params"]}}
        fields_.update(changes)
        return Accel(**fields_)

    def changed_params(self) -> dict[str, Any]:
        """The cache parameters that differ from the method's defaults.

        Returns:
            Name to value, JSON form.

        Example:
            >>> Accel.preset("fbc").changed_params()
            {'threshold': 0.1}
        """
        defaults = {k: d for k, (d, _) in self.method.params.items()}
        return {k: _json(v) for k, v in self.cache_params.items() if v != defaults[k]}

    @property
    def label(self) -> str:
        """A short label for tables and plots.

        ``name`` when set, else the name of the preset it equals (``fbc``), else a short description
        such as ``first_block(threshold=0.3)+compile:blocks``; the same for a setting read from a record.
        """
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
    def preset(cls, name: str) -> Accel:
        """A named setting from :data:`PRESETS`.

        Args:
            name: ``"exact"``, ``"fbc"``, ``"mag"``, ...

        Returns:
            The Accel, named.

        Raises:
            ParamError: An unknown name.

        Example:
            >>> Accel.preset("mag").cache
            'mag'
        """
        if not isinstance(name, str) or name not in PRESETS:
            raise ParamError("preset", f"one of {', '.join(PRESETS)}", name)
        return cls(**PRESETS[name], name=name)

    @classmethod
    def coerce(cls, value: Any, where: str = "accel") -> Accel:
        """An Accel from any form a caller may give.

        Args:
            value: An Accel, a preset name, a mapping (:meth:`from_dict`) or None (exact).
            where: The field name for the error message.

        Returns:
            The Accel (``value`` itself when it is one).

        Raises:
            ParamError: Anything else, or a mapping that breaks a rule.

        Example:
            >>> Accel.coerce(None).is_default
            True
        """
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
