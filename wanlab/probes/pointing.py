"""The pointing game for attention maps: a map "points" at an object in a frame when its maximum falls on it.

After Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016.

The maps live on the transformer's token grid, so the maximum is a token cell (for the toy model
16 x 16 pixels): a frame is a hit when that cell holds at least one pixel of the object's mask. The
chance rate to compare with is the fraction of cells that touch the mask (a uniformly random point).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .results import latent_frame_index


def _cells(attention: Any, masks: np.ndarray) -> np.ndarray:
    """Which token cells of each frame touch the mask ``(T, H, W)``, as bool ``(T, h, w)``."""
    _, gh, gw = attention.grid
    t, height, width = masks.shape
    return np.asarray(masks.reshape(t, gh, height // gh, gw, width // gw).any(axis=(2, 4)), dtype=bool)


def pointing_game(attention: Any, word: str, masks: np.ndarray, **choice: Any) -> np.ndarray:
    """Whether ``word``'s map points at the mask, per frame that shows the object.

    Args:
        attention: an :class:`~wanlab.probes.Attention` result.
        word: a word of the prompt.
        masks: bool ``(T, H, W)``, the object's pixels in each frame (frames without any are skipped).
        **choice: ``step=`` or ``block=`` as in :meth:`Attention.map`.

    Returns:
        bool array, one entry per frame whose mask is not empty.

    Raises:
        ProbeError: a word the prompt lacks.

    Example:
        >>> pointing_game(video.probes["attention"], "square", video.frames.max(-1) > 110).mean()  # doctest: +SKIP
    """
    grid = attention.tokens(word, **choice).reshape(attention.grid)
    masks = np.asarray(masks, bool)
    cells = _cells(attention, masks)
    index = latent_frame_index(masks.shape[0], attention.temporal)
    hits = []
    for f in range(masks.shape[0]):
        if not masks[f].any():
            continue
        y, x = np.unravel_index(int(np.argmax(grid[index[f]])), grid.shape[1:])
        hits.append(bool(cells[f, y, x]))
    return np.asarray(hits, bool)


def chance(attention: Any, masks: np.ndarray) -> float:
    """The hit rate of a uniformly random cell: the mean fraction of cells touching the mask.

    Args:
        attention: An :class:`~wanlab.probes.Attention` result (for its token grid).
        masks: bool ``(T, H, W)``, the object's pixels in each frame (frames without any are skipped).

    Returns:
        The rate in [0, 1], NaN when no frame has the object.

    Example:
        >>> chance(video.probes["attention"], video.frames.max(-1) > 110)  # doctest: +SKIP
        0.04
    """
    masks = np.asarray(masks, bool)
    keep = masks.any(axis=(1, 2))
    return float(_cells(attention, masks)[keep].mean()) if keep.any() else float("nan")
