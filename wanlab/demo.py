"""The main job for a newcomer: a few videos on the built-in model, a frame grid and a metrics table."""
from __future__ import annotations

from pathlib import Path

DEMO_PROMPT = "a red fox running through fresh snow"


def run_demo(out: Path, model: str | None = None, progress: bool = True) -> Path:
    """Generate three seeds on ``model`` (default tiny), save mp4s and a frame-grid PNG; return the folder."""
    from .pipeline import load
    from .plots import compare_grid

    out.mkdir(parents=True, exist_ok=True)
    pipe = load(model or "tiny", progress=progress)
    videos = {}
    for seed in (1, 2, 3):
        video = pipe.generate(prompt=DEMO_PROMPT, seed=seed, steps=20, progress=progress)
        path = video.save(out / f"seed{seed}.mp4")
        print(f"wrote {path}")
        videos[f"seed {seed}"] = video
    grid = out / "frame_grid.png"
    compare_grid(videos, n=6).savefig(grid, dpi=80)
    print(f"wrote {grid}")
    return out
