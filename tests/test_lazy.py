"""wanlab.lazy.attach: a package's names imported on first use, and every package's lazy names resolving."""
from __future__ import annotations

import importlib
import sys

import pytest

from wanlab import lazy


@pytest.fixture()
def package(tmp_path, monkeypatch):
    """A throwaway package ``lazypkg`` whose submodule ``heavy`` records that it was imported."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text(
        "from wanlab import lazy\n"
        "__getattr__, __dir__ = lazy.attach(__name__, {'Thing': 'inner.heavy'}, submodules=['other'])\n")
    (root / "inner").mkdir()
    (root / "inner" / "__init__.py").write_text("")
    (root / "inner" / "heavy.py").write_text("import sys\nsys.modules['lazypkg'].loads = 1\nclass Thing:\n    pass\n")
    (root / "other.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("lazypkg")
    for name in [n for n in sys.modules if n == "lazypkg" or n.startswith("lazypkg.")]:
        del sys.modules[name]


def test_attach_imports_on_first_use_and_keeps_the_value(package):
    assert "lazypkg.inner.heavy" not in sys.modules and "Thing" not in vars(package)
    assert sorted(set(dir(package)) & {"Thing", "other"}) == ["Thing", "other"]
    thing = package.Thing
    assert thing.__module__ == "lazypkg.inner.heavy" and package.loads == 1
    assert vars(package)["Thing"] is thing  # kept: the next lookup does not reach __getattr__
    assert package.other.VALUE == 7
    with pytest.raises(AttributeError, match=r"^module 'lazypkg' has no attribute 'missing'$"):
        _ = package.missing


def test_attach_refuses_a_name_that_is_both_attribute_and_submodule():
    with pytest.raises(ValueError, match=r"^submodules: must not repeat a lazy attribute; got \['x'\]$"):
        lazy.attach("wanlab", {"x": "y"}, ["x"])


@pytest.mark.parametrize("name", ["wanlab", "wanlab.accel", "wanlab.server", "wanlab.toy", "wanlab.client"])
def test_every_name_a_package_exports_resolves_and_is_listed(name):
    module = importlib.import_module(name)
    assert set(module.__all__) <= set(dir(module))
    for attr in module.__all__:
        assert getattr(module, attr) is not None, attr
    with pytest.raises(AttributeError, match=rf"^module '{name}' has no attribute 'no_such_name'$"):
        _ = module.no_such_name
