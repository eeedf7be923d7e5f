"""Every metric's validation on synthetic videos with known motion: the table of ``docs/metrics.md``.

Each :class:`Check` builds its videos with :mod:`wanlab.metrics.synthetic`, measures, and says
whether the metric did what its definition promises. ``python -m wanlab.metrics.validation``
prints the table in Markdown (``--write docs/metrics.md`` replaces it there); the test suite
re-runs every row and compares it with the docs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import synthetic as syn
from .consistency import residuals_of, warp_error, warped_flicker
from .dynamics import dynamic_degree, static_filter, temporal_flicker
from .interpolation import smoothness
from .optical_flow import Flows, flow, flow_magnitude
from .similarity import psnr, ssim

#: Frames of the smoothness videos (Wan's size, 33-81 frames) and the random draws compared.
SMOOTH_FRAMES = 33
DRAWS = (0, 1, 2)
Measured = dict[str, float]


@dataclass(frozen=True)
class Check:
    """One row of the validation table.

    Attributes:
        id: The row's id (``flow-pan``).
        metric: The metric it validates.
        video: The synthetic video, in words.
        expected: What the metric's definition promises, in words.
        run: Returns the measured values (by name) and whether the expectation holds.

    Example:
        >>> values, ok = CHECKS[0].run()  # doctest: +SKIP
    """

    id: str
    metric: str
    video: str
    expected: str
    run: Callable[[], tuple[Measured, bool]]


def _pan(speed: float, frames: int, **kw) -> np.ndarray:
    return syn.scene(pan=syn.linear(speed, frames, start=(0.0, 0.0)), **kw)


def _deficit(video: np.ndarray) -> float:
    """1 - smoothness, in units of 1e-4."""
    return (1.0 - smoothness(video).mean) * 1e4


def flow_pans() -> tuple[Measured, bool]:
    """The ``flow-pan`` row: measures ``flow_magnitude`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    out = {f"err_{v:g}": 100 * (flow_magnitude(_pan(v, 9)).mean - v) / v for v in (0.5, 1.0, 3.0, 8.0)}
    return out, all(abs(e) < 3.0 for e in out.values())


def flow_object() -> tuple[Measured, bool]:
    """The ``flow-object`` row: measures ``flow`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    video = syn.scene(syn.linear(16, 9))
    f = flow(video)  # working grid 416x240: the square's interior is x 20+8t..100+8t, y 90..150
    inside = np.stack([f[t, 95:145, 25 + 8 * t:95 + 8 * t, 0] for t in range(len(f))])
    outside = f[:, 170:, :, 0]
    out = {"inside_px": float(inside.mean()), "outside_px": float(np.abs(outside).mean())}
    return out, abs(out["inside_px"] - 16) < 0.3 and out["outside_px"] < 0.05


def dynamic_pan() -> tuple[Measured, bool]:
    """The ``dynamic-rule`` row: measures ``dynamic_degree`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    fast, slow = dynamic_degree(_pan(8, 17)), dynamic_degree(_pan(0.5, 17))
    out = {"fast_pair_px": float(fast.per_pair.mean()), "fast_exceeded": fast.exceeded, "required": fast.required,
           "slow_pair_px": float(slow.per_pair.mean()), "threshold_px": fast.threshold}
    return out, fast.dynamic and not slow.dynamic and abs(out["fast_pair_px"] - 16) < 0.8


def static_rule() -> tuple[Measured, bool]:
    """The ``static-rule`` row: measures ``static_filter`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    still = static_filter(syn.scene(frames=81, noise=2.0))
    pan1, pan3 = static_filter(_pan(1, 81)), static_filter(_pan(3, 81))
    square = static_filter(syn.scene(syn.linear(4, 81, start=(20.0, 180.0))))
    out = {"pan1_end_px": float(pan1.first_last.max()), "pan3_end_px": float(pan3.first_last.max()),
           "square4_end_px": float(square.first_last.max()), "end_threshold_px": pan3.end_threshold}
    return out, still.static and pan1.static and not pan3.static and not square.static


def flicker_alternating() -> tuple[Measured, bool]:
    """The ``flicker-alternating`` row: measures ``temporal_flicker`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    still = syn.scene(frames=9, contrast=15.0)
    flashing = still.copy()
    flashing[1::2] += 20
    result = temporal_flicker(flashing)
    out = {"per_pair": float(result.per_pair.mean()), "by_hand": (255 - 20) / 255}
    return out, result.static and bool(np.allclose(result.per_pair, out["by_hand"]))


def _jitter(frames: int, seed: int = 3) -> list[float]:
    return list(np.random.default_rng(seed).uniform(-15, 15, frames))


def flicker_moving() -> tuple[Measured, bool]:
    """The ``flicker-moving`` row: measures ``temporal_flicker`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    pan = temporal_flicker(_pan(3, 33))
    jittery = temporal_flicker(syn.scene(frames=33, brightness=_jitter(33)))
    out = {"pan": pan.mean, "jittered_still": jittery.mean}
    return out, math.isnan(pan.mean) and not pan.static and jittery.static and jittery.mean < 1.0


def warped_flicker_check() -> tuple[Measured, bool]:
    """The ``warped-flicker`` row: measures ``warped_flicker`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    jitter = _jitter(33)
    out = {"clean_pan": warped_flicker(_pan(3, 33)).mean,
           "jittered_pan": warped_flicker(_pan(3, 33, brightness=jitter)).mean,
           "jittered_still": warped_flicker(syn.scene(frames=33, brightness=jitter)).mean}
    ok = out["clean_pan"] > 0.99 and abs(out["jittered_pan"] - out["jittered_still"]) < 0.002
    return out, ok and out["jittered_pan"] < out["clean_pan"] - 0.02


def _smooth_vs_jitter(speed: float) -> Callable[[], tuple[Measured, bool]]:
    def run() -> tuple[Measured, bool]:
        out: Measured = {}
        for s in DRAWS:
            out[f"linear_{s}"] = _deficit(syn.scene(syn.linear(speed, SMOOTH_FRAMES), seed=s))
            out[f"jittered_{s}"] = _deficit(syn.scene(syn.jittered(speed, SMOOTH_FRAMES, seed=s), seed=s))
        return out, all(out[f"linear_{s}"] < out[f"jittered_{s}"] for s in DRAWS)
    return run


def smooth_vs_random_steps() -> tuple[Measured, bool]:
    """The ``smooth-random-steps`` row: measures ``smoothness`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    out: Measured = {}
    for s in DRAWS:
        out[f"linear16_{s}"] = _deficit(syn.scene(syn.linear(16, SMOOTH_FRAMES), seed=s))
        out[f"random0-8_{s}"] = _deficit(syn.scene(syn.random_steps(0, 8, SMOOTH_FRAMES, seed=s), seed=s))
    return out, all(out[f"linear16_{s}"] < out[f"random0-8_{s}"] for s in DRAWS)


def smooth_noise() -> tuple[Measured, bool]:
    """The ``smooth-noise`` row: measures ``smoothness`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    video = syn.scene(frames=SMOOTH_FRAMES, noise=5.0)
    f = video.astype(np.float64)
    hand = np.mean([np.abs((f[i] + f[i + 2]) / 2 - f[i + 1]).mean() for i in range(0, SMOOTH_FRAMES - 2, 2)])
    out = {"deficit": _deficit(video), "by_hand": hand / 255 * 1e4,
           "gaussian_theory": 5 * math.sqrt(3 / math.pi) / 255 * 1e4}
    return out, abs(out["deficit"] - out["by_hand"]) < 1.0


def smooth_floor() -> tuple[Measured, bool]:
    """The ``smooth-floor`` row: measures ``smoothness`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    fine = _pan(3, SMOOTH_FRAMES, background_sigma=1.0)
    out = {"fine_pan_2.5": _deficit(_pan(2.5, SMOOTH_FRAMES, background_sigma=1.0)), "fine_pan_3": _deficit(fine),
           "fine_pan_3_full_res_flow": (1.0 - smoothness(fine, max_short_side=None).mean) * 1e4}
    return out, abs(out["fine_pan_3"] - out["fine_pan_3_full_res_flow"]) < 1.0


def _translation(step: int, frames: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A pan by an even ``step`` px/frame and its exact flow on the 416x240 (= half resolution) grid."""
    video = _pan(step, frames)
    exact = np.zeros((frames - 1, 240, 416, 2), np.float32)
    exact[..., 0] = step / 2
    return video, exact


def warp_exact() -> tuple[Measured, bool]:
    """The ``warp-exact`` row: measures ``warp_error`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    video, fw = _translation(4)
    given = (fw, -fw)
    wanlab = warp_error(video, given_flow=given).mean
    ec = warp_error(video, convention="evalcrafter", given_flow=given).mean
    half = Flows(video, size=(240, 416)).rgb.astype(np.float64) / 255.0
    d = 2  # the content moves 2 half-res px right: the last 2 columns land outside and meet column w-1-d
    hand = np.mean([((half[t][:, -d:] - half[t][:, -1 - d:-d]) ** 2).sum() / (240 * 416) for t in range(len(fw))])
    out = {"wanlab": wanlab, "evalcrafter": ec, "evalcrafter_by_hand": hand}
    return out, wanlab == 0.0 and abs(ec - hand) <= 1e-5 * hand


def warp_channels() -> tuple[Measured, bool]:
    """The ``warp-channels`` row: measures ``warp_error`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    video = syn.scene(frames=5, noise=3.0)
    zero = np.zeros((4, 240, 416, 2), np.float32)
    wanlab = warp_error(video, given_flow=(zero, zero)).mean
    ec = warp_error(video, convention="evalcrafter", given_flow=(zero, zero)).mean
    return {"wanlab": wanlab, "evalcrafter": ec, "ratio": ec / wanlab}, abs(ec / wanlab - 3.0) < 1e-6


def warp_ordering() -> tuple[Measured, bool]:
    """The ``warp-ordering`` row: measures ``warp_error`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    pan, noisy = _pan(8, 9), syn.scene(frames=9, noise=3.0)
    out = {"wanlab_pan": warp_error(pan).mean * 1e4, "wanlab_noisy_still": warp_error(noisy).mean * 1e4,
           "evalcrafter_pan": warp_error(pan, convention="evalcrafter").mean * 1e4,
           "evalcrafter_noisy_still": warp_error(noisy, convention="evalcrafter").mean * 1e4,
           "wanlab_pan_valid": float(residuals_of(Flows(pan)).valid.mean())}
    ok = out["wanlab_pan"] < out["wanlab_noisy_still"] and out["evalcrafter_pan"] > out["evalcrafter_noisy_still"]
    return out, ok


def psnr_noise() -> tuple[Measured, bool]:
    """The ``psnr-ssim`` row: measures ``psnr, ssim`` on its synthetic videos (see :data:`CHECKS`).

    Returns:
        The measured values by name, and whether the expectation holds.
    """
    gray = np.full((3, 64, 64, 3), 128, np.uint8)
    out: Measured = {}
    for sigma in (3.0, 10.0):
        noisy = np.clip(np.rint(128 + np.random.default_rng(0).normal(0, sigma, gray.shape)), 0, 255).astype(np.uint8)
        out[f"sigma_{sigma:g}_db"] = psnr(gray, noisy).mean
        out[f"theory_{sigma:g}_db"] = 20 * math.log10(255 / sigma)
    ok = all(abs(out[f"sigma_{s:g}_db"] - out[f"theory_{s:g}_db"]) < 0.5 for s in (3.0, 10.0))
    video = syn.scene(frames=3, width=64, height=48)
    out["ssim_identical"] = ssim(video, video).mean
    return out, ok and out["ssim_identical"] == 1.0


CHECKS = [
    Check("flow-pan", "flow_magnitude", "pan at 0.5, 1, 3, 8 px/frame, 9 frames",
          "mean magnitude within 3 % of the speed (err_v in %)", flow_pans),
    Check("flow-object", "flow", "160x120 square moving 16 px/frame over a still background",
          "flow inside the square 16 +- 0.3 px, background < 0.05 px (working px: 8 and 0)", flow_object),
    Check("dynamic-rule", "dynamic_degree", "pans at 8 and 0.5 px/frame, 17 frames",
          "8 px/frame dynamic, pairs 2 frames apart score 16 +- 0.8 px; 0.5 px/frame not dynamic", dynamic_pan),
    Check("static-rule", "static_filter",
          "81 frames: still + noise sd 2, pans at 1 and 3 px/frame, square at 4 px/frame",
          "still and 1 px/frame pan static (80 px end to end < 112.5), 3 px/frame pan and square not", static_rule),
    Check("flicker-alternating", "temporal_flicker", "still clip, every other frame +20 levels",
          "static; every pair exactly (255 - 20) / 255", flicker_alternating),
    Check("flicker-moving", "temporal_flicker", "flicker-free 3 px/frame pan; still clip with +-15 brightness jitter",
          "pan: NaN (not static); jittered still: a score < 1", flicker_moving),
    Check("warped-flicker", "warped_flicker", "3 px/frame pan, clean and with +-15 jitter; still with the same jitter",
          "clean pan > 0.99 (bilinear resampling floor); jittered pan = jittered still +- 0.002, "
          "both >= 0.02 below the clean pan",
          warped_flicker_check),
    *[Check(f"smooth-jitter-{v}", "smoothness", f"square at {v} px/frame: linear vs steps U(0.5, 1.5) x {v}, "
            f"{SMOOTH_FRAMES} frames, draws {DRAWS}", "linear scores higher in every draw (values: 1e4 x (1 - score))",
            _smooth_vs_jitter(v)) for v in (2, 8, 16)],
    Check("smooth-random-steps", "smoothness", f"square: linear 16 px/frame vs steps U(0, 8), {SMOOTH_FRAMES} frames",
          "linear scores higher in every draw (1e4 x (1 - score))", smooth_vs_random_steps),
    Check("smooth-noise", "smoothness", f"still clip + Gaussian noise sd 5, {SMOOTH_FRAMES} frames",
          "1e4 x (1 - score) = 1e4 x mean abs((f0 + f2) / 2 - f1) / 255 by hand, +- 1", smooth_noise),
    Check("smooth-floor", "smoothness", "fine-texture (sigma 1 px) pans at 2.5 and 3 px/frame",
          "error floor; flow at 240p or full resolution gives the same score +- 1e-4", smooth_floor),
    Check("warp-exact", "warp_error", "4 px/frame pan with its exact flow",
          "wanlab 0 (pixels whose flow leaves the frame dropped); evalcrafter = those 2 half-res columns compared "
          "with the clamped edge column, by hand",
          warp_exact),
    Check("warp-channels", "warp_error", "still clip + noise sd 3, exact (zero) flow",
          "evalcrafter = 3 x wanlab (channel sum vs mean; same grid at 832x480)", warp_channels),
    Check("warp-ordering", "warp_error", "clean 8 px/frame pan vs still clip + noise sd 3 (DIS flow; values x 1e4)",
          "wanlab: pan < noisy still; evalcrafter: pan > noisy still", warp_ordering),
    Check("psnr-ssim", "psnr, ssim", "gray 64x64 + Gaussian noise sd 3, 10; identical videos",
          "PSNR = 20 log10(255 / sd) +- 0.5 dB; SSIM of identical = 1", psnr_noise),
]


def format_measured(values: Measured) -> str:
    """``name value`` pairs, 4 significant digits (the docs' Measured column).

    Args:
        values: Measured values by name.

    Returns:
        The text.

    Example:
        >>> format_measured({"err_3": 0.123456, "ok": 1.0})
        'err_3 0.1235, ok 1'
    """
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def table() -> str:
    """Run every check.

    Returns:
        The Markdown table of ``docs/metrics.md``.

    Example:
        >>> print(table())  # doctest: +SKIP
    """
    lines = ["| id | metric | synthetic video (832x480 unless said) | expected | measured | passes |",
             "|---|---|---|---|---|---|"]
    for check in CHECKS:
        values, ok = check.run()
        lines.append(f"| {check.id} | {check.metric} | {check.video} | {check.expected} | {format_measured(values)} | "
                     f"{'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def write(path: str) -> None:
    """Replace the table between ``<!-- validation:start -->`` and ``<!-- validation:end -->`` in ``path`` (atomically).

    Args:
        path: A Markdown file holding both markers.

    Example:
        >>> write("docs/metrics.md")  # doctest: +SKIP
    """
    from ..fsutil import write_text

    with open(path) as fh:
        text = fh.read()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    write_text(path, f"{head}{START}\n{table()}\n{END}{tail}")


START, END = "<!-- validation:start -->", "<!-- validation:end -->"

if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Run every metric check; print the table or write it into a file.")
    ap.add_argument("--write", metavar="FILE", help="e.g. docs/metrics.md: replace its table in place")
    args = ap.parse_args()
    if args.write:
        write(args.write)
    else:
        print(table())
