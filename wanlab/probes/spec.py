"""Which probes a run records and with what settings: ``probes=`` validated into one canonical form.

:func:`normalize` checks what the caller gave; what depends on the request or the model (a step
past the last, a block the transformer lacks) is checked by :func:`check_against` when the run starts.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ProbeError
from ..inputs import AccelLike, ProbesLike

#: Probe names, in the order they are recorded and stored.
NAMES = ("trajectory", "attention", "features")
#: Each probe's settings and defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    "trajectory": {"dtype": "float32", "max_mb": 64.0},
    "attention": {"words": None, "steps": None, "blocks": None, "chunk": 1024},
    "features": {"blocks": None},
}
DTYPES = ("float32", "float16")


def normalize(probes: ProbesLike) -> dict[str, dict[str, Any]] | None:
    """``probes`` in canonical form (``{name: settings}``, names in :data:`NAMES` order), or None for none.

    Args:
        probes: A probe name (``"trajectory"``), a list of names, or a mapping from names to settings
            (``{"attention": {"words": ["square"], "steps": [0, 1]}}``; ``None`` or ``{}`` for the
            defaults, :data:`DEFAULTS`).

    Returns:
        ``{name: settings}`` with every setting filled in, or None for no probes.

    Raises:
        ProbeError: an unknown probe or setting, or a setting that breaks its rule (naming the
            field, the rule and the value).

    Example:
        >>> normalize(["trajectory"])
        {'trajectory': {'dtype': 'float32', 'max_mb': 64.0}}
        >>> normalize({"features": {"blocks": [0]}})
        {'features': {'blocks': [0]}}
    """
    if probes is None:
        return None
    if isinstance(probes, str):
        probes = [probes]
    if isinstance(probes, Mapping):
        items = list(probes.items())
    elif isinstance(probes, (list, tuple)):
        items = [(name, None) for name in probes]
    else:
        raise ProbeError.invalid("probes", f"a probe name, a list of names or a mapping of names to settings "
                                 f"({', '.join(NAMES)})", probes)
    given: dict[str, dict[str, Any]] = {}
    for name, settings in items:
        if not isinstance(name, str) or name not in NAMES:
            raise ProbeError.invalid("probes", f"names among {', '.join(NAMES)}", name)
        if name in given:
            raise ProbeError.invalid("probes", "each probe named once", name)
        given[name] = _settings(name, settings)
    if not given:
        return None
    return {name: given[name] for name in NAMES if name in given}


def _settings(name: str, settings: Any) -> dict[str, Any]:
    if settings is None or settings is True:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ProbeError.invalid(f"probes.{name}", "a mapping of settings (or None for the defaults)", settings)
    out = dict(DEFAULTS[name])
    for key, value in settings.items():
        field = f"probes.{name}.{key}"
        if key not in out:
            raise ProbeError.invalid(field, f"a setting of {name} ({', '.join(DEFAULTS[name])})", value)
        out[key] = _check(field, key, value)
    return out


def _check(field: str, key: str, value: Any) -> Any:
    if key in ("steps", "blocks"):
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if (not isinstance(value, (list, tuple)) or not value
                or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in value)):
            raise ProbeError.invalid(field, "None (all) or a non-empty list of indices >= 0", value)
        if len(set(value)) != len(value):
            raise ProbeError.invalid(field, "indices each given once", value)
        return sorted(int(v) for v in value)
    if key == "words":
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, (list, tuple)) or not value
                or any(not isinstance(v, str) or not v.strip() or len(v.split()) != 1 for v in value)):
            raise ProbeError.invalid(field, "None (every word of the prompt) or a non-empty list of single words",
                                     value)
        return [v.strip() for v in value]
    if key == "chunk":
        if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= 1 << 20:
            raise ProbeError.invalid(field, "an int from 16 to 1048576 (video tokens per chunk)", value)
        return int(value)
    if key == "dtype":
        if value not in DTYPES:
            raise ProbeError.invalid(field, f"one of {', '.join(DTYPES)}", value)
        return value
    if key == "max_mb":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 65536:
            raise ProbeError.invalid(field, "a number of megabytes above 0 and at most 65536", value)
        return float(value)
    raise AssertionError(key)  # pragma: no cover - every default has a rule


def check_against(probes: Mapping[str, Mapping[str, Any]], *, steps: int, blocks: int) -> None:
    """Check step and block indices against a request's ``steps`` and a transformer's ``blocks``.

    Run when the run starts, before any step is taken.

    Args:
        probes: :func:`normalize`'s output.
        steps: The request's denoising steps.
        blocks: The transformer's blocks.

    Raises:
        ProbeError: naming the setting, the valid range and the index given.

    Example:
        >>> check_against({"features": {"blocks": [0, 1]}}, steps=30, blocks=2)
    """
    for name, settings in probes.items():
        for key, limit, what in (("steps", steps, "the request's steps"), ("blocks", blocks, "the model's blocks")):
            chosen = settings.get(key)
            if chosen and max(chosen) >= limit:
                raise ProbeError.invalid(f"probes.{name}.{key}", f"indices from 0 to {limit - 1} ({what}: {limit})",
                                         chosen)


def check_accel(probes: Mapping[str, Any] | None, accel: AccelLike) -> None:
    """Refuse probes that hook inside the blocks with a compiled transformer (``accel.compile``).

    Compiled blocks do not run Python hooks as written. The trajectory needs no block hook.

    Args:
        probes: :func:`normalize`'s output, or None.
        accel: The run's acceleration setting.

    Raises:
        ProbeError: naming ``probes``, the rule and the probes asked for.

    Example:
        >>> check_accel({"trajectory": {}}, wanlab.accel.Accel(compile="blocks"))  # doctest: +SKIP
    """
    if probes and getattr(accel, "compile", "off") != "off" and set(probes) - {"trajectory"}:
        raise ProbeError.invalid("probes", "only trajectory with compile (attention and features hook inside the "
                                 "compiled blocks)", sorted(probes))
