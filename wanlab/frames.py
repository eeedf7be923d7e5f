"""Frames as wanlab holds them outside the model: ``numpy.uint8`` arrays ``(T, H, W, 3)``, RGB.

The one frame check (:func:`check_frames`) that videos, metrics, plots and widgets share, the
digest that names a video's exact content, the float-to-uint8 rule, and PSNR.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from .values import WAN_FPS  # noqa: F401 - frames' rate, importable beside the frame helpers


def check_frames(frames: Any, name: str = "frames", min_frames: int = 1) -> np.ndarray:
    """``frames`` (an array, or a list of frames) as a C-contiguous uint8 (T, H, W, 3) array with at
    least ``min_frames`` frames, or ValueError naming ``name``, the rule and what was given.

    >>> check_frames(np.zeros((2, 4, 4, 3), np.uint8)).shape
    (2, 4, 4, 3)
    """
    if isinstance(frames, (list, tuple)):
        frames = np.asarray(frames)
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name}: must be a numpy uint8 array (T, H, W, 3), a list of frames or a Video; "
                         f"got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name}: must be uint8 (T, H, W, 3) with values 0-255; got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: must be uint8 (T, H, W, 3) (RGB frames); got shape {frames.shape}")
    if frames.shape[0] < min_frames or min(frames.shape[1:3]) < 1:
        raise ValueError(f"{name}: must hold at least {min_frames} frame{'s' * (min_frames > 1)} (T >= {min_frames}) "
                         f"of at least 1x1 px; got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def as_frames(video: Any, name: str = "video", min_frames: int = 1) -> np.ndarray:
    """Frames of a Video (anything with ``.frames``), or a frames array itself, checked by :func:`check_frames`."""
    return check_frames(getattr(video, "frames", video), name, min_frames)


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of the raw frame bytes together with their shape (so a reshaped array differs)."""
    digest = hashlib.sha256(repr(tuple(frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8, rounding to nearest (diffusers' ``numpy_to_pil`` rule)."""
    return np.ascontiguousarray((np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8))


def psnr_per_frame(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB of each frame pair of two equally shaped uint8 videos: ``10 log10(peak^2 / MSE)``,
    ``inf`` for identical frames (the formula of scikit-image's ``peak_signal_noise_ratio``)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (T, H, W, 3); got a {a.shape} and b {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff * diff).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0.0, np.inf, 10.0 * np.log10(peak**2 / np.where(mse == 0.0, 1.0, mse)))


def pooled_psnr(values: Sequence[float] | np.ndarray, peak: float = 255.0) -> float:
    """The PSNR of the mean MSE behind several PSNR values (dB; ``inf`` counts as MSE 0): the PSNR
    of frames or videos of equal size taken together. Equals the values when they are all equal;
    ``inf`` only when all are."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        return float("nan")
    mse = np.where(np.isinf(arr), 0.0, peak**2 / np.power(10.0, np.where(np.isinf(arr), 0.0, arr) / 10.0))
    mean = float(mse.mean())
    return float("inf") if mean == 0 else float(10.0 * np.log10(peak**2 / mean))


#: Small videos are shown enlarged (pixelated, by a whole factor) to at least this height: a 64x64 clip
#: at 256 px, so that it can be seen and a browser's player keeps its controls (``Video`` in a notebook,
#: ``wanlab.show``, the widgets).
MIN_DISPLAY_HEIGHT = 256


def display_zoom(height: int, min_height: int = MIN_DISPLAY_HEIGHT) -> int:
    """The whole factor that brings a ``height``-pixel video to at least ``min_height`` (at most 8).

    >>> display_zoom(64), display_zoom(480)
    (4, 1)
    """
    return int(max(1, min(8, -(-min_height // max(1, height)))))
