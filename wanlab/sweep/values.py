"""Small pieces of a sweep definition.

Seeds drawn from a sweep seed, swept values as TOML holds them and as tables and file names show
them, and shard specifications.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ParamError
from ..params import SEED_MAX, LoRA, Params
from ..values import is_int, plain

#: The axis that varies the acceleration setting (not a Params field: it changes how a request is
#: computed, not what is asked; it is part of the run key).
ACCEL = "accel"
SWEEP_SEED_MAX = 2**31 - 1
#: Short names used in point labels and file names (``seed1_gs3.0_fs5.0``).
SHORT_NAMES = {
    "seed": "seed", "guidance_scale": "gs", "flow_shift": "fs", "steps": "steps", "num_frames": "frames",
    "width": "w", "height": "h", "prompt": "prompt", "negative_prompt": "neg", "loras": "lora", "accel": "accel",
}


def draw_seeds(sweep_seed: int, n: int) -> list[int]:
    """``n`` distinct seeds in 0..9999999999 drawn from ``sweep_seed``.

    They are sha256-based: the same on every machine and Python version.

    Args:
        sweep_seed: the sweep's seed.
        n: how many seeds.

    Returns:
        The seeds, in draw order (a longer draw starts with the shorter one).

    Example:
        >>> draw_seeds(7, 3)
        [4638304645, 310628025, 672527803]
        >>> draw_seeds(7, 2) == draw_seeds(7, 3)[:2]
        True
    """
    seeds: list[int] = []
    counter = 0
    while len(seeds) < n:
        digest = hashlib.sha256(f"wanlab-sweep-seed:{sweep_seed}:{counter}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big") % (SEED_MAX + 1)
        counter += 1
        if seed not in seeds:
            seeds.append(seed)
    return seeds


def default_sweep_seed(text: str) -> int:
    """The sweep seed of a sweep that gives none: derived from its name (or prompt), never random.

    Args:
        text: the sweep's name, else its prompt.

    Returns:
        The seed (the same in every process that loads the same definition).

    Example:
        >>> default_sweep_seed("cfg study") == default_sweep_seed("cfg study")
        True
    """
    digest = hashlib.sha256(f"wanlab-sweep:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (SWEEP_SEED_MAX + 1)


def check_field(where: str, name: object) -> str:
    """A swept field's name: a Params field or ``accel``.

    Args:
        where: the axis it is given in (``"grid"``, ``"points[2]"``, ...), for the error.
        name: the field's name.

    Returns:
        The name.

    Raises:
        ParamError: not a Params field or ``accel`` (named ``<where>.<name>``).

    Example:
        >>> check_field("grid", "steps")
        'steps'
    """
    if not isinstance(name, str) or (name not in Params.field_names() and name != ACCEL):
        raise ParamError(f"{where}.{name}", f"a Params field ({', '.join(Params.field_names())}) or accel", name)
    return name


def check_accel(where: str, value: Any) -> Any:
    """A validated acceleration setting in its plain (TOML) form.

    Errors name where it was given (``grid.accel[1].cache_params.threshold``).

    Args:
        where: where it was given.
        value: an ``Accel``, a preset name or a mapping.

    Returns:
        The setting as plain data.

    Raises:
        ParamError: a bad setting, named by where it was given.

    Example:
        >>> check_accel("grid.accel[0]", "exact")
        'exact'
    """
    from ..accel.setting import Accel

    try:
        return plain(Accel.coerce(value, where))
    except ParamError as exc:
        if exc.field == where:
            raise
        raise ParamError(f"{where}.{exc.field}", exc.rule, exc.value) from None


def check_values(where: str, values: object) -> list[Any]:
    """A non-empty list of values in plain form (TOML tables and lists).

    Args:
        where: the field's place in the definition, for the error.
        values: the values given.

    Returns:
        The values as a list.

    Raises:
        ParamError: not a non-empty list or tuple.

    Example:
        >>> check_values("grid.steps", (10, 20))
        [10, 20]
    """
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (list, tuple)) or not values:
        raise ParamError(where, "a non-empty list of values", values)
    return [plain(v) for v in values]


def format_value(value: Any) -> str:
    """A short human form of a swept value (floats as ``3.0``, LoRAs as ``name@scale``).

    Args:
        value: a swept value (a number, a string, a LoRA or a list of them).

    Returns:
        The text, at most 40 characters.

    Example:
        >>> format_value(3.0), format_value(0.25), format_value([])
        ('3.0', '0.25', 'none')
    """
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value) if value else "none"
    if isinstance(value, LoRA):
        return f"{Path(value.path).stem}@{value.scale:g}"
    if isinstance(value, Mapping) and "path" in value:
        return f"{Path(str(value['path'])).stem}@{float(value.get('scale', 1.0)):g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def slug_part(text: str) -> str:
    """``text`` with what file names dislike replaced by ``-``.

    Args:
        text: any text.

    Returns:
        The file-safe text (``"x"`` when nothing is left).

    Example:
        >>> slug_part("cfg study/2")
        'cfg-study-2'
    """
    return re.sub(r"[^A-Za-z0-9.@+-]+", "-", text).strip("-") or "x"


def column_value(params: Params, name: str) -> Any:
    """A Params field as a table cell: LoRAs as ``"path:scale; ..."`` (empty for none), as ``Store.df`` writes them."""
    from ..store.index import loras_text

    value = getattr(params, name)
    return loras_text(value) if name == "loras" else value


def check_shard(shard: tuple[int, int] | str | Sequence[int]) -> tuple[int, int]:
    """``(i, n)`` or ``"i/n"`` with 0 <= i < n, checked.

    Args:
        shard: the shard as a string ``"i/n"`` or a pair.

    Returns:
        ``(i, n)``.

    Raises:
        ParamError: not of that form, or ``i`` out of range.

    Example:
        >>> check_shard("1/3")
        (1, 3)
        >>> check_shard("3/3")
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: shard: must be i/N (or (i, N)) with 0 <= i < N, e.g. 0/2 and 1/2; got '3/3'
    """
    rule = "i/N (or (i, N)) with 0 <= i < N, e.g. 0/2 and 1/2"
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not match:
            raise ParamError("shard", rule, shard)
        i, n = int(match.group(1)), int(match.group(2))
    elif isinstance(shard, (tuple, list)) and len(shard) == 2 and all(is_int(x) for x in shard):
        i, n = int(shard[0]), int(shard[1])
    else:
        raise ParamError("shard", rule, shard)
    if not (n >= 1 and 0 <= i < n):
        raise ParamError("shard", rule, shard if isinstance(shard, str) else f"{i}/{n}")
    return i, n
