"""Frame-by-frame similarity of two equally shaped videos: PSNR and SSIM (scikit-image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frames import as_frames, psnr_per_frame


@dataclass(frozen=True)
class FrameScores:
    """One score per frame (``per_frame``, float64) and their mean."""

    per_frame: np.ndarray
    mean: float


def _pair_frames(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = as_frames(a, "a"), as_frames(b, "b")
    if fa.shape != fb.shape:
        raise ValueError(f"a and b: must have the same shape (T, H, W, 3); got a {fa.shape} and b {fb.shape}")
    return fa, fb


def psnr(a: Any, b: Any) -> FrameScores:
    """Peak signal-to-noise ratio per frame, in dB: ``10 log10(255^2 / MSE)`` (the formula of
    scikit-image's ``peak_signal_noise_ratio`` with ``data_range=255``; :func:`wanlab.frames.psnr_per_frame`,
    the one PSNR that ``verify`` and the acceleration study use too); identical frames give ``inf``
    (and so may ``mean``).

    Example: ``metrics.psnr(video, other).mean`` -> 38.5 for Gaussian noise of sd 3 levels.
    """
    fa, fb = _pair_frames(a, b)
    per = psnr_per_frame(fa, fb)
    return FrameScores(per, float(per.mean()))


def ssim(a: Any, b: Any) -> FrameScores:
    """Structural similarity per frame, in [-1, 1] (scikit-image defaults: 7x7 window,
    ``data_range=255``, ``channel_axis=-1``; Wang et al. 2004). Frames need H, W >= 7.

    Example: ``metrics.ssim(video, video).mean`` -> 1.0.
    """
    from skimage.metrics import structural_similarity

    fa, fb = _pair_frames(a, b)
    if min(fa.shape[1:3]) < 7:
        raise ValueError(f"frames: ssim needs frames of at least 7x7 px; got {fa.shape[2]}x{fa.shape[1]} (WxH)")
    per = [structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(fa, fb)]
    arr = np.asarray(per, dtype=np.float64)
    return FrameScores(arr, float(arr.mean()))


def compare(a: Any, b: Any) -> dict[str, float]:
    """Frame-by-frame similarity of two equally shaped videos: mean ``psnr`` (dB) and ``ssim``.

    Example: ``metrics.compare(video, video)`` -> ``{"psnr": inf, "ssim": 1.0}``.
    """
    return {"psnr": psnr(a, b).mean, "ssim": ssim(a, b).mean}
