"""Video metrics: motion (flow-based), similarity, adherence and reference-model quality scores.

Every function takes a uint8 RGB array ``(T, H, W, 3)`` or anything with ``.frames`` (a
``wanlab.Video``); the motion metrics also take a :class:`Flows`, so several share one flow.
Flow-based scores are *proxies* (OpenCV flow instead of VBench's and EvalCrafter's RAFT / AMT
networks) that follow the published definitions; ``docs/metrics.md`` gives each one's reference
(file and line), what differs and the synthetic checks it passes.
"""

from __future__ import annotations

from typing import Any

from ..frames import WAN_FPS
from .adherence import ADHERENCE_KEYS, adherence, caption_attributes
from .consistency import CONVENTIONS, residuals_of, warp_error, warped_flicker
from .dynamics import (
    DynamicDegree,
    StaticFilter,
    TemporalFlicker,
    dynamic_degree,
    dynamic_degree_of,
    static_filter,
    temporal_flicker,
    temporal_flicker_of,
)
from .evaluators import EvaluatorMissing
from .interpolation import smoothness, smoothness_of
from .optical_flow import FLOW_METHODS, WORK_SHORT_SIDE, Flows, PairScores, flow, flow_magnitude
from .reference import (
    QUALITY_KEYS,
    aesthetic_quality,
    background_consistency,
    clip_score,
    consistency_of,
    quality,
    subject_consistency,
)
from .similarity import FrameScores, PSNRScores, compare, psnr, ssim

__all__ = [
    "FLOW_METHODS", "WORK_SHORT_SIDE", "WAN_FPS", "CONVENTIONS", "MOTION_KEYS",
    "Flows", "PairScores", "FrameScores", "PSNRScores", "DynamicDegree", "StaticFilter", "TemporalFlicker",
    "flow", "flow_magnitude", "dynamic_degree", "static_filter", "temporal_flicker", "warped_flicker",
    "smoothness", "warp_error", "psnr", "ssim", "motion", "compare", "ADHERENCE_KEYS", "adherence",
    "caption_attributes",
    "QUALITY_KEYS", "EvaluatorMissing", "clip_score", "subject_consistency", "background_consistency",
    "aesthetic_quality", "consistency_of", "quality",
]

#: The keys of :func:`motion`, in order (sweep tables show them in this order).
MOTION_KEYS = ("flow_magnitude", "dynamic_degree", "dynamic_score", "dynamic_threshold", "static",
               "temporal_flicker", "warped_flicker", "smoothness", "warp_error")


def motion(video: Any, fps: float = WAN_FPS, method: str = "dis", *,
           max_short_side: int | None = WORK_SHORT_SIDE) -> dict[str, float]:
    """All scalar motion metrics of one video, sharing a single flow computation.

    See the individual functions for definitions and their sources (VBench, EvalCrafter).

    Args:
        video: uint8 (T, H, W, 3) frames with T >= 3, a ``wanlab.Video``, or :class:`Flows`.
        fps: Frame rate (dynamic degree samples at ~8 fps).
        method: Flow estimator, ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the flow's working grid in px (None: full resolution).

    Returns:
        The keys of :data:`MOTION_KEYS`: ``flow_magnitude`` (mean px/frame), ``dynamic_degree`` (1.0
        dynamic / 0.0 not, VBench's rule), ``dynamic_score`` (mean top-5 % magnitude per sampled
        pair, px), ``dynamic_threshold`` (px), ``static`` (1.0 / 0.0: VBench's static filter),
        ``temporal_flicker`` (VBench's, in [0, 1]; NaN unless ``static``), ``warped_flicker``
        (motion-compensated flicker, [0, 1], defined for every clip), ``smoothness`` ([0, 1],
        higher is smoother), ``warp_error`` (wanlab convention: [0, 1]^2 MSE averaged over RGB,
        lower is better).

    Raises:
        ValueError: Frames that are not uint8 (T, H, W, 3) with T >= 3, an unknown method, a bad fps.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> scores = metrics.motion(pan)
        >>> round(scores["flow_magnitude"], 1), scores["dynamic_degree"], round(scores["smoothness"], 2)
        (3.0, 1.0, 1.0)
    """
    flows = Flows.of(video, method, max_short_side, min_frames=3)
    dyn = dynamic_degree_of(flows, fps)
    flicker = temporal_flicker_of(flows)
    consistency = residuals_of(flows)
    return {
        "flow_magnitude": flow_magnitude(flows, method, max_short_side=max_short_side).mean,
        "dynamic_degree": float(dyn.dynamic),
        "dynamic_score": dyn.score,
        "dynamic_threshold": dyn.threshold,
        "static": float(flicker.static),
        "temporal_flicker": flicker.mean,
        "warped_flicker": float(((255.0 - consistency.mae) / 255.0).mean()),
        "smoothness": smoothness_of(flows).mean,
        "warp_error": float(consistency.mse.mean()),
    }
