"""The notebooks in notebooks/ run top to bottom on the toy model (nbclient, a fresh kernel each) and are
kept in git without outputs.

Each notebook runs in a copy inside a temporary folder (what it writes under ``runs/`` stays out of the
checkout), in a kernel started from this interpreter: a temporary ``python3`` kernelspec pointing at
``sys.executable`` is put first on ``JUPYTER_PATH``, so a ``python3`` kernelspec installed elsewhere on the
machine (another Python) is never picked up.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_quickstart", "02_sweeps", "03_reproducibility", "04_metrics", "05_acceleration", "06_service",
            "07_inside_the_model"]
#: Each notebook must finish in about 2 minutes on 2 shared CPU cores; this is a hang guard, not the goal.
CELL_TIMEOUT_S = 300
NOTEBOOK_BUDGET_S = 240
#: The notebooks that call wanlab.show.
SHOWS_PLAYER = ("01_quickstart", "02_sweeps", "04_metrics", "05_acceleration", "06_service")


def kernelspec_dir(base: Path) -> Path:
    """A JUPYTER_PATH folder whose ``python3`` kernel runs this interpreter."""
    spec = base / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (wanlab tests)", "language": "python",
        "env": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    return base


def _prepend(folder: Path, variable: str) -> str:
    rest = [p for p in os.environ.get(variable, "").split(os.pathsep) if p]
    return os.pathsep.join([str(folder), *rest])


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata["kernelspec"]["name"] == "python3"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"
    assert "widgets" not in book.metadata, f"{path.name}: saved widget state not stripped"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    pytest.importorskip("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(path, work / path.name)
    shutil.copytree(ROOT / "sweeps", tmp_path / "sweeps")  # notebooks may load ../sweeps/NAME.toml
    monkeypatch.setenv("JUPYTER_PATH", _prepend(kernelspec_dir(tmp_path / "jupyter"), "JUPYTER_PATH"))
    monkeypatch.setenv("PYTHONPATH", _prepend(ROOT, "PYTHONPATH"))
    book = nbformat.read(work / path.name, as_version=4)
    client = NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell on the first error
    seconds = time.perf_counter() - start
    print(f"{path.stem}: {seconds:.1f} s")
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.stem} took {seconds:.0f} s"

    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {mime for o in outputs for mime in o.get("data", {})}
    assert "image/png" in kinds  # matplotlib figures rendered
    assert "application/vnd.jupyter.widget-view+json" in kinds  # widgets displayed
    if path.stem in SHOWS_PLAYER:
        assert any("wanlab-show" in o.get("data", {}).get("text/html", "") for o in outputs)  # wanlab.show
    assert not list(work.glob("*.ipynb_checkpoints"))
