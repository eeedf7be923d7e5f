"""Measure what a generated clip shows: direction, speed class, colour, shape, and whether one shape stays whole.

:func:`score_frames` applies the rules (listed there). They are the toy evaluator's
(``wanlab.toy.scoring`` re-exports them); they live among the metrics because
:func:`wanlab.metrics.adherence` checks a caption with them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..toy.data import COLOURS

ATTRIBUTES = ("direction", "speed", "colour", "shape")
#: Report columns: the four attributes (right or wrong against the caption) and "visible".
COLUMNS = (*ATTRIBUTES, "visible")
MIN_CONTRAST = 40.0
DIRECTION_MIN = 0.3
STILL_MAX = 0.5
SLOW_MAX = 1.875
SQUARE_MIN_FILL = 0.92
CIRCLE_MIN_FILL = 0.65
AREA_TOLERANCE = 0.3
#: A connected foreground region counts as a component from this many pixels (at 64x64).
MIN_PIXELS = 6


def _median_colour(frames: np.ndarray) -> np.ndarray:
    """Per frame and channel, the median of uint8 values (T, 3) float32, from 256-bin histograms.

    Exactly ``np.median(frames.reshape(T, -1, 3), axis=1)`` (the mean of the two middle values when
    the count is even), without sorting each frame's pixels.
    """
    T = len(frames)
    n = frames.shape[1] * frames.shape[2]
    flat = frames.reshape(T, -1, 3)
    out = np.empty((T, 3), np.float32)
    lo_rank, hi_rank = (n - 1) // 2, n // 2
    for t in range(T):
        for c in range(3):
            cum = np.cumsum(np.bincount(flat[t, :, c], minlength=256))
            lo = int(np.searchsorted(cum, lo_rank, side="right"))
            hi = int(np.searchsorted(cum, hi_rank, side="right"))
            out[t, c] = (lo + hi) / 2.0
    return out


def foreground(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The foreground of a clip, one threshold per clip (see :func:`score_frames`).

    Args:
        frames: uint8 (T, H, W, 3).

    Returns:
        (mask (T, H, W) bool, distance to each frame's median colour (T, H, W) float32).

    Example:
        >>> mask, dist = foreground(np.zeros((2, 16, 16, 3), np.uint8))
        >>> bool(mask.any())
        False
    """
    f = frames.astype(np.float32)
    bg = _median_colour(frames) if frames.dtype == np.uint8 else np.median(f.reshape(len(f), -1, 3), axis=1)
    dist = np.sqrt(((f - bg[:, None, None, :]) ** 2).sum(-1))
    peak = float(np.median(np.percentile(dist.reshape(len(f), -1), 99.5, axis=1)))
    return dist > max(MIN_CONTRAST, 0.5 * peak), dist


def _components(mask: np.ndarray, min_pixels: int) -> tuple[int, np.ndarray | None]:
    """How many 8-connected regions of at least ``min_pixels`` pixels the mask holds, and the largest.

    The largest one's boolean mask is the lowest label among equals; None when there is none.
    """
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:n, cv2.CC_STAT_AREA]
    keep = np.nonzero(areas >= min_pixels)[0]
    if not len(keep):
        return 0, None
    return len(keep), labels == int(keep[np.argmax(areas[keep])]) + 1


def _fill(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    return float(len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))


def classify_direction(vx: float, vy: float, unit: float = 1.0) -> str:
    """The strict direction of a velocity (px/frame): one axis at least ``DIRECTION_MIN``, the other below.

    Args:
        vx: Velocity rightwards, px/frame.
        vy: Velocity downwards, px/frame.
        unit: The frame's short side / 64 (thresholds scale with it).

    Returns:
        ``"right"``, ``"left"``, ``"down"``, ``"up"``, ``"diagonal"`` or ``"still"``.

    Example:
        >>> classify_direction(1.3, 0.1), classify_direction(1.3, -0.9), classify_direction(0.1, -0.2)
        ('right', 'diagonal', 'still')
    """
    along_x, along_y = abs(vx) >= DIRECTION_MIN * unit, abs(vy) >= DIRECTION_MIN * unit
    if along_x and along_y:
        return "diagonal"
    if along_x:
        return "right" if vx > 0 else "left"
    if along_y:
        return "down" if vy > 0 else "up"
    return "still"


def classify_speed(speed: float, unit: float = 1.0) -> str:
    """Speed class of a speed in px/frame: still < 0.5 <= slowly < 1.875 <= quickly.

    Args:
        speed: px/frame.
        unit: The frame's short side / 64 (thresholds scale with it).

    Returns:
        ``"still"``, ``"slowly"`` or ``"quickly"``.

    Example:
        >>> classify_speed(0.2), classify_speed(1.25), classify_speed(2.5)
        ('still', 'slowly', 'quickly')
    """
    if speed < STILL_MAX * unit:
        return "still"
    return "slowly" if speed < SLOW_MAX * unit else "quickly"


def score_frames(frames: Any, *, use_flow: bool = True) -> dict[str, Any]:
    """What one clip shows, with the measurements behind it.

    Distances scale with the frame's short side / 64:

    * **foreground**: each frame's background is its median colour (the shape covers under 10 % of the
      frame); a pixel is foreground when its RGB distance to that background exceeds half the clip's
      median (over frames) 99.5th-percentile distance, and at least ``MIN_CONTRAST``. One threshold for
      the whole clip, so a shape that fades loses area instead of being re-thresholded.
    * **components**: 8-connected foreground regions of at least ``MIN_PIXELS`` pixels, per frame.
    * **visible**: every frame (frame 0 included) holds exactly one component, and its area stays
      within +-``AREA_TOLERANCE`` (30 %) of the clip's median area.
    * **velocity**: least-squares slope of the largest component's centroid over time (px/frame); the
      mean optical flow (``wanlab.metrics.flow``, DIS) over foreground pixels is reported alongside.
    * **direction** (strict): "still" when both velocity components are under ``DIRECTION_MIN``
      (0.3 px/frame); "right" / "left" / "down" / "up" when exactly one axis reaches it (its sign says
      which); "diagonal" when both do - a diagonal clip matches no caption.
    * **speed class**: "still" under ``STILL_MAX`` px/frame, "slowly" under ``SLOW_MAX`` (midway
      between 1.25 and 2.5), else "quickly".
    * **colour**: mean RGB of the strongest foreground pixels, nearest palette colour.
    * **shape**: median over frames of the component's fill of its bounding box: square ~1, circle
      ~pi/4, triangle ~1/2 (thresholds :data:`SQUARE_MIN_FILL`, :data:`CIRCLE_MIN_FILL`).

    Args:
        frames: uint8 (T, H, W, 3) or a ``wanlab.Video``.
        use_flow: Also report the mean optical flow over foreground pixels (``flow_velocity``).

    Returns:
        ``direction``, ``speed``, ``colour``, ``shape`` (None when nothing shows), ``visible``, and
        the measurements: ``velocity``, ``flow_velocity``, ``fill``, ``components`` (per frame) and
        ``area_range`` (min, max, median).

    Example:
        >>> from wanlab.toy import data
        >>> clip = data.make_clip(np.random.default_rng(0), "a red square moving left quickly")
        >>> s = score_frames(clip.frames, use_flow=False)
        >>> s["direction"], s["speed"], s["colour"], s["shape"], s["visible"]
        ('left', 'quickly', 'red', 'square', True)
    """
    from .optical_flow import flow

    frames = np.asarray(getattr(frames, "frames", frames))
    T, H, W = frames.shape[:3]
    unit = min(H, W) / 64.0
    mask, dist = foreground(frames)
    per_frame = [_components(m, max(1, round(MIN_PIXELS * unit * unit))) for m in mask]
    counts = [n for n, _ in per_frame]
    main = np.stack([c if c is not None else np.zeros((H, W), bool) for _, c in per_frame])
    areas = main.reshape(T, -1).sum(1).astype(np.float64)
    ok = areas > 0
    median_area = float(np.median(areas[ok])) if ok.any() else 0.0
    visible = bool(all(n == 1 for n in counts) and median_area > 0
                   and np.all(np.abs(areas - median_area) <= AREA_TOLERANCE * median_area))
    cx, cy = np.zeros(T), np.zeros(T)
    for t, m in enumerate(main):  # centroids: mean pixel index of the component (0 for an empty frame)
        ys, xs = np.nonzero(m)
        if len(xs):
            cx[t], cy[t] = xs.sum() / len(xs), ys.sum() / len(ys)
    times = np.arange(T, dtype=np.float64)
    if ok.sum() >= 2:
        vx = float(np.polyfit(times[ok], cx[ok], 1)[0])
        vy = float(np.polyfit(times[ok], cy[ok], 1)[0])
    else:
        vx = vy = 0.0
    flow_v = None
    if use_flow and T >= 2 and min(H, W) >= 16:
        fl = flow(frames, max_short_side=None)  # (T-1, H, W, 2) px/frame
        sel = main[:-1] & main[1:]
        if sel.sum() > 0:
            flow_v = (float(fl[..., 0][sel].mean()), float(fl[..., 1][sel].mean()))
    colour = None
    if ok.any():
        core = main & (dist >= np.percentile(dist[main], 50))
        rgb = frames[core].astype(np.float64).mean(0)
        colour = min(COLOURS, key=lambda c: float(((np.array(COLOURS[c]) - rgb) ** 2).sum()))
    fills = [_fill(m) for m, a in zip(main, areas) if a >= MIN_PIXELS * unit * unit]
    fill = float(np.median(fills)) if fills else None
    if fill is None:
        shape = None
    elif fill >= SQUARE_MIN_FILL:
        shape = "square"
    elif fill >= CIRCLE_MIN_FILL:
        shape = "circle"
    else:
        shape = "triangle"
    return {"direction": classify_direction(vx, vy, unit), "speed": classify_speed(float(np.hypot(vx, vy)), unit),
            "colour": colour, "shape": shape, "visible": visible, "velocity": (vx, vy), "flow_velocity": flow_v,
            "fill": fill, "components": counts, "area_range": (float(areas.min()), float(areas.max()), median_area)}
