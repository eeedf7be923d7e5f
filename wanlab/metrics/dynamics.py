"""VBench's motion verdicts: dynamic degree, the static-clip filter, and temporal flicker on static clips.

Each follows VBench's reference code rule for rule (file and line in ``docs/metrics.md``) with
DIS flow instead of RAFT, so thresholds and counts are VBench's while the flow is a proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from ..frames import WAN_FPS
from .optical_flow import WORK_SHORT_SIDE, Flows, PairScores, in_parallel, top_mean

#: VBench's dynamic degree scores a pair by the mean of its top 5 % flow magnitudes ...
DYNAMIC_TOP = 0.05
#: ... and its static filter by the mean of the top 2 %.
STATIC_TOP = 0.02
#: The first <-> last frame flows of the static filter are chained for points on a grid coarser
#: than the working grid (short side >= 60 points): its threshold is tens of px.
END_CHAIN_MIN_SIDE = 60


@dataclass(frozen=True)
class DynamicDegree:
    """VBench dynamic-degree verdict (:func:`dynamic_degree`).

    Attributes:
        dynamic: The verdict.
        per_pair: Mean of the top 5 % flow magnitudes of each sampled pair, in px of the original resolution.
        threshold: px a pair must exceed.
        required: How many pairs must exceed it.
        interval: Frame step of the ~8 fps sampling.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> verdict = metrics.dynamic_degree(pan)
        >>> verdict.dynamic, verdict.threshold, verdict.required, verdict.interval, verdict.exceeded
        (True, 1.5, 1, 2, 4)
    """

    dynamic: bool
    per_pair: np.ndarray
    threshold: float
    required: int
    interval: int

    @property
    def exceeded(self) -> int:
        """Number of sampled pairs whose score is above ``threshold``."""
        return int(np.count_nonzero(self.per_pair > self.threshold))

    @property
    def score(self) -> float:
        """Mean per-pair score in px (a continuous companion of the verdict)."""
        return float(self.per_pair.mean())


@dataclass(frozen=True)
class StaticFilter:
    """VBench static-clip verdict (the filter its temporal flicker runs on first; :func:`static_filter`).

    Both end-to-end scores must stay within ``end_threshold = 2 * threshold * allowed``.

    Attributes:
        static: The verdict.
        per_pair: Mean of the top 2 % flow magnitudes of each consecutive pair (px, original resolution).
        first_last: The same for the first -> last and last -> first frame flows.
        threshold: ``3 * min(H, W) / 256`` px.
        allowed: ``round(2 * T / 16)`` pairs may exceed it.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> verdict = metrics.static_filter(pan)
        >>> verdict.static, verdict.threshold, verdict.allowed, verdict.exceeded
        (False, 0.75, 1, 8)
    """

    static: bool
    per_pair: np.ndarray
    first_last: np.ndarray
    threshold: float
    allowed: int

    @property
    def end_threshold(self) -> float:
        """Pixels the first <-> last scores must not exceed (VBench: ``thres * count_num * 2``)."""
        return self.threshold * self.allowed * 2

    @property
    def exceeded(self) -> int:
        """Number of consecutive pairs whose score is above ``threshold``."""
        return int(np.count_nonzero(self.per_pair > self.threshold))


@dataclass(frozen=True)
class TemporalFlicker(PairScores):
    """VBench temporal flicker (:func:`temporal_flicker`): in [0, 1] for a static clip, NaN for a moving one.

    Attributes:
        per_pair: One value per consecutive pair (NaN for a moving clip).
        mean: Their mean.
        static: Whether the clip passed the static filter.
        static_filter: The filter's verdict with its numbers.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)
        >>> still = synthetic.scene(frames=9, width=128, height=64)
        >>> metrics.temporal_flicker(still).mean, metrics.temporal_flicker(pan).static
        (1.0, False)
    """

    static: bool
    static_filter: StaticFilter


def _sample_interval(fps: float) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps: must be a positive number of frames per second; got {fps!r}")
    return max(1, round(fps / 8))


def dynamic_degree_of(flows: Flows, fps: float) -> DynamicDegree:
    """:func:`dynamic_degree` of flows already computed (shared with other metrics).

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.
        fps: The video's frame rate.

    Returns:
        The verdict.

    Raises:
        ValueError: A bad fps, or fewer frames than two samples need.

    Example:
        >>> dynamic_degree_of(Flows(video), 16.0).dynamic  # doctest: +SKIP
        True
    """
    k = _sample_interval(fps)
    T, H, W = flows.frames.shape[:3]
    n = (T - 1) // k + 1  # sampled frames
    if n < 2:
        raise ValueError(f"frames: dynamic_degree samples every {k}th frame (fps={fps}) and needs at least "
                         f"{k + 1} frames; got T={T}")
    _ = flows.forward  # computed once, before the threads share it
    per = np.array(in_parallel(lambda i: top_mean(flows.magnitude(flows.span(i * k, k)), DYNAMIC_TOP),
                               range(n - 1)))
    required = max(1, round(4 * n / 16))
    threshold = 6.0 * min(H, W) / 256.0
    dynamic = int(np.count_nonzero(per > threshold)) >= required
    return DynamicDegree(bool(dynamic), per, threshold, required, k)


def dynamic_degree(video: Any, fps: float = WAN_FPS, method: str = "dis", *,
                   max_short_side: int | None = WORK_SHORT_SIDE) -> DynamicDegree:
    """VBench "dynamic degree" with classical flow instead of RAFT (a proxy).

    Frames are sampled every ``round(fps / 8)`` frames (~8 fps; every 2nd at Wan's 16 fps);
    each sampled pair scores the mean of its top 5 % flow magnitudes (px, original resolution;
    the flow between sampled frames is chained from consecutive flows). The video is dynamic
    when at least ``round(4 * N / 16)`` pairs (N sampled frames; at least 1) score above
    ``6 * min(H, W) / 256`` px. Source: VBench ``vbench/dynamic_degree.py``.

    Args:
        video: uint8 (T, H, W, 3) frames, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows`.
        fps: The video's frame rate.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the flow's working grid in px (None: full resolution).

    Returns:
        The :class:`DynamicDegree` verdict with its numbers.

    Raises:
        ValueError: Bad frames or settings, a bad fps, or fewer frames than two samples need.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> metrics.dynamic_degree(pan).dynamic
        True
    """
    return dynamic_degree_of(Flows.of(video, method, max_short_side), fps)


def _end_to_end(flows: Flows) -> np.ndarray:
    """Top-2 % scores (px) of the first -> last and last -> first flows, chained from the forward flows.

    DIS cannot find displacements of a hundred px in one step (it reports 10-40 px for a 240 px
    pan) where RAFT's all-pairs correlation can, so the end-to-end flow is the composition of the
    consecutive ones: points of a grid every ``factor`` working px (short side >= 60 points) are
    carried from frame to frame, each flow sampled where the point has got to. Going back, each
    step inverts a forward flow (``x = y - f(x)``, two fixed-point iterations): the coarse
    backward flow, kept for occlusion masks, over-states slow motion by ~13 %.
    """
    import cv2

    h, w = flows.gray.shape[1:]
    factor = max(1, min(h, w) // END_CHAIN_MIN_SIDE)
    points = np.ascontiguousarray(flows.grid[::factor, ::factor])
    scale = np.asarray(flows.scale, dtype=np.float32)

    def sample(f: np.ndarray, where: np.ndarray) -> np.ndarray:
        return cv2.remap(f, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def ahead() -> np.ndarray:
        moved = np.zeros_like(points)
        for f in flows.forward:
            moved += sample(f, points + moved)
        return moved

    def back() -> np.ndarray:
        moved = np.zeros_like(points)
        for f in flows.forward[::-1]:
            here = points + moved
            moved -= sample(f, here - sample(f, here))
        return moved

    ends = in_parallel(lambda chain: chain(), (ahead, back))
    return np.array([top_mean(cv2.magnitude(*cv2.split(m * scale)), STATIC_TOP) for m in ends])


def static_filter_of(flows: Flows) -> StaticFilter:
    """:func:`static_filter` of flows already computed (shared with other metrics).

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.

    Returns:
        The verdict.

    Example:
        >>> static_filter_of(Flows(video)).static  # doctest: +SKIP
        False
    """
    T, H, W = flows.frames.shape[:3]
    per = np.array(in_parallel(lambda m: top_mean(m, STATIC_TOP), flows.magnitudes))
    threshold = 3.0 * min(H, W) / 256.0
    allowed = round(2 * T / 16)
    ends = _end_to_end(flows)
    static = int(np.count_nonzero(per > threshold)) <= allowed and bool(np.all(ends <= threshold * allowed * 2))
    return StaticFilter(bool(static), per, ends, threshold, allowed)


def static_filter(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> StaticFilter:
    """VBench's static-clip filter, the rule its temporal flicker is defined on.

    Each consecutive pair scores the mean of its top 2 % flow magnitudes (px, original
    resolution), and so do the first -> last and last -> first flows. The clip is static when
    at most ``round(2 * T / 16)`` pairs score above ``3 * min(H, W) / 256`` px and both
    end-to-end scores stay within ``2 * round(2 * T / 16) * 3 * min(H, W) / 256`` px (112.5 px at
    81 frames of 832x480: a slow pan of ~1 px/frame still passes, as in VBench). Source:
    VBench ``vbench/cli/static_filter.py``.

    Args:
        video: uint8 (T, H, W, 3) frames, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows`.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the flow's working grid in px (None: full resolution).

    Returns:
        The :class:`StaticFilter` verdict with its numbers.

    Raises:
        ValueError: Bad frames or settings.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> metrics.static_filter(pan).static
        False
    """
    return static_filter_of(Flows.of(video, method, max_short_side))


def temporal_flicker_of(flows: Flows) -> TemporalFlicker:
    """:func:`temporal_flicker` of flows already computed (shared with other metrics).

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.

    Returns:
        The scores (NaN for a moving clip).

    Example:
        >>> temporal_flicker_of(Flows(video)).mean  # doctest: +SKIP
        0.92
    """
    import cv2

    verdict = static_filter_of(flows)
    frames = flows.frames
    if not verdict.static:
        per = np.full(len(frames) - 1, np.nan)
        return TemporalFlicker(per, float("nan"), False, verdict)
    n = frames[0].size
    diff = [sum(cv2.sumElems(cv2.absdiff(a, b))) / n for a, b in pairwise(frames)]
    per = (255.0 - np.asarray(diff, dtype=np.float64)) / 255.0
    return TemporalFlicker(per, float(per.mean()), True, verdict)


def temporal_flicker(video: Any, method: str = "dis", *,
                     max_short_side: int | None = WORK_SHORT_SIDE) -> TemporalFlicker:
    """VBench temporal flickering, defined on static clips only: ``(255 - mean |f(t+1) - f(t)|) / 255``.

    The clip first goes through :func:`static_filter` (VBench runs it before this metric). A
    moving clip gets NaN because there the frame difference measures motion, not flicker (a
    flicker-free 3 px/frame pan would score below a static clip with +-15 brightness jitter).
    Slow motion that passes the filter still lowers the score, as in VBench. For flicker in
    moving clips see :func:`warped_flicker`. Source: VBench ``vbench/temporal_flickering.py``.

    Args:
        video: uint8 (T, H, W, 3) frames, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows`.
        method: ``"dis"`` or ``"farneback"`` (for the static filter's flow).
        max_short_side: Short side of the flow's working grid in px (None: full resolution).

    Returns:
        For a static clip ``per_pair[t]`` from the mean absolute RGB difference of frames t, t+1 at
        full resolution (1.0 = no change at all); for a moving clip ``per_pair`` and ``mean`` are NaN
        and ``static`` is False. A static clip whose every other frame is 20 levels brighter scores 0.92.

    Raises:
        ValueError: Bad frames or settings.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)
        >>> still = synthetic.scene(frames=9, width=128, height=64)
        >>> metrics.temporal_flicker(still).mean, metrics.temporal_flicker(pan).mean
        (1.0, nan)
    """
    return temporal_flicker_of(Flows.of(video, method, max_short_side))
