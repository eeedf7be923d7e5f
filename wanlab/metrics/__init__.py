"""Motion and comparison metrics for uint8 videos of shape (T, H, W, 3).

Every function takes a uint8 RGB array ``(T, H, W, 3)`` or any object with a ``.frames``
attribute holding one (e.g. ``wanlab.Video``); the motion metrics also take a :class:`Flows`, so
several of them share one flow computation.

Flow-based scores use classical OpenCV optical flow (DIS by default, Farneback optionally)
instead of the RAFT / AMT networks of VBench and EvalCrafter. They are *proxies* that follow the
published definitions (thresholds, counts, formulas); they are not numerically comparable to
the numbers in those papers' leaderboards. Each metric's definition, reference (file and line),
what differs and why, and the synthetic checks it passes are tabulated in ``docs/metrics.md``.

Flow is computed on luma at a working resolution whose short side is at most
``WORK_SHORT_SIDE`` px (frames are downscaled with area averaging, never upscaled); flow vectors
are always reported in pixels of the *original* resolution.

Modules: :mod:`.optical_flow` (shared flow), :mod:`.dynamics` (VBench's dynamic degree, static filter,
temporal flicker), :mod:`.interpolation` (smoothness), :mod:`.consistency` (warp error, warped flicker),
:mod:`.similarity` (PSNR, SSIM), :mod:`.synthetic` (videos with known motion, for validation);
:mod:`.adherence` (the toy's captions checked exactly, read by :mod:`.shapes`), :mod:`.reference` (CLIP score and
VBench's subject / background consistency and aesthetic quality, with evaluators from :mod:`.evaluators`).
``cv2`` and ``skimage`` are imported inside functions so ``import wanlab`` stays fast.
"""

from __future__ import annotations

from typing import Any

from .similarity import FrameScores, PSNRScores, compare, psnr, ssim
from .consistency import CONVENTIONS, residuals_of, warp_error, warped_flicker
from .dynamics import (DynamicDegree, StaticFilter, TemporalFlicker, dynamic_degree, dynamic_degree_of,
                       static_filter, temporal_flicker, temporal_flicker_of)
from ..frames import WAN_FPS
from .adherence import ADHERENCE_KEYS, adherence, caption_attributes
from .evaluators import EvaluatorMissing
from .reference import (QUALITY_KEYS, aesthetic_quality, background_consistency, clip_score, consistency_of, quality,
                        subject_consistency)
from .optical_flow import FLOW_METHODS, WORK_SHORT_SIDE, Flows, PairScores, flow, flow_magnitude
from .interpolation import smoothness, smoothness_of

__all__ = [
    "FLOW_METHODS", "WORK_SHORT_SIDE", "WAN_FPS", "CONVENTIONS", "MOTION_KEYS",
    "Flows", "PairScores", "FrameScores", "PSNRScores", "DynamicDegree", "StaticFilter", "TemporalFlicker",
    "flow", "flow_magnitude", "dynamic_degree", "static_filter", "temporal_flicker", "warped_flicker",
    "smoothness", "warp_error", "psnr", "ssim", "motion", "compare", "ADHERENCE_KEYS", "adherence", "caption_attributes",
    "QUALITY_KEYS", "EvaluatorMissing", "clip_score", "subject_consistency", "background_consistency",
    "aesthetic_quality", "consistency_of", "quality",
]

#: The keys of :func:`motion`, in order (sweep tables show them in this order).
MOTION_KEYS = ("flow_magnitude", "dynamic_degree", "dynamic_score", "dynamic_threshold", "static",
               "temporal_flicker", "warped_flicker", "smoothness", "warp_error")


def motion(video: Any, fps: float = WAN_FPS, method: str = "dis", *,
           max_short_side: int | None = WORK_SHORT_SIDE) -> dict[str, float]:
    """All scalar motion metrics of one video, sharing a single flow computation.

    Keys (:data:`MOTION_KEYS`): ``flow_magnitude`` (mean px/frame), ``dynamic_degree`` (1.0
    dynamic / 0.0 not, VBench's rule), ``dynamic_score`` (mean top-5 % magnitude per sampled pair,
    px), ``dynamic_threshold`` (px), ``static`` (1.0 / 0.0: VBench's static filter),
    ``temporal_flicker`` (VBench's, in [0, 1]; NaN unless ``static``), ``warped_flicker``
    (motion-compensated flicker, [0, 1], defined for every clip), ``smoothness`` ([0, 1], higher
    is smoother), ``warp_error`` (wanlab convention: [0, 1]^2 MSE averaged over RGB, lower is
    better). Needs T >= 3. See the individual functions for definitions.

    Example: ``metrics.motion(video)["smoothness"]``.
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
