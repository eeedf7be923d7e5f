"""Matplotlib figures: frame grids of one video or several, and metric-vs-parameter plots."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _frame_indices(count: int, n: int | None, frames: Sequence[int] | None) -> list[int]:
    if frames is not None:
        picked = [int(i) for i in frames]
        bad = [i for i in picked if not 0 <= i < count]
        if bad:
            raise ValueError(f"frames: must be indices in 0..{count - 1}; got {bad}")
        return picked
    n = count if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be a positive integer; got {n!r}")
    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def frame_grid(video: Any, n: int = 8, frames: Sequence[int] | None = None, *, width: float = 2.0,
               title: str | None = None):
    """One row of ``n`` evenly spaced frames (or the given ``frames``), each labelled with its index."""
    return compare_grid({title or "": video}, n=n, frames=frames, width=width)


def compare_grid(videos: Mapping[str, Any], n: int = 8, frames: Sequence[int] | None = None, *,
                 width: float = 2.0):
    """Rows = videos (labelled), columns = the same frame indices in every video."""
    import matplotlib

    if not videos:
        raise ValueError("videos: must hold at least one video; got none")
    from .video import as_frames

    arrays = {label: as_frames(v, f"videos[{label!r}]") for label, v in videos.items()}
    count = min(a.shape[0] for a in arrays.values())
    picked = _frame_indices(count, n, frames)
    if matplotlib.get_backend().lower() == "":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = next(iter(arrays.values())).shape[1:3]
    rows, cols = len(arrays), len(picked)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, width * rows * h / w + 0.4 * rows), squeeze=False)
    for r, (label, arr) in enumerate(arrays.items()):
        for c, index in enumerate(picked):
            ax = axes[r][c]
            ax.imshow(arr[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {index}", fontsize=9)
            if c == 0 and label:
                ax.set_ylabel(str(label), fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
