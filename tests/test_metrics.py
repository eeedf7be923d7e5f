"""wanlab.metrics: each metric must recover a ground truth built into synthetic videos.

Videos come from ``wanlab.metrics.synthetic``: smooth random textures moved with the Fourier
shift theorem (exact for sub-pixel offsets), cropped from a larger periodic canvas so new content
enters at the borders as in a real pan. Small frames keep these fast; the Wan-sized checks of
``docs/metrics.md`` are in test_metrics_validation.py.
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
from wanlab.metrics import optical_flow, synthetic

H, W = 96, 128


def moving(vx: float, vy: float, t: int = 5, **kw) -> np.ndarray:
    """A (t, 96, 128, 3) pan at constant velocity (vx, vy) px/frame."""
    kw = {"width": W, "height": H, "background_sigma": 2.0, "contrast": 30.0, **kw}
    return synthetic.scene(pan=[(vx * i, vy * i) for i in range(t)], **kw)


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


def test_top_mean_is_exact_on_ties_and_random_values() -> None:
    rng = np.random.default_rng(0)
    for values in (np.zeros(10_000), np.r_[np.zeros(9_000), np.full(1_000, 2.0)], rng.random(12_345),
                   rng.integers(0, 3, 5_000).astype(np.float32)):
        k = max(1, int(values.size * 0.02))
        assert optical_flow.top_mean(values, 0.02) == pytest.approx(np.sort(values)[-k:].mean(), abs=1e-9)


def test_flows_are_shared_and_given_flows_replace_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = metrics.Flows._pairs

    def counting(self, pairs, *args):
        calls.append(len(pairs))
        return original(self, pairs, *args)

    monkeypatch.setattr(metrics.Flows, "_pairs", counting)
    result = metrics.motion(SimpleNamespace(frames=moving(3.0, 0, t=9)))
    assert calls == [8, 8]  # forward and backward flow, once each, for every metric
    assert tuple(result) == metrics.MOTION_KEYS
    assert all(isinstance(v, float) for v in result.values())
    assert result["flow_magnitude"] == pytest.approx(3.0, rel=0.05)
    assert result["dynamic_degree"] == 1.0 and result["static"] == 0.0 and math.isnan(result["temporal_flicker"])
    calls.clear()
    video = moving(2.0, 0, t=3)
    exact = np.zeros((2, H, W, 2), np.float32)
    exact[..., 0] = 2.0
    flows = metrics.Flows(video, forward=exact, backward=-exact)
    assert metrics.flow_magnitude(flows).mean == pytest.approx(2.0, abs=1e-6) and calls == []
    with pytest.raises(ValueError, match=re.escape("flows: were computed with method='dis', max_short_side=240; "
                                                   "got method='farneback', max_short_side=240")):
        metrics.flow(flows, "farneback")


# --------------------------------------------------------------------------- VBench rules


def test_static_video_has_no_motion() -> None:
    video = moving(0, 0, t=9)
    assert metrics.flow_magnitude(video).mean < 0.01
    flicker = metrics.temporal_flicker(video)
    assert flicker.static and flicker.mean == 1.0 and flicker.static_filter.exceeded == 0
    dyn = metrics.dynamic_degree(video)
    assert not dyn.dynamic and dyn.exceeded == 0
    assert metrics.warp_error(video).mean < 1e-6
    assert metrics.warped_flicker(video).mean == pytest.approx(1.0)


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


def test_static_filter_follows_vbench_rule() -> None:
    # 33 frames of 96x128: threshold 3 * 96 / 256 = 1.125 px, round(2 * 33 / 16) = 4 pairs may exceed
    # it, and both end-to-end scores must stay within 2 * 4 * 1.125 = 9 px.
    slow = metrics.static_filter(moving(0.2, 0, t=33))  # 6.4 px end to end (chained DIS: 10-30 % more)
    assert slow.threshold == pytest.approx(1.125) and slow.allowed == 4 and slow.end_threshold == pytest.approx(9.0)
    assert slow.static and slow.exceeded == 0
    assert np.all((slow.first_last > 6.4) & (slow.first_last < 6.4 * 1.35))
    drift = metrics.static_filter(moving(0.5, 0, t=33))  # 16 px end to end: moving, though no pair exceeds
    assert not drift.static and drift.exceeded == 0 and drift.first_last.min() > 9.0
    shaky = moving(0, 0, t=33).copy()
    for t in (3, 9, 15, 21, 27):  # five frames jump 2 px and back: five pairs pairs of large flow
        shaky[t] = moving(2.0, 0, t=2)[1]
    verdict = metrics.static_filter(shaky)
    assert verdict.exceeded == 10 and not verdict.static


def test_temporal_flicker_is_reported_for_static_clips_only() -> None:
    still = moving(0, 0, t=9, contrast=15.0)
    assert still.max() <= 235  # so +20 neither clips nor wraps
    flashing = still.copy()
    flashing[1::2] += 20
    flicker = metrics.temporal_flicker(flashing)
    assert flicker.static and flicker.per_pair == pytest.approx(np.full(8, (255 - 20) / 255))
    assert flicker.mean < metrics.temporal_flicker(still).mean - 0.05
    pan = metrics.temporal_flicker(moving(3.0, 0, t=9))  # flicker-free, but moving
    assert not pan.static and math.isnan(pan.mean) and np.isnan(pan.per_pair).all()
    assert not pan.static_filter.static


def test_warped_flicker_sees_brightness_jumps_through_motion() -> None:
    jitter = [0, 12, -6, 9, -12, 3, 15, -3, 6]
    clean = metrics.warped_flicker(moving(2.0, 0, t=9)).mean
    pan = metrics.warped_flicker(moving(2.0, 0, t=9, brightness=jitter)).mean
    still = metrics.warped_flicker(moving(0, 0, t=9, brightness=jitter)).mean
    assert clean > 0.995
    assert pan == pytest.approx(still, abs=0.002)
    assert still == pytest.approx(1 - np.abs(np.diff(jitter)).mean() / 255, abs=0.002)


# --------------------------------------------------------------------------- smoothness


def test_smoothness_ranks_constant_velocity_above_jerky_steps() -> None:
    kw = dict(width=320, height=192, object_size=(64, 48))
    linear = metrics.smoothness(synthetic.scene(synthetic.linear(6, 13, start=(20, 70)), **kw))
    jittered = metrics.smoothness(synthetic.scene(synthetic.jittered(6, 13, start=(20, 70)), **kw))
    jerky = metrics.smoothness(synthetic.scene(synthetic.random_steps(0, 6, 13, start=(20, 70)), **kw))
    assert linear.per_pair.shape == (6,)  # frames 1, 3, ..., 11 predicted
    assert linear.mean > 0.998  # the error floor: occlusion strips at the square's leading and trailing edges
    assert linear.mean > jittered.mean + 0.001 and linear.mean > jerky.mean + 0.0005


def test_smoothness_of_a_still_noisy_clip_is_its_noise() -> None:
    video = moving(0, 0, t=7, noise=4.0)
    f = video.astype(np.float64)
    by_hand = [(255 - np.abs((f[i] + f[i + 2]) / 2 - f[i + 1]).mean()) / 255 for i in (0, 2, 4)]
    assert metrics.smoothness(video).per_pair == pytest.approx(by_hand, abs=1e-4)  # DIS: ~0.05 px of flow on noise


# --------------------------------------------------------------------------- warp error


def test_warp_error_conventions_by_hand_with_exact_flow() -> None:
    video = moving(2.0, 0, t=3, width=128, height=96)  # 2 px/frame; half resolution: 1 px/frame
    exact = np.zeros((2, H, W, 2), np.float32)
    exact[..., 0] = 2.0
    assert metrics.warp_error(video, given_flow=(exact, -exact)).mean == 0.0  # leaving pixels dropped
    half = metrics.Flows(video, size=(H // 2, W // 2)).rgb.astype(np.float64) / 255
    hand = np.mean([((half[t][:, -1] - half[t][:, -2]) ** 2).sum() / (H // 2 * W // 2) for t in (0, 1)])
    given = (exact[:, ::2, ::2] / 2, -exact[:, ::2, ::2] / 2)
    assert metrics.warp_error(video, convention="evalcrafter", given_flow=given).mean == pytest.approx(hand, rel=1e-5)


def test_warp_error_orders_pan_and_noise_by_convention() -> None:
    pan, noisy = moving(8.0, 0, t=5), moving(0, 0, t=5, noise=3.0)
    assert metrics.warp_error(pan).mean < metrics.warp_error(noisy).mean
    assert (metrics.warp_error(pan, convention="evalcrafter").mean
            > metrics.warp_error(noisy, convention="evalcrafter").mean)
    zero = np.zeros((4, H // 2, W // 2, 2), np.float32)  # the same pixels, on the same half-resolution grid
    wanlab = metrics.warp_error(noisy, max_short_side=H // 2, given_flow=(zero, zero)).mean
    evalcrafter = metrics.warp_error(noisy, convention="evalcrafter", given_flow=(zero, zero)).mean
    assert evalcrafter == pytest.approx(3 * wanlab, rel=1e-5)  # channels summed, not averaged


# --------------------------------------------------------------------------- comparison


def test_psnr_ssim_identities() -> None:
    video = moving(1.0, 0, t=3)
    assert metrics.psnr(video, video).mean == math.inf
    assert metrics.ssim(video, video).per_frame == pytest.approx(np.ones(3))
    assert metrics.compare(video, video) == {"psnr": math.inf, "psnr_frame_mean": math.inf, "ssim": 1.0}


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
        (lambda v: metrics.flow(v.astype(np.float32)),
         "frames: must be uint8 (T, H, W, 3) with values 0-255; got dtype float32"),
        (lambda v: metrics.flow(v[..., 0]), "frames: must be uint8 (T, H, W, 3) (RGB frames); got shape (3, 96, 128)"),
        (lambda v: metrics.flow(np.concatenate([v, v[..., :1]], -1)), "got shape (3, 96, 128, 4)"),
        (lambda v: metrics.flow(v[:1]),
         "frames: must hold at least 2 frames (T >= 2) of at least 1x1 px; got shape (1, 96, 128, 3)"),
        (lambda v: metrics.smoothness(v[:2]), "at least 3 frames (T >= 3)"),
        (lambda v: metrics.motion(v[:2]), "at least 3 frames"),
        (lambda v: metrics.flow(v[:, :8, :8]),
         "frames: must give a working grid of at least 16x16 px for optical flow; got 8x8"),
        (lambda v: metrics.flow(v, max_short_side=8), "max_short_side: must be None or an integer >= 16 px; got 8"),
        (lambda v: metrics.flow(v, max_short_side=240.0),
         "max_short_side: must be None or an integer >= 16 px; got 240.0"),
        (lambda v: metrics.flow(v, "raft"), "method: must be one of ('dis', 'farneback'); got 'raft'"),
        (lambda v: metrics.dynamic_degree(v, fps=0), "fps: must be a positive number of frames per second; got 0"),
        (lambda v: metrics.temporal_flicker(v.tolist()),
         "frames: must be uint8 (T, H, W, 3) with values 0-255; got dtype int64"),
        (lambda v: metrics.temporal_flicker("clip.mp4"), "frames: must be a numpy uint8 array (T, H, W, 3), a list of "
                                                         "frames or a Video; got str"),
        (lambda v: metrics.warp_error(v, convention="raft"),
         "convention: must be one of ('wanlab', 'evalcrafter'); got 'raft'"),
        (lambda v: metrics.warp_error(v[:, :30, :30], convention="evalcrafter"),
         "frames: must be at least 32x32 px for convention='evalcrafter', which works at half resolution; "
         "got 30x30"),
        (lambda v: metrics.warp_error(v, given_flow=np.zeros(3)), "given_flow: must be a pair (forward, backward)"),
        (lambda v: metrics.warp_error(metrics.Flows(v), convention="evalcrafter"), "video: must be a video for "
                                                                                  "convention='evalcrafter'"),
        (lambda v: metrics.warp_error(v, given_flow=(np.zeros((2, 9, 9, 2)),) * 2),
         "forward: must be a float array of shape (2, 96, 128, 2) (T-1 pairs, working h, w, (dx, dy)); "
         "got float64 (2, 9, 9, 2)"),
        (lambda v: metrics.Flows(v, forward=np.full((2, 96, 128, 2), np.nan)),
         "forward: must be finite; got 49152 non-finite"),
        (lambda v: metrics.psnr(v, v.astype(np.int16)), "b: must be uint8"),
        (lambda v: metrics.compare(v, v[:, :, :64]),
         "a and b: must have the same shape (T, H, W, 3); got a (3, 96, 128, 3) and b (3, 96, 64, 3)"),
        (lambda v: metrics.psnr(v, v[:2]), "got a (3, 96, 128, 3) and b (2, 96, 128, 3)"),
        (lambda v: metrics.ssim(v[:, :5, :5], v[:, :5, :5]), "frames: ssim needs frames of at least 7x7 px"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call(moving(1.0, 0, t=3))


def test_synthetic_scene_rejects_mismatched_lengths() -> None:
    message = "positions, pan, brightness, frames: must give one frame count; got [3, 4]"
    with pytest.raises(ValueError, match=re.escape(message)):
        synthetic.scene(synthetic.linear(1, 3), pan=synthetic.linear(1, 4))


def test_import_is_lazy() -> None:
    code = "import sys, wanlab.metrics; print('cv2' in sys.modules or 'skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
