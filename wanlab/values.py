"""Checks of single values and plain (JSON/TOML) forms: the one place wanlab's validation rules live.

Every check raises :class:`~wanlab.errors.ParamError` naming the field, the rule and the value
(``steps: must be an integer in 1..40; got 50``) and returns the value in its canonical type.
Booleans are never numbers here (``True`` is not the integer 1).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from .errors import ParamError

#: Wan 2.1 generates 16 frames per second (here, below every layer that needs it, so a request's
#: duration needs no numpy).
WAN_FPS = 16.0


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` that is not a ``bool``.

    Args:
        value: Anything.

    Returns:
        True for ints (numpy integers and bools are not).

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or ``float`` that is not a ``bool``.

    Args:
        value: Anything.

    Returns:
        True for ints and floats, NaN included (range checks refuse it).

    Example:
        >>> is_number(0.5), is_number(False), is_number("1")
        (True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None, *,
              optional: bool = False, rule: str | None = None) -> Any:
    """``value`` as an int in ``lo..hi``.

    Args:
        name: The field, for the message.
        value: The value given.
        lo: The least value allowed (None: no bound).
        hi: The largest value allowed (None: no bound).
        optional: None passes (and is returned).
        rule: The rule in words for the message (default: from the bounds).

    Returns:
        The int (or None when optional).

    Raises:
        ParamError: Not an int (a bool or a float is not), or out of range.

    Example:
        >>> check_int("steps", 30, 1, 40)
        30
        >>> check_int("steps", 50, 1, 40)
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: steps: must be an integer in 1..40; got 50
    """
    if value is None and optional:
        return None
    if rule is None:
        if lo is not None and hi is not None:
            rule = f"an integer in {lo}..{hi}"
        elif lo is not None:
            rule = f"an integer >= {lo}"
        elif hi is not None:
            rule = f"an integer <= {hi}"
        else:
            rule = "an integer"
        if optional:
            rule += " or None"
    if not is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamError(name, rule, value)
    return int(value)


def check_number(name: str, value: object, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, optional: bool = False, rule: str | None = None) -> Any:
    """``value`` as a finite float in the range.

    Args:
        name: The field, for the message.
        value: The value given (an int or float, not a bool).
        lo: The least value allowed (None: no bound).
        hi: The largest value allowed (None: no bound).
        lo_open: Exclude ``lo`` itself.
        hi_open: Exclude ``hi`` itself.
        optional: None passes (and is returned).
        rule: The rule in words for the message (default: from the bounds).

    Returns:
        The float (-0.0 as 0.0: one value, one run key), or None when optional.

    Raises:
        ParamError: Not a number, not finite, or out of range.

    Example:
        >>> check_number("guidance_scale", 5, 0, 10)
        5.0
    """
    if value is None and optional:
        return None
    if rule is None:
        if lo is not None and hi is not None:
            rule = (f"a number in {lo:g}..{hi:g}" if not (lo_open or hi_open) else
                    f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        elif lo is not None:
            rule = f"a number {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            rule = f"a number {'<' if hi_open else '<='} {hi:g}"
        else:
            rule = "a finite number"
        if optional:
            rule += " or None"
    try:
        v = float(value) if is_number(value) else math.nan  # type: ignore[arg-type]
    except OverflowError:  # an int beyond any float (400 digits): out of every range
        v = math.nan
    if not math.isfinite(v):
        raise ParamError(name, rule, value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ParamError(name, rule, value)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ParamError(name, rule, value)
    return v + 0.0  # -0.0 is 0.0: one value, one run key


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is True or False (not 0/1, not a string).

    Args:
        name: The field, for the message.
        value: The value given.

    Returns:
        The bool.

    Raises:
        ParamError: Anything but a bool.

    Example:
        >>> check_bool("fast_mode", False)
        False
    """
    if not isinstance(value, bool):
        raise ParamError(name, "True or False", value)
    return value


def check_text(name: str, value: object, lo: int = 0, hi: int | None = None) -> str:
    """A string of ``lo..hi`` characters, valid Unicode.

    Args:
        name: The field, for the message.
        value: The value given.
        lo: The fewest characters.
        hi: The most characters (None: no bound).

    Returns:
        The string.

    Raises:
        ParamError: Not a string, of the wrong length (long values are shown by their length in the
            message), or with a lone surrogate.

    Example:
        >>> check_text("prompt", "a fox", 1, 2000)
        'a fox'
    """
    rule = f"a string of {lo}..{hi} characters" if hi is not None else f"a string of at least {lo} characters"
    if not isinstance(value, str):
        raise ParamError(name, rule, value)
    if len(value) < lo or (hi is not None and len(value) > hi):
        raise ParamError(name, rule, value if len(value) <= 60 else f"<{len(value)} characters>")
    check_unicode(name, value)
    return value


def check_unicode(name: str, value: str) -> str:
    r"""``value`` when it is valid Unicode text.

    A lone UTF-16 surrogate (``"\ud800"``, which JSON's ``\u`` escapes can carry) cannot be
    written as UTF-8, stored or tokenized, so it is refused.

    Args:
        name: The field, for the message.
        value: A string.

    Returns:
        The string.

    Raises:
        ParamError: It holds a lone surrogate (the message names its position).

    Example:
        >>> check_unicode("prompt", "a fox")
        'a fox'
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParamError(name, "valid Unicode text (no lone UTF-16 surrogate)",
                         f"<text with {value[exc.start]!a} at character {exc.start}>") from None
    return value


def check_choice(name: str, value: object, options: Iterable[Any], rule: str | None = None) -> Any:
    """``value`` when it equals one of ``options`` (and has its type: 1 is not True).

    Args:
        name: The field, for the message.
        value: The value given.
        options: The values allowed.
        rule: The rule in words (default: ``one of ...``).

    Returns:
        The matching option.

    Raises:
        ParamError: No option matches.

    Example:
        >>> check_choice("method", "dis", ("dis", "farneback"))
        'dis'
    """
    options = tuple(options)
    for option in options:
        if type(option) is type(value) and option == value:
            return option
    raise ParamError(name, rule or "one of " + ", ".join(repr(o) for o in options), value)


def check_known(where: str, data: Mapping[str, Any], known: Iterable[str], what: str = "a field") -> None:
    """Refuse the first key of ``data`` (in sorted order) that is not in ``known``, listing the known ones.

    Args:
        where: Prefixes the field name (``"cache_params"`` gives ``cache_params.treshold: ...``).
        data: The mapping checked.
        known: The keys allowed.
        what: What a key is, in words.

    Raises:
        ParamError: An unknown key.

    Example:
        >>> check_known("cache_params", {"treshold": 0.1}, ("threshold",))
        Traceback (most recent call last):
        ...
        wanlab.errors.ParamError: cache_params.treshold: must be a field (threshold); got 0.1
    """
    known = tuple(known)
    unknown = sorted((k for k in data if k not in known), key=str)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ParamError(name, f"{what} ({', '.join(map(str, known)) or 'none'})", data[unknown[0]])


def plain(value: Any) -> Any:
    """JSON/TOML-able form of a value.

    Args:
        value: Anything: objects with ``to_plain()`` or ``to_dict()`` go through it, mappings get
            string keys, tuples become lists, paths strings, numpy scalars and arrays Python values.

    Returns:
        The plain value (others are returned as they are).

    Example:
        >>> from pathlib import Path
        >>> plain({"size": (64, 64), 1: Path("runs")})
        {'size': [64, 64], '1': 'runs'}
    """
    if hasattr(value, "to_plain") and not isinstance(value, type):
        return value.to_plain()
    if hasattr(value, "to_dict") and not isinstance(value, (type, Mapping)):
        return plain(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy":
        return value.tolist() if hasattr(value, "tolist") else value
    return value
