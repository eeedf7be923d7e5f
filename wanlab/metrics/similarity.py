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


@dataclass(frozen=True)
class PSNRScores(FrameScores):
    """PSNR per frame (``per_frame``), their mean (``mean``: what wanlab calls ``psnr_frame_mean``) and
    the video's PSNR (``pooled``: from the MSE over all frames, what wanlab calls ``psnr`` everywhere)."""

    pooled: float = float("nan")


def psnr(a: Any, b: Any) -> PSNRScores:
    """Peak signal-to-noise ratio in dB, ``10 log10(255^2 / MSE)`` (the formula of scikit-image's
    ``peak_signal_noise_ratio`` with ``data_range=255``; :func:`wanlab.frames.psnr_per_frame`, the one
    PSNR that ``verify`` and the acceleration study use too).

    Two summaries of a video pair, each under one name everywhere in wanlab:

    - ``pooled`` is **the** ``psnr``: the MSE over every pixel of every frame, then the formula (as
      ffmpeg's ``psnr`` filter reports its average, :func:`wanlab.frames.pooled_psnr`). It is what
      :func:`compare`, the ``Compare`` widget, ``psnr_vs_ref`` and the acceleration study report as
      ``psnr``; ``inf`` only when every frame is identical.
    - ``mean`` is ``psnr_frame_mean``: the mean of the per-frame dB values; ``inf`` as soon as one frame
      is identical, and higher than ``pooled`` whenever frames differ unevenly (the mean of logs).

    Example: ``metrics.psnr(video, other).pooled`` -> 38.5 for Gaussian noise of sd 3 levels.
    """
    from ..frames import pooled_psnr

    fa, fb = _pair_frames(a, b)
    per = psnr_per_frame(fa, fb)
    return PSNRScores(per, float(per.mean()), pooled_psnr(per))


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
    """Similarity of two equally shaped videos: ``psnr`` (dB, from the MSE over all frames:
    :attr:`PSNRScores.pooled`), ``psnr_frame_mean`` (dB, the mean of per-frame PSNR) and ``ssim``
    (mean over frames).

    Example: ``metrics.compare(video, video)`` -> ``{"psnr": inf, "psnr_frame_mean": inf, "ssim": 1.0}``.
    """
    scores = psnr(a, b)
    return {"psnr": scores.pooled, "psnr_frame_mean": scores.mean, "ssim": ssim(a, b).mean}
