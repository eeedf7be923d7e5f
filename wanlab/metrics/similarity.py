"""Frame-by-frame similarity of two equally shaped videos: PSNR and SSIM (scikit-image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frames import as_frames, psnr_per_frame


@dataclass(frozen=True)
class FrameScores:
    """One score per frame and their mean.

    Attributes:
        per_frame: float64 array, one value per frame.
        mean: Their mean.

    Example:
        >>> FrameScores(np.array([1.0, 0.5]), 0.75).per_frame.tolist()
        [1.0, 0.5]
    """

    per_frame: np.ndarray
    mean: float


def _pair_frames(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = as_frames(a, "a"), as_frames(b, "b")
    if fa.shape != fb.shape:
        raise ValueError(f"a and b: must have the same shape (T, H, W, 3); got a {fa.shape} and b {fb.shape}")
    return fa, fb


@dataclass(frozen=True)
class PSNRScores(FrameScores):
    """PSNR of a video pair (:func:`psnr`).

    Attributes:
        per_frame: PSNR per frame, dB.
        mean: Their mean (what wanlab calls ``psnr_frame_mean``).
        pooled: The video's PSNR, from the MSE over all frames (what wanlab calls ``psnr`` everywhere).

    Example:
        >>> a = np.zeros((2, 8, 8, 3), np.uint8)
        >>> b = a.copy(); b[1] = 255
        >>> scores = psnr(a, b)
        >>> scores.per_frame.tolist(), scores.mean, round(scores.pooled, 2)
        ([inf, 0.0], inf, 3.01)
    """

    pooled: float = float("nan")


def psnr(a: Any, b: Any) -> PSNRScores:
    """Peak signal-to-noise ratio in dB, ``10 log10(255^2 / MSE)``.

    The formula of scikit-image's ``peak_signal_noise_ratio`` with ``data_range=255``
    (:func:`wanlab.frames.psnr_per_frame`, the one PSNR that ``verify`` and the acceleration study
    use too).

    Two summaries of a video pair, each under one name everywhere in wanlab:

    - ``pooled`` is **the** ``psnr``: the MSE over every pixel of every frame, then the formula (as
      ffmpeg's ``psnr`` filter reports its average, :func:`wanlab.frames.pooled_psnr`). It is what
      :func:`compare`, the ``Compare`` widget, ``psnr_vs_ref`` and the acceleration study report as
      ``psnr``; ``inf`` only when every frame is identical.
    - ``mean`` is ``psnr_frame_mean``: the mean of the per-frame dB values; ``inf`` as soon as one frame
      is identical, and higher than ``pooled`` whenever frames differ unevenly (the mean of logs).

    Args:
        a: uint8 (T, H, W, 3) frames or a ``wanlab.Video``.
        b: Frames of the same shape.

    Returns:
        The :class:`PSNRScores` (Gaussian noise of sd 3 levels gives ``pooled`` 38.5).

    Raises:
        ValueError: Frames that are not uint8 (T, H, W, 3), or of different shapes.

    Example:
        >>> from wanlab import metrics
        >>> video = np.full((2, 8, 8, 3), 100, np.uint8)
        >>> round(metrics.psnr(video, video + 1).pooled, 2)  # every pixel off by one level
        48.13
    """
    from ..frames import pooled_psnr

    fa, fb = _pair_frames(a, b)
    per = psnr_per_frame(fa, fb)
    return PSNRScores(per, float(per.mean()), pooled_psnr(per))


def ssim(a: Any, b: Any) -> FrameScores:
    """Structural similarity per frame, in [-1, 1] (Wang et al. 2004).

    scikit-image's ``structural_similarity`` with its defaults: 7x7 window, ``data_range=255``,
    ``channel_axis=-1``.

    Args:
        a: uint8 (T, H, W, 3) frames or a ``wanlab.Video``; H, W >= 7.
        b: Frames of the same shape.

    Returns:
        SSIM per frame and their mean.

    Raises:
        ValueError: Frames that are not uint8 (T, H, W, 3), of different shapes, or under 7x7 px.

    Example:
        >>> from wanlab import metrics
        >>> video = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
        >>> metrics.ssim(video, video).mean
        1.0
    """
    from skimage.metrics import structural_similarity

    fa, fb = _pair_frames(a, b)
    if min(fa.shape[1:3]) < 7:
        raise ValueError(f"frames: ssim needs frames of at least 7x7 px; got {fa.shape[2]}x{fa.shape[1]} (WxH)")
    per = [structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(fa, fb)]
    arr = np.asarray(per, dtype=np.float64)
    return FrameScores(arr, float(arr.mean()))


def compare(a: Any, b: Any) -> dict[str, float]:
    """Similarity of two equally shaped videos: PSNR and SSIM.

    Args:
        a: uint8 (T, H, W, 3) frames or a ``wanlab.Video``; H, W >= 7.
        b: Frames of the same shape.

    Returns:
        ``psnr`` (dB, from the MSE over all frames: :attr:`PSNRScores.pooled`), ``psnr_frame_mean``
        (dB, the mean of per-frame PSNR) and ``ssim`` (mean over frames).

    Raises:
        ValueError: Frames that are not uint8 (T, H, W, 3), of different shapes, or under 7x7 px.

    Example:
        >>> from wanlab import metrics
        >>> video = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
        >>> metrics.compare(video, video)
        {'psnr': inf, 'psnr_frame_mean': inf, 'ssim': 1.0}
    """
    scores = psnr(a, b)
    return {"psnr": scores.pooled, "psnr_frame_mean": scores.mean, "ssim": ssim(a, b).mean}
