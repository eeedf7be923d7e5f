"""Temporal consistency along the flow: warp error (wanlab's or EvalCrafter's convention) and warped flicker.

Frame t+1 is warped back onto frame t with the forward flow and compared pixel by pixel where the
flow can be trusted. The two warp-error conventions differ in which pixels count and how channels
are combined; ``docs/metrics.md`` sets them side by side with EvalCrafter's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .optical_flow import MIN_FLOW_SIDE, WORK_SHORT_SIDE, Flows, PairScores, in_parallel, sq_norm

CONVENTIONS = ("wanlab", "evalcrafter")
#: Forward-backward consistency (Sundaram et al. 2010): a pixel is occluded when
#: |f + b|^2 > FB_RELATIVE * (|f|^2 + |b|^2) + FB_ABSOLUTE (px^2 of the flow's grid).
FB_RELATIVE, FB_ABSOLUTE = 0.01, 0.5
#: Motion boundary (Lai et al. 2018): |grad f|^2 > MB_RELATIVE * |f|^2 + MB_ABSOLUTE.
MB_RELATIVE, MB_ABSOLUTE = 0.01, 0.002


@dataclass(frozen=True)
class Residuals:
    """What is left after warping, per consecutive pair, over the pixels wanlab trusts (:func:`residuals_of`).

    Attributes:
        mse: Mean squared RGB error ([0, 1] scale, averaged over channels).
        mae: Mean absolute RGB error (0-255).
        valid: The share of trusted pixels.

    Example:
        >>> residuals_of(Flows(video)).mse.mean()  # doctest: +SKIP
        0.0004
    """

    mse: np.ndarray
    mae: np.ndarray
    valid: np.ndarray


def residuals_of(flows: Flows) -> Residuals:
    """Warp each frame t+1 onto t and measure what is left where the flow is trusted (wanlab convention).

    Trusted: forward-backward consistent pixels (Sundaram et al. 2010) whose flow stays inside
    frame t+1 (the backward flow is sampled with an out-of-frame value there, which fails the
    check). All pixels count when none is trusted. Shared by :func:`warp_error` and :func:`warped_flicker`.

    Args:
        flows: The video's :class:`~wanlab.metrics.Flows`.

    Returns:
        The :class:`Residuals` per pair.

    Example:
        >>> residuals_of(Flows(video)).valid  # doctest: +SKIP
    """
    import cv2

    far = (1e6, 1e6)
    rgb = flows.rgb

    def pair(t: int) -> tuple[float, float, float]:
        f = flows.forward[t]
        where = flows.grid + f  # where each pixel of frame t lands in frame t+1
        bw = cv2.remap(flows.backward[t], where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=far)
        ok = sq_norm(f + bw) <= FB_RELATIVE * (sq_norm(f) + sq_norm(bw)) + FB_ABSOLUTE
        warped = cv2.remap(rgb[t + 1].astype(np.float32), where, None, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        diff = cv2.subtract(warped, rgb[t].astype(np.float32))
        share = np.count_nonzero(ok) / ok.size
        mask = ok.view(np.uint8) if share > 0 else None
        mse = float(np.mean(cv2.mean(cv2.multiply(diff, diff), mask=mask)[:3])) / 255.0**2
        mae = float(np.mean(cv2.mean(cv2.absdiff(diff, 0.0), mask=mask)[:3]))
        return mse, mae, share

    _ = flows.backward  # computed once, before the threads share it
    mse, mae, valid = np.asarray(in_parallel(pair, range(len(flows.forward)))).T.reshape(3, -1)
    return Residuals(mse, mae, valid)


def _flow_gradient_sq(f: np.ndarray) -> np.ndarray:
    """Lai et al.'s motion-boundary statistic: squared forward differences of both flow components."""
    du = np.zeros_like(f)
    dv = np.zeros_like(f)
    du[:, :-1] = f[:, :-1] - f[:, 1:]
    dv[:-1, :] = f[:-1, :] - f[1:, :]
    return sq_norm(du) + sq_norm(dv)


def _evalcrafter_errors(flows: Flows) -> np.ndarray:
    """EvalCrafter's per-pair warping error on its half-resolution flows (see :func:`warp_error`)."""
    import cv2

    rgb = flows.rgb

    def pair(t: int) -> float:
        fw, bw = flows.forward[t], flows.backward[t]
        where = flows.grid + fw
        bw_w = cv2.remap(bw, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # Resample2d clamps
        occluded = sq_norm(fw + bw_w) > FB_RELATIVE * (sq_norm(bw_w) + sq_norm(fw)) + FB_ABSOLUTE
        boundary = _flow_gradient_sq(fw) > MB_RELATIVE * sq_norm(fw) + MB_ABSOLUTE
        keep = ~(occluded | boundary)
        nxt = rgb[t + 1].astype(np.float32) / 255.0
        warped = cv2.remap(nxt, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        sq = (warped - rgb[t].astype(np.float32) / 255.0) ** 2
        n = int(keep.sum())
        return float(sq[keep].sum(dtype=np.float64)) / n if n else float(sq.sum(dtype=np.float64)) / sq.size

    _ = flows.backward  # computed once, before the threads share it
    return np.asarray(in_parallel(pair, range(len(flows.forward))))


def _flows_for(video: Any, method: str, convention: str, max_short_side: int | None,
               given_flow: tuple[Any, Any] | None) -> Flows:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: must be one of {CONVENTIONS}; got {convention!r}")
    if given_flow is not None and (not isinstance(given_flow, (tuple, list)) or len(given_flow) != 2):
        raise ValueError(f"given_flow: must be a pair (forward, backward) of (T-1, h, w, 2) arrays; "
                         f"got {type(given_flow).__name__}")
    if convention == "evalcrafter":
        if isinstance(video, Flows):
            raise ValueError("video: must be a video for convention='evalcrafter', which computes its own "
                             "half-resolution flows; got shared Flows")
        frames = getattr(video, "frames", video)
        shape = np.shape(frames)
        if len(shape) == 4 and min(shape[1:3]) < 2 * MIN_FLOW_SIDE:
            raise ValueError(f"frames: must be at least {2 * MIN_FLOW_SIDE}x{2 * MIN_FLOW_SIDE} px for "
                             f"convention='evalcrafter', which works at half resolution; "
                             f"got {shape[2]}x{shape[1]} (WxH)")
        size = (shape[1] // 2, shape[2] // 2) if len(shape) == 4 else None
        fw, bw = given_flow if given_flow is not None else (None, None)
        return Flows(video, method, max_short_side=None, size=size, forward=fw, backward=bw, fine_backward=True)
    if given_flow is not None:
        if isinstance(video, Flows):
            raise ValueError("given_flow: must come with a video, not with shared Flows (they have their flows); "
                             "got both")
        return Flows(video, method, max_short_side=max_short_side, forward=given_flow[0], backward=given_flow[1])
    return Flows.of(video, method, max_short_side)


def warp_error(video: Any, method: str = "dis", *, convention: str = "wanlab",
               max_short_side: int | None = WORK_SHORT_SIDE, given_flow: tuple[Any, Any] | None = None) -> PairScores:
    """Warping error: how far frame t+1, warped back onto frame t along the flow, is from frame t. Lower is better.

    ``convention="wanlab"`` (the default, and ``motion()``'s ``warp_error``): mean squared error on
    a [0, 1] intensity scale *averaged* over RGB, over pixels that pass the forward-backward check
    ``|f + b|^2 <= 0.01 (|f|^2 + |b|^2) + 0.5`` and whose flow stays inside the frame (content
    leaving the frame has no counterpart to compare with), on the flow's working grid; all pixels
    when none passes.

    ``convention="evalcrafter"`` follows EvalCrafter's ``compute_video_warping_error``
    (``metrics/RAFT/optical_flow_scores.py``, adapted from Lai et al. 2018): frames halved
    (2x2 averages), flow on that grid, squared error *summed* over RGB (3x wanlab's for the same
    pixels), divided by the number of kept pixels; a pixel is dropped when it fails the same
    forward-backward check or lies on a motion boundary ``|grad f|^2 > 0.01 |f|^2 + 0.002``, and
    pixels whose flow leaves the frame are kept and compared with the clamped edge pixel, as
    its ``Resample2d`` does. A clean pan therefore pays for the columns moving out of the frame.

    ``given_flow=(forward, backward)``: flows to use instead of estimating them, ``(T-1, h, w, 2)``
    in px of the convention's grid (the working grid, or the half-resolution grid) — the exact
    flow of a synthetic video, or RAFT's to reproduce EvalCrafter's number. EvalCrafter uses
    RAFT; with DIS this is a proxy.

    Args:
        video: uint8 (T, H, W, 3) frames, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows` (a video,
            not Flows, for ``"evalcrafter"`` or with ``given_flow``).
        method: ``"dis"`` or ``"farneback"``.
        convention: ``"wanlab"`` or ``"evalcrafter"`` (:data:`CONVENTIONS`), see above.
        max_short_side: Short side of the working grid in px (``"wanlab"`` only; None: full resolution).
        given_flow: ``(forward, backward)`` flows to use instead of estimating them, see above.

    Returns:
        The error per pair and its mean.

    Raises:
        ValueError: An unknown convention, bad frames or settings, Flows where a video is needed,
            frames under 32x32 px for ``"evalcrafter"``, or given flows of the wrong shape.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> round(metrics.warp_error(pan).mean, 4)
        0.0
        >>> metrics.warp_error(pan, convention="evalcrafter").mean > 0  # the columns leaving the frame
        True
    """
    flows = _flows_for(video, method, convention, max_short_side, given_flow)
    per = residuals_of(flows).mse if convention == "wanlab" else _evalcrafter_errors(flows)
    return PairScores(per, float(per.mean()))


def warped_flicker(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE,
                   given_flow: tuple[Any, Any] | None = None) -> PairScores:
    """Motion-compensated flicker on VBench's flicker scale: ``(255 - mean |f(t) - warp(f(t+1))|) / 255``.

    Temporal flicker for moving clips: the mean absolute RGB difference is taken after warping
    frame t+1 back onto frame t along the flow, over the pixels :func:`warp_error`'s wanlab
    convention trusts, on the flow's working grid. 1.0 = nothing changes along the motion; a
    clean pan scores like a clean static clip, and brightness flicker lowers a pan's score as
    much as a static clip's. Noise is averaged by the working-grid downscaling, so values are
    not interchangeable with :func:`temporal_flicker`'s full-resolution ones. A pan whose
    brightness jitters by up to +-15 levels from frame to frame scores 0.957 (a still clip with
    the same jitter: 0.957 too).

    Args:
        video: uint8 (T, H, W, 3) frames, a ``wanlab.Video`` or :class:`~wanlab.metrics.Flows`.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the working grid in px (None: full resolution).
        given_flow: ``(forward, backward)`` flows to use instead of estimating them,
            ``(T-1, h, w, 2)`` in working px.

    Returns:
        The flicker per pair, in [0, 1], and its mean.

    Raises:
        ValueError: Bad frames or settings, or given flows of the wrong shape.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> round(metrics.warped_flicker(pan).mean, 2)
        1.0
    """
    flows = _flows_for(video, method, "wanlab", max_short_side, given_flow)
    per = (255.0 - residuals_of(flows).mae) / 255.0
    return PairScores(per, float(per.mean()))
