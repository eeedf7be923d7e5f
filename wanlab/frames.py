"""Frames as wanlab holds them outside the model: ``numpy.uint8`` arrays ``(T, H, W, 3)``, RGB.

The one frame check (:func:`check_frames`) that videos, metrics, plots and widgets share, the
digest that names a video's exact content, the float-to-uint8 rule, PSNR and the display zoom.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .values import WAN_FPS  # noqa: F401 - frames' rate, importable beside the frame helpers


def check_frames(frames: Any, name: str = "frames", min_frames: int = 1) -> np.ndarray:
    """Check frames and return them as a C-contiguous uint8 (T, H, W, 3) array.

    Args:
        frames: A numpy array, or a list/tuple of frames.
        name: The argument's name, for the error message.
        min_frames: The fewest frames T accepted.

    Returns:
        The frames, C-contiguous (the same array when it already was).

    Raises:
        ValueError: Not an array, not uint8, not (T, H, W, 3), or fewer than ``min_frames`` frames;
            the message names ``name``, the rule and what was given.

    Example:
        >>> check_frames(np.zeros((2, 4, 4, 3), np.uint8)).shape
        (2, 4, 4, 3)
        >>> check_frames(np.zeros((2, 4, 4), np.uint8))
        Traceback (most recent call last):
        ...
        ValueError: frames: must be uint8 (T, H, W, 3) (RGB frames); got shape (2, 4, 4)
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
    """Frames of a Video (anything with ``.frames``), or a frames array itself, checked.

    Args:
        video: A :class:`wanlab.Video`, or frames (anything :func:`check_frames` accepts).
        name: The argument's name, for the error message.
        min_frames: The fewest frames accepted.

    Returns:
        uint8 (T, H, W, 3) frames.

    Raises:
        ValueError: The frames break :func:`check_frames`' rules.

    Example:
        >>> as_frames([np.zeros((4, 4, 3), np.uint8)]).shape
        (1, 4, 4, 3)
    """
    return check_frames(getattr(video, "frames", video), name, min_frames)


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of the raw frame bytes together with their shape (so a reshaped array differs).

    Args:
        frames: A uint8 frames array.

    Returns:
        The hex digest: equal digests mean bit-identical frames.

    Example:
        >>> frames_digest(np.zeros((1, 2, 2, 3), np.uint8)) == frames_digest(np.zeros((1, 2, 2, 3), np.uint8))
        True
    """
    digest = hashlib.sha256(repr(tuple(frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8, rounding to nearest (diffusers' ``numpy_to_pil`` rule).

    Args:
        frames: Float frames; values outside [0, 1] are clipped.

    Returns:
        A C-contiguous uint8 array of the same shape.

    Example:
        >>> to_uint8(np.array([0.0, 0.5, 1.2])).tolist()
        [0, 128, 255]
    """
    return np.ascontiguousarray((np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8))


def psnr_per_frame(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB of each frame pair of two equally shaped videos.

    ``10 log10(peak^2 / MSE)``, ``inf`` for identical frames (the formula of scikit-image's
    ``peak_signal_noise_ratio``).

    Args:
        a: Frames (T, H, W, 3).
        b: Frames of the same shape.
        peak: The largest possible value (255 for uint8).

    Returns:
        A float64 array of T values in dB.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape.

    Example:
        >>> a = np.zeros((2, 4, 4, 3), np.uint8)
        >>> b = a.copy(); b[1] = 255
        >>> psnr_per_frame(a, b).tolist()
        [inf, 0.0]
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (T, H, W, 3); got a {a.shape} and b {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff * diff).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0.0, np.inf, 10.0 * np.log10(peak**2 / np.where(mse == 0.0, 1.0, mse)))


def pooled_psnr(values: Sequence[float] | np.ndarray, peak: float = 255.0) -> float:
    """The PSNR of the mean MSE behind several PSNR values: frames or videos of equal size taken together.

    Args:
        values: PSNR values in dB (``inf`` counts as MSE 0).
        peak: The largest possible value (255 for uint8).

    Returns:
        The pooled PSNR in dB: equals the values when they are all equal, ``inf`` only when all
        are; NaN for no values or any NaN.

    Example:
        >>> pooled_psnr([20.0, 20.0]), pooled_psnr([float("inf"), 20.0]) > 20.0
        (20.0, True)
    """
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

    Args:
        height: The video's height in pixels.
        min_height: The least height shown.

    Returns:
        The zoom factor, 1 to 8.

    Example:
        >>> display_zoom(64), display_zoom(480)
        (4, 1)
    """
    return int(max(1, min(8, -(-min_height // max(1, height)))))
