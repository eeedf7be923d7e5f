"""A sweep's definition: a base request and the axes that vary it, validated when it is built.

:class:`Sweep` holds it (the axis rules are in its docstring); it reads and writes TOML sweep files
and hands running to :mod:`wanlab.sweep.runner`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ParamError
from ..inputs import BackendLike, StoreLike
from ..params import SEED_MAX, Params
from ..values import check_int, check_known, plain
from .axes import overrides_of, read_axes
from .toml import read_toml, to_toml
from .values import (
    ACCEL,
    SHORT_NAMES,
    check_accel,
    check_field,
    check_shard,
    default_sweep_seed,
    draw_seeds,
    format_value,
    slug_part,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..store import Store
    from .result import SweepResult

AXES = ("seeds", "points", "zip", "grid")
TOP_LEVEL_KEYS = ("name", "model", "question", "seeds", "sweep_seed", "reference", "metrics", "probes", "base", "grid",
                  "zip", "points")


class Sweep:
    """A base request and the axes that vary it, validated when it is built.

    The axes:

    - ``seeds``: a list of seeds, or ``N`` for N fixed seeds drawn from the sweep's recorded ``sweep_seed``;
    - ``points``: explicit variants, each a mapping of fields (they may differ in which fields they set);
    - ``zip``: fields varied together (lists of equal length, one value of each per variant);
    - ``grid``: fields varied independently (the cartesian product, in the order given).

    Besides the :class:`~wanlab.Params` fields, every axis (and ``base``) takes ``accel``: an
    acceleration setting (:class:`wanlab.accel.Accel`, a preset name such as ``"fbc"``, or a mapping),
    so one sweep runs the exact baseline and each setting on the same requests.

    The points are the product of these axes, outermost first in the order above (the last grid field
    varies fastest). A point whose seed is -1 (the base's default) gets one seed drawn from
    ``sweep_seed``; when no ``sweep_seed`` is given it is derived from ``name`` (or the prompt), never
    drawn at random, so every process that loads the same definition (a resume, another shard) agrees.
    Fields neither the base nor an axis sets come from the model's native settings when the sweep runs
    on a backend (as ``generate`` does), else from ``Params``' defaults. A sweep is a value: make a
    changed one with :meth:`replace`.

    Args:
        base: the request every point starts from (a :class:`~wanlab.Params` or a mapping of its fields).
        grid: fields varied independently, each mapped to its values.
        zip: fields varied together, each mapped to a list (all of one length).
        points: explicit variants, each a mapping of fields.
        seeds: a list of seeds, or a count of seeds to draw from ``sweep_seed``.
        name: the sweep's name (its default store is ``runs/<name>``).
        model: the model it runs on when :meth:`run` is given none (a name, folder or hub id).
        question: what the sweep asks (the first comment of its TOML file, and its report's heading).
        sweep_seed: the seed that seeds are drawn from (0..9999999999; None: derived from the name).
        reference: the point every other is compared with, as swept fields and values (e.g. ``{"steps": 40}``).
        metrics: metric sets :meth:`run` computes by default (names of
            :data:`wanlab.metrics.suite.METRIC_SETS`; None: ``["motion"]``).
        probes: what every run records inside the model (:mod:`wanlab.probes`; None: nothing).

    Raises:
        ParamError: a bad axis, field or value, naming the point and the field (``sweep point 3 (...)``).

    Example:
        >>> sweep = Sweep(base=Params(prompt="a fox", width=64, height=64, num_frames=17, steps=10),
        ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]}, seeds=[1, 2])
        >>> len(sweep), sweep.swept
        (8, ['seed', 'guidance_scale', 'flow_shift'])
        >>> sweep.label(1)
        'seed=1, guidance_scale=3.0, flow_shift=5.0'
    """

    def __init__(self, base: Params | Mapping[str, Any] | None = None,
                 grid: Mapping[str, Sequence[Any]] | None = None,
                 zip: Mapping[str, Sequence[Any]] | None = None,
                 points: Sequence[Mapping[str, Any]] | None = None,
                 seeds: Sequence[int] | int | None = None, *, name: str | None = None,
                 model: str | None = None, question: str | None = None, sweep_seed: int | None = None,
                 reference: Mapping[str, Any] | None = None, metrics: Any = None,
                 probes: Any = None) -> None:
        from ..probes.spec import normalize

        #: What every run records inside the model (:mod:`wanlab.probes`; canonical form), None for nothing.
        self.probes = normalize(probes)
        # --- base: a Params or a mapping; fields it leaves unset come from the model's native settings
        # at run time (Params' defaults when no backend is given)
        if base is None:
            base_fields: dict[str, Any] = {}
        elif isinstance(base, Params):
            base_fields = plain(base.explicit_fields())
        elif isinstance(base, Mapping):
            base_fields = {check_field("base", k): plain(v) for k, v in base.items()}
            if ACCEL in base_fields:
                base_fields[ACCEL] = check_accel("base.accel", base_fields[ACCEL])
        else:
            raise ParamError("base", "a wanlab.Params or a mapping of Params fields", base)
        self.base_fields: dict[str, Any] = base_fields

        for label, value in (("name", name), ("model", model), ("question", question)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ParamError(label, "a non-empty string", value)
        self.name = name
        self.model = model
        self.question = question.strip() if question else None
        # --- what Sweep.run measures by default (None: motion); names of wanlab.metrics.suite.METRIC_SETS
        self.metrics: tuple[str, ...] | None = None
        if metrics is not None:
            from ..metrics.suite import check_metrics

            self.metrics = check_metrics(list(metrics) if isinstance(metrics, (list, tuple)) else metrics)

        # --- axes
        self.grid, self.zip, self.explicit_points, self.seeds_spec = read_axes(grid, zip, points, seeds)

        # --- the sweep seed: given, or derived from the name (or prompt); recorded either way
        if sweep_seed is not None:
            check_int("sweep_seed", sweep_seed, 0, SEED_MAX)
            self._sweep_seed_given = True
        else:
            sweep_seed = default_sweep_seed(name or str(base_fields.get("prompt", "sweep")))
            self._sweep_seed_given = False
        self.sweep_seed: int = sweep_seed

        self._overrides = self._build_overrides()
        self._accels = self._build_accels()
        self._check_accel_labels()
        self._points = self._materialize(None)

        # --- the reference point every other is compared with (e.g. steps = 40), if any
        self.reference: dict[str, Any] | None = self._check_reference(reference) if reference is not None else None
        self._freeze()

    def _check_reference(self, reference: Any) -> dict[str, Any]:
        """The ``reference`` table checked: swept fields, each with a value some point has."""
        if not isinstance(reference, Mapping) or not reference:
            raise ParamError("reference", "a table of swept fields and their reference values", reference)
        for key, value in reference.items():
            if key not in self.swept:
                raise ParamError(f"reference.{key}", f"a swept field ({', '.join(self.swept)})", value)
            if key == ACCEL:
                value = check_accel("reference.accel", value)
            if not any(self.value_of(i, p, key) == self.cell_of(key, value) for i, p in enumerate(self._points)):
                raise ParamError(f"reference.{key}", "a value some point of the sweep has", value)
        return {k: (check_accel("reference.accel", v) if k == ACCEL else plain(v)) for k, v in reference.items()}

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

    def replace(self, **changes: Any) -> Sweep:
        """A new sweep with some of the definition changed; the rest is kept.

        Args:
            **changes: sweep keys (``base``, ``grid``, ``zip``, ``points``, ``seeds``, ``name``, ...) and
                their new values.

        Returns:
            The new :class:`Sweep` (a ``sweep_seed`` derived from the name is derived again).

        Raises:
            ParamError: an unknown key, or a value the new sweep refuses.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> len(sweep.replace(grid={"steps": [10, 20]}))
            4
            >>> sweep.replace(base={**sweep.base_fields, "width": 128}).points()[0].width
            128
        """
        check_known("", changes, TOP_LEVEL_KEYS, "a sweep key")
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

    def _build_overrides(self) -> list[dict[str, Any]]:
        return overrides_of(self.seeds, self.explicit_points, self.zip, self.grid)

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
        """Per point, its :class:`~wanlab.accel.Accel`, or None where the sweep sets none (the backend's default)."""
        from ..accel.setting import Accel

        out = []
        for over in self._overrides:
            value = over.get(ACCEL, self.base_fields.get(ACCEL))
            out.append(None if value is None else Accel.coerce(value))
        return out

    def _materialize(self, backend: Any) -> list[Params]:
        raw: list[Params] = []
        out: list[Params] = []
        seen: dict[tuple[Params, str | None], int] = {}
        one_seed = None
        for i, over in enumerate(self._overrides):
            fields = {k: v for k, v in {**self.base_fields, **over}.items() if k != ACCEL}
            try:
                if backend is not None:
                    params = backend.params(**fields)
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
        if backend is None:
            self._raw = raw
        return out

    # --- the points -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._overrides)

    def __iter__(self) -> Iterator[Params]:
        return iter(self.points())

    def points(self, backend: Any = None) -> list[Params]:
        """Every point as a validated :class:`Params` with a concrete seed, in sweep order.

        Args:
            backend: fields the base does not set come from this backend's native settings (as its
                ``generate`` does); None: from ``Params``' defaults.

        Returns:
            One :class:`~wanlab.Params` per point.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> [(p.seed, p.guidance_scale, p.flow_shift) for p in sweep.points()[:2]]
            [(1, 3.0, 3.0), (1, 3.0, 5.0)]
        """
        if backend is None:
            return list(self._points)
        return self._materialize(backend)

    def accels(self) -> list[Any]:
        """Per point, its acceleration setting, in sweep order.

        Returns:
            A :class:`wanlab.accel.Accel` per point, or None where the sweep sets none (the backend's
            default applies).

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.accels()[:2]
            [None, None]
        """
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

    def value_of(self, index: int, params: Params, name: str) -> Any:
        """A swept value of a point: its Params field, or for ``accel`` its setting's label.

        Args:
            index: the point's index.
            params: the point's request.
            name: a swept field.

        Returns:
            The value as the sweep table shows it.
        """
        if name == ACCEL:
            accel = self._accels[index]
            return "default" if accel is None else accel.label
        return getattr(params, name)

    @staticmethod
    def cell_of(name: str, value: Any) -> Any:
        """A value as the sweep table shows it (acceleration settings by label; a string is a label).

        Args:
            name: a swept field.
            value: one of its values.

        Returns:
            The value, or a setting's label for ``accel``.

        Example:
            >>> Sweep.cell_of("accel", "fbc"), Sweep.cell_of("steps", 20)
            ('fbc', 20)
        """
        if name == ACCEL and not isinstance(value, str):
            from ..accel.setting import Accel

            return Accel.coerce(value, "accel").label
        return value

    def overrides(self) -> list[dict[str, Any]]:
        """Per point, the values its axes set, in sweep order (seeds drawn, -1 not yet resolved).

        Returns:
            One dict of field values per point.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.overrides()[1]
            {'seed': 1, 'guidance_scale': 3.0, 'flow_shift': 5.0}
        """
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
        """The swept values of one point as text, e.g. ``"seed=1, guidance_scale=3.0"``.

        Args:
            index: the point's index.
            params: the point's request (None: computed).
            fields: the fields to show (None: every swept field).
            short: abbreviate field names (``gs=3.0``).
            sep: what goes between two fields.

        Returns:
            The label.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.label(1, short=True)
            'seed=1, gs=3.0, fs=5.0'
        """
        p = params or self._points[index]
        names = self.swept if fields is None else list(fields)
        return sep.join(f"{SHORT_NAMES.get(n, n) if short else n}={format_value(self.value_of(index, p, n))}"
                        for n in names)

    def slug(self, index: int, params: Params | None = None) -> str:
        """A file-name form of a point, e.g. ``seed1_gs3.0_fs5.0`` (prompts as ``prompt2``: the axis index).

        Args:
            index: the point's index.
            params: the point's request (None: computed).

        Returns:
            The slug.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.slug(1)
            'seed1_gs3.0_fs5.0'
        """
        p = params or self._points[index]
        parts = []
        for n in self.swept:
            value = self.value_of(index, p, n)
            if n in ("prompt", "negative_prompt"):
                options = list(dict.fromkeys(getattr(q, n) for q in self._points))
                text = str(options.index(value))
            else:
                text = format_value(value)
            parts.append(slug_part(f"{SHORT_NAMES.get(n, n)}{text}"))
        return "_".join(parts) or f"point{index}"

    def shard(self, index: int, count: int) -> list[int]:
        """Indices of the points shard ``index`` of ``count`` runs (round robin: ``index::count``).

        Args:
            index: the shard, 0 <= index < count.
            count: how many shards split the sweep.

        Returns:
            The point indices, in sweep order.

        Raises:
            ParamError: ``index`` or ``count`` out of range.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.shard(1, 3)
            [1, 4, 7]
        """
        index, count = check_shard((index, count))
        return list(range(index, len(self), count))

    # --- identity ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data (what the TOML file holds; the question is its comment).

        Returns:
            A dict that :meth:`from_dict` reads back into an equal sweep.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> sweep.to_dict()["grid"]
            {'guidance_scale': [3.0, 5.0], 'flow_shift': [3.0, 5.0]}
        """
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
        if self.metrics is not None:
            out["metrics"] = list(self.metrics)
        if self.probes:
            from ..probes.spec import DEFAULTS

            defaults = all(settings == DEFAULTS[name] for name, settings in self.probes.items())
            out["probes"] = list(self.probes) if defaults else {k: {s: v for s, v in settings.items() if v is not None}
                                                                 for k, settings in self.probes.items()}
        if self.base_fields:
            out["base"] = {k: plain(v) for k, v in self.base_fields.items()}
        if self.grid:
            out["grid"] = {k: plain(v) for k, v in self.grid.items()}
        if self.zip:
            out["zip"] = {k: plain(v) for k, v in self.zip.items()}
        if self.explicit_points is not None:
            out["points"] = [{k: plain(v) for k, v in p.items()} for p in self.explicit_points]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, question: str | None = None,
                  default_name: str | None = None) -> Sweep:
        """A sweep from plain data, as :meth:`to_dict` gives it and a TOML file holds it.

        Args:
            data: the definition (``base``, ``grid``, ``zip``, ``points``, ``seeds``, ``name``, ...).
            question: what the sweep asks (a file's leading comment).
            default_name: the name when ``data`` gives none (a file's stem).

        Returns:
            The :class:`Sweep`.

        Raises:
            ParamError: an unknown key or a bad value, naming it.

        Example:
            >>> Sweep.from_dict({"base": {"prompt": "a fox"}, "seeds": [1, 2, 3]}).seeds
            [1, 2, 3]
        """
        check_known("", data, TOP_LEVEL_KEYS, "a sweep key")
        for key in ("base", "grid", "zip"):
            if key in data and not isinstance(data[key], Mapping):
                raise ParamError(key, "a table of Params fields", data[key])
        return cls(base=data.get("base"), grid=data.get("grid"), zip=data.get("zip"), points=data.get("points"),
                   seeds=data.get("seeds"), name=data.get("name", default_name), model=data.get("model"),
                   question=data.get("question", question), sweep_seed=data.get("sweep_seed"),
                   reference=data.get("reference"), metrics=data.get("metrics"),
                   probes=data.get("probes"))

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
    def load(cls, path: str | os.PathLike[str]) -> Sweep:
        """Read a TOML sweep file; its leading ``# Question: ...`` comment becomes ``question``.

        Args:
            path: the sweep file; the sweep's ``name`` defaults to its stem.

        Returns:
            The :class:`Sweep`.

        Raises:
            ParamError: a bad definition, the message starting with the file's path.

        Example:
            >>> Sweep.load("sweeps/demo.toml").name  # doctest: +SKIP
            'demo'
        """
        data, question = read_toml(path)
        try:
            return cls.from_dict(data, question=question, default_name=Path(path).stem)
        except ParamError as exc:
            exc.args = (f"{path}: {exc}",)
            raise

    def to_toml(self) -> str:
        """The TOML text :meth:`save` writes: the question as the first comment, then the definition.

        Returns:
            The file's text.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> print(sweep.to_toml().splitlines()[0])
            seeds = [1, 2]
        """
        return to_toml(self.to_dict(), self.question)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the sweep as TOML (atomically); :meth:`load` gives back an equal sweep.

        Args:
            path: the file to write.

        Returns:
            The path written.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> import tempfile, pathlib
            >>> path = sweep.save(pathlib.Path(tempfile.mkdtemp()) / "fox.toml")
            >>> Sweep.load(path) == sweep.replace(name="fox")
            True
        """
        from ..fsutil import write_text

        return write_text(Path(path), self.to_toml())

    # --- running -----------------------------------------------------------------------------------------
    @property
    def is_accel_study(self) -> bool:
        """Whether the sweep is an acceleration study (``accel`` is swept).

        :meth:`run` then times its runs (one job at a time, each request warmed up first, a request's
        settings on one worker) and keeps each run's final latents (their error against the exact run's,
        :meth:`SweepResult.accel_study`).
        """
        return ACCEL in self.swept

    def default_store(self) -> Path:
        """Where the sweep's runs go when no store is given.

        Returns:
            ``runs/<name>`` (the name made file-safe), the same for ``Sweep.run`` and ``wanlab sweep``.

        Example:
            >>> sweep = Sweep(base={"prompt": "a fox"}, seeds=[1, 2],
            ...               grid={"guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]})
            >>> str(sweep.replace(name="cfg study").default_store())
            'runs/cfg-study'
        """
        return Path("runs") / slug_part(self.name or "sweep")

    def run(self, backend: BackendLike = None, store: StoreLike | None = None, *,
            metrics: bool | str | Sequence[str] | None = True, progress: bool = True, max_failures: int | None = None,
            shard: tuple[int, int] | str | None = None, retry_failed: bool = True,
            max_in_flight: int | None = None, truncate: str = "warn", retry_uncertain: bool = False,
            probes: Any = None) -> SweepResult:
        """Run the points not yet in ``store`` on ``backend`` and return the whole sweep's table.

        Points already in the store (same run key) are skipped, so a killed sweep resumes where it stopped;
        a failing point is recorded with its error and the sweep goes on. Ctrl-C stops the sweep; what
        finished is in the store and the next run resumes. A sweep over ``accel`` (:attr:`is_accel_study`)
        times its runs: one job at a time, each keeping its final latents.

        Args:
            backend: A loaded pipeline or any backend (``wanlab.connect``, ``wanlab.ray.pool``), a model
                name, or None for the sweep's ``model``.
            store: A :class:`wanlab.Store` or its folder (default :meth:`default_store`).
            metrics: The metric sets to compute for every stored run (also for runs stored earlier without
                them): True the sweep's own (its file's ``metrics = [...]``, else ``["motion"]``), False none,
                or names of :data:`wanlab.metrics.suite.METRIC_SETS` (``"motion"``, ``"adherence"``,
                ``"clip_score"``, ``"subject_consistency"``, ``"background_consistency"``,
                ``"aesthetic_quality"``; ``"quality"`` for the last four). Evaluators run on the backend's
                device.
            progress: One ``tqdm.auto`` bar over the runs to do, with ETA (and runs per worker).
            max_failures: After that many failures in this call, stop gracefully: the rest stay pending,
                ``result.stopped`` says so and a warning is issued.
            shard: ``(i, n)`` or ``"i/n"``: run only points ``i, i+n, i+2n, ...`` (0 <= i < n), so n
                processes sharing a folder split a sweep with no coordinator.
            retry_failed: Run points whose earlier attempt failed again (default); False keeps them failed.
            max_in_flight: Points running at once (default: the backend's ``max_in_flight``).
            truncate: ``"warn"`` (default) or ``"error"``: a prompt longer than the model reads fails its
                point and stops the sweep (the points not reached stay pending).
            retry_uncertain: Submit again a point whose earlier submit got no answer (the service may have
                accepted it, and may bill it twice) on a service that cannot be asked under the same
                idempotency key (the hosted API); default False: such a point fails again, saying so. A
                wanlab server is always asked under the same key, and returns the task it accepted.
            probes: What every run records inside the model (:mod:`wanlab.probes`; default: the sweep's own
                ``probes``). Stored with each run; their scalar summaries (e.g. ``trajectory_decided_step``)
                are kept as the run's metrics, so they are columns of ``SweepResult.df``. Runs stored
                earlier without them are generated again (the frames come out the same) and the probes added.

        Returns:
            The whole sweep's :class:`~wanlab.sweep.result.SweepResult` (``ran``: the points this call ran).

        Raises:
            ParamError: An option is not one this accepts (naming it), the backend or store is not one,
                or probes are asked of a backend that returns frames only.
            LoadError: the named model cannot be loaded.

        Example:
            >>> result = Sweep.load("sweeps/demo.toml").run()  # doctest: +SKIP
            >>> with wanlab.load("toy") as pipe:  # doctest: +SKIP
            ...     result = sweep.run(pipe, "runs/fox", metrics=["motion"], shard="0/2")
            >>> result.df[["seed", "guidance_scale", "flow_magnitude"]]  # doctest: +SKIP
        """
        from .runner import run

        return run(self, backend, store, metrics=metrics, progress=progress, max_failures=max_failures, shard=shard,
                   retry_failed=retry_failed, max_in_flight=max_in_flight, truncate=truncate,
                   retry_uncertain=retry_uncertain, probes=probes)

    def result(self, model: Any = None, store: Store | str | os.PathLike[str] | None = None) -> SweepResult:
        """The sweep's table as the store holds it now, without running anything or loading a model.

        Args:
            model: a backend, a :class:`~wanlab.models.identity.ModelIdentity`, a model name, or None for
                the sweep's own ``model``.
            store: a :class:`wanlab.Store` or its folder (default :meth:`default_store`).

        Returns:
            The :class:`~wanlab.sweep.result.SweepResult`; points not in the store are ``pending``.

        Example:
            >>> sweep.result("toy", "runs/fox").df["status"].value_counts()  # doctest: +SKIP
        """
        from .runner import result

        return result(self, model, store)


def _point_error(index: int, overrides: Mapping[str, Any], exc: ParamError) -> ParamError:
    shown = ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())
    err = ParamError(exc.field, exc.rule, exc.value)
    err.point = index  # type: ignore[attr-defined]
    err.args = (f"sweep point {index} ({shown or 'base'}): {exc}",)
    return err
