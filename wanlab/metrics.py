"""Motion and comparison metrics for uint8 videos of shape (T, H, W, 3).

Every function takes a uint8 RGB array ``(T, H, W, 3)`` or any object with a
``.frames`` attribute holding one (e.g. ``wanlab.Video``).

Flow-based scores use classical OpenCV optical flow (DIS by default, Farneback
optionally) instead of the RAFT / AMT networks of VBench and EvalCrafter. They
are *proxies* that follow the published definitions; they are not numerically
comparable to the numbers in those papers' leaderboards.

Flow is computed on luma at a working resolution whose short side is at most
``WORK_SHORT_SIDE`` px (frames are downscaled with area averaging, never
upscaled); flow vectors are always reported in pixels of the *original*
resolution. ``motion()`` computes the flow once and shares it among metrics.

``cv2`` and ``skimage`` are imported inside functions so ``import wanlab`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .frames import as_frames

__all__ = [
    "FLOW_METHODS",
    "WORK_SHORT_SIDE",
    "WAN_FPS",
    "PairScores",
    "FrameScores",
    "DynamicDegree",
    "flow",
    "flow_magnitude",
    "dynamic_degree",
    "temporal_flicker",
    "smoothness",
    "warp_error",
    "psnr",
    "ssim",
    "motion",
    "compare",
]

FLOW_METHODS = ("dis", "farneback")
#: Flow working resolution: short side in px (832x480 -> 416x240). Chosen by
#: benchmarks/bench_metrics.py: < 1 s for all of motion() on an 81-frame
#: 832x480 video on 2 cores, translation error < 5 %.
WORK_SHORT_SIDE = 240
#: Wan 2.1 generates 16 frames per second.
WAN_FPS = 16.0
#: Smallest frame side the flow estimators handle reliably.
MIN_FLOW_SIDE = 16
#: DIS settings for the reported (forward) flow: ULTRAFAST preset refined down
#: to the finest pyramid level (coarser finest levels bias sub-pixel motion by
#: 5-30 %), non-overlapping 8 px patches, no variational refinement.
DIS_FINEST_SCALE = 0
DIS_PATCH_STRIDE = 8
#: The backward flow only feeds warp_error's occlusion mask (tolerance ~0.7 px),
#: so it stops one pyramid level earlier: ~2x cheaper.
DIS_BACKWARD_FINEST_SCALE = 1
#: Threads computing flow pairs concurrently (each also uses OpenCV's own threads).
MAX_FLOW_THREADS = 4


@dataclass(frozen=True)
class PairScores:
    """One score per frame pair (``per_pair``, float64) and their mean."""

    per_pair: np.ndarray
    mean: float


@dataclass(frozen=True)
class FrameScores:
    """One score per frame (``per_frame``, float64) and their mean."""

    per_frame: np.ndarray
    mean: float


@dataclass(frozen=True)
class DynamicDegree:
    """VBench dynamic-degree verdict.

    ``per_pair``: mean of the top 5 % flow magnitudes of each sampled pair, in px
    of the original resolution; ``threshold``: px a pair must exceed;
    ``required``: how many pairs must exceed it; ``interval``: frame step of
    the ~8 fps sampling.
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


# --------------------------------------------------------------------------- input checks


def _check_flow_args(frames: np.ndarray, method: str, max_short_side: int | None) -> None:
    if method not in FLOW_METHODS:
        raise ValueError(f"method must be one of {FLOW_METHODS}; got {method!r}")
    if max_short_side is not None and max_short_side < MIN_FLOW_SIDE:
        raise ValueError(f"max_short_side must be None or >= {MIN_FLOW_SIDE} px; got {max_short_side}")
    h, w = frames.shape[1:3]
    if min(h, w) < MIN_FLOW_SIDE:
        raise ValueError(
            f"optical flow needs frames of at least {MIN_FLOW_SIDE}x{MIN_FLOW_SIDE} px; got {w}x{h} (WxH)"
        )


# --------------------------------------------------------------------------- shared flow


def _working_size(h: int, w: int, max_short_side: int | None) -> tuple[int, int]:
    """(h, w) of the working grid: short side <= max_short_side, aspect kept, never upscaled."""
    if max_short_side is None or min(h, w) <= max_short_side:
        return h, w
    s = max_short_side / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y): a cv2.remap map for zero flow."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs, ys])


def _remap(img: np.ndarray, grid: np.ndarray, flow_: np.ndarray) -> np.ndarray:
    """Sample ``img`` at ``grid + flow_`` (bilinear, borders replicated)."""
    import cv2

    return cv2.remap(img, grid + flow_, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _sq_norm(f: np.ndarray) -> np.ndarray:
    """|f|^2 of an (h, w, 2) vector field (faster than ``(f**2).sum(-1)``)."""
    return f[..., 0] * f[..., 0] + f[..., 1] * f[..., 1]


class _Motion:
    """Working-resolution frames plus lazily computed flows, shared by all motion metrics.

    Flows are stored in *working* px; ``scale`` = (sx, sy) converts them to original px.
    """

    def __init__(self, video: Any, method: str, max_short_side: int | None, min_frames: int = 2):
        import cv2

        frames = as_frames(video, "frames", min_frames)
        _check_flow_args(frames, method, max_short_side)
        self.frames = frames
        self.method = method
        H, W = frames.shape[1:3]
        h, w = _working_size(H, W, max_short_side)
        if (h, w) != (H, W):
            small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
        else:
            small = list(frames)
        #: (T, h, w, 3) uint8 working-resolution RGB and (T, h, w) luma
        self.rgb = np.stack(small)
        self.gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small])
        self.scale = (W / w, H / h)
        self.grid = _grid(h, w)
        self._spans: dict[tuple[int, int], np.ndarray] = {}

    def _pairs(self, pairs: list[tuple[int, int]], finest_scale: int | None = None) -> np.ndarray:
        """(len(pairs), h, w, 2) float32 flow from frame i to frame j for each (i, j).

        Pairs are spread over a few threads (OpenCV releases the GIL): ~20 % faster
        on 2 cores than OpenCV's own threading alone.
        """
        from concurrent.futures import ThreadPoolExecutor

        if finest_scale is None:
            finest_scale = DIS_FINEST_SCALE
        workers = max(1, min(MAX_FLOW_THREADS, os.cpu_count() or 1, len(pairs) // 4))
        if workers == 1:
            return np.stack(self._pairs_serial(pairs, finest_scale))
        chunks = [pairs[k::workers] for k in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(lambda c: self._pairs_serial(c, finest_scale), chunks))
        out = np.empty((len(pairs), *self.gray.shape[1:], 2), np.float32)
        for k, flows in enumerate(done):
            out[k::workers] = flows
        return out

    def _pairs_serial(self, pairs: list[tuple[int, int]], finest_scale: int) -> list[np.ndarray]:
        """Flows of ``pairs`` in one thread, with its own (non thread-safe) DIS instance."""
        import cv2

        g = self.gray
        if self.method == "farneback":
            return [cv2.calcOpticalFlowFarneback(g[i], g[j], None, 0.5, 4, 15, 3, 5, 1.1, 0) for i, j in pairs]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        dis.setFinestScale(finest_scale)
        dis.setPatchStride(DIS_PATCH_STRIDE)
        dis.setVariationalRefinementIterations(0)
        return [dis.calc(g[i], g[j], None) for i, j in pairs]

    @cached_property
    def forward(self) -> np.ndarray:
        """Flow t -> t+1, (T-1, h, w, 2), working px."""
        return self._pairs([(t, t + 1) for t in range(len(self.gray) - 1)])

    @cached_property
    def backward(self) -> np.ndarray:
        """Flow t+1 -> t, (T-1, h, w, 2), working px (coarser: only used for occlusion masks)."""
        pairs = [(t + 1, t) for t in range(len(self.gray) - 1)]
        return self._pairs(pairs, DIS_BACKWARD_FINEST_SCALE)

    def span(self, start: int, steps: int) -> np.ndarray:
        """Flow start -> start+steps by chaining forward flows f(x) + g(x + f(x)); cached."""
        key = (start, steps)
        if key not in self._spans:
            acc = self.forward[start]
            for t in range(start + 1, start + steps):
                acc = acc + _remap(self.forward[t], self.grid, acc)
            self._spans[key] = acc
        return self._spans[key]

    def to_original(self, f: np.ndarray) -> np.ndarray:
        """Convert working-px flow vectors to original-resolution px."""
        return f * np.asarray(self.scale, dtype=np.float32)

    def magnitude(self, f: np.ndarray) -> np.ndarray:
        """Flow magnitude of one (h, w, 2) field in original px, (h, w) float32."""
        import cv2

        u, v = cv2.split(f)
        sx, sy = self.scale
        return cv2.magnitude(u * np.float32(sx), v * np.float32(sy))


# --------------------------------------------------------------------------- flow metrics


def flow(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> np.ndarray:
    """Dense optical flow between consecutive frames: OpenCV DIS (Kroeger et al. 2016) or Farneback (2003).

    Computed on luma downscaled (area averaging) so its short side is at most
    ``max_short_side`` px (``None``: full resolution). Returns float32
    ``(T-1, h, w, 2)`` on that working grid (h, w = H, W when no downscaling):
    ``[..., 0]`` = dx (rightwards), ``[..., 1]`` = dy (downwards), in pixels of
    the ORIGINAL resolution, mapping frame t to frame t+1.
    """
    m = _Motion(video, method, max_short_side)
    return m.to_original(m.forward)


def _flow_magnitude(m: _Motion) -> PairScores:
    per = np.array([m.magnitude(f).mean() for f in m.forward], dtype=np.float64)
    return PairScores(per, float(per.mean()))


def flow_magnitude(
    video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE
) -> PairScores:
    """Mean optical-flow magnitude per consecutive pair, in px/frame of the original resolution.

    ``per_pair[t]`` averages ``sqrt(dx^2 + dy^2)`` of ``flow()`` over all pixels;
    ``mean`` averages the pairs. A classical-flow motion-amount statistic.
    """
    return _flow_magnitude(_Motion(video, method, max_short_side))


def _top_mean(mag: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the largest ``fraction`` of values (VBench: top 5 % flow magnitudes)."""
    flat = mag.ravel()
    k = max(1, int(flat.size * fraction))
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def _sample_interval(fps: float) -> int:
    if not fps > 0:
        raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
    return max(1, round(fps / 8))


def _dynamic_degree(m: _Motion, fps: float) -> DynamicDegree:
    k = _sample_interval(fps)
    T, H, W = m.frames.shape[:3]
    n = (T - 1) // k + 1  # sampled frames
    if n < 2:
        raise ValueError(
            f"dynamic_degree samples every {k}th frame (fps={fps}); needs at least {k + 1} frames, got T={T}"
        )
    per = np.array([_top_mean(m.magnitude(m.span(i * k, k))) for i in range(n - 1)])
    required = max(1, round(4 * n / 16))
    threshold = 6.0 * min(H, W) / 256.0
    dynamic = int(np.count_nonzero(per > threshold)) >= required
    return DynamicDegree(bool(dynamic), per, threshold, required, k)


def dynamic_degree(
    video: Any,
    fps: float = WAN_FPS,
    method: str = "dis",
    *,
    max_short_side: int | None = WORK_SHORT_SIDE,
) -> DynamicDegree:
    """VBench "dynamic degree" with classical flow instead of RAFT (a proxy).

    Frames are sampled every ``round(fps / 8)`` frames (~8 fps; every 2nd at
    Wan's 16 fps); for each sampled pair the score is the mean of the top 5 %
    flow magnitudes (px, original resolution). The video is dynamic when at
    least ``round(4 * N / 16)`` pairs (N sampled frames; at least 1) score above
    ``6 * min(H, W) / 256`` px. Source: VBench (Huang et al., 2024),
    ``vbench/dynamic_degree.py``.
    """
    return _dynamic_degree(_Motion(video, method, max_short_side), fps)


def temporal_flicker(video: Any) -> PairScores:
    """VBench temporal flickering: ``(255 - mean |f(t+1) - f(t)|) / 255``, in [0, 1].

    ``per_pair[t]`` uses the mean absolute RGB difference of frames t, t+1 at
    full resolution; 1.0 = no change at all. Computed on the raw video (VBench
    first filters static clips). Source: VBench ``temporal_flickering``.
    """
    import cv2

    frames = as_frames(video, "frames", 2)
    n = frames[0].size
    diff = [sum(cv2.sumElems(cv2.absdiff(a, b))) / n for a, b in zip(frames[:-1], frames[1:])]
    per = (255.0 - np.asarray(diff, dtype=np.float64)) / 255.0
    return PairScores(per, float(per.mean()))


def _smoothness(m: _Motion) -> PairScores:
    import cv2

    scores = []
    for i in range((len(m.rgb) - 1) // 2):
        half = 0.5 * m.span(2 * i, 2)  # frame 2i -> 2i+2, assumed linear in time
        before = _remap(m.rgb[2 * i].astype(np.float32), m.grid, -half)
        after = _remap(m.rgb[2 * i + 2].astype(np.float32), m.grid, half)
        pred = cv2.addWeighted(before, 0.5, after, 0.5, 0.0)
        mad = np.mean(cv2.mean(cv2.absdiff(pred, m.rgb[2 * i + 1].astype(np.float32)))[:3])
        scores.append((255.0 - mad) / 255.0)
    per = np.asarray(scores, dtype=np.float64)
    return PairScores(per, float(per.mean()))


def smoothness(
    video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE
) -> PairScores:
    """Motion smoothness proxy: how well frame interpolation predicts the odd frames.

    Each odd frame 2i+1 is predicted from frames 2i and 2i+2 by a flow-based
    mid-point warp (the 2i -> 2i+2 flow, halved, assumes constant velocity);
    ``per_pair[i] = (255 - mean |predicted - real|) / 255`` in [0, 1], on RGB at
    the flow working resolution. VBench uses the AMT interpolation network
    instead; this is a classical-flow proxy. Needs T >= 3.
    """
    return _smoothness(_Motion(video, method, max_short_side, min_frames=3))


def _warp_error(m: _Motion) -> PairScores:
    import cv2

    far = (1e6, 1e6)  # backward flow outside frame t+1: fails the check, so masks pixels that leave
    scores = []
    for t in range(len(m.forward)):
        f = m.forward[t]
        where = m.grid + f  # where each pixel of frame t lands in frame t+1
        bw = cv2.remap(m.backward[t], where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=far)
        ok = _sq_norm(f + bw) <= 0.01 * (_sq_norm(f) + _sq_norm(bw)) + 0.5
        nxt = m.rgb[t + 1].astype(np.float32)
        warped = cv2.remap(nxt, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = cv2.subtract(warped, m.rgb[t].astype(np.float32))
        sq = cv2.multiply(diff, diff)
        mask = ok.view(np.uint8) if ok.any() else None
        scores.append(float(np.mean(cv2.mean(sq, mask=mask)[:3])) / 255.0**2)
    per = np.asarray(scores, dtype=np.float64)
    return PairScores(per, float(per.mean()))


def warp_error(
    video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE
) -> PairScores:
    """EvalCrafter warping error: masked MSE between frame t and frame t+1 warped onto it.

    Frame t+1 is warped back with the forward flow; pixels failing the
    forward-backward consistency check ``|f + b|^2 > 0.01 (|f|^2 + |b|^2) + 0.5``
    (Sundaram et al. 2010, as in Lai et al. 2018) or leaving the frame are
    excluded. Units: squared intensity on a [0, 1] scale, averaged over RGB and
    valid pixels at the flow working resolution (all pixels if none is valid).
    Lower is more consistent. EvalCrafter uses RAFT; this is a proxy.
    """
    return _warp_error(_Motion(video, method, max_short_side))


def motion(
    video: Any,
    fps: float = WAN_FPS,
    method: str = "dis",
    *,
    max_short_side: int | None = WORK_SHORT_SIDE,
) -> dict[str, float]:
    """All scalar motion metrics of one video, sharing a single flow computation.

    Keys: ``flow_magnitude`` (px/frame), ``dynamic_degree`` (1.0 dynamic / 0.0
    static), ``dynamic_score`` (mean top-5 % magnitude per sampled pair, px),
    ``dynamic_threshold`` (px), ``temporal_flicker``, ``smoothness`` (both in
    [0, 1], higher is steadier), ``warp_error`` ([0, 1]^2 MSE, lower is better).
    Needs T >= 3. See the individual functions for definitions.
    """
    m = _Motion(video, method, max_short_side, min_frames=3)
    dyn = _dynamic_degree(m, fps)
    return {
        "flow_magnitude": _flow_magnitude(m).mean,
        "dynamic_degree": float(dyn.dynamic),
        "dynamic_score": dyn.score,
        "dynamic_threshold": dyn.threshold,
        "temporal_flicker": temporal_flicker(m.frames).mean,
        "smoothness": _smoothness(m).mean,
        "warp_error": _warp_error(m).mean,
    }


# --------------------------------------------------------------------------- comparison


def _pair_frames(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = as_frames(a, "a"), as_frames(b, "b")
    if fa.shape != fb.shape:
        raise ValueError(
            f"a and b must have the same shape (T, H, W, 3); got a {fa.shape} and b {fb.shape}"
        )
    return fa, fb


def psnr(a: Any, b: Any) -> FrameScores:
    """Peak signal-to-noise ratio per frame, in dB (``data_range=255``, scikit-image).

    ``10 log10(255^2 / MSE)``; identical frames give ``inf`` (and so may ``mean``).
    """
    from skimage.metrics import peak_signal_noise_ratio

    fa, fb = _pair_frames(a, b)
    with np.errstate(divide="ignore"):
        per = np.array([peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(fa, fb)])
    return FrameScores(per.astype(np.float64), float(per.mean()))


def ssim(a: Any, b: Any) -> FrameScores:
    """Structural similarity per frame, in [-1, 1] (scikit-image defaults: 7x7 window,
    ``data_range=255``, ``channel_axis=-1``; Wang et al. 2004). Frames need H, W >= 7."""
    from skimage.metrics import structural_similarity

    fa, fb = _pair_frames(a, b)
    if min(fa.shape[1:3]) < 7:
        raise ValueError(f"ssim needs frames of at least 7x7 px; got {fa.shape[2]}x{fa.shape[1]} (WxH)")
    per = [structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(fa, fb)]
    arr = np.asarray(per, dtype=np.float64)
    return FrameScores(arr, float(arr.mean()))


def compare(a: Any, b: Any) -> dict[str, float]:
    """Frame-by-frame similarity of two equally shaped videos: mean ``psnr`` (dB) and ``ssim``."""
    return {"psnr": psnr(a, b).mean, "ssim": ssim(a, b).mean}
