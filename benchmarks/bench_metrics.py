"""Speed and ground-truth accuracy of wanlab.metrics on a Wan-sized video (81 x 832x480).

Run: ``python benchmarks/bench_metrics.py``. Prints the time of each motion metric
(sharing one flow computation, as ``motion()`` does), the end-to-end ``motion()``
time, and the flow error against a known translation at the default working
resolution versus full resolution, so the speed/accuracy trade-off is visible.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wanlab import metrics  # noqa: E402

T, H, W = 81, 480, 832


def translating_video(t: int, h: int, w: int, vx: float, vy: float, sigma: float = 3.0, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture moving by (vx, vy) px/frame; exact sub-pixel shifts via the Fourier shift theorem."""
    rng = np.random.default_rng(seed)
    pad = 16
    hp, wp = h + 2 * pad, w + 2 * pad
    ky = np.fft.fftfreq(hp)[:, None, None]
    kx = np.fft.fftfreq(wp)[None, :, None]
    spec = np.fft.fft2(rng.standard_normal((hp, wp, 3)), axes=(0, 1))
    spec *= np.exp(-2 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))  # Gaussian blur, sigma px
    frames = np.empty((t, h, w, 3), np.float64)
    for i in range(t):
        shifted = np.fft.ifft2(spec * np.exp(-2j * np.pi * (kx * vx * i + ky * vy * i)), axes=(0, 1)).real
        frames[i] = shifted[pad : pad + h, pad : pad + w]
    frames = (frames - frames.mean()) / frames.std() * 40 + 128
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def timing_table(video: np.ndarray, repeat: int) -> float:
    """Print per-metric times on one shared flow computation; return motion()'s best end-to-end time (s)."""
    rows: list[tuple[str, float]] = []
    for _ in range(repeat):
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        m = metrics._Motion(video, "dis", metrics.WORK_SHORT_SIDE, min_frames=3)
        times["resize + luma"] = time.perf_counter() - t0
        for name, fn in [
            ("forward flow", lambda: m.forward),
            ("backward flow", lambda: m.backward),
            ("flow_magnitude", lambda: metrics._flow_magnitude(m)),
            ("dynamic_degree", lambda: metrics._dynamic_degree(m, metrics.WAN_FPS)),
            ("temporal_flicker", lambda: metrics.temporal_flicker(video)),
            ("smoothness", lambda: metrics._smoothness(m)),
            ("warp_error", lambda: metrics._warp_error(m)),
        ]:
            t0 = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t0
        if not rows or sum(times.values()) < sum(t for _, t in rows):
            rows = list(times.items())
    total = best_of(lambda: metrics.motion(video), repeat)
    h, w = metrics._working_size(H, W, metrics.WORK_SHORT_SIDE)
    print(f"motion metrics, {T} frames {W}x{H}, flow at {w}x{h} (DIS), best of {repeat}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'step':<22}{'time [ms]':>10}")
    for name, sec in rows:
        print(f"{name:<22}{sec * 1e3:>10.1f}")
    print(f"{'sum of steps':<22}{sum(s for _, s in rows) * 1e3:>10.1f}")
    print(f"{'motion() end to end':<22}{total * 1e3:>10.1f}   ({'PASS' if total < 1.0 else 'FAIL'}: budget 1000 ms)")
    return total


def accuracy_table(frames: int, repeat: int) -> None:
    """Relative error of the mean flow magnitude against a known translation, per flow setting."""
    speeds = (0.5, 1.0, 3.0, 8.0)
    chosen = metrics.DIS_FINEST_SCALE
    settings = [  # label, method, working short side, DIS finest scale
        ("dis (default)", "dis", metrics.WORK_SHORT_SIDE, chosen),
        ("dis full res", "dis", None, chosen),
        ("dis finest=2", "dis", metrics.WORK_SHORT_SIDE, 2),  # OpenCV's ULTRAFAST as shipped
        ("farneback", "farneback", metrics.WORK_SHORT_SIDE, chosen),
    ]
    videos = {v: translating_video(frames, H, W, v, 0.0) for v in speeds}
    print(f"\nflow vs ground truth: {W}x{H} texture translated along x by v px/frame, {frames} frames;")
    print("error = (mean flow magnitude - v) / v")
    head = "".join(f"{f'v={v:g}':>9}" for v in speeds)
    print(f"{'setting':<15}{'work res':>9}{'ms/pair':>9}{head}")
    try:
        for label, method, short, finest in settings:
            metrics.DIS_FINEST_SCALE = finest
            errs = [(metrics.flow_magnitude(videos[v], method, max_short_side=short).mean - v) / v for v in speeds]
            sec = best_of(lambda: metrics.flow(videos[3.0], method, max_short_side=short), repeat)
            h, w = metrics._working_size(H, W, short)
            cells = "".join(f"{e:>+9.2%}" for e in errs)
            print(f"{label:<15}{f'{w}x{h}':>9}{sec / (frames - 1) * 1e3:>9.2f}{cells}")
    finally:
        metrics.DIS_FINEST_SCALE = chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is shown)")
    ap.add_argument("--accuracy-frames", type=int, default=9, help="frames per ground-truth video")
    ap.add_argument("--check", action="store_true", help="exit 1 when motion() takes 1 s or more")
    args = ap.parse_args()
    video = translating_video(T, H, W, 3.0, 0.0)
    total = timing_table(video, args.repeat)
    accuracy_table(args.accuracy_frames, args.repeat)
    if args.check and total >= 1.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
