"""A sweep's axes.

Reading ``grid``, ``zip``, ``points`` and ``seeds`` (each field varied by one axis only), and
expanding them into each point's overrides, outermost axis first.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ParamError
from ..params import SEED_MAX
from ..values import check_int, plain
from .values import ACCEL, check_accel, check_field, check_values

#: What ``read_axes`` returns: grid, zip, explicit points (or None) and the seeds (a count, a list or None).
Axes = tuple[dict[str, list[Any]], dict[str, list[Any]], "list[dict[str, Any]] | None", "int | list[int] | None"]


def read_axes(grid: Mapping[str, Sequence[Any]] | None, zip: Mapping[str, Sequence[Any]] | None,
              points: Sequence[Mapping[str, Any]] | None, seeds: Sequence[int] | int | None) -> Axes:
    """Validate the axes of a sweep.

    A field in two axes, a bad value or zip lists of unequal length raise
    :class:`~wanlab.ParamError` naming the axis and the field.

    Example:
        >>> read_axes({"steps": [10, 20]}, None, None, [1, 2])[0]
        {'steps': [10, 20]}
    """
    seen: dict[str, str] = {}

    def claim(field: str, axis: str) -> None:
        if field in seen:
            raise ParamError(field, f"varied by one axis only (it is in both {seen[field]} and {axis})", field)
        seen[field] = axis

    grid_axis: dict[str, list[Any]] = {}
    zip_axis: dict[str, list[Any]] = {}
    for axis, given, table in (("grid", grid, grid_axis), ("zip", zip, zip_axis)):
        for key, values in (given or {}).items():
            check_field(axis, key)
            claim(key, axis)
            table[key] = check_values(f"{axis}.{key}", values)
            if key == ACCEL:
                table[key] = [check_accel(f"{axis}.accel[{j}]", v) for j, v in enumerate(table[key])]
    lengths = {k: len(v) for k, v in zip_axis.items()}
    if len(set(lengths.values())) > 1:
        raise ParamError("zip", "lists of equal length", lengths)

    explicit: list[dict[str, Any]] | None = None
    if points is not None:
        if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, (list, tuple)) or not points:
            raise ParamError("points", "a non-empty list of mappings of Params fields", points)
        explicit = []
        point_fields: list[str] = []
        for i, point in enumerate(points):
            if not isinstance(point, Mapping):
                raise ParamError(f"points[{i}]", "a mapping of Params fields", point)
            for key in point:
                check_field(f"points[{i}]", key)
                if key not in point_fields:
                    point_fields.append(key)
            point_values = {k: plain(v) for k, v in point.items()}
            if ACCEL in point_values:
                point_values[ACCEL] = check_accel(f"points[{i}].accel", point_values[ACCEL])
            explicit.append(point_values)
        for key in point_fields:
            claim(key, "points")

    seeds_spec: int | list[int] | None = None
    if seeds is not None:
        claim("seed", "seeds")
        if isinstance(seeds, (int, bool)):
            seeds_spec = check_int("seeds", seeds, 1, rule="a list of seeds or a count N >= 1")
        else:
            seeds_spec = check_values("seeds", seeds)
            for v in seeds_spec:
                check_int("seeds", v, 0, SEED_MAX, rule=f"seeds in 0..{SEED_MAX}")
    return grid_axis, zip_axis, explicit, seeds_spec


def overrides_of(seeds: Sequence[int] | None, points: Sequence[Mapping[str, Any]] | None,
                 zip: Mapping[str, Sequence[Any]], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Per point, the values the axes set.

    The product of seeds, points, the zipped lists and each grid field, in that order (the last grid
    field varies fastest).

    Example:
        >>> overrides_of([1, 2], None, {}, {"steps": [10, 20]})
        [{'seed': 1, 'steps': 10}, {'seed': 1, 'steps': 20}, {'seed': 2, 'steps': 10}, {'seed': 2, 'steps': 20}]
    """
    axes: list[list[dict[str, Any]]] = []
    if seeds is not None:
        axes.append([{"seed": s} for s in seeds])
    if points is not None:
        axes.append([dict(p) for p in points])
    if zip:
        n = len(next(iter(zip.values())))
        axes.append([{k: v[i] for k, v in zip.items()} for i in range(n)])
    for key, values in grid.items():
        axes.append([{key: v} for v in values])
    out = []
    for combo in itertools.product(*axes):
        merged: dict[str, Any] = {}
        for part in combo:
            merged.update(part)
        out.append(merged)
    return out
