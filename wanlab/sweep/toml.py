"""Sweeps in TOML files: the definition's tables, with the question as the file's first comment.

A TOML file holds top-level values (``name``, ``model``, ``seeds``, ``sweep_seed``, ``reference``),
then ``[base]``, ``[grid]``, ``[zip]`` and ``[[points]]``; arrays stay on one line when they fit.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_toml(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """A TOML file's tables and its leading question.

    Args:
        path: the sweep file.

    Returns:
        ``(data, question)``: the parsed tables, and the first paragraph of the leading comment (None
        without one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid TOML, naming the file.

    Example:
        >>> data, question = read_toml("sweeps/demo.toml")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"sweep file: no such file: {file}")
    text = file.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{file}: not valid TOML: {exc}") from None
    return data, leading_question(text)


def to_toml(data: Mapping[str, Any], question: str | None = None) -> str:
    """The TOML text of a sweep definition (``Sweep.to_dict()``), its question as the first comment.

    Args:
        data: the definition as plain data.
        question: what the sweep asks (None: no comment).

    Returns:
        The file's text.

    Example:
        >>> print(to_toml({"seeds": [1, 2], "base": {"prompt": "a fox"}}, "Does guidance change motion?"))
        # Question: Does guidance change motion?
        seeds = [1, 2]
        <BLANKLINE>
        [base]
        prompt = "a fox"
        <BLANKLINE>
    """
    head = "\n".join(wrap_comment(f"Question: {question}")) + "\n" if question else ""
    return head + toml_dumps(data)


def _toml_scalar(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split(" = ", 1)[1].rstrip("\n")


def _toml_key(key: str) -> str:
    import tomli_w

    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]


def _toml_value(value: Any, width: int = 100) -> str:
    """Arrays on one line when they fit (tomli_w puts every item on its own line)."""
    if isinstance(value, (list, tuple)):
        items = [_toml_value(v, width) for v in value]
        inline = "[" + ", ".join(items) + "]"
        if len(inline) <= width or not items:
            return inline
        return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v, width)}" for k, v in value.items()) + " }"
    return _toml_scalar(value)


def toml_dumps(data: Mapping[str, Any]) -> str:
    """TOML for a sweep definition: top-level values, then [base], [grid], [zip] and [[points]].

    Arrays stay on one line when they fit in 100 columns.

    Args:
        data: the definition as plain data.

    Returns:
        The TOML text.
    """
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
             if k not in ("base", "grid", "zip", "points")]
    for table in ("base", "grid", "zip"):
        if table in data:
            lines += ["", f"[{table}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data[table].items()]
    for point in data.get("points", []):
        lines += ["", "[[points]]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in point.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def leading_question(text: str) -> str | None:
    r"""The first paragraph of a TOML file's leading comment, without ``#`` and a leading ``Question:``.

    The paragraph ends at a bare ``#`` line.

    Args:
        text: the file's text.

    Returns:
        The question, or None when the file starts with no comment.

    Example:
        >>> leading_question("# Question: does it move?\n#\n# more\nseeds = 1\n")
        'does it move?'
    """
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        content = stripped.lstrip("#").strip()
        if not content:
            if lines:
                break
            continue
        lines.append(content)
    body = " ".join(line for line in lines if line)
    body = re.sub(r"^question:\s*", "", body, flags=re.IGNORECASE)
    return body or None


def wrap_comment(text: str, width: int = 98) -> list[str]:
    """``text`` as TOML comment lines (``# ...``), each holding at most ``width`` characters of text.

    A word longer than ``width`` gets a line of its own.

    Example:
        >>> wrap_comment("one two three", width=7)
        ['# one two', '# three']
    """
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return [f"# {line}" for line in lines]


