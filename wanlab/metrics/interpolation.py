"""Motion smoothness after VBench: how well the odd frames are predicted by interpolating their neighbours.

VBench interpolates frame 2i+1 from frames 2i and 2i+2 with the AMT network and scores the mean
absolute difference at full resolution. wanlab's proxy interpolates along the optical flow: the
flow 2i -> 2i+2 is moved to the middle frame's grid (so a moving object is sampled where it is at
mid-time, not where it was), both neighbours are sampled half-way along it with bicubic
interpolation at full resolution, and averaged. Constant-velocity motion is then predicted up to
interpolation error and occlusion strips; jerky motion is not. ``docs/metrics.md`` lists the
error floor this leaves, measured on synthetic videos.
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
    """
    span = flows.span(start, 2)
    u = span
    for _ in range(MIDPOINT_ITERATIONS):
        u = remap(span, flows.grid, -0.5 * u)
    return u


def smoothness_of(flows: Flows) -> PairScores:
    """:func:`smoothness` of flows already computed (shared with other metrics)."""
    import cv2

    frames = flows.frames
    H, W = frames.shape[1:3]
    resize = flows.gray.shape[1:] != (H, W)
    grid = pixel_grid(H, W)
    to_half = np.float32(0.5) * np.asarray(flows.scale, dtype=np.float32)

    def predicted(i: int) -> float:
        a = 2 * i
        u = midpoint_flow(flows, a)
        if resize:
            u = cv2.resize(u, (W, H), interpolation=cv2.INTER_LINEAR)
        half = u * to_half  # original px
        before = cv2.remap(frames[a].astype(np.float32), grid - half, None, cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
        after = cv2.remap(frames[a + 2].astype(np.float32), grid + half, None, cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
        pred = cv2.addWeighted(before, 0.5, after, 0.5, 0.0)
        mad = np.mean(cv2.mean(cv2.absdiff(pred, frames[a + 1].astype(np.float32)))[:3])
        return (255.0 - mad) / 255.0

    scores = in_parallel(predicted, range((len(frames) - 1) // 2))
    per = np.asarray(scores, dtype=np.float64)
    return PairScores(per, float(per.mean()))


def smoothness(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> PairScores:
    """Motion smoothness proxy of VBench's: how well interpolating frames 2i and 2i+2 predicts frame 2i+1.

    ``per_pair[i] = (255 - mean |predicted - real|) / 255`` over all pixels and RGB channels of
    frame 2i+1 at full resolution, in [0, 1], higher is smoother; ``mean`` averages them (VBench's
    ``vfi_score``). The prediction averages frames 2i and 2i+2 sampled (bicubic) half-way along
    the flow 2i -> 2i+2, moved to the middle frame's grid (:func:`midpoint_flow`); the flow is
    estimated on the working grid and upsampled. VBench interpolates with the AMT network
    instead (``vbench/motion_smoothness.py``): a proxy, not comparable to its numbers. Needs T >= 3.

    Example: ``metrics.smoothness(video).mean`` -> 0.9999 for a textured square moving 2 px/frame.
    """
    return smoothness_of(Flows.of(video, method, max_short_side, min_frames=3))
