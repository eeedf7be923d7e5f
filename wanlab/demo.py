"""The main job for a newcomer: ``wanlab demo`` runs the demo sweep and writes a report to open.

It runs ``sweeps/demo.toml`` (seeds x guidance_scale x flow_shift on the sweep's model, ``toy``,
unless ``--model`` says otherwise) into a store inside the output folder, then writes the
videos, a frame grid, the metrics table, a metric-vs-parameter plot and a self-contained HTML
report (see :mod:`wanlab.report`). Running it again reuses the stored runs.
"""
from __future__ import annotations

import os
from pathlib import Path

from .models.registry import DEFAULT_MODEL

#: The demo sweep inside the package (an identical copy of the repository's sweeps/demo.toml).
PACKAGE_DEMO = Path(__file__).with_name("data") / "demo.toml"
#: The repository's copy, used when wanlab runs from a checkout.
REPO_DEMO = Path(__file__).resolve().parents[1] / "sweeps" / "demo.toml"
#: Environment variable naming another sweep file for the demo (tests use a smaller one).
DEMO_SWEEP_ENV = "WANLAB_DEMO_SWEEP"


def demo_sweep_path() -> Path:
    """The demo's sweep file.

    Returns:
        ``$WANLAB_DEMO_SWEEP`` if set, else the repository's ``sweeps/demo.toml`` when present (a checkout),
        else the package's copy (:data:`PACKAGE_DEMO`).

    Example:
        >>> demo_sweep_path().name  # doctest: +SKIP
        'demo.toml'
    """
    override = os.environ.get(DEMO_SWEEP_ENV)
    if override:
        return Path(override)
    return REPO_DEMO if REPO_DEMO.is_file() else PACKAGE_DEMO


def run_demo(out: Path, model: str | None = None, progress: bool = True, *,
             sweep: str | os.PathLike[str] | None = None) -> Path:
    """Run the demo sweep into ``out/store`` and write its report folder; return ``out/report.html``.

    Runs already in ``out/store`` are reused, so a second call only writes the report again.

    Args:
        out: The output folder (created if missing).
        model: A model name or folder overriding the sweep file's ``model`` (default: the file's,
            else ``toy``).
        progress: Print the loading step, progress bars and the sweep's summary.
        sweep: Another sweep file to run instead of :func:`demo_sweep_path`.

    Returns:
        The path of the written ``report.html``.

    Raises:
        wanlab.ParamError: The sweep file breaks a rule (a bad grid value or key).
        wanlab.LoadError: The model cannot be loaded.

    Example:
        >>> run_demo(Path("demo-out"))  # doctest: +SKIP
        PosixPath('demo-out/report.html')
    """
    from .pipeline import load
    from .report import write_sweep_report
    from .sweep import Sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    definition = Sweep.load(sweep if sweep is not None else demo_sweep_path())
    name = model or definition.model or DEFAULT_MODEL
    if progress:
        print(f"loading model {name} ...", flush=True)
    pipe = load(name, progress=False)
    result = definition.run(pipe, store=out / "store", progress=progress)
    if progress:
        print(result.summary(), flush=True)
    return write_sweep_report(result, out)
