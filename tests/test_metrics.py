"""wanlab.metrics: each metric must recover a ground truth built into synthetic videos.

Videos are a smooth random RGB texture (Gaussian-filtered noise) shifted with the
Fourier shift theorem, which is exact for sub-pixel offsets, and cropped from a
larger periodic canvas so new content enters at the borders as in a real pan.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from wanlab import metrics

H, W = 96, 128


def texture_video(
    offsets, h: int = H, w: int = W, sigma: float = 2.0, seed: int = 0, contrast: float = 30.0
) -> np.ndarray:
    """uint8 (T, h, w, 3): frame t is the texture shifted by offsets[t] = (dx, dy) px (right, down).

    ``sigma``: blur of the noise in px; ``contrast``: standard deviation around mid-gray 128.
    """
    pad = 24
    rng = np.random.default_rng(seed)
    hp, wp = h + 2 * pad, w + 2 * pad
    ky = np.fft.fftfreq(hp)[:, None, None]
    kx = np.fft.fftfreq(wp)[None, :, None]
    spec = np.fft.fft2(rng.standard_normal((hp, wp, 3)), axes=(0, 1))
    spec *= np.exp(-2 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    shifted = [
        np.fft.ifft2(spec * np.exp(-2j * np.pi * (kx * dx + ky * dy)), axes=(0, 1)).real
        for dx, dy in np.asarray(offsets, dtype=float)
    ]
    frames = np.stack(shifted)[:, pad : pad + h, pad : pad + w]
    frames = (frames - frames.mean()) / frames.std() * contrast + 128
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def moving(vx: float, vy: float, t: int = 5, **kw) -> np.ndarray:
    """Constant velocity (vx, vy) px/frame."""
    return texture_video([(vx * i, vy * i) for i in range(t)], **kw)


DIRECTIONS = {"x": (1.0, 0.0), "y": (0.0, 1.0), "diagonal": (math.sqrt(0.5), math.sqrt(0.5))}


# --------------------------------------------------------------------------- flow


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("speed", [0.5, 1.0, 3.0, 8.0])
def test_flow_recovers_translation(speed: float, direction: str) -> None:
    ux, uy = DIRECTIONS[direction]
    video = moving(speed * ux, speed * uy)
    mag = metrics.flow_magnitude(video)
    assert mag.per_pair.shape == (4,)
    assert mag.mean == pytest.approx(speed, rel=0.05)
    mean_vec = metrics.flow(video).mean(axis=(0, 1, 2))
    angle = math.degrees(math.atan2(mean_vec[1], mean_vec[0]))
    assert angle == pytest.approx(math.degrees(math.atan2(uy, ux)), abs=2.0)


def test_flow_is_reported_in_original_pixels_after_downscaling() -> None:
    video = moving(4.0, -2.0, t=3)
    f = metrics.flow(video, max_short_side=48)  # 96x128 -> 48x64 working grid
    assert f.shape == (2, 48, 64, 2) and f.dtype == np.float32
    assert f[..., 0].mean() == pytest.approx(4.0, rel=0.05)
    assert f[..., 1].mean() == pytest.approx(-2.0, rel=0.05)
    assert metrics.flow(video).shape == (2, H, W, 2)  # short side <= 240: no downscaling


def test_farneback_recovers_translation() -> None:
    video = moving(3 * math.sqrt(0.5), 3 * math.sqrt(0.5))
    assert metrics.flow_magnitude(video, "farneback").mean == pytest.approx(3.0, rel=0.05)


# --------------------------------------------------------------------------- motion metrics


def test_static_video_has_no_motion() -> None:
    video = moving(0, 0, t=9)
    assert metrics.flow_magnitude(video).mean < 0.01
    assert metrics.temporal_flicker(video).mean == 1.0
    dyn = metrics.dynamic_degree(video)
    assert not dyn.dynamic and dyn.exceeded == 0
    assert metrics.warp_error(video).mean < 1e-6


def test_dynamic_degree_follows_vbench_rule() -> None:
    fast = metrics.dynamic_degree(moving(8.0, 0, t=17))
    # 16 fps -> every 2nd frame: 9 sampled frames, 8 pairs 2 frames (16 px) apart
    assert fast.dynamic and fast.interval == 2 and fast.per_pair.shape == (8,)
    assert fast.threshold == pytest.approx(6 * min(H, W) / 256)
    assert fast.required == round(4 * 9 / 16)
    # top 5 % of a pure translation = the displacement, plus estimation noise at the borders
    assert np.all((fast.per_pair > 16 * 0.95) & (fast.per_pair < 16 * 1.2))
    slow = metrics.dynamic_degree(moving(0.5, 0, t=17))  # 1 px per sampled pair < 2.25 px
    assert not slow.dynamic and slow.exceeded == 0
    at_8fps = metrics.dynamic_degree(moving(8.0, 0, t=9), fps=8)  # consecutive frames, 8 px
    assert at_8fps.interval == 1 and at_8fps.per_pair.shape == (8,)
    assert np.all((at_8fps.per_pair > 8 * 0.95) & (at_8fps.per_pair < 8 * 1.2))


def test_alternating_brightness_flickers() -> None:
    static = moving(0, 0, t=9, contrast=15.0)
    assert static.max() <= 235  # so +20 neither clips nor wraps
    flashing = static.copy()
    flashing[1::2] += 20
    flicker = metrics.temporal_flicker(flashing)
    assert flicker.per_pair == pytest.approx(np.full(8, (255 - 20) / 255))
    assert flicker.mean < metrics.temporal_flicker(static).mean - 0.05


def test_constant_velocity_is_smoother_than_random_jumps() -> None:
    steady = metrics.smoothness(moving(2.0, 1.0, t=9))
    jumps = metrics.smoothness(texture_video(np.random.default_rng(1).uniform(-4, 4, (9, 2))))
    assert steady.per_pair.shape == (4,)  # frames 1, 3, 5, 7 predicted
    assert steady.mean > 0.995
    assert steady.mean > jumps.mean + 0.03


def test_warp_error_separates_translation_from_noise() -> None:
    translation = metrics.warp_error(moving(3.0, 1.0, t=5))
    noise = metrics.warp_error(np.concatenate([moving(0, 0, t=1, seed=s) for s in range(5)]))
    assert translation.mean < 1e-4
    assert noise.mean > 100 * translation.mean


def test_motion_shares_one_flow_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = metrics._Motion._pairs

    def counting(self, pairs, *args):
        calls.append(len(pairs))
        return original(self, pairs, *args)

    monkeypatch.setattr(metrics._Motion, "_pairs", counting)
    result = metrics.motion(SimpleNamespace(frames=moving(3.0, 0, t=9)))
    assert calls == [8, 8]  # forward and backward flow, once each
    assert set(result) == {
        "flow_magnitude", "dynamic_degree", "dynamic_score", "dynamic_threshold",
        "temporal_flicker", "smoothness", "warp_error",
    }
    assert all(isinstance(v, float) for v in result.values())
    assert result["flow_magnitude"] == pytest.approx(3.0, rel=0.05)
    assert result["dynamic_degree"] == 1.0


# --------------------------------------------------------------------------- comparison


def test_psnr_ssim_identities() -> None:
    video = moving(1.0, 0, t=3)
    assert metrics.psnr(video, video).mean == math.inf
    assert metrics.ssim(video, video).per_frame == pytest.approx(np.ones(3))
    assert metrics.compare(video, video) == {"psnr": math.inf, "ssim": 1.0}


@pytest.mark.parametrize("sigma", [3.0, 10.0])
def test_psnr_of_known_gaussian_noise(sigma: float) -> None:
    gray = np.full((3, 64, 64, 3), 128, np.uint8)
    noisy = np.clip(np.rint(128 + np.random.default_rng(0).normal(0, sigma, gray.shape)), 0, 255).astype(np.uint8)
    scores = metrics.psnr(gray, noisy)
    assert scores.per_frame.shape == (3,)
    assert scores.mean == pytest.approx(20 * math.log10(255 / sigma), abs=0.5)
    assert 0 < metrics.ssim(gray, noisy).mean < 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: metrics.flow(v.astype(np.float32)), "frames: must be uint8 (T, H, W, 3) with values 0-255; got dtype float32"),
        (lambda v: metrics.flow(v[..., 0]), "frames: must be uint8 (T, H, W, 3) (RGB frames); got shape (3, 96, 128)"),
        (lambda v: metrics.flow(np.concatenate([v, v[..., :1]], -1)), "got shape (3, 96, 128, 4)"),
        (lambda v: metrics.flow(v[:1]), "frames: must hold at least 2 frames (T >= 2) of at least 1x1 px; got shape (1, 96, 128, 3)"),
        (lambda v: metrics.smoothness(v[:2]), "at least 3 frames (T >= 3)"),
        (lambda v: metrics.motion(v[:2]), "at least 3 frames"),
        (lambda v: metrics.flow(v[:, :8, :8]), "at least 16x16 px; got 8x8"),
        (lambda v: metrics.flow(v, "raft"), "method must be one of ('dis', 'farneback'); got 'raft'"),
        (lambda v: metrics.dynamic_degree(v, fps=0), "fps must be a positive number"),
        (lambda v: metrics.temporal_flicker(v.tolist()), "frames: must be uint8 (T, H, W, 3) with values 0-255; got dtype int64"),
        (lambda v: metrics.temporal_flicker("clip.mp4"), "frames: must be a numpy uint8 array (T, H, W, 3), a list of "
                                                         "frames or a Video; got str"),
        (lambda v: metrics.psnr(v, v.astype(np.int16)), "b: must be uint8"),
        (
            lambda v: metrics.compare(v, v[:, :, :64]),
            "same shape (T, H, W, 3); got a (3, 96, 128, 3) and b (3, 96, 64, 3)",
        ),
        (lambda v: metrics.psnr(v, v[:2]), "got a (3, 96, 128, 3) and b (2, 96, 128, 3)"),
        (lambda v: metrics.ssim(v[:, :5, :5], v[:, :5, :5]), "at least 7x7 px"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call(moving(1.0, 0, t=3))


def test_import_is_lazy() -> None:
    code = "import sys, wanlab.metrics; print('cv2' in sys.modules or 'skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
