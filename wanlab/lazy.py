"""Package attributes imported on first use (PEP 562), so that importing a package loads no heavy library.

A package lists what it serves lazily and gets its module ``__getattr__`` and ``__dir__`` from
:func:`attach` (the pattern of scientific Python's ``lazy_loader``); editors and type checkers see
the same names through an ``if TYPE_CHECKING:`` import block beside it.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def attach(package: str, attributes: Mapping[str, str] | None = None,
           submodules: Iterable[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a module ``__getattr__`` and ``__dir__`` for ``package`` that import on first use.

    Args:
        package: The package's ``__name__``.
        attributes: Each lazy name mapped to the module, relative to ``package``, that defines it under
            the same name (``{"load": "pipeline", "identity": "models.identity"}``).
        submodules: Submodules served as attributes (``wanlab.metrics`` after a bare ``import wanlab``).

    Returns:
        ``(__getattr__, __dir__)``: the first imports a lazy name's module and keeps the value in the
        package's namespace (later lookups never reach it again); the second lists the package's
        namespace and every lazy name.

    Raises:
        ValueError: A name is both a lazy attribute and a submodule. The returned ``__getattr__`` raises
            ``AttributeError`` for a name the package does not serve, as a module does.

    Example:
        In a package's ``__init__.py``:

        >>> __getattr__, __dir__ = attach(__name__, {"Store": "store"}, submodules=["metrics"])  # doctest: +SKIP

        The returned pair, without importing anything yet:

        >>> get, names = attach("wanlab.toy", {"evaluate": "scoring"})
        >>> "evaluate" in names()
        True
        >>> get("nothing")
        Traceback (most recent call last):
        AttributeError: module 'wanlab.toy' has no attribute 'nothing'
    """
    lazy = dict(attributes or {})
    subs = frozenset(submodules)
    both = sorted(subs & set(lazy))
    if both:
        raise ValueError(f"submodules: must not repeat a lazy attribute; got {both}")

    def __getattr__(name: str) -> Any:
        if name in lazy:
            value = getattr(importlib.import_module(f".{lazy[name]}", package), name)
        elif name in subs:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(lazy) | subs)

    return __getattr__, __dir__
