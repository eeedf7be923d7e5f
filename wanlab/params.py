"""The request: a frozen, validated record of one generation, with the hosted Wan 2.1 T2V API's rules.

Fields, ranges and defaults follow the hosted API (``POST /v3/async/wan-t2v``); ``num_frames`` is
the one local field. Every violation raises :class:`ParamError` naming the field, the rule and the
value given; nothing is rounded or clipped.
"""
from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import ParamError

API_MODEL_NAME = "wan2.1-t2v"
API_SIZES: tuple[tuple[int, int], ...] = ((832, 480), (480, 832), (1280, 720), (720, 1280))
SEED_MAX = 9_999_999_999
MAX_PROMPT_CHARS = 2000
MAX_LORAS = 3
LORA_SCALE_RANGE = (0.0, 4.0)
SIZE_MULTIPLE = 16
SIZE_RANGE = (16, 2048)
FRAMES_RANGE = (1, 257)
API_FRAMES = 81
API_FIELDS = (
    "model_name", "prompt", "negative_prompt", "width", "height", "seed", "steps",
    "guidance_scale", "flow_shift", "loras", "extra",
)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(name, f"an integer in {lo}..{hi}", value)
    if not lo <= value <= hi:
        raise ParamError(name, f"an integer in {lo}..{hi}", value)
    return int(value)


def _check_float(name: str, value: object, lo: float, hi: float) -> float:
    rule = f"a number in {lo:g}..{hi:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(name, rule, value)
    if math.isnan(value) or not lo <= value <= hi:
        raise ParamError(name, rule, value)
    return float(value)


def _check_text(name: str, value: object, lo: int, hi: int) -> str:
    rule = f"a string of {lo}..{hi} characters"
    if not isinstance(value, str):
        raise ParamError(name, rule, value)
    if not lo <= len(value) <= hi:
        shown = value if len(value) <= 60 else f"<{len(value)} characters>"
        raise ParamError(name, rule, shown)
    return value


@dataclass(frozen=True)
class LoRA:
    """One LoRA adapter: a local ``.safetensors`` file, a Hugging Face repo (or file in it) or an https URL
    (see :mod:`wanlab.lora.sources`), and its weight (``scale``).

    The hosted API documents no range for ``scale``; wanlab accepts 0..4 (0 disables the adapter).
    """

    path: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        path = self.path
        if hasattr(path, "__fspath__"):
            path = str(path)
        if not isinstance(path, str) or not path.strip():
            raise ParamError("loras.path", "a non-empty file path", self.path)
        object.__setattr__(self, "path", path)
        lo, hi = LORA_SCALE_RANGE
        object.__setattr__(self, "scale", _check_float("loras.scale", self.scale, lo, hi))

    @classmethod
    def coerce(cls, value: object) -> "LoRA":
        """Accept a LoRA, a ``{path, scale}`` mapping, a ``(path, scale)`` pair or a bare path."""
        if isinstance(value, LoRA):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"path", "scale"}
            if unknown:
                raise ParamError("loras", "entries with only the keys path and scale", dict(value))
            if "path" not in value:
                raise ParamError("loras.path", "given for every LoRA", dict(value))
            return cls(value["path"], value.get("scale", 1.0))
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        if isinstance(value, str) or hasattr(value, "__fspath__"):
            return cls(value)  # type: ignore[arg-type]
        raise ParamError("loras", "LoRA(path, scale), {path, scale} or (path, scale)", value)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "scale": self.scale}


@dataclass(frozen=True)
class Params:
    """One generation request; validated on construction and on every :meth:`replace`."""

    prompt: str
    negative_prompt: str = ""
    width: int = 832
    height: int = 480
    seed: int = -1
    steps: int = 30
    guidance_scale: float = 5.0
    flow_shift: float = 5.0
    loras: tuple[LoRA, ...] = field(default_factory=tuple)
    num_frames: int = 81

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("prompt", _check_text("prompt", self.prompt, 1, MAX_PROMPT_CHARS))
        set_("negative_prompt", _check_text("negative_prompt", self.negative_prompt, 0, MAX_PROMPT_CHARS))
        for name in ("width", "height"):
            value = getattr(self, name)
            lo, hi = SIZE_RANGE
            rule = f"a multiple of {SIZE_MULTIPLE} in {lo}..{hi}"
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(name, rule, value)
            if value % SIZE_MULTIPLE or not lo <= value <= hi:
                raise ParamError(name, rule, value)
        set_("seed", _check_int("seed", self.seed, -1, SEED_MAX))
        set_("steps", _check_int("steps", self.steps, 1, 40))
        set_("guidance_scale", _check_float("guidance_scale", self.guidance_scale, 0.0, 10.0))
        set_("flow_shift", _check_float("flow_shift", self.flow_shift, 1.0, 10.0))
        loras = self.loras
        if isinstance(loras, (str, Mapping, LoRA)) or not isinstance(loras, Iterable):
            raise ParamError("loras", f"a list of at most {MAX_LORAS} LoRAs", loras)
        loras = tuple(LoRA.coerce(item) for item in loras)
        if len(loras) > MAX_LORAS:
            raise ParamError("loras", f"at most {MAX_LORAS} LoRAs", [lo.path for lo in loras])
        set_("loras", loras)
        lo, hi = FRAMES_RANGE
        rule = f"4k+1 in {lo}..{hi} (e.g. 17, 33, 81)"
        n = self.num_frames
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi or n % 4 != 1:
            raise ParamError("num_frames", rule, n)

    # --- derived records -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "Params":
        """A new validated Params with ``changes`` applied."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ParamError(sorted(unknown)[0], f"one of {', '.join(self.field_names())}", changes[sorted(unknown)[0]])
        return dataclasses.replace(self, **changes)

    def resolved(self) -> "Params":
        """This request with ``seed=-1`` replaced by a seed drawn from 0..9999999999."""
        if self.seed != -1:
            return self
        return self.replace(seed=secrets.randbelow(SEED_MAX + 1))

    @property
    def duration(self) -> float:
        """Seconds of video at Wan's 16 fps."""
        return self.num_frames / 16.0

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(Params))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with wanlab's local field names."""
        out = {name: getattr(self, name) for name in self.field_names()}
        out["loras"] = [lora.to_dict() for lora in self.loras]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Params":
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        unknown = set(data) - set(cls.field_names())
        if unknown:
            name = sorted(unknown)[0]
            raise ParamError(name, f"one of {', '.join(cls.field_names())}", data[name])
        if "prompt" not in data:
            raise ParamError("prompt", "given", None)
        return cls(**dict(data))

    # --- the hosted API's body -------------------------------------------------------------------
    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> "Params":
        """Validate a hosted-API JSON body: API field names, API sizes only, unknown fields rejected.

        ``extra`` (webhook settings) is accepted for compatibility and has no local effect.
        """
        if not isinstance(body, Mapping):
            raise ParamError("body", "a JSON object", body)
        unknown = sorted(set(body) - set(API_FIELDS))
        if unknown:
            raise ParamError(unknown[0], f"a field of the Wan 2.1 T2V API ({', '.join(API_FIELDS)})", body[unknown[0]])
        if body.get("model_name") != API_MODEL_NAME:
            raise ParamError("model_name", repr(API_MODEL_NAME), body.get("model_name"))
        if "prompt" not in body:
            raise ParamError("prompt", "given", None)
        if "extra" in body and not isinstance(body["extra"], Mapping):
            raise ParamError("extra", "a JSON object", body["extra"])
        fields = {k: v for k, v in body.items() if k not in ("model_name", "extra")}
        if "loras" in fields and not isinstance(fields["loras"], list):
            raise ParamError("loras", "a list of {path, scale} objects", fields["loras"])
        params = cls(**fields)
        params.check_api()
        return params

    def check_api(self) -> None:
        """Raise ParamError unless the hosted API would accept this request as it stands."""
        if (self.width, self.height) not in API_SIZES:
            pairs = ", ".join(f"{w}x{h}" for w, h in API_SIZES)
            raise ParamError("width x height", f"one of the API sizes {pairs}", f"{self.width}x{self.height}")
        if self.num_frames != API_FRAMES:
            raise ParamError("num_frames", f"{API_FRAMES} for the hosted API (5 s at 16 fps)", self.num_frames)

    def to_api(self) -> dict[str, Any]:
        """The hosted API's JSON body for this request (raises if it uses local-only values)."""
        self.check_api()
        body: dict[str, Any] = {"model_name": API_MODEL_NAME}
        for name in ("prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift"):
            body[name] = getattr(self, name)
        body["loras"] = [lora.to_dict() for lora in self.loras]
        return body
