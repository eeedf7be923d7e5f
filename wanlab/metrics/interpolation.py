"""Motion smoothness after VBench (:func:`smoothness`).

How well the odd frames are predicted by interpolating their neighbours along the optical flow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .optical_flow import WORK_SHORT_SIDE, Flows, PairScores, in_parallel, pixel_grid, remap

#: Fixed-point iterations that move the 2i -> 2i+2 flow onto the middle frame's grid.
MIDPOINT_ITERATIONS = 2


def midpoint_flow(flows: Flows, start: int) -> np.ndarray:
    """Flow start -> start+2 on the grid of frame start+1 (working px), assuming constant velocity.

    Solves ``u(x) = F(x - u(x)/2)`` by fixed-point iteration from ``u = F``: the mid-time point
    ``x`` came from ``x - u/2`` in frame ``start``. ``F`` is chained from the two consecutive
    flows (DIS misses fast objects over two frames; the chain is the 2-frame displacement).

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.
        start: The first frame of the three.

    Returns:
        (h, w, 2) float32 flow in working px.

    Example:
        >>> midpoint_flow(Flows(video), 0).shape  # doctest: +SKIP
        (240, 416, 2)
    """
    span = flows.span(start, 2)
    u = span
    for _ in range(MIDPOINT_ITERATIONS):
        u = remap(span, flows.grid, -0.5 * u)
    return u


def lattice_stride(flows: Flows) -> int:
    """Step between the full-resolution pixels smoothness compares: the working grid's scale, rounded.

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.

    Returns:
        The stride (2 at 832x480 with the default working grid, 1 when not downscaled).

    Example:
        >>> lattice_stride(Flows(video))  # doctest: +SKIP
        2
    """
    H, W = flows.frames.shape[1:3]
    h, w = flows.gray.shape[1:]
    return max(1, round(min(W / w, H / h)))


def smoothness_of(flows: Flows) -> PairScores:
    """:func:`smoothness` of flows already computed (shared with other metrics).

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows` (T >= 3).

    Returns:
        The scores per predicted frame and their mean.

    Example:
        >>> smoothness_of(Flows(video)).mean  # doctest: +SKIP
        0.9999
    """
    import cv2

    frames = flows.frames
    H, W = frames.shape[1:3]
    h, w = flows.gray.shape[1:]
    step = lattice_stride(flows)
    scale = np.asarray(flows.scale, dtype=np.float32)
    lattices = {}
    for oy in range(step):
        for ox in range(step):
            points = pixel_grid(H, W)[oy::step, ox::step]  # full-resolution pixels compared
            # the same points on the working grid
            on_work = (points + 0.5) * np.array([w / W, h / H], dtype=np.float32) - 0.5
            lattices[oy * step + ox] = (oy, ox, points, np.ascontiguousarray(on_work))

    def predicted(i: int) -> float:
        a = 2 * i
        oy, ox, points, on_work = lattices[i % len(lattices)]
        u = midpoint_flow(flows, a)
        if step > 1 or (h, w) != (H, W):
            u = cv2.remap(u, on_work, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        half = u * (0.5 * scale)  # original px
        before = cv2.remap(frames[a].astype(np.float32), points - half, None, cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
        after = cv2.remap(frames[a + 2].astype(np.float32), points + half, None, cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
        pred = cv2.addWeighted(before, 0.5, after, 0.5, 0.0)
        real = np.ascontiguousarray(frames[a + 1, oy::step, ox::step]).astype(np.float32)
        return (255.0 - np.mean(cv2.mean(cv2.absdiff(pred, real))[:3])) / 255.0

    _ = flows.forward  # computed once, before the threads share it
    per = np.asarray(in_parallel(predicted, range((len(frames) - 1) // 2)), dtype=np.float64)
    return PairScores(per, float(per.mean()))


def smoothness(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> PairScores:
    """Motion smoothness proxy of VBench's: how well interpolating frames 2i and 2i+2 predicts frame 2i+1.

    ``per_pair[i] = (255 - mean |predicted - real|) / 255`` over all pixels and RGB channels of
    frame 2i+1 at full resolution, in [0, 1], higher is smoother; ``mean`` averages them (VBench's
    ``vfi_score``). The prediction averages frames 2i and 2i+2 sampled (bicubic) half-way along
    the flow 2i -> 2i+2, moved to the middle frame's grid (:func:`midpoint_flow`); the flow is
    estimated on the working grid and upsampled. VBench interpolates with the AMT network
    instead (``vbench/motion_smoothness.py``): a proxy, not comparable to its numbers.
    Constant-velocity motion is then predicted up to interpolation error and occlusion strips;
    jerky motion is not. ``docs/metrics.md`` lists the error floor this leaves, measured on
    synthetic videos. A textured square moving 2 px/frame scores 0.9999.

    The difference is taken at full-resolution pixels on a lattice of every ``s``-th row and
    column (``s`` = :func:`lattice_stride`, 2 at 832x480: as many points as the flow has), shifted
    from one predicted frame to the next so that every pixel position counts equally often: an
    unbiased estimate of VBench's mean over all pixels, with noise and fine texture at full
    resolution, at a quarter of the cost.

    Args:
        video: uint8 (T, H, W, 3) frames with T >= 3, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows`.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the flow's working grid in px (None: full resolution).

    Returns:
        ``per_pair[i]`` for each predicted frame 2i+1, in [0, 1], and their ``mean``.

    Raises:
        ValueError: Bad frames (T < 3) or settings.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> round(metrics.smoothness(pan).mean, 2)
        1.0
    """
    return smoothness_of(Flows.of(video, method, max_short_side, min_frames=3))
