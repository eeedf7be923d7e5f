"""The request: a frozen, validated record of one generation, with the hosted Wan 2.1 T2V API's rules.

Fields, ranges and defaults follow the hosted API (``POST /v3/async/wan-t2v``); ``num_frames`` is
the one local field. Every violation raises :class:`ParamError` naming the field, the rule and the
value given; nothing is rounded or clipped.
"""
from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ParamError
from .taskstatus import FINISHED, TaskStatus
from .values import WAN_FPS, check_bool, check_int, check_known, check_number, check_text, check_unicode

#: What ``model_name`` may say: the published name, and the one client code in the wild sends.
API_MODEL_NAMES = ("wan2.1-t2v", "wan-t2v")
API_DEFAULT_SIZE = (832, 480)
API_SIZES: tuple[tuple[int, int], ...] = ((832, 480), (480, 832), (1280, 720), (720, 1280))
SEED_MAX = 9_999_999_999
MAX_PROMPT_CHARS = 2000
MAX_LORAS = 3
LORA_SCALE_RANGE = (0.0, 4.0)
SIZE_MULTIPLE = 16
SIZE_RANGE = (16, 2048)
FRAMES_RANGE = (1, 257)
STEPS_RANGE = (1, 40)
GUIDANCE_RANGE = (0.0, 10.0)
SHIFT_RANGE = (1.0, 10.0)
API_FRAMES = 81
API_FIELDS = (
    "model_name", "prompt", "negative_prompt", "width", "height", "seed", "steps",
    "guidance_scale", "flow_shift", "loras", "enable_safety_checker", "fast_mode", "extra", "frames",
)


#: Each field's rule in words (for help texts; the checks below use the same constants).
RULES = {
    "prompt": f"a string of 1..{MAX_PROMPT_CHARS} characters",
    "negative_prompt": f"a string of 0..{MAX_PROMPT_CHARS} characters",
    "width": f"a multiple of {SIZE_MULTIPLE} in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}; the hosted API takes "
             + ", ".join(f"{w}x{h}" for w, h in API_SIZES),
    "height": f"a multiple of {SIZE_MULTIPLE} in {SIZE_RANGE[0]}..{SIZE_RANGE[1]} (see width)",
    "seed": f"-1..{SEED_MAX}; -1 draws one, and the drawn seed is recorded",
    "steps": f"denoising steps, {STEPS_RANGE[0]}..{STEPS_RANGE[1]}",
    "guidance_scale": f"{GUIDANCE_RANGE[0]:g}..{GUIDANCE_RANGE[1]:g}; classifier-free guidance runs only above 1",
    "flow_shift": f"{SHIFT_RANGE[0]:g}..{SHIFT_RANGE[1]:g}, the sampler's sigma shift",
    "loras": f"up to {MAX_LORAS} LoRA files, each with a scale in {LORA_SCALE_RANGE[0]:g}..{LORA_SCALE_RANGE[1]:g}",
    "num_frames": f"4k+1 in {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]} ({API_FRAMES} = 5 s at 16 fps); a local field",
}


class _Default:
    """A field's default as Params shows it (its repr is the value).

    A field still holding one was not set by the caller, so a backend may fill it from the model's
    native settings.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class LoRA:
    """One LoRA adapter and its weight.

    The hosted API documents no range for ``scale``; wanlab accepts 0..4 (0 disables the adapter).

    Attributes:
        path: A local ``.safetensors`` file, a Hugging Face repo (or a file in it) or an https URL
            (see :mod:`wanlab.lora.sources`); a path-like is kept as its string.
        scale: The adapter's weight, 0..4.

    Raises:
        ParamError: An empty path or a scale outside 0..4 (field ``loras.path`` / ``loras.scale``).

    Example:
        >>> LoRA("style.safetensors", 0.8)
        LoRA(path='style.safetensors', scale=0.8)
    """

    path: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        path = self.path
        if hasattr(path, "__fspath__"):
            path = str(path)
        if not isinstance(path, str) or not path.strip():
            raise ParamError("loras.path", "a non-empty file path", self.path)
        check_unicode("loras.path", path)
        object.__setattr__(self, "path", path)
        lo, hi = LORA_SCALE_RANGE
        object.__setattr__(self, "scale", check_number("loras.scale", self.scale, lo, hi))

    @classmethod
    def coerce(cls, value: object) -> LoRA:
        """Make a LoRA of any of the forms a request may give.

        Args:
            value: A LoRA, a ``{path, scale}`` mapping, a ``(path, scale)`` pair or a bare path.

        Returns:
            The LoRA (``value`` itself when it is one; scale 1.0 when not given).

        Raises:
            ParamError: Any other form, a mapping with unknown keys or without ``path``, or a bad scale.

        Example:
            >>> LoRA.coerce({"path": "a.safetensors", "scale": 0.5}) == LoRA.coerce(("a.safetensors", 0.5))
            True
        """
        if isinstance(value, LoRA):
            return value
        if isinstance(value, Mapping):
            check_known("loras", value, ("path", "scale"), "a field of a LoRA")
            if "path" not in value:
                raise ParamError("loras.path", "given for every LoRA", dict(value))
            return cls(value["path"], value.get("scale", 1.0))
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        if isinstance(value, str) or hasattr(value, "__fspath__"):
            return cls(value)  # type: ignore[arg-type]
        raise ParamError("loras", "LoRA(path, scale), {path, scale} or (path, scale)", value)

    def to_dict(self) -> dict[str, Any]:
        """The LoRA as the API's JSON ``{path, scale}`` object.

        Returns:
            ``{"path": ..., "scale": ...}``.
        """
        return {"path": self.path, "scale": self.scale}


@dataclass(frozen=True, repr=False)
class Params:
    """One generation request; validated on construction and on every :meth:`replace`.

    The defaults are the hosted API's. A backend fills the fields a request leaves unset (neither
    given to ``Params(...)`` nor by :meth:`replace`) from its model's native settings, whether the
    request comes as a ``Params`` or as keywords (:func:`wanlab.backend.request`). Equality and
    hashing compare the values only: ``Params(prompt="a", steps=30) == Params(prompt="a")``, though
    a backend fills ``steps`` of the second from its model (compare :meth:`explicit_fields` too
    when that matters). Nothing is rounded or clipped.

    Attributes:
        prompt: What to show, 1..2000 characters.
        negative_prompt: What to steer away from, 0..2000 characters.
        width: A multiple of 16 in 16..2048 (the hosted API takes 832x480, 480x832, 1280x720, 720x1280).
        height: A multiple of 16 in 16..2048.
        seed: -1..9999999999; -1 draws one (:meth:`resolved`), and the drawn seed is recorded.
        steps: Denoising steps, 1..40.
        guidance_scale: 0..10; classifier-free guidance runs only above 1.
        flow_shift: 1..10, the sampler's sigma shift.
        loras: Up to 3 :class:`LoRA` adapters (or anything :meth:`LoRA.coerce` takes).
        num_frames: 4k+1 in 1..257 (81 = 5 s at 16 fps); a local field.

    Raises:
        ParamError: A field breaks its rule (the message names the field, the rule and the value;
            :data:`RULES` has each rule in words).

    Example:
        >>> from wanlab import Params
        >>> Params(prompt="a red fox running through fresh snow", seed=1).steps
        30
        >>> Params(prompt="a fox", num_frames=80)
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: num_frames: must be 4k+1 in 1..257 (e.g. 17, 33, 81); got 80
    """

    prompt: str
    negative_prompt: str = _Default("")  # type: ignore[assignment]
    width: int = _Default(832)  # type: ignore[assignment]
    height: int = _Default(480)  # type: ignore[assignment]
    seed: int = _Default(-1)  # type: ignore[assignment]
    steps: int = _Default(30)  # type: ignore[assignment]
    guidance_scale: float = _Default(5.0)  # type: ignore[assignment]
    flow_shift: float = _Default(5.0)  # type: ignore[assignment]
    loras: tuple[LoRA, ...] = _Default(())  # type: ignore[assignment]
    num_frames: int = _Default(81)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        def set_(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        unset = set()
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, _Default):
                unset.add(name)
                set_(name, value.value)
        set_("_explicit", frozenset(n for n in self.field_names() if n not in unset))
        set_("prompt", check_text("prompt", self.prompt, 1, MAX_PROMPT_CHARS))
        set_("negative_prompt", check_text("negative_prompt", self.negative_prompt, 0, MAX_PROMPT_CHARS))
        lo, hi = SIZE_RANGE
        for name in ("width", "height"):
            value = check_int(name, getattr(self, name), lo, hi, rule=f"a multiple of {SIZE_MULTIPLE} in {lo}..{hi}")
            if value % SIZE_MULTIPLE:
                raise ParamError(name, f"a multiple of {SIZE_MULTIPLE} in {lo}..{hi}", value)
        set_("seed", check_int("seed", self.seed, -1, SEED_MAX))
        set_("steps", check_int("steps", self.steps, *STEPS_RANGE))
        set_("guidance_scale", check_number("guidance_scale", self.guidance_scale, *GUIDANCE_RANGE))
        set_("flow_shift", check_number("flow_shift", self.flow_shift, *SHIFT_RANGE))
        loras = self.loras
        if isinstance(loras, (str, Mapping, LoRA)) or not isinstance(loras, Iterable):
            raise ParamError("loras", f"a list of at most {MAX_LORAS} LoRAs", loras)
        loras = tuple(LoRA.coerce(item) for item in loras)
        if len(loras) > MAX_LORAS:
            raise ParamError("loras", f"at most {MAX_LORAS} LoRAs", [lo.path for lo in loras])
        set_("loras", loras)
        lo, hi = FRAMES_RANGE
        rule = f"4k+1 in {lo}..{hi} (e.g. 17, 33, 81)"
        n = check_int("num_frames", self.num_frames, lo, hi, rule=rule)
        if n % 4 != 1:
            raise ParamError("num_frames", rule, n)

    def __repr__(self) -> str:
        """The fields this request sets, and only those: what you see is what you set.

        A backend fills every other field from its model (``pipe.params(p)`` shows the request it will
        run), so showing the API's defaults here would show settings that may not run.
        ``eval(repr(p)) == p`` and keeps which fields are set.
        """
        set_ = ", ".join(f"{name}={value!r}" for name, value in self.explicit_fields().items())
        return f"Params({set_})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(repr(self))
        unset = [name for name in self.field_names() if name not in self._explicit]  # type: ignore[attr-defined]
        if unset:
            printer.text(f"  # unset, filled by the model: {', '.join(unset)}; pipe.params(p) shows the values")

    def describe(self) -> str:
        """Every field on its own line, marked ``set`` or ``default``.

        A ``default`` is the API's value, which a backend replaces with its model's native setting
        where it has one.

        Returns:
            One line per field: name, value, ``set`` or ``default``.

        Example:
            >>> print(Params(prompt="a fox", seed=1).describe().splitlines()[2])
            width            832          default
        """
        lines = []
        for name in self.field_names():
            value = getattr(self, name)
            if name in ("prompt", "negative_prompt"):
                shown = repr(value)
            else:
                shown = str(list(value) if name == "loras" else value)
            lines.append(f"{name:<16} {shown:<12} {'set' if name in self._explicit else 'default'}")  # type: ignore[attr-defined]
        return "\n".join(lines)

    def explicit_fields(self) -> dict[str, Any]:
        """The fields this request sets itself (given to ``Params`` or :meth:`replace`).

        Returns:
            Field name to value, in field order.

        Example:
            >>> Params(prompt="a fox", seed=1).explicit_fields()
            {'prompt': 'a fox', 'seed': 1}
        """
        return {name: getattr(self, name) for name in self.field_names() if name in self._explicit}  # type: ignore[attr-defined]

    # --- derived records -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Params:
        """A new validated Params with ``changes`` applied.

        Args:
            **changes: New values by field name; they count as set (unset fields stay unset).

        Returns:
            The new Params.

        Raises:
            ParamError: An unknown field name, or a value that breaks its rule.

        Example:
            >>> Params(prompt="a fox").replace(steps=8)
            Params(prompt='a fox', steps=8)
        """
        check_known("", changes, self.field_names(), "one of the Params fields")
        return Params(**{**self.explicit_fields(), **changes})

    def resolved(self) -> Params:
        """This request with ``seed=-1`` replaced by a seed drawn from 0..9999999999.

        Returns:
            ``self`` when the seed is already fixed, else a copy with a drawn seed.

        Example:
            >>> Params(prompt="a fox").resolved().seed >= 0
            True
        """
        if self.seed != -1:
            return self
        return self.replace(seed=secrets.randbelow(SEED_MAX + 1))

    @property
    def duration(self) -> float:
        """Seconds of video at Wan's 16 fps."""
        return self.num_frames / WAN_FPS

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Each field's default (the hosted API's).

        Returns:
            Field name to default; ``prompt`` has none and is absent.

        Example:
            >>> Params.defaults()["steps"]
            30
        """
        return {f.name: f.default.value for f in dataclasses.fields(Params) if isinstance(f.default, _Default)}

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """The names of the request's fields, in order.

        Returns:
            ``("prompt", "negative_prompt", "width", ...)``.
        """
        return tuple(f.name for f in dataclasses.fields(Params))

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain JSON-able dict with wanlab's local field names.

        Returns:
            Field name to value; ``loras`` as a list of ``{path, scale}``.

        Example:
            >>> Params(prompt="a fox").to_dict()["num_frames"]
            81
        """
        out = {name: getattr(self, name) for name in self.field_names()}
        out["loras"] = [lora.to_dict() for lora in self.loras]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Params:
        """Inverse of :meth:`to_dict`.

        Args:
            data: Field name to value (``prompt`` required); the fields given count as set.

        Returns:
            The validated Params.

        Raises:
            ParamError: An unknown key, no ``prompt``, or a value that breaks its rule.

        Example:
            >>> p = Params(prompt="a fox", seed=3)
            >>> Params.from_dict(p.to_dict()) == p
            True
        """
        check_known("", data, cls.field_names(), "one of the Params fields")
        if "prompt" not in data:
            raise ParamError("prompt", "given", None)
        return cls(**dict(data))

    # --- the hosted API's body -------------------------------------------------------------------
    @classmethod
    def from_api(cls, body: Mapping[str, Any], *, local: bool = False) -> Params:
        """Validate a hosted-API JSON body (``POST /v3/async/wan-t2v``).

        API field names, unknown fields refused, and as the API documents, when ``width`` or
        ``height`` is missing both are 832x480. ``model_name`` is optional and must name Wan 2.1
        text-to-video when given (:data:`API_MODEL_NAMES`). ``enable_safety_checker``, ``fast_mode``
        and ``extra`` are checked here and read with :meth:`ApiOptions.from_body`. ``frames`` (the
        provider's JavaScript SDK's name) is ``num_frames`` by another name. Every field counts as set.

        Args:
            body: The JSON body, parsed.
            local: False (the API's rules): only the four API sizes and 81 frames pass. True also takes
                ``num_frames`` and any size that is a multiple of 16 (``wanlab serve --allow-local-sizes``).

        Returns:
            The validated Params.

        Raises:
            ParamError: Not an object, an unknown field, a wrong ``model_name``, no prompt, or a
                value the API (or, with ``local``, wanlab) does not accept.

        Example:
            >>> Params.from_api({"prompt": "a fox", "height": 1280, "width": 720}).size
            (720, 1280)
        """
        if not isinstance(body, Mapping):
            raise ParamError("body", "a JSON object", body)
        allowed = API_FIELDS + (("num_frames",) if local else ())
        check_known("", body, allowed, "a field of the Wan 2.1 T2V API")
        if "model_name" in body and body["model_name"] not in API_MODEL_NAMES:
            raise ParamError("model_name", f"one of {', '.join(map(repr, API_MODEL_NAMES))} (Wan 2.1 text-to-video)",
                             body["model_name"])
        if "prompt" not in body:
            raise ParamError("prompt", "given", None)
        ApiOptions.from_body(body)
        fields = {k: v for k, v in body.items() if k in cls.field_names()}
        lo, hi = SIZE_RANGE
        for name in ("width", "height"):  # one of them alone is forced to 832x480, but must still be a size
            if name in fields:
                check_int(name, fields[name], lo, hi, rule=f"a multiple of {SIZE_MULTIPLE} in {lo}..{hi}")
        if "frames" in body:
            fields["num_frames"] = _frames(body, local)
        if "width" not in fields or "height" not in fields:
            fields["width"], fields["height"] = API_DEFAULT_SIZE
        if "loras" in fields and not isinstance(fields["loras"], list):
            raise ParamError("loras", "a list of {path, scale} objects", fields["loras"])
        params = cls(**{**cls.defaults(), **fields})
        if not local:
            params.check_api()
        return params

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return (self.width, self.height)

    def check_api(self) -> None:
        """Check that the hosted API would accept this request as it stands.

        Raises:
            ParamError: A size other than the four API sizes, or ``num_frames`` other than 81.

        Example:
            >>> Params(prompt="a fox", width=64, height=64).check_api()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            wanlab.errors.ParamError: width x height: must be one of the API sizes 832x480, ...; got '64x64'
        """
        if (self.width, self.height) not in API_SIZES:
            pairs = ", ".join(f"{w}x{h}" for w, h in API_SIZES)
            raise ParamError("width x height", f"one of the API sizes {pairs}", f"{self.width}x{self.height}")
        if self.num_frames != API_FRAMES:
            raise ParamError("num_frames", f"{API_FRAMES} for the hosted API (5 s at 16 fps)", self.num_frames)

    def to_api(self) -> dict[str, Any]:
        """The hosted API's JSON body for this request.

        Returns:
            The body with ``model_name`` and the API's field names (``num_frames`` is implied: 81).

        Raises:
            ParamError: The request uses local-only values (see :meth:`check_api`).

        Example:
            >>> Params(prompt="a fox").to_api()["model_name"]
            'wan2.1-t2v'
        """
        self.check_api()
        body: dict[str, Any] = {"model_name": API_MODEL_NAMES[0]}
        for name in ("prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift"):
            body[name] = getattr(self, name)
        body["loras"] = [lora.to_dict() for lora in self.loras]
        return body


def _frames(body: Mapping[str, Any], local: bool) -> int:
    """``frames``, the frame count as the provider's JavaScript SDK names it.

    ``num_frames`` by another name (both given must agree); under the API's rules only the count the
    API produces.
    """
    lo, hi = FRAMES_RANGE
    frames = check_int("frames", body["frames"], lo, hi, rule=f"4k+1 in {lo}..{hi} (the frame count)")
    if "num_frames" in body and body["num_frames"] != frames:
        raise ParamError("frames", f"equal to num_frames ({body['num_frames']!r}) when both are given: frames and "
                         "num_frames are two names of the frame count", frames)
    if not local and frames != API_FRAMES:
        raise ParamError("frames", f"{API_FRAMES} under the API's rules (5 s at 16 fps; other 4k+1 counts need a "
                         "server started with --allow-local-sizes)", frames)
    return int(frames)


@dataclass(frozen=True)
class ApiOptions:
    """The hosted-API body's fields that are not part of the request, validated.

    Attributes:
        enable_safety_checker: ``enable_safety_checker`` (default True).
        fast_mode: ``fast_mode`` (default False).
        webhook_url: ``extra.webhook.url``, or None.
        test_mode: ``extra.webhook.test_mode.enabled``.
        test_status: ``extra.webhook.test_mode.return_task_status`: a final :class:`~wanlab.taskstatus.TaskStatus`..

    Example:
        >>> body = {"prompt": "a fox", "extra": {"webhook": {"url": "https://x.test/h"}}}
        >>> ApiOptions.from_body(body).webhook_url
        'https://x.test/h'
    """

    enable_safety_checker: bool = True
    fast_mode: bool = False
    webhook_url: str | None = None
    test_mode: bool = False
    test_status: TaskStatus = TaskStatus.SUCCEED

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ApiOptions:
        """Read and check the options of a hosted-API body (its other fields are left alone).

        Args:
            body: The JSON body, parsed.

        Returns:
            The options, defaults where the body gives none.

        Raises:
            ParamError: A non-boolean flag, an ``extra`` or ``webhook`` that is not an object or has
                unknown fields, a missing or empty webhook url, or an unknown test status.
        """
        safety = check_bool("enable_safety_checker", body.get("enable_safety_checker", True))
        fast = check_bool("fast_mode", body.get("fast_mode", False))
        extra = body.get("extra", {})
        if not isinstance(extra, Mapping):
            raise ParamError("extra", "a JSON object", extra)
        check_known("extra", extra, ("webhook",), "a field of extra")
        webhook = extra.get("webhook")
        if webhook is None:
            return cls(safety, fast)
        if not isinstance(webhook, Mapping):
            raise ParamError("extra.webhook", "a JSON object with url (and test_mode)", webhook)
        check_known("extra.webhook", webhook, ("url", "test_mode"), "a field of extra.webhook")
        url = check_text("extra.webhook.url", webhook.get("url"), 1, 2048)
        test = webhook.get("test_mode", {})
        if not isinstance(test, Mapping):
            raise ParamError("extra.webhook.test_mode", "a JSON object with enabled and return_task_status", test)
        check_known("extra.webhook.test_mode", test, ("enabled", "return_task_status"),
                    "a field of extra.webhook.test_mode")
        enabled = check_bool("extra.webhook.test_mode.enabled", test.get("enabled", False))
        status = test.get("return_task_status", TaskStatus.SUCCEED)
        if status not in FINISHED:  # test mode answers a task that ended
            raise ParamError("extra.webhook.test_mode.return_task_status", f"one of {', '.join(FINISHED)}", status)
        return cls(safety, fast, url, enabled, TaskStatus(status))
