"""Figures of recorded probes (matplotlib).

The trajectory grid (steps x frames), attention overlays (the word's map over the frames) and the
feature-change heatmap (blocks x steps, skipped calls marked).

Each takes what a stored run gives back (``video.probes`` or ``run.probes()``), so every figure can be
redrawn from the store.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ProbeError
from ..plots import _frame_indices, pyplot


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """A frame with a map blended over it in matplotlib's ``inferno`` colours.

    What the attention overlay and the probe viewer show.

    Args:
        frame: uint8 ``(H, W, 3)``.
        heat: ``(H, W)`` in [0, 1] (clipped).
        alpha: The map's weight.

    Returns:
        uint8 ``(H, W, 3)``.

    Example:
        >>> overlay(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4))).shape
        (4, 4, 3)
    """
    from matplotlib import colormaps

    colours = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * frame + alpha * colours, 0, 255).astype(np.uint8)


def _steps(count: int, steps: Sequence[int] | None, n: int) -> list[int]:
    if steps is None:
        return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))
    bad = [s for s in steps if not -count <= int(s) < count]
    if bad:
        raise ProbeError.invalid("steps", f"indices from {-count} to {count - 1}", list(steps))
    return [int(s) % count for s in steps]


def trajectory_grid(trajectory: Any, *, steps: Sequence[int] | None = None, n_steps: int = 6, n_frames: int = 6,
                    frames: Sequence[int] | None = None, decoder: Any = None, width: float = 1.6):
    """Rows = denoising steps, columns = frames: the model's clean-video prediction as it forms.

    Args:
        trajectory: a :class:`~wanlab.probes.Trajectory` (``video.probes["trajectory"]``).
        steps: step indices (default ``n_steps`` evenly spaced, first and last included).
        frames: frame indices (default ``n_frames`` evenly spaced).
        decoder: None for the latent-to-RGB previews, or a pipeline to decode each with the VAE.
        n_steps: How many steps when ``steps`` is not given.
        n_frames: How many frames when ``frames`` is not given.
        width: Inches per frame.

    Returns:
        A matplotlib figure.

    Raises:
        ProbeError: a step outside the run's steps.

    Example:
        >>> trajectory_grid(video.probes["trajectory"])  # doctest: +SKIP
    """
    picked = _steps(trajectory.steps, steps, n_steps)
    distance = trajectory.distance
    plt = pyplot()
    previews = [trajectory.preview(s, decoder=decoder) for s in picked]
    cols = _frame_indices(previews[0].shape[0], n_frames, frames)
    h, w = previews[0].shape[1:3]
    fig, axes = plt.subplots(len(picked), len(cols), figsize=(width * len(cols), width * len(picked) * h / w + 0.3),
                             squeeze=False)
    for r, (step, preview) in enumerate(zip(picked, previews)):
        for c, index in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(preview[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {index}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"step {step}\nd={distance[step]:.2f}", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def attention_overlay(video: Any, words: Sequence[str] | str | None = None, *, n_frames: int = 6,
                      frames: Sequence[int] | None = None, step: int | None = None, block: int | None = None,
                      width: float = 1.6):
    """Rows = words, columns = frames: each word's attention map over the video's frames.

    Args:
        video: a :class:`wanlab.Video` recorded with the attention probe.
        words: words of the prompt (default: every recorded word).
        n_frames: How many frames, evenly spaced, when ``frames`` is not given.
        frames: Frame indices.
        step: One recorded step instead of the average.
        block: One recorded block instead of the average.
        width: Inches per frame.

    Returns:
        A matplotlib figure.

    Raises:
        ProbeError: a word the prompt lacks, or a video without the attention probe.

    Example:
        >>> attention_overlay(video, ["red", "square"])  # doctest: +SKIP
    """
    if not video.probes or "attention" not in video.probes:
        raise ProbeError("attention_overlay needs a video recorded with probes=['attention']", "probes")
    attention = video.probes["attention"]
    words = [words] if isinstance(words, str) else list(words or attention.words)
    maps = {word: attention.map(word, step=step, block=block) for word in words}
    cols = _frame_indices(video.frames.shape[0], n_frames, frames)
    h, w = video.frames.shape[1:3]
    plt = pyplot()
    fig, axes = plt.subplots(len(words), len(cols), figsize=(width * len(cols), width * len(words) * h / w + 0.3),
                             squeeze=False)
    for r, word in enumerate(words):
        for c, index in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(overlay(video.frames[index], maps[word][index]))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {index}", fontsize=8)
            if c == 0:
                ax.set_ylabel(word, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def feature_heatmap(features: Any, *, ax: Any = None, title: str | None = None):
    """Blocks x steps: each block's relative L1 output change from the previous step (log colour scale).

    The calls an acceleration setting served from its cache are marked ``x`` (conditional branch).

    Args:
        features: A :class:`~wanlab.probes.Features` (``video.probes["features"]``).
        ax: Axes to draw on (a new figure when None).
        title: The title.

    Returns:
        A matplotlib figure.

    Example:
        >>> feature_heatmap(video.probes["features"])  # doctest: +SKIP
    """
    from matplotlib.colors import LogNorm

    plt = pyplot()
    change = np.asarray(features.change, np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * (change.shape[0] + 1) + 2), 0.35 * change.shape[1] + 1.5))
    else:
        fig = ax.figure
    finite = change[np.isfinite(change) & (change > 0)]
    norm = LogNorm(vmin=float(finite.min()), vmax=float(finite.max())) if finite.size else None
    image = ax.imshow(change.T, aspect="auto", cmap="viridis", norm=norm, origin="lower",
                      extent=(0.5, change.shape[0] + 0.5, -0.5, change.shape[1] - 0.5))
    skipped = features.skipped[:, 0, :]  # the conditional branch
    ys, xs = np.nonzero(skipped.T)
    if len(xs):
        ax.scatter(xs, ys, marker="x", color="red", s=18, label="skipped (cache)")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_yticks(range(len(features.blocks)), [str(b) for b in features.blocks])
    ax.set_xlabel("step")
    ax.set_ylabel("block")
    ax.set_title(title or "relative L1 change of each block's output", fontsize=10)
    fig.colorbar(image, ax=ax, label="mean|h_s - h_(s-1)| / mean|h_(s-1)|")
    plt.close(fig)
    return fig
