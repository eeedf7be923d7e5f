"""wanlab's exceptions: one hierarchy in wanlab.errors, every class exported flat from ``wanlab``."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import wanlab
from wanlab import errors

PACKAGE = Path(wanlab.__file__).parent


def test_every_error_and_warning_is_exported_from_wanlab():
    own = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__]
    assert {c.__name__ for c in own if issubclass(c, errors.WanlabError)} >= {
        "WanlabError", "ParamError", "RunNotFoundError", "EvaluatorMissing", "DownloadError", "ServiceError"}
    for cls in own:
        assert issubclass(cls, (errors.WanlabError, Warning)), cls
        assert cls.__name__ in wanlab.__all__, f"wanlab.__all__ lacks {cls.__name__}"
        assert getattr(wanlab, cls.__name__) is cls


def test_no_wanlab_error_is_defined_outside_wanlab_errors():
    """A class deriving from one of wanlab.errors' exceptions lives in wanlab.errors (one hierarchy)."""
    names = {name for name, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__}
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & names:
                    elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert elsewhere == []


def test_moved_errors_keep_their_old_import_paths():
    from wanlab.client.download import DownloadError
    from wanlab.metrics import EvaluatorMissing
    from wanlab.store import RunNotFoundError

    assert (DownloadError, EvaluatorMissing, RunNotFoundError) == (
        wanlab.DownloadError, wanlab.EvaluatorMissing, wanlab.RunNotFoundError)
    assert issubclass(wanlab.RunNotFoundError, KeyError) and str(wanlab.RunNotFoundError("no run abc")) == "no run abc"
