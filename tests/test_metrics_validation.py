"""docs/metrics.md's validation table is true: every row is re-run on its synthetic videos, passes, and
measures what the table says (within 5 %, or 2 % of the row's largest value for values near zero)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from wanlab.metrics import validation

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def documented_rows() -> dict[str, dict[str, str]]:
    text = DOC.read_text()
    table = text.split("<!-- validation:start -->")[1].split("<!-- validation:end -->")[0]
    lines = [line for line in table.strip().splitlines() if line.startswith("| ") and not line.startswith("| id ")]
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = dict(zip(["id", "metric", "video", "expected", "measured", "passes"], cells))
    return rows


def parse(measured: str) -> dict[str, float]:
    return {k: float(v) for k, v in (item.rsplit(" ", 1) for item in measured.split(", "))}


def test_the_table_lists_every_check_once() -> None:
    rows = documented_rows()
    assert list(rows) == [c.id for c in validation.CHECKS]
    for check in validation.CHECKS:
        row = rows[check.id]
        assert (row["metric"], row["video"], row["expected"], row["passes"]) == \
            (check.metric, check.video, check.expected, "yes")


@pytest.mark.parametrize("check", validation.CHECKS, ids=[c.id for c in validation.CHECKS])
def test_row_passes_and_measures_what_the_table_says(check: validation.Check) -> None:
    documented = parse(documented_rows()[check.id]["measured"])
    values, ok = check.run()
    assert ok, f"{check.id}: expected {check.expected}; measured {validation.format_measured(values)}"
    assert list(values) == list(documented)
    scale = max((abs(v) for v in documented.values() if math.isfinite(v)), default=0.0)
    for name, value in values.items():
        doc = documented[name]
        if math.isnan(doc):
            assert math.isnan(value), name
        else:
            assert value == pytest.approx(doc, rel=0.05, abs=0.02 * scale + 1e-12), name
