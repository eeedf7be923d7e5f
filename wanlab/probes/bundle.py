"""``video.probes``: the recorded probes of one run together (:class:`Probes`).

Saved to one compressed ``.npz`` and read back (no torch).
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WanlabError
from ..fsutil import atomic_file
from .results import Attention, Features, Trajectory

FORMAT = 1
KINDS: dict[str, type[Trajectory] | type[Attention] | type[Features]] = {
    "trajectory": Trajectory, "attention": Attention, "features": Features}


class Probes(Mapping[str, Any]):
    """``video.probes``: the recorded probes by name (``"trajectory"``, ``"attention"``, ``"features"``).

    A read-only mapping; a probe not recorded raises ``KeyError`` naming those that were.
    ``save(path)`` writes one compressed ``.npz`` (atomically); ``Probes.load(path)`` reads it back.

    Args:
        items: Probe name to :class:`Trajectory`, :class:`Attention` or :class:`Features`.

    Example:
        >>> import numpy as np
        >>> from wanlab.probes import Features, Probes
        >>> probes = Probes({"features": Features(np.array([[0.1, 0.2]]), np.full((2, 1, 2), 3), blocks=[0, 1])})
        >>> list(probes), round(probes.summary()["features_mean_change"], 2)
        (['features'], 0.15)
        >>> video.probes["trajectory"].distance  # doctest: +SKIP
    """

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"probe {name!r} was not recorded in this run; recorded: "
                           f"{', '.join(self._items) or 'none'}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Probes({', '.join(self._items)})"

    def summary(self) -> dict[str, float]:
        """Scalar summaries of every probe that has them.

        Returns:
            ``probe_name`` columns (``trajectory_decided_step``, ``features_mean_change``, ...).
        """
        out: dict[str, float] = {}
        for name, probe in self._items.items():
            if hasattr(probe, "summary"):
                out.update({f"{name}_{k}": v for k, v in probe.summary().items()})
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the probes' arrays before compression."""
        return sum(int(np.asarray(v).nbytes) for probe in self._items.values()
                   for k, v in probe.arrays().items() if k != "meta")

    def to_bytes(self) -> bytes:
        """The compressed ``.npz`` bytes.

        Returns:
            The bytes: each probe's arrays under ``name/array``, its metadata as JSON.
        """
        arrays: dict[str, Any] = {"format": np.asarray(FORMAT)}
        for name, probe in self._items.items():
            for key, value in probe.arrays().items():
                arrays[f"{name}/{key}"] = (np.asarray(json.dumps(value)) if key == "meta" else np.asarray(value))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str], *, atomic: bool = True) -> Path:
        """Write the probes to a compressed ``.npz``.

        Args:
            path: The file.
            atomic: Write atomically (False inside a folder that is itself built atomically).

        Returns:
            The path.

        Example:
            >>> video.probes.save("fox.probes.npz")  # doctest: +SKIP
            PosixPath('fox.probes.npz')
        """
        target = Path(path)
        data = self.to_bytes()
        if atomic:
            with atomic_file(target) as tmp:
                Path(tmp).write_bytes(data)
        else:
            target.write_bytes(data)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Probes:
        """Read probes saved by :meth:`save`.

        Args:
            path: The ``.npz`` file.

        Returns:
            The Probes.

        Raises:
            WanlabError: the file is not a readable probes file.
        """
        source = Path(path)
        try:
            with np.load(source, allow_pickle=False) as data:
                grouped: dict[str, dict[str, Any]] = {}
                for key in data.files:
                    if "/" not in key:
                        continue
                    name, part = key.split("/", 1)
                    value = data[key]
                    grouped.setdefault(name, {})[part] = json.loads(str(value)) if part == "meta" else value
        except (OSError, ValueError, KeyError) as exc:
            raise WanlabError(f"{source}: not a readable probes file ({exc})") from None
        unknown = [name for name in grouped if name not in KINDS]
        if unknown:
            raise WanlabError(f"{source}: unknown probes {unknown} (a newer wanlab wrote it?)")
        return cls({name: KINDS[name].from_arrays(grouped[name]) for name in KINDS if name in grouped})
