"""Optical flow shared by the motion metrics: working-resolution frames plus flows computed once.

Flow is OpenCV's DIS (Kroeger et al. 2016; Farneback optionally) on luma at a working resolution
whose short side is at most ``WORK_SHORT_SIDE`` px (area averaging, never upscaling). Vectors are
stored in *working* px; :meth:`Flows.to_original` and :meth:`Flows.magnitude` report them in px of
the original frames. A :class:`Flows` can be handed to every motion metric in place of the video,
so several metrics share one flow computation (``motion()`` does exactly that).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..frames import as_frames

FLOW_METHODS = ("dis", "farneback")
#: Flow working resolution: short side in px (832x480 -> 416x240). Chosen by
#: benchmarks/bench_metrics.py: all of motion() on an 81-frame 832x480 video under 1 s on
#: 2 cores, translation error < 3 %.
WORK_SHORT_SIDE = 240
#: Smallest working-grid side the flow estimators handle reliably.
MIN_FLOW_SIDE = 16
#: DIS settings for the forward flow: OpenCV's ULTRAFAST preset (8 px patches, 6 px stride, so
#: patches overlap) refined down to the finest pyramid level (coarser finest levels bias
#: sub-pixel motion by 5-30 %), no variational refinement. A stride of 8 (no overlap) is a third
#: faster but loses more moving objects: 4.3 px error instead of 0.0 inside a 160x120 textured
#: square moving 16 px/frame (benchmarks/bench_metrics.py), 3 of 10 random squares instead of 2.
DIS_FINEST_SCALE = 0
DIS_PATCH_STRIDE = 6
#: The backward flow only feeds wanlab's occlusion mask (tolerance ~0.7 px), so it stops two
#: pyramid levels earlier: ~10x cheaper, and 1-2 % fewer trusted pixels next to moving objects.
#: ``Flows(fine_backward=True)`` (EvalCrafter's convention) computes it like the forward flow.
DIS_BACKWARD_FINEST_SCALE = 2
#: Threads computing flow pairs concurrently (each also uses OpenCV's own threads).
MAX_FLOW_THREADS = 4
#: Threads for the per-pair work that follows (numpy and OpenCV release the GIL).
MAX_WORK_THREADS = 2


@dataclass(frozen=True)
class PairScores:
    """One score per frame pair and their mean.

    Attributes:
        per_pair: float64 array, one value per pair of frames.
        mean: Their mean.

    Example:
        >>> PairScores(np.array([1.0, 3.0]), 2.0).mean
        2.0
    """

    per_pair: np.ndarray
    mean: float


def check_method(method: str) -> None:
    """Check that ``method`` names a flow estimator wanlab offers.

    Args:
        method: The name given.

    Raises:
        ValueError: Not one of :data:`FLOW_METHODS`.

    Example:
        >>> check_method("dis")
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"method: must be one of {FLOW_METHODS}; got {method!r}")


def working_size(h: int, w: int, max_short_side: int | None) -> tuple[int, int]:
    """The size of the flow's working grid: short side <= max_short_side, aspect kept, never upscaled.

    Args:
        h: Frame height.
        w: Frame width.
        max_short_side: The largest short side in px; None keeps the frame size.

    Returns:
        The working (h, w).

    Example:
        >>> working_size(480, 832, 240)
        (240, 416)
    """
    if max_short_side is None or min(h, w) <= max_short_side:
        return h, w
    s = max_short_side / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel coordinates (x, y) of an h x w grid: a cv2.remap map for zero flow.

    Args:
        h: Grid height.
        w: Grid width.

    Returns:
        (h, w, 2) float32, ``[y, x] == (x, y)``.

    Example:
        >>> pixel_grid(2, 3)[1, 2].tolist()
        [2.0, 1.0]
    """
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs, ys])


def remap(img: np.ndarray, grid: np.ndarray, flow_: np.ndarray, interpolation: int | None = None) -> np.ndarray:
    """Sample ``img`` at ``grid + flow_`` (borders replicated).

    Args:
        img: An (h, w) or (h, w, c) float32 image or field.
        grid: :func:`pixel_grid` of the output size.
        flow_: (h, w, 2) float32 displacements added to the grid.
        interpolation: A cv2 ``INTER_*`` flag; bilinear when None.

    Returns:
        The sampled image, the grid's size.

    Example:
        >>> img = np.arange(6, dtype=np.float32).reshape(2, 3)
        >>> remap(img, pixel_grid(2, 3), np.zeros((2, 3, 2), np.float32)).tolist() == img.tolist()
        True
    """
    import cv2

    mode = cv2.INTER_LINEAR if interpolation is None else interpolation
    return cv2.remap(img, grid + flow_, None, mode, borderMode=cv2.BORDER_REPLICATE)


def compose(first: np.ndarray, second: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Chain two flows: ``f(x) + g(x + f(x))``.

    Args:
        first: Flow a -> b, (h, w, 2) float32.
        second: Flow b -> c, (h, w, 2) float32.
        grid: :func:`pixel_grid` of (h, w).

    Returns:
        Flow a -> c, (h, w, 2) float32.

    Example:
        >>> one = np.ones((4, 4, 2), np.float32)
        >>> compose(one, one, pixel_grid(4, 4))[0, 0].tolist()
        [2.0, 2.0]
    """
    return first + remap(second, grid, first)


def sq_norm(f: np.ndarray) -> np.ndarray:
    """|f|^2 of an (h, w, 2) vector field (faster than ``(f**2).sum(-1)``).

    Args:
        f: The field.

    Returns:
        (h, w) squared lengths.

    Example:
        >>> sq_norm(np.array([[[3.0, 4.0]]])).tolist()
        [[25.0]]
    """
    return f[..., 0] * f[..., 0] + f[..., 1] * f[..., 1]


def top_mean(values: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``fraction`` of ``values`` (VBench: top 5 % or 2 % of flow magnitudes).

    Counts ``int(size * fraction)`` values as VBench does (``cut_index``), at least one. Exact:
    a sorted 1-in-16 subsample gives a bound below the k-th largest value (checked by counting),
    and only the values above it are sorted. ``np.partition`` is 5-60x slower on flow
    magnitudes, whose many equal values (a still background) are its worst case.

    Args:
        values: Any array (flattened).
        fraction: The share of largest values averaged, in (0, 1].

    Returns:
        Their mean (float64).

    Example:
        >>> top_mean(np.arange(100.0), 0.05)
        97.0
    """
    flat = values.ravel()
    k = max(1, int(flat.size * fraction))
    sample = np.sort(flat[::16])
    bound = sample[max(0, sample.size - 2 * (k // 16) - 2)]
    candidates = flat[flat >= bound]
    if candidates.size < k:
        candidates = flat
    return float(np.sort(candidates)[-k:].mean(dtype=np.float64))


def in_parallel(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``[fn(x) for x in items]`` on up to ``MAX_WORK_THREADS`` threads, in order.

    The numpy parts of one pair's work overlap OpenCV's of another's (both release the GIL).

    Args:
        fn: The work for one item.
        items: The items.

    Returns:
        The results, in the items' order.

    Example:
        >>> in_parallel(lambda x: x * x, range(4))
        [0, 1, 4, 9]
    """
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    workers = min(MAX_WORK_THREADS, os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _check_given_flow(name: str, given: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(given)
    if arr.shape != shape or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: must be a float array of shape {shape} (T-1 pairs, working h, w, (dx, dy)); "
                         f"got {arr.dtype} {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: must be finite; got {int((~np.isfinite(arr)).sum())} non-finite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


class Flows:
    """Working-resolution frames of one video and the optical flows its motion metrics share, computed once.

    Flows are computed lazily (first use of :attr:`forward` / :attr:`backward`) in working px.

    Args:
        video: uint8 (T, H, W, 3) frames or a ``wanlab.Video``.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Working-grid short side in px (``None``: full resolution).
        size: An explicit working (h, w) instead (EvalCrafter's half resolution).
        forward: A flow you already have (RAFT, or the exact flow of a synthetic video),
            ``(T-1, h, w, 2)`` in working px, used instead of estimating it.
        backward: The same for the backward flow.
        fine_backward: Estimate the backward flow as precisely as the forward one (else a coarser
            one, for occlusion masks).
        min_frames: The fewest frames accepted.

    Attributes:
        rgb: (T, h, w, 3) uint8 working-resolution frames.
        gray: (T, h, w) uint8 luma.
        scale: (sx, sy), original px per working px.

    Raises:
        ValueError: Bad frames, method or ``max_short_side``, a working grid under 16x16 px, or
            given flows of the wrong shape or with non-finite values.

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> flows = metrics.Flows(pan)  # nothing computed yet
        >>> round(metrics.smoothness(flows).mean, 2), round(metrics.warp_error(flows).mean, 4)  # flows shared
        (1.0, 0.0)
    """

    def __init__(self, video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE,
                 size: tuple[int, int] | None = None, forward: Any = None, backward: Any = None,
                 fine_backward: bool = False, min_frames: int = 2) -> None:
        import cv2

        frames = as_frames(video, "frames", min_frames)
        check_method(method)
        if max_short_side is not None and (isinstance(max_short_side, bool) or not isinstance(max_short_side, int)
                                           or max_short_side < MIN_FLOW_SIDE):
            raise ValueError(f"max_short_side: must be None or an integer >= {MIN_FLOW_SIDE} px; "
                             f"got {max_short_side!r}")
        H, W = frames.shape[1:3]
        h, w = working_size(H, W, max_short_side) if size is None else size
        if min(h, w) < MIN_FLOW_SIDE:
            raise ValueError(f"frames: must give a working grid of at least {MIN_FLOW_SIDE}x{MIN_FLOW_SIDE} px for "
                             f"optical flow; got {w}x{h} (WxH) from frames of {W}x{H}")
        self.frames = frames
        self.method = method
        self.max_short_side = max_short_side
        self.backward_finest_scale = DIS_FINEST_SCALE if fine_backward else DIS_BACKWARD_FINEST_SCALE
        if (h, w) != (H, W):
            small = np.stack(in_parallel(lambda f: cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA), frames))
        else:
            small = frames
        #: (T, h, w, 3) uint8 working-resolution RGB and (T, h, w) luma
        self.rgb = np.ascontiguousarray(small)
        self.gray = np.stack(in_parallel(lambda f: cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), self.rgb))
        #: (sx, sy): original px per working px
        self.scale = (W / w, H / h)
        self.grid = pixel_grid(h, w)
        self._spans: dict[tuple[int, int], np.ndarray] = {}
        pairs = (len(frames) - 1, h, w, 2)
        if forward is not None:
            self.__dict__["forward"] = _check_given_flow("forward", forward, pairs)
        if backward is not None:
            self.__dict__["backward"] = _check_given_flow("backward", backward, pairs)

    @classmethod
    def of(cls, video: Any, method: str, max_short_side: int | None, min_frames: int = 2) -> Flows:
        """``video`` itself when it already is a :class:`Flows` (with the same settings), else new flows for it.

        Args:
            video: Frames, a Video, or Flows.
            method: The flow estimator asked for.
            max_short_side: The working-grid short side asked for.
            min_frames: The fewest frames the caller needs.

        Returns:
            The Flows.

        Raises:
            ValueError: Flows computed with other settings, or too few frames.
        """
        if isinstance(video, Flows):
            if (video.method, video.max_short_side) != (method, max_short_side):
                raise ValueError(f"flows: were computed with method={video.method!r}, max_short_side="
                                 f"{video.max_short_side}; got method={method!r}, max_short_side={max_short_side}")
            as_frames(video.frames, "frames", min_frames)
            return video
        return cls(video, method, max_short_side=max_short_side, min_frames=min_frames)

    def _pairs(self, pairs: list[tuple[int, int]], finest_scale: int) -> np.ndarray:
        """(len(pairs), h, w, 2) float32 flow from frame i to frame j for each (i, j).

        Pairs are spread over a few threads (OpenCV releases the GIL): ~20 % faster on 2 cores
        than OpenCV's own threading alone.
        """
        from concurrent.futures import ThreadPoolExecutor

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
        """Flows of ``pairs`` in one thread, with its own (not thread-safe) DIS instance."""
        import cv2

        g = self.gray
        if self.method == "farneback":
            return [cv2.calcOpticalFlowFarneback(g[i], g[j], None, 0.5, 4, 15, 3, 5, 1.1, 0) for i, j in pairs]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)  # type: ignore[attr-defined]  # absent from its stubs
        dis.setFinestScale(finest_scale)
        dis.setPatchStride(DIS_PATCH_STRIDE)
        dis.setVariationalRefinementIterations(0)
        return [dis.calc(g[i], g[j], None) for i, j in pairs]

    @cached_property
    def forward(self) -> np.ndarray:
        """Flow t -> t+1, (T-1, h, w, 2) float32, working px (computed on first use)."""
        return self._pairs([(t, t + 1) for t in range(len(self.gray) - 1)], DIS_FINEST_SCALE)

    @cached_property
    def backward(self) -> np.ndarray:
        """Flow t+1 -> t, (T-1, h, w, 2) float32, working px.

        Coarser unless ``fine_backward``: it feeds occlusion masks.
        """
        return self._pairs([(t + 1, t) for t in range(len(self.gray) - 1)], self.backward_finest_scale)

    def span(self, start: int, steps: int) -> np.ndarray:
        """Flow start -> start+steps by chaining forward flows with :func:`compose`; cached.

        Args:
            start: The first frame.
            steps: How many frames ahead.

        Returns:
            (h, w, 2) float32, working px.
        """
        key = (start, steps)
        if key not in self._spans:
            acc = self.forward[start]
            for t in range(start + 1, start + steps):
                acc = compose(acc, self.forward[t], self.grid)
            self._spans[key] = acc
        return self._spans[key]

    @cached_property
    def magnitudes(self) -> np.ndarray:
        """Magnitudes of the forward flow in original px, (T-1, h, w) float32."""
        return np.stack(in_parallel(self.magnitude, self.forward))

    def to_original(self, f: np.ndarray) -> np.ndarray:
        """Convert working-px flow vectors to original-resolution px.

        Args:
            f: Flow vectors (..., 2) in working px.

        Returns:
            The vectors scaled by :attr:`scale`.
        """
        return f * np.asarray(self.scale, dtype=np.float32)

    def magnitude(self, f: np.ndarray) -> np.ndarray:
        """Flow magnitude of one field in original px.

        Args:
            f: (h, w, 2) float32 flow in working px.

        Returns:
            (h, w) float32 magnitudes.
        """
        import cv2

        u, v = cv2.split(f)
        sx, sy = self.scale
        return cv2.magnitude(u * np.float32(sx), v * np.float32(sy))


def flow(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> np.ndarray:
    """Dense optical flow between consecutive frames: OpenCV DIS (Kroeger et al. 2016) or Farneback (2003).

    Computed on luma downscaled (area averaging) so its short side is at most ``max_short_side`` px.

    Args:
        video: uint8 (T, H, W, 3) frames (T >= 2), a ``wanlab.Video`` or :class:`Flows`.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the working grid in px (``None``: full resolution).

    Returns:
        float32 ``(T-1, h, w, 2)`` on the working grid (h, w = H, W when no downscaling):
        ``[..., 0]`` = dx (rightwards), ``[..., 1]`` = dy (downwards), in pixels of the ORIGINAL
        resolution, mapping frame t to frame t+1.

    Raises:
        ValueError: Bad frames or settings (see :class:`Flows`).

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> f = metrics.flow(pan)
        >>> f.shape, round(float(f[..., 0].mean()), 1)  # the mean rightward motion, px/frame
        ((8, 64, 128, 2), 3.0)
    """
    f = Flows.of(video, method, max_short_side)
    return f.to_original(f.forward)


def flow_magnitude(video: Any, method: str = "dis", *, max_short_side: int | None = WORK_SHORT_SIDE) -> PairScores:
    """Mean optical-flow magnitude per consecutive pair, in px/frame of the original resolution.

    The statistic of EvalCrafter's ``flow_score`` (``metrics/RAFT/optical_flow_scores.py``
    l. 81-88), with DIS instead of RAFT.

    Args:
        video: uint8 (T, H, W, 3) frames (T >= 2), a ``wanlab.Video`` or :class:`Flows`.
        method: ``"dis"`` or ``"farneback"``.
        max_short_side: Short side of the working grid in px (``None``: full resolution).

    Returns:
        ``per_pair[t]`` averages ``sqrt(dx^2 + dy^2)`` of :func:`flow` over all pixels; ``mean``
        averages the pairs.

    Raises:
        ValueError: Bad frames or settings (see :class:`Flows`).

    Example:
        >>> from wanlab import metrics
        >>> from wanlab.metrics import synthetic
        >>> pan = synthetic.scene(pan=synthetic.linear(3, 9, start=(0, 0)), width=128, height=64)  # 3 px/frame
        >>> round(metrics.flow_magnitude(pan).mean, 1)
        3.0
    """
    mags = Flows.of(video, method, max_short_side).magnitudes
    per = mags.reshape(len(mags), -1).mean(axis=1, dtype=np.float64)
    return PairScores(per, float(per.mean()))
