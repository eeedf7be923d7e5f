"""Tables as HTML: the one renderer the report, the widgets and notebook reprs share.

Numbers to 4 significant digits, NaN and None as a dash, infinity as ∞; long text cut where asked;
rows may carry a CSS class (the sweep report shades failed and pending rows) and a link.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

CELL = "padding:2px 8px;text-align:right;white-space:nowrap"


def cell_text(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, missing values as a dash.

    Args:
        value: A cell (numpy scalars are read as Python values).

    Returns:
        The text: NaN and None as ``—``, infinity as ``∞``.

    Example:
        >>> cell_text(0.123456), cell_text(None), cell_text(float("inf"))
        ('0.1235', '—', '∞')
    """
    if value is None:
        return "—"
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    return str(value)


def html_table(df: Any, *, index: bool = False, columns: Sequence[str] | None = None,
               row_class: str | None = None, links: Mapping[Any, str] | None = None,
               cut: Mapping[str, int] | None = None, css_class: str = "wanlab-table") -> str:
    """An HTML table of a DataFrame (cells by :func:`cell_text`, HTML-escaped).

    Args:
        df: The DataFrame.
        index: Add the index as the first column.
        columns: Pick and order columns (default: all).
        row_class: A column whose value becomes each row's CSS class.
        links: Map an index value to a URL shown in a first ``video`` column (linked as its file
            type, e.g. ``mp4``, the file name as its tooltip).
        cut: Shorten a column's text to that many characters.
        css_class: The table's CSS class.

    Returns:
        The ``<table>`` HTML.

    Example:
        >>> import pandas as pd
        >>> html_table(pd.DataFrame({"psnr": [float("inf")]})).count("<td")
        1
        >>> html_table(result.df, row_class="status")  # doctest: +SKIP
    """
    cols = list(df.columns if columns is None else columns)
    cut = dict(cut or {})
    head = "".join(f"<th style='{CELL}'>{html.escape(str(c))}</th>" for c in cols)
    if index:
        head = f"<th style='{CELL};text-align:left'>{html.escape(str(df.index.name or ''))}</th>" + head
    if links is not None:  # first, with a short text: a table wider than the page never hides it
        head = f"<th style='{CELL}'>video</th>" + head
    body = []
    for key, row in df.iterrows():
        cells = "".join(f"<td style='{CELL}'>{html.escape(cell_text(row[c])[:cut.get(c)])}</td>" for c in cols)
        if index:
            cells = f"<td style='{CELL};text-align:left'>{html.escape(str(key))}</td>" + cells
        if links is not None:
            link = links.get(key)
            if link:
                file = link.rsplit("/", 1)[-1]
                text = link.rsplit(".", 1)[-1] if "." in file else "open"
                cells = (f"<td style='{CELL}'><a href=\"{html.escape(link)}\" title=\"{html.escape(file)}\">"
                         f"{html.escape(text)}</a></td>") + cells
            else:
                cells = "<td></td>" + cells
        css = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return (f"<table class='{css_class}' style='border-collapse:collapse;font-size:12px;line-height:1.4'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
