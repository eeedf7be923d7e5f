"""Sweeps: many validated requests from one definition, run into a store, resumable and shardable.

A :class:`Sweep` is a ``base`` request and the axes that vary it:

- ``seeds``: a list of seeds, or ``N`` for N fixed seeds drawn from the sweep's recorded ``sweep_seed``;
- ``points``: explicit variants, each a mapping of fields (they may differ in which fields they set);
- ``zip``: fields varied together (lists of equal length, one value of each per variant);
- ``grid``: fields varied independently (the cartesian product, in the order given).

Besides the :class:`~wanlab.Params` fields, every axis (and ``base``) takes ``accel``: an
acceleration setting (:class:`wanlab.accel.Accel`, a preset name such as ``"fbc"``, or a mapping),
so one sweep runs the exact baseline and each setting on the same requests. Such a sweep keeps
each run's final latents, and :meth:`SweepResult.accel_study` turns it into the table of
:func:`wanlab.accel.study` (speedup, PSNR/SSIM/latent error against exact, calls skipped), ready
for :func:`wanlab.accel.summarize` and :func:`wanlab.accel.plot_study`. Timings of a sweep are
single runs: before the first timed run in a process the first request is run once untimed, and
a compiled setting once per size (compilation is not what the study measures); storing a run does
not overlap the next generation, which would share the cores.

The sweep's points are the product of these axes, outermost first in the order above (the last
grid field varies fastest). Every point is validated when the sweep is built; a bad point raises
:class:`~wanlab.ParamError` naming the point and the field. A point whose seed is -1 (the base's
default) gets one seed drawn from ``sweep_seed``, so a sweep is reproducible and resumable; when no
``sweep_seed`` is given it is derived from the sweep's ``name`` (or its prompt), never drawn at
random, so every process that loads the same definition (a resume, another shard) agrees.

:meth:`Sweep.run` runs the points into a :class:`wanlab.Store`: points already there (same run
key: model fingerprint + resolved request + settings) are skipped, so a killed sweep resumes where
it stopped; a failing point is recorded with its error and the sweep goes on (``max_failures=K``
stops it gracefully after K failures: the rest stay pending, ``result.stopped`` says so and a
warning is issued); prompt embeddings are computed once per text by the pipeline and reused
(bit-identical to encoding every time); storing a run (metrics, video files, record) happens on a
writer thread, overlapping the next generation when that leaves CPU free (:func:`write_ahead`; never
in a sweep over ``accel``, which times its runs). ``shard=(i, n)`` runs points ``i, i+n, ...`` so n
processes (or machines sharing a folder) split a sweep with no coordinator.

Statuses in :attr:`SweepResult.df`, read from the store (so every process sees the same table):

- ``done``: the run is in the store (ran now, earlier, or in another shard);
- ``failed``: the last attempt failed; ``error`` holds ``"ExceptionType: message"``;
- ``pending``: not run yet (another shard's share, or a sweep stopped by ``max_failures``).
"""
from __future__ import annotations

import builtins
import hashlib
import itertools
import math
import os
import re
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .errors import ParamError
from .params import SEED_MAX, LoRA, Params

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .pipeline import Pipeline
    from .store import Run, Store
    from .video import Video

STATUSES = ("done", "failed", "pending")
#: Short names used in point labels and file names (``seed1_gs3.0_fs5.0``).
SHORT_NAMES = {
    "seed": "seed", "guidance_scale": "gs", "flow_shift": "fs", "steps": "steps", "num_frames": "frames",
    "width": "w", "height": "h", "prompt": "prompt", "negative_prompt": "neg", "loras": "lora", "accel": "accel",
}
#: The axis that varies the acceleration setting (not a Params field: it changes how a request is
#: computed, not what is asked; it is part of the run key).
ACCEL = "accel"
#: Columns a sweep over ``accel`` adds to its table.
ACCEL_COLUMNS = ("denoise_s", "calls_skipped")
AXES = ("seeds", "points", "zip", "grid")
#: Metric columns come in this order (those of ``metrics.motion``), any others after them.
METRIC_ORDER = ("flow_magnitude", "dynamic_degree", "dynamic_score", "dynamic_threshold", "temporal_flicker",
                "smoothness", "warp_error")
TOP_LEVEL_KEYS = ("name", "model", "question", "seeds", "sweep_seed", "reference", "base", "grid", "zip", "points")
SWEEP_SEED_MAX = 2**31 - 1
#: Generated runs that may wait for the writer thread while the next point generates, when the
#: generation leaves CPU free (see :func:`write_ahead`).
WRITE_AHEAD = 1


# --------------------------------------------------------------------------------------------------
# seeds
def draw_seeds(sweep_seed: int, n: int) -> list[int]:
    """``n`` distinct seeds in 0..9999999999 drawn from ``sweep_seed`` (sha256-based: the same on every
    machine and Python version)."""
    seeds: list[int] = []
    counter = 0
    while len(seeds) < n:
        digest = hashlib.sha256(f"wanlab-sweep-seed:{sweep_seed}:{counter}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big") % (SEED_MAX + 1)
        counter += 1
        if seed not in seeds:
            seeds.append(seed)
    return seeds


def _default_sweep_seed(text: str) -> int:
    digest = hashlib.sha256(f"wanlab-sweep:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (SWEEP_SEED_MAX + 1)


# --------------------------------------------------------------------------------------------------
# plain values (TOML-able, comparable)
def _plain(value: Any) -> Any:
    """LoRAs as ``{path, scale}`` tables, tuples as lists, acceleration settings as preset names or
    tables: what TOML and JSON hold."""
    from .accel import Accel

    if isinstance(value, Accel):
        return _accel_plain(value)
    if isinstance(value, LoRA):
        return value.to_dict()
    if isinstance(value, Params):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def _accel_plain(accel: Any) -> str | dict[str, Any]:
    """A setting as its preset name when it is one, else a table of what differs from the defaults
    (parameters left at their defaults are left out: shorter, and TOML has no None)."""
    from .accel import PRESETS, Accel

    if accel.name in PRESETS and Accel.preset(accel.name) == accel:
        return accel.name
    changed = accel.changed_params()
    out = {k: (changed if k == "cache_params" else v) for k, v in accel.to_dict().items()
           if k != "cache_params" or changed}
    if accel.name:
        out["name"] = accel.name
    return out


def _check_field(where: str, name: object) -> str:
    if not isinstance(name, str) or (name not in Params.field_names() and name != ACCEL):
        raise ParamError(f"{where}.{name}", f"a Params field ({', '.join(Params.field_names())}) or accel", name)
    return name


def _check_accel(where: str, value: Any) -> Any:
    """A validated acceleration setting in its plain (TOML) form; errors name where it was given
    (``grid.accel[1].cache_params.threshold``)."""
    from .accel import Accel

    try:
        return _plain(Accel.coerce(value, where))
    except ParamError as exc:
        if exc.field == where:
            raise
        raise ParamError(f"{where}.{exc.field}", exc.rule, exc.value) from None


def _check_values(where: str, values: object) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (list, tuple)):
        raise ParamError(where, "a non-empty list of values", values)
    if not values:
        raise ParamError(where, "a non-empty list of values", values)
    return [_plain(v) for v in values]


def format_value(value: Any) -> str:
    """A short human form of a swept value (floats as ``3.0``, LoRAs as ``name@scale``)."""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        return "+".join(format_value(v) for v in value)
    if isinstance(value, LoRA):
        return f"{Path(value.path).stem}@{value.scale:g}"
    if isinstance(value, Mapping) and "path" in value:
        return f"{Path(str(value['path'])).stem}@{float(value.get('scale', 1.0)):g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _slug_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@+-]+", "-", text).strip("-") or "x"


def _column_value(params: Params, name: str) -> Any:
    """A Params field as a DataFrame cell: LoRAs as ``"path:scale; ..."`` (empty string for none), as
    ``Store.df()`` writes them."""
    value = getattr(params, name)
    if name == "loras":
        return "; ".join(f"{lo.path}:{lo.scale:g}" for lo in value)
    return value


# --------------------------------------------------------------------------------------------------
class Sweep:
    """A base request and the axes that vary it; see the module docstring for the rules.

    >>> sweep = Sweep(base=Params(prompt="a fox", width=64, height=64, num_frames=17, steps=10),
    ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]}, seeds=[1, 2])
    >>> len(sweep)
    8
    """

    def __init__(self, base: Params | Mapping[str, Any] | None = None,
                 grid: Mapping[str, Sequence[Any]] | None = None,
                 zip: Mapping[str, Sequence[Any]] | None = None,  # noqa: A002 (the contract's name)
                 points: Sequence[Mapping[str, Any]] | None = None,
                 seeds: Sequence[int] | int | None = None, *, name: str | None = None,
                 model: str | None = None, question: str | None = None, sweep_seed: int | None = None,
                 reference: Mapping[str, Any] | None = None) -> None:
        # --- base: a Params (every field explicit) or a mapping (missing fields: the model's native
        # settings at run time, Params' defaults when no pipeline is given)
        if base is None:
            base_fields: dict[str, Any] = {}
        elif isinstance(base, Params):
            base_fields = base.to_dict()
        elif isinstance(base, Mapping):
            base_fields = {_check_field("base", k): _plain(v) for k, v in base.items()}
            if ACCEL in base_fields:
                base_fields[ACCEL] = _check_accel("base.accel", base_fields[ACCEL])
        else:
            raise ParamError("base", "a wanlab.Params or a mapping of Params fields", base)
        self.base_fields: dict[str, Any] = base_fields

        for label, value in (("name", name), ("model", model), ("question", question)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ParamError(label, "a non-empty string", value)
        self.name = name
        self.model = model
        self.question = question.strip() if question else None

        # --- axes
        seen: dict[str, str] = {}

        def claim(field: str, axis: str) -> None:
            if field in seen:
                raise ParamError(field, f"varied by one axis only (it is in both {seen[field]} and {axis})", field)
            seen[field] = axis

        self.grid: dict[str, list[Any]] = {}
        self.zip: dict[str, list[Any]] = {}
        for axis, given, table in (("grid", grid, self.grid), ("zip", zip, self.zip)):
            for key, values in (given or {}).items():
                _check_field(axis, key)
                claim(key, axis)
                table[key] = _check_values(f"{axis}.{key}", values)
                if key == ACCEL:
                    table[key] = [_check_accel(f"{axis}.accel[{j}]", v) for j, v in enumerate(table[key])]
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ParamError("zip", "lists of equal length", lengths)

        self.explicit_points: list[dict[str, Any]] | None = None
        if points is not None:
            if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, (list, tuple)) or not points:
                raise ParamError("points", "a non-empty list of mappings of Params fields", points)
            self.explicit_points = []
            point_fields: list[str] = []
            for i, point in enumerate(points):
                if not isinstance(point, Mapping):
                    raise ParamError(f"points[{i}]", "a mapping of Params fields", point)
                for key in point:
                    _check_field(f"points[{i}]", key)
                    if key not in point_fields:
                        point_fields.append(key)
                plain = {k: _plain(v) for k, v in point.items()}
                if ACCEL in plain:
                    plain[ACCEL] = _check_accel(f"points[{i}].accel", plain[ACCEL])
                self.explicit_points.append(plain)
            for key in point_fields:
                claim(key, "points")

        self.seeds_spec: int | list[int] | None = None
        if seeds is not None:
            claim("seed", "seeds")
            if isinstance(seeds, bool):
                raise ParamError("seeds", "a list of seeds or a count N >= 1", seeds)
            if isinstance(seeds, int):
                if seeds < 1:
                    raise ParamError("seeds", "a list of seeds or a count N >= 1", seeds)
                self.seeds_spec = seeds
            else:
                values = _check_values("seeds", seeds)
                for v in values:
                    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= SEED_MAX:
                        raise ParamError("seeds", f"seeds in 0..{SEED_MAX}", v)
                self.seeds_spec = values

        # --- the sweep seed: given, or derived from the name (or prompt); recorded either way
        if sweep_seed is not None:
            if isinstance(sweep_seed, bool) or not isinstance(sweep_seed, int) or not 0 <= sweep_seed <= SEED_MAX:
                raise ParamError("sweep_seed", f"an integer in 0..{SEED_MAX}", sweep_seed)
            self._sweep_seed_given = True
        else:
            sweep_seed = _default_sweep_seed(name or str(base_fields.get("prompt", "sweep")))
            self._sweep_seed_given = False
        self.sweep_seed: int = sweep_seed

        self._overrides = self._build_overrides()
        self._accels = self._build_accels()
        self._check_accel_labels()
        self._points = self._materialize(None)

        # --- the reference point every other is compared with (e.g. steps = 40), if any
        self.reference: dict[str, Any] | None = None
        if reference is not None:
            if not isinstance(reference, Mapping) or not reference:
                raise ParamError("reference", "a table of swept fields and their reference values", reference)
            for key, value in reference.items():
                if key not in self.swept:
                    raise ParamError(f"reference.{key}", f"a swept field ({', '.join(self.swept)})", value)
                if key == ACCEL:
                    value = _check_accel("reference.accel", value)
                if not any(self._value(i, p, key) == self._cell_of(key, value) for i, p in enumerate(self._points)):
                    raise ParamError(f"reference.{key}", "a value some point of the sweep has", value)
            self.reference = {k: (_check_accel("reference.accel", v) if k == ACCEL else _plain(v))
                              for k, v in reference.items()}
        self._freeze()

    def _freeze(self) -> None:
        """A sweep is a value: its definition is read-only (make another with :meth:`replace`)."""
        self.base_fields = MappingProxyType(self.base_fields)  # type: ignore[assignment]
        self.grid = MappingProxyType({k: tuple(v) for k, v in self.grid.items()})  # type: ignore[assignment]
        self.zip = MappingProxyType({k: tuple(v) for k, v in self.zip.items()})  # type: ignore[assignment]
        if self.explicit_points is not None:
            self.explicit_points = tuple(MappingProxyType(p) for p in self.explicit_points)  # type: ignore[assignment]
        if isinstance(self.seeds_spec, list):
            self.seeds_spec = tuple(self.seeds_spec)  # type: ignore[assignment]
        if self.reference is not None:
            self.reference = MappingProxyType(self.reference)  # type: ignore[assignment]

    def replace(self, **changes: Any) -> "Sweep":
        """A new sweep with some of the definition changed, e.g. ``sweep.replace(grid={"steps": [10, 20]})``
        or ``sweep.replace(base={**sweep.base_fields, "width": 64})``; the rest is kept."""
        unknown = [k for k in changes if k not in TOP_LEVEL_KEYS]
        if unknown:
            raise ParamError(unknown[0], f"a sweep key ({', '.join(TOP_LEVEL_KEYS)})", changes[unknown[0]])
        data = self.to_dict()
        if "sweep_seed" in data and not self._sweep_seed_given:
            del data["sweep_seed"]  # derived: derive it again (from a new name, say)
        data["question"] = self.question
        data.update(changes)
        return Sweep.from_dict({k: v for k, v in data.items() if v is not None})

    # --- construction ---------------------------------------------------------------------------------
    @property
    def seeds(self) -> list[int] | None:
        """The seeds axis as concrete seeds (drawn from ``sweep_seed`` when given as a count)."""
        if self.seeds_spec is None:
            return None
        if isinstance(self.seeds_spec, int):
            return draw_seeds(self.sweep_seed, self.seeds_spec)
        return list(self.seeds_spec)

    def _axes(self) -> list[list[dict[str, Any]]]:
        axes: list[list[dict[str, Any]]] = []
        seeds = self.seeds
        if seeds is not None:
            axes.append([{"seed": s} for s in seeds])
        if self.explicit_points is not None:
            axes.append([dict(p) for p in self.explicit_points])
        if self.zip:
            n = len(next(iter(self.zip.values())))
            axes.append([{k: v[i] for k, v in self.zip.items()} for i in range(n)])
        for key, values in self.grid.items():
            axes.append([{key: v} for v in values])
        return axes

    def _build_overrides(self) -> list[dict[str, Any]]:
        out = []
        for combo in itertools.product(*self._axes()):
            merged: dict[str, Any] = {}
            for part in combo:
                merged.update(part)
            out.append(merged)
        return out

    @property
    def one_seed(self) -> int:
        """The seed every point with seed -1 gets (drawn from ``sweep_seed``)."""
        return draw_seeds(self.sweep_seed, 1)[0]

    @property
    def uses_sweep_seed(self) -> bool:
        """Whether any seed of this sweep is drawn from ``sweep_seed`` (then it is saved with it)."""
        if isinstance(self.seeds_spec, int):
            return True
        return any(p.seed == -1 for p in self._raw_points())

    def _raw_points(self) -> list[Params]:
        return getattr(self, "_raw", [])

    def _build_accels(self) -> list[Any]:
        """Per point, its :class:`~wanlab.accel.Accel`, or None where the sweep sets none (the
        pipeline's default applies)."""
        from .accel import Accel

        out = []
        for over in self._overrides:
            value = over.get(ACCEL, self.base_fields.get(ACCEL))
            out.append(None if value is None else Accel.coerce(value))
        return out

    def _materialize(self, pipe: "Pipeline | None") -> list[Params]:
        raw: list[Params] = []
        out: list[Params] = []
        seen: dict[tuple[Params, str | None], int] = {}
        one_seed = None
        for i, over in enumerate(self._overrides):
            fields = {k: v for k, v in {**self.base_fields, **over}.items() if k != ACCEL}
            try:
                if pipe is not None:
                    params = pipe.params(**fields)
                else:
                    params = Params.from_dict(fields)
            except ParamError as exc:
                raise _point_error(i, over, exc) from None
            raw.append(params)
            if params.seed == -1:
                if one_seed is None:
                    one_seed = self.one_seed
                params = params.replace(seed=one_seed)
            accel = self._accels[i]
            identity = (params, None if accel is None else accel.key())
            if identity in seen:
                err = ParamError(f"point {i}", f"a request different from every other point (it repeats point "
                                 f"{seen[identity]})", over)
                raise err
            seen[identity] = i
            out.append(params)
        if pipe is None:
            self._raw = raw
        return out

    # --- the points -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._overrides)

    def __iter__(self) -> Iterator[Params]:
        return iter(self.points())

    def points(self, pipe: "Pipeline | None" = None) -> list[Params]:
        """Every point as a validated :class:`Params` with a concrete seed, in sweep order.

        Fields the base does not set come from ``pipe``'s native settings when a pipeline is given
        (as ``pipe.generate`` does), else from ``Params``' defaults.
        """
        if pipe is None:
            return list(self._points)
        return self._materialize(pipe)

    def accels(self) -> list[Any]:
        """Per point, its acceleration setting (:class:`wanlab.accel.Accel`), or None where the sweep
        sets none (the pipeline's default applies), in sweep order."""
        return list(self._accels)

    def _check_accel_labels(self) -> None:
        """Distinct settings must print differently: tables, reports and ``select`` use the labels."""
        labels: dict[str, Any] = {}
        for accel in self._accels:
            if accel is None:
                continue
            other = labels.setdefault(accel.label, accel)
            if other != accel:
                raise ParamError("accel", "settings with distinct labels (give each a different name)", accel.label)

    def _value(self, index: int, params: Params, name: str) -> Any:
        """A swept value of a point: its Params field, or for ``accel`` its setting's label."""
        if name == ACCEL:
            accel = self._accels[index]
            return "default" if accel is None else accel.label
        return getattr(params, name)

    @staticmethod
    def _cell_of(name: str, value: Any) -> Any:
        """A value as the sweep table shows it (acceleration settings by label; a string is a label)."""
        if name == ACCEL and not isinstance(value, str):
            from .accel import Accel

            return Accel.coerce(value, "accel").label
        return value

    def overrides(self) -> list[dict[str, Any]]:
        """Per point, the values its axes set (seeds drawn, -1 not yet resolved), in sweep order."""
        return [dict(o) for o in self._overrides]

    @property
    def swept(self) -> list[str]:
        """The fields the axes vary, in axis order (``seed`` always included: every point has one)."""
        names: list[str] = ["seed"] if self.seeds_spec is not None else []
        for point in self.explicit_points or []:
            names += [k for k in point if k not in names]
        names += list(self.zip) + list(self.grid)
        if "seed" not in names:
            names.insert(0, "seed")
        return names

    def label(self, index: int, params: Params | None = None, fields: Sequence[str] | None = None, *,
              short: bool = False, sep: str = ", ") -> str:
        """``"seed=1, guidance_scale=3.0"``: the swept values of one point (``short``: ``gs=3.0``)."""
        p = params or self._points[index]
        names = self.swept if fields is None else list(fields)
        return sep.join(f"{SHORT_NAMES.get(n, n) if short else n}={format_value(self._value(index, p, n))}"
                        for n in names)

    def slug(self, index: int, params: Params | None = None) -> str:
        """A file-name form of a point: ``seed1_gs3.0_fs5.0`` (prompts as ``prompt2``: the axis index)."""
        p = params or self._points[index]
        parts = []
        for n in self.swept:
            value = self._value(index, p, n)
            if n in ("prompt", "negative_prompt"):
                options = list(dict.fromkeys(getattr(q, n) for q in self._points))
                text = str(options.index(value))
            else:
                text = format_value(value)
            parts.append(_slug_part(f"{SHORT_NAMES.get(n, n)}{text}"))
        return "_".join(parts) or f"point{index}"

    def shard(self, index: int, count: int) -> list[int]:
        """Indices of the points shard ``index`` of ``count`` runs (round robin: ``index::count``)."""
        index, count = check_shard((index, count))
        return list(range(index, len(self), count))

    # --- identity ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data (what the TOML file holds; the question is its comment)."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.model:
            out["model"] = self.model
        if self.seeds_spec is not None:
            out["seeds"] = self.seeds_spec if isinstance(self.seeds_spec, int) else list(self.seeds_spec)
        if self._sweep_seed_given or self.uses_sweep_seed:
            out["sweep_seed"] = self.sweep_seed
        if self.reference:
            out["reference"] = dict(self.reference)
        if self.base_fields:
            out["base"] = {k: _plain(v) for k, v in self.base_fields.items()}
        if self.grid:
            out["grid"] = {k: _plain(v) for k, v in self.grid.items()}
        if self.zip:
            out["zip"] = {k: _plain(v) for k, v in self.zip.items()}
        if self.explicit_points is not None:
            out["points"] = [{k: _plain(v) for k, v in p.items()} for p in self.explicit_points]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, question: str | None = None,
                  default_name: str | None = None) -> "Sweep":
        unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
        if unknown:
            raise ParamError(unknown[0], f"a sweep key ({', '.join(TOP_LEVEL_KEYS)})", data[unknown[0]])
        for key in ("base", "grid", "zip"):
            if key in data and not isinstance(data[key], Mapping):
                raise ParamError(key, "a table of Params fields", data[key])
        return cls(base=data.get("base"), grid=data.get("grid"), zip=data.get("zip"), points=data.get("points"),
                   seeds=data.get("seeds"), name=data.get("name", default_name), model=data.get("model"),
                   question=data.get("question", question), sweep_seed=data.get("sweep_seed"),
                   reference=data.get("reference"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sweep):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.question == other.question and self.points() == other.points()

    def __repr__(self) -> str:
        axes = []
        if self.seeds_spec is not None:
            axes.append(f"seeds={self.seeds_spec!r}")
        if self.explicit_points is not None:
            axes.append(f"points={len(self.explicit_points)}")
        if self.zip:
            axes.append(f"zip={list(self.zip)}x{len(next(iter(self.zip.values())))}")
        for k, v in self.grid.items():
            axes.append(f"{k}={len(v)}")
        name = f"{self.name!r}, " if self.name else ""
        return f"Sweep({name}{len(self)} points: {', '.join(axes) or 'base only'})"

    # --- files -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Sweep":
        """Read a TOML sweep file; its leading ``# Question: ...`` comment becomes ``question``.

        The sweep's ``name`` defaults to the file's stem.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"sweep file: no such file: {file}")
        text = file.read_text(encoding="utf-8")
        try:
            import tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data, question=_leading_question(text), default_name=file.stem)
        except ParamError as exc:
            exc.args = (f"{file}: {exc}",)
            raise

    def to_toml(self) -> str:
        """The TOML text :meth:`save` writes: the question as the first comment, then the definition."""
        head = ""
        if self.question:
            head = "\n".join(_wrap_comment(f"Question: {self.question}")) + "\n"
        return head + _toml_dumps(self.to_dict())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the sweep as TOML (atomically); ``Sweep.load`` gives back an equal sweep."""
        from .report import write_text

        return write_text(Path(path), self.to_toml())

    # --- running -----------------------------------------------------------------------------------------
    def _pipeline(self, pipe: "Pipeline | str | None", progress: bool = False) -> "Pipeline":
        from .pipeline import Pipeline, load

        if isinstance(pipe, Pipeline):
            return pipe
        if pipe is None or isinstance(pipe, (str, os.PathLike)):
            return load(pipe or self.model or "tiny", progress=False)
        raise ParamError("pipe", "a wanlab Pipeline, a model name or None (the sweep's model)", pipe)

    def _store(self, store: "Store | str | os.PathLike[str] | None") -> "Store":
        from .store import Store

        if isinstance(store, Store):
            return store
        if store is None:
            store = Path("runs") / _slug_part(self.name or "sweep")
        if not isinstance(store, (str, os.PathLike)):
            raise ParamError("store", "a wanlab.Store, a folder path or None (runs/NAME)", store)
        return Store(store)

    def _keys(self, store: "Store", pipe: "Pipeline", points: list[Params]) -> list[str]:
        return [_key_for(store, pipe, p, a) for p, a in builtins.zip(points, self._accels)]

    @property
    def keeps_latents(self) -> bool:
        """Whether runs keep their final latents: when ``accel`` is swept (latent error vs exact)."""
        return ACCEL in self.swept

    def run(self, pipe: "Pipeline | str | None" = None, store: "Store | str | os.PathLike[str] | None" = None, *,
            metrics: bool = True, progress: bool = True, max_failures: int | None = None,
            shard: tuple[int, int] | str | None = None, retry_failed: bool = True) -> "SweepResult":
        """Run the points not yet in ``store`` and return the whole sweep's :class:`SweepResult`.

        - ``pipe``: a loaded pipeline, or a model name, or None for the sweep's ``model`` (else tiny).
        - ``store``: a :class:`wanlab.Store` or its folder; default ``runs/NAME``.
        - ``metrics``: compute :func:`wanlab.metrics.motion` for every successful run and store it with
          the run (also for runs already stored without metrics).
        - ``progress``: one ``tqdm.auto`` bar over the runs to do, with ETA.
        - ``max_failures``: after that many failures in this call, stop gracefully: the points not
          reached stay ``pending``, ``result.stopped`` says why, and a warning is issued.
        - ``shard=(i, n)`` (or ``"i/n"``): run only points ``i, i+n, i+2n, ...`` (0 <= i < n); n
          processes with the same store together run the whole sweep, and any of them then reads
          the same table.
        - ``retry_failed``: run points whose earlier attempt failed again (default); False keeps
          them ``failed``.

        Ctrl-C stops the sweep; what finished is in the store and the next run resumes.
        """
        from tqdm.auto import tqdm

        if max_failures is not None and (isinstance(max_failures, bool) or not isinstance(max_failures, int)
                                         or max_failures < 1):
            raise ParamError("max_failures", "None or an integer >= 1", max_failures)
        for flag, value in (("metrics", metrics), ("progress", progress), ("retry_failed", retry_failed)):
            if not isinstance(value, bool):
                raise ParamError(flag, "True or False", value)
        shard_ = check_shard(shard) if shard is not None else (0, 1)
        pipe_ = self._pipeline(pipe)
        store_ = self._store(store)
        points = self.points(pipe_)
        keys = self._keys(store_, pipe_, points)
        mine = list(range(shard_[0], len(points), shard_[1]))
        failed_before = store_.failures()

        latents = self.keeps_latents

        def lacks_latents(run: "Run") -> bool:
            """A stored run without the latents this sweep keeps: it is generated again to add them."""
            return latents and not run.has_latents

        def incomplete(run: "Run") -> bool:
            return (metrics and _needs_metrics(run)) or lacks_latents(run)

        todo: list[int] = []
        for i in mine:
            if store_.has(keys[i]):
                if incomplete(store_.get(keys[i])):
                    todo.append(i)
            elif retry_failed or keys[i] not in failed_before:
                todo.append(i)

        ran: list[int] = []
        failures = 0
        stopped: str | None = None
        bar = tqdm(total=len(todo), desc=f"sweep {self.name or ''}".strip(), unit="run", disable=not progress,
                   dynamic_ncols=True)
        cached = len(mine) - len(todo)

        def note() -> None:
            parts = [f"{cached} already done"] if cached else []
            parts += [f"{failures} failed"] if failures else []
            bar.set_postfix_str(", ".join(parts), refresh=False)

        def store_run(i: int, video: "Video", extra: dict[str, Any]) -> int:
            """Measure and store one generated video (runs on the writer thread)."""
            values, problem = _metrics_of(video) if metrics else (None, None)
            if problem:
                extra["metrics_error"] = problem
            run = store_.put(video, metrics=values, extra=extra, latents=latents)
            if run.key != keys[i]:
                raise RuntimeError(f"store key mismatch for point {i}: key_for gave {keys[i]}, put gave {run.key}")
            _forget_standin_failure(store_, pipe_, points[i], self._accels[i])
            return i

        def finish(future: Any) -> None:
            ran.append(future.result())  # re-raises what the writer raised
            bar.update(1)

        # Storing a run (metrics, mp4 + lossless encodes in ffmpeg processes, record) happens on one
        # writer thread; it overlaps the next generation only where that leaves CPU free.
        warmed: set[Any] = set()

        def warm_up(params: Params, accel: Any) -> None:
            """Acceleration sweeps time single runs: run the first request once untimed (first-call
            overheads), and a compiled setting once per size (compilation is not what is measured)."""
            if not latents:
                return
            wanted = ["first"] if not warmed else []
            if accel is not None and accel.compile != "off":
                wanted.append((accel.key(), params.width, params.height, params.num_frames))
            for what in wanted:
                if what not in warmed:
                    pipe_.generate(params, progress=False, accel=accel if what != "first" else None)
                    warmed.add(what)

        # An acceleration sweep times its runs: nothing else may run on the machine's cores meanwhile.
        ahead = 0 if latents else write_ahead(pipe_)
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanlab-sweep-writer")
        pending: deque[Any] = deque()
        note()
        try:
            for i in todo:
                key, params, accel = keys[i], points[i], self._accels[i]
                extra = {"sweep": self.name, "point": i}
                while pending and pending[0].done():
                    finish(pending.popleft())
                if store_.has(key) and not lacks_latents(store_.get(key)):
                    # done by now (already stored, or another process): metrics at most
                    if metrics:
                        run = store_.get(key)
                        if _needs_metrics(run):
                            values, problem = _metrics_of(run.video())
                            if problem:
                                warnings.warn(f"point {i}: metrics could not be computed: {problem}", stacklevel=2)
                            else:
                                store_.put_metrics(key, values)
                    bar.update(1)
                    continue
                try:
                    warm_up(params, accel)
                    video = pipe_.generate(params, progress=False, accel=accel)
                except Exception as exc:  # the point failed: record it and go on
                    store_.put_failure(key, params, f"{type(exc).__name__}: {exc}", extra=extra)
                    failures += 1
                    note()
                    bar.update(1)
                    if max_failures is not None and failures >= max_failures:
                        stopped = (f"stopped after {failures} failure{'s' * (failures != 1)} "
                                   f"(max_failures={max_failures})")
                        break
                    continue
                pending.append(writer.submit(store_run, i, video, extra))
                while len(pending) > ahead:
                    finish(pending.popleft())
            while pending:
                finish(pending.popleft())
        finally:
            writer.shutdown(wait=True)  # what is being written is finished, even on Ctrl-C
            bar.close()
        ran.sort()
        if stopped:
            warnings.warn(f"sweep {self.name or ''}: {stopped}; the points not reached are pending", stacklevel=2)
        return SweepResult(self, store_, pipe_, points=points, keys=keys, ran=ran, stopped=stopped, shard=shard_)

    def result(self, pipe: "Pipeline | str | None" = None,
               store: "Store | str | os.PathLike[str] | None" = None) -> "SweepResult":
        """The sweep's table as the store holds it now, without running anything."""
        pipe_ = self._pipeline(pipe)
        store_ = self._store(store)
        points = self.points(pipe_)
        return SweepResult(self, store_, pipe_, points=points, keys=self._keys(store_, pipe_, points))


def write_ahead(pipe: "Pipeline") -> int:
    """How many generated runs may wait to be stored while the next one generates: ``WRITE_AHEAD``
    when generating leaves CPU free (on a GPU, or torch using fewer threads than there are cores),
    else 0. On 2 CPU cores with torch on both, overlapping made sweeps ~10 % slower and less steady
    (ffmpeg and torch's threads contend; benchmarks/bench_sweep.py)."""
    import torch

    if pipe.device != "cpu" or torch.get_num_threads() < (os.cpu_count() or 1):
        return WRITE_AHEAD
    return 0


def _key_for(store: "Store", pipe: "Pipeline", params: Params, accel: Any = None) -> str:
    """The run key of a point; for a point naming a LoRA file that cannot be read, a stand-in key
    (the file's path instead of its hash) under which its failure is recorded."""
    from .errors import LoRAError

    try:
        return store.key_for(pipe, params, accel)
    except LoRAError:
        return _standin_key(pipe, params, accel)


def _standin_key(pipe: "Pipeline", params: Params, accel: Any = None) -> str:
    from .store import accel_record, key_parts, run_key

    loras = [{"path": lo.path, "scale": lo.scale, "sha256": f"unreadable:{lo.path}"} for lo in params.loras]
    record = {"params": params.to_dict(), "model": pipe.fingerprint, "settings": pipe.generation_settings(),
              "accel": accel_record(pipe, accel), "loras": loras}
    return run_key(key_parts(record))


def _forget_standin_failure(store: "Store", pipe: "Pipeline", params: Params, accel: Any = None) -> None:
    """A point with LoRAs ran: drop the failure recorded under its stand-in key while a file was missing."""
    if params.loras:
        store.forget_failure(_standin_key(pipe, params, accel))


def _metrics_of(video: "Video") -> tuple[dict[str, float] | None, str | None]:
    """``metrics.motion`` of a video as floats, or None and the reason it could not be computed."""
    from .metrics import motion

    try:
        return {k: float(v) for k, v in motion(video).items()}, None
    except (ValueError, ArithmeticError) as exc:  # e.g. fewer than 3 frames
        return None, f"{type(exc).__name__}: {exc}"


def _needs_metrics(run: "Run") -> bool:
    """A stored run with no metrics yet (and no recorded reason why it cannot have them)."""
    return not _run_metrics(run) and not (run.record.get("extra") or {}).get("metrics_error")


def _run_metrics(run: "Run") -> dict[str, Any]:
    return dict(getattr(run, "metrics", None) or {})


def _point_error(index: int, overrides: Mapping[str, Any], exc: ParamError) -> ParamError:
    shown = ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())
    err = ParamError(exc.field, exc.rule, exc.value)
    err.point = index  # type: ignore[attr-defined]
    err.args = (f"sweep point {index} ({shown or 'base'}): {exc}",)
    return err


def check_shard(shard: tuple[int, int] | str | Sequence[int]) -> tuple[int, int]:
    """``(i, n)`` or ``"i/n"`` with 0 <= i < n, checked."""
    rule = "i/N (or (i, N)) with 0 <= i < N, e.g. 0/2 and 1/2"
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not match:
            raise ParamError("shard", rule, shard)
        i, n = int(match.group(1)), int(match.group(2))
    elif isinstance(shard, (tuple, list)) and len(shard) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in shard):
        i, n = int(shard[0]), int(shard[1])
    else:
        raise ParamError("shard", rule, shard)
    if not (n >= 1 and 0 <= i < n):
        raise ParamError("shard", rule, shard if isinstance(shard, str) else f"{i}/{n}")
    return i, n


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


def _toml_dumps(data: Mapping[str, Any]) -> str:
    """TOML for a sweep definition: top-level values, then [base], [grid], [zip] and [[points]]."""
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


def _leading_question(text: str) -> str | None:
    """The first paragraph of a TOML file's leading comment (up to a bare ``#`` line), without ``#``
    and a leading ``Question:``."""
    lines = []
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


def _wrap_comment(text: str, width: int = 98) -> list[str]:
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


# --------------------------------------------------------------------------------------------------
class SweepResult:
    """The sweep's table, one row per point, read from the store (the same from every process).

    ``df`` columns: ``point`` (index in sweep order), the swept fields (``sweep.swept``; ``accel`` as
    the setting's label), ``status`` (``done`` / ``failed`` / ``pending``), ``error``, ``seconds``
    (generation time), ``digest`` (sha256 of the frames), for a sweep over ``accel`` also
    ``denoise_s`` and ``calls_skipped``, one column per metric, ``key`` (the run key) and ``path``
    (the mp4).
    ``ran`` lists the points this call generated; ``stopped`` says why a run stopped early.
    """

    def __init__(self, sweep: Sweep, store: "Store", pipe: "Pipeline", *, points: list[Params], keys: list[str],
                 ran: Sequence[int] = (), stopped: str | None = None, shard: tuple[int, int] = (0, 1)) -> None:
        self.sweep = sweep
        self.store = store
        self.pipe = pipe
        self.points = points
        self.accels = sweep.accels()
        self.keys = keys
        self.ran = list(ran)
        self.stopped = stopped
        self.shard = shard
        self.df = self._table()

    def _table(self) -> "pd.DataFrame":
        import pandas as pd

        failures = self.store.failures()
        rows: list[dict[str, Any]] = []
        metric_names: list[str] = []
        timing = list(ACCEL_COLUMNS) if ACCEL in self.sweep.swept else []
        for i, (params, key) in enumerate(builtins.zip(self.points, self.keys)):
            row: dict[str, Any] = {"point": i}
            for name in self.sweep.swept:
                row[name] = self.sweep._value(i, params, name) if name == ACCEL else _column_value(params, name)
            metrics: dict[str, Any] = {}
            if self.store.has(key):
                run = self.store.get(key)
                record = getattr(run, "record", {}) or {}
                metrics_error = (record.get("extra") or {}).get("metrics_error")
                row.update(status="done", error=f"metrics: {metrics_error}" if metrics_error else None,
                           seconds=_seconds(record), digest=run.digest)
                if timing:
                    row.update(_accel_columns(record))
                metrics = _run_metrics(run)
                path = str(run.mp4)
            elif key in failures:
                row.update(status="failed", error=_failure_error(failures[key]), seconds=math.nan, digest=None)
                path = None
            else:
                row.update(status="pending", error=None, seconds=math.nan, digest=None)
                path = None
            for name in timing:
                row.setdefault(name, math.nan)
            for name in metrics:
                if name not in metric_names:
                    metric_names.append(name)
            row["_metrics"] = metrics
            row["key"] = key
            row["path"] = path
            rows.append(row)
        metric_names = [n for n in METRIC_ORDER if n in metric_names] + [n for n in metric_names
                                                                          if n not in METRIC_ORDER]
        for row in rows:
            metrics = row.pop("_metrics")
            key, path = row.pop("key"), row.pop("path")
            for name in metric_names:
                row[name] = float(metrics[name]) if name in metrics and metrics[name] is not None else math.nan
            row["key"], row["path"] = key, path
        columns = ["point", *self.sweep.swept, "status", "error", "seconds", "digest", *timing, *metric_names, "key",
                   "path"]
        df = pd.DataFrame(rows, columns=columns)
        return df

    # --- summary ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    @property
    def counts(self) -> dict[str, int]:
        """How many points are done, failed and pending."""
        values = self.df["status"].value_counts().to_dict() if len(self.df) else {}
        return {status: int(values.get(status, 0)) for status in STATUSES}

    @property
    def complete(self) -> bool:
        """Whether every point of the sweep is done."""
        return self.counts["done"] == len(self.df)

    @property
    def metric_names(self) -> list[str]:
        fixed = {"point", *self.sweep.swept, "status", "error", "seconds", "digest", "key", "path", *ACCEL_COLUMNS}
        return [c for c in self.df.columns if c not in fixed]

    def summary(self) -> str:
        c = self.counts
        text = (f"sweep {self.sweep.name or ''}: {len(self)} points, {c['done']} done, {c['failed']} failed, "
                f"{c['pending']} pending; {len(self.ran)} run now; store {self.store.path}")
        text = text.replace("sweep :", "sweep:")
        if self.stopped:
            text += f" ({self.stopped})"
        return text

    def __repr__(self) -> str:
        return f"SweepResult({self.summary()})"

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(self.summary())}</p>" + self.df.drop(columns=["key", "path"]).to_html(index=False)

    # --- selecting ---------------------------------------------------------------------------------------
    def select(self, **filters: Any) -> "pd.DataFrame":
        """Rows whose columns (or Params fields) equal the given values, e.g. ``select(seed=1, status="done")``."""
        mask = [self._matches(i, filters) for i in range(len(self.df))]
        return self.df[mask]

    def _matches(self, i: int, filters: Mapping[str, Any]) -> bool:
        row = self.df.iloc[i]
        for name, wanted in filters.items():
            if name == ACCEL and not isinstance(wanted, (str, list, tuple, set)):
                wanted = self.sweep._cell_of(ACCEL, wanted)  # an Accel or a mapping: its label
            if name in self.df.columns:
                value = row[name]
            elif name in Params.field_names():
                value = _column_value(self.points[i], name)
            else:
                raise ValueError(f"{name}: not a column of the sweep table or a Params field; the columns are "
                                 f"{', '.join(self.df.columns)}")
            if isinstance(wanted, (list, tuple, set)) and not isinstance(value, (list, tuple)):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True

    def runs(self, **filters: Any) -> list["Run"]:
        """The stored runs of the done points that match ``filters``, in sweep order."""
        rows = self.select(**filters)
        return [self.store.get(key) for key in rows.loc[rows["status"] == "done", "key"]]

    def run(self, **filters: Any) -> "Run":
        """The stored run of the one point that matches ``filters`` (LookupError unless exactly one is done)."""
        rows = self.select(**filters)
        if len(rows) != 1:
            raise LookupError(f"{len(rows)} points match {filters or 'no filter'}; give filters that pick exactly "
                              f"one (swept: {', '.join(self.sweep.swept)})")
        row = rows.iloc[0]
        if row["status"] != "done":
            i = int(row["point"])
            reason = f": {row['error']}" if row["status"] == "failed" else ""
            raise LookupError(f"point {i} ({self.sweep.label(i, self.points[i])}) is {row['status']}{reason}")
        return self.store.get(row["key"])

    def video(self, **filters: Any) -> "Video":
        """The video of the one point that matches ``filters``, e.g. ``result.video(seed=1, guidance_scale=5)``."""
        return self.run(**filters).video()

    def videos(self, **filters: Any) -> dict[str, "Video"]:
        """Videos of the done points matching ``filters``, labelled by the swept fields the filters leave
        free (ready for ``wanlab.show`` and ``plots.compare_grid``)."""
        rows = self.select(**filters)
        rows = rows[rows["status"] == "done"]
        free = [n for n in self.sweep.swept if n not in filters or isinstance(filters[n], (list, tuple, set))]
        if len(rows) > 1:
            free = [n for n in free if rows[n].astype(str).nunique() > 1] or free
        out: dict[str, "Video"] = {}
        for _, row in rows.iterrows():
            i = int(row["point"])
            out[self.sweep.label(i, self.points[i], free) or f"point {i}"] = self.store.get(row["key"]).video()
        return out

    def compare(self, **reference: Any) -> "pd.DataFrame":
        """The table plus ``psnr_vs_ref`` (dB) and ``ssim_vs_ref``: each done point's frames against
        the reference point that shares its other swept values, e.g. ``compare(steps=40)`` in a steps
        sweep compares every step count with the 40-step run of the same seed. Without arguments
        the sweep's own ``reference`` is used. The reference itself scores ``inf`` / 1.0."""
        from .metrics import compare

        reference = reference or dict(self.sweep.reference or {})
        if not reference:
            raise ValueError("compare: name the reference point, e.g. compare(steps=40) (or set the sweep's "
                             "reference)")
        for name in reference:
            if name not in self.sweep.swept:
                raise ValueError(f"{name}: not a swept field; the swept fields are {', '.join(self.sweep.swept)}")
        df = self.df.copy()
        df["psnr_vs_ref"] = math.nan
        df["ssim_vs_ref"] = math.nan
        cache: dict[str, Any] = {}

        def frames(key: str) -> Any:
            if key not in cache:
                cache[key] = self.store.get(key).video()
            return cache[key]

        for index, row, ref in self._reference_pairs(reference):
            scores = compare(frames(row["key"]), frames(ref["key"]))
            df.loc[index, "psnr_vs_ref"] = scores["psnr"]
            df.loc[index, "ssim_vs_ref"] = scores["ssim"]
        return df

    def _reference_pairs(self, reference: Mapping[str, Any]) -> list[tuple[Any, Any, Any]]:
        """``(index, row, reference row)`` for each done point whose reference is done: the done point
        with the ``reference`` values (settings by label) and the same other swept values."""
        reference = {n: self.sweep._cell_of(n, v) for n, v in reference.items()}
        others = [n for n in self.sweep.swept if n not in reference]
        done = self.df[self.df["status"] == "done"]
        refs = {tuple(row[n] for n in others): row for _, row in done.iterrows()
                if all(row[n] == v for n, v in reference.items())}
        pairs = []
        for index, row in done.iterrows():
            ref = refs.get(tuple(row[n] for n in others))
            if ref is not None:
                pairs.append((index, row, ref))
        return pairs

    def accel_study(self, reference: Any = None) -> "pd.DataFrame":
        """For a sweep over ``accel``: the table of :func:`wanlab.accel.study`, from the stored runs.

        One row per done point (``point``, the other swept fields, ``setting`` = the accel label,
        ``cache``, ``compile``, ``attention_backend``, ``accel_key``, ``denoise_s``, ``setup_s``,
        ``speedup`` = the reference run's denoising time / this one's, ``psnr``, ``psnr_frame_mean``,
        ``ssim``, ``rel_l2`` and ``max_abs`` of the final latents, ``identical``, the work counters,
        ``digest``, ``key``), compared with the run of the ``reference`` setting (default: the sweep's
        ``reference`` accel when it names one, else ``"exact"``) that shares its other swept values;
        points whose reference is not done are left out. Feed it to :func:`wanlab.accel.summarize`
        and :func:`wanlab.accel.plot_study`. Times are single runs
        (``wanlab.accel.study`` repeats and interleaves them, for steadier speedups).
        """
        import pandas as pd

        from .accel import Accel, fidelity, study_row

        if ACCEL not in self.sweep.swept:
            raise ValueError(f"accel_study: this sweep does not vary accel (it varies {', '.join(self.sweep.swept)})")
        if reference is None:
            reference = (self.sweep.reference or {}).get(ACCEL, "exact")
        ref_label = self.sweep._cell_of(ACCEL, reference)
        others = [n for n in self.sweep.swept if n != ACCEL]
        pairs = self._reference_pairs({ACCEL: ref_label})
        if not pairs:  # a done reference run pairs at least with itself
            labels = ", ".join(dict.fromkeys(self.df[ACCEL]))
            raise ValueError(f"accel_study: no done run has the reference setting {ref_label!r} (the sweep's settings: "
                             f"{labels}); run the sweep, or name another reference")
        loaded: dict[str, tuple[Any, Any, dict[str, Any]]] = {}

        def load(key: str) -> tuple[Any, Any, dict[str, Any]]:
            if key not in loaded:
                run = self.store.get(key)
                loaded[key] = (run.video().frames, run.latents(), run.record)
            return loaded[key]

        rows = []
        for _, row, ref in pairs:
            i = int(row["point"])
            frames, latents, record = load(row["key"])
            ref_frames, ref_latents, ref_record = load(ref["key"])
            stats = record.get("accel_stats") or {}
            accel = self.accels[i] if self.accels[i] is not None else Accel.from_dict(record.get("accel") or {})
            rows.append({"point": i, **{n: row[n] for n in others},
                         **study_row(str(row[ACCEL]), accel, denoise=float(record["timings"]["denoise"]),
                                     setup=float(stats.get("setup_s", 0.0)),
                                     exact_denoise=float(ref_record["timings"]["denoise"]), stats=stats,
                                     fidelity=fidelity(frames, ref_frames, latents, ref_latents,
                                                       identical=row["digest"] == ref["digest"])),
                         "digest": row["digest"], "key": row["key"]})
        df = pd.DataFrame(rows)
        df.attrs.update({"reference": ref_label, "sweep": self.sweep.name, "store": str(self.store.path)})
        return df

    # --- output -------------------------------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV (atomically)."""
        from .report import write_text

        return write_text(Path(path), self.df.to_csv(index=False))

    def plot(self, y: str = "flow_magnitude", x: str | None = None, hue: str | None = None):
        """Metric ``y`` against swept field ``x`` (one line per ``hue`` value), mean and spread over the
        other axes; ``x``/``hue`` default to the first swept numeric fields other than ``seed``."""
        from .plots import metric_plot

        x, hue = self._default_axes(x, hue)
        return metric_plot(self.df[self.df["status"] == "done"], x=x, y=y, hue=hue)

    def heatmap(self, value: str = "flow_magnitude", x: str | None = None, y: str | None = None):
        """Mean of ``value`` over a grid of two swept fields."""
        from .plots import heatmap

        x, y = self._default_axes(x, y)
        if y is None:
            raise ValueError("heatmap: needs two swept fields (x and y)")
        return heatmap(self.df[self.df["status"] == "done"], x=x, y=y, value=value)

    def _default_axes(self, x: str | None, second: str | None) -> tuple[str, str | None]:
        numeric = [n for n in self.sweep.swept if n != "seed" and n in self.df.columns
                   and self.df[n].nunique() > 1 and self.df[n].dtype.kind in "if"]
        if x is None:
            x = numeric[0] if numeric else ACCEL if ACCEL in self.sweep.swept else "seed"
        if second is None:
            rest = [n for n in numeric if n != x]
            second = rest[0] if rest else None
        return x, second

    def report(self, out: str | os.PathLike[str], *, metric: str = "flow_magnitude", title: str | None = None) -> Path:
        """Write videos, a frame grid, the metrics CSV, a metric plot and a self-contained HTML report
        into folder ``out``; return the report's path (see :mod:`wanlab.report`)."""
        from .report import write_sweep_report

        return write_sweep_report(self, Path(out), metric=metric, title=title)


def _accel_columns(record: Mapping[str, Any]) -> dict[str, float]:
    """``denoise_s`` and ``calls_skipped`` of a stored run (NaN where not recorded)."""
    stats = record.get("accel_stats") or {}
    denoise = (record.get("timings") or {}).get("denoise")
    skipped = stats.get("calls_skipped")
    return {"denoise_s": float(denoise) if denoise is not None else math.nan,
            "calls_skipped": float(skipped) if skipped is not None else math.nan}


def _seconds(record: Mapping[str, Any]) -> float:
    timings = record.get("timings") or {}
    value = timings.get("total")
    return float(value) if value is not None else math.nan


def _failure_error(failure: Any) -> str:
    if isinstance(failure, Mapping):
        return str(failure.get("error", failure))
    return str(getattr(failure, "error", failure))
