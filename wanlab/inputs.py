"""The inputs wanlab's functions accept, named once (as httpx's ``_types`` does).

Each alias is what a parameter of that name takes everywhere: a signature says ``accel: AccelLike``
instead of ``accel: Any`` and the rule is written here, once. The aliases are strings, so importing
this module loads nothing; type checkers and editors resolve them.

Example:
    >>> from wanlab.inputs import AccelLike
    >>> def run(accel: AccelLike = None) -> None: ...
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # pragma: no cover
    from .accel.setting import Accel
    from .backend import Backend
    from .store import Store

#: A path given as text or as any ``os.PathLike``.
PathLike: TypeAlias = "str | os.PathLike[str]"

#: An acceleration setting: an :class:`~wanlab.accel.Accel`, a preset's name (``"fbc"``), its
#: mapping form (:meth:`Accel.from_dict`) or None (exact: no acceleration). See ``Accel.coerce``.
AccelLike: TypeAlias = "Accel | str | Mapping[str, Any] | None"

#: A run store: a :class:`~wanlab.Store` or the folder of one (created on first write).
StoreLike: TypeAlias = "Store | str | os.PathLike[str]"

#: What runs requests: a backend (``wanlab.load``, ``wanlab.connect``, ``wanlab.ray.pool``), a
#: model's name or folder (opened with :func:`wanlab.open_backend`), or None (the default model).
BackendLike: TypeAlias = "Backend | str | os.PathLike[str] | None"

#: Probes to record inside the model: a name (``"attention"``), names, or ``{name: settings}``;
#: None for none. See :func:`wanlab.probes.spec.normalize`.
ProbesLike: TypeAlias = "str | Iterable[str] | Mapping[str, Mapping[str, Any] | None] | None"

__all__ = ["AccelLike", "BackendLike", "PathLike", "ProbesLike", "StoreLike"]
