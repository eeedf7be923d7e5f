"""Video: bit-exact lossless round trip, playable mp4, sidecar record, inline HTML, frame grid."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from wanlab import Params, Video


@pytest.fixture(scope="module")
def noise_frames():
    return np.random.default_rng(0).integers(0, 256, size=(9, 48, 64, 3), dtype=np.uint8)


def test_save_mp4_writes_playable_lossless_and_sidecar(tmp_path, noise_frames):
    params = Params(prompt="noise", width=64, height=48, num_frames=9, seed=3)
    video = Video(noise_frames, params=params, model={"id": "x", "fingerprint": "f"}, timings={"total": 1.0})
    path = video.save(tmp_path / "clip.mp4")
    assert path.exists() and (tmp_path / "clip.lossless.mkv").exists() and (tmp_path / "clip.json").exists()
    sidecar = json.loads((tmp_path / "clip.json").read_text())
    assert sidecar["digest"] == video.digest and sidecar["params"]["seed"] == 3 and sidecar["fps"] == 16
    back = Video.load(path)
    assert np.array_equal(back.frames, noise_frames) and back.digest == video.digest
    assert back.params == params and back.model == {"id": "x", "fingerprint": "f"} and back.fps == 16


def test_playable_mp4_is_h264_yuv420p(tmp_path, noise_frames):
    import imageio_ffmpeg

    path = Video(noise_frames).save(tmp_path / "clip.mp4")
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True).stderr
    assert "h264" in probe and "yuv420p" in probe


def test_mp4_without_lossless_copy_reads_back_approximately(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :, None], (5, 48, 1, 3))
    path = Video(smooth).save(tmp_path / "clip.mp4", lossless=False)
    assert not (tmp_path / "clip.lossless.mkv").exists()
    back = Video.load(path)
    assert back.frames.shape == smooth.shape
    assert np.abs(back.frames.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize("ext", ["mkv", "npz"])
def test_lossless_formats_round_trip_exactly(tmp_path, noise_frames, ext):
    path = Video(noise_frames, fps=8).save(tmp_path / f"clip.{ext}")
    back = Video.load(path)
    assert back.digest == Video(noise_frames).digest and back.fps == 8


def test_odd_sizes_survive(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 17, 23, 3), dtype=np.uint8)
    back = Video.load(Video(frames).save(tmp_path / "odd.mp4"))
    assert np.array_equal(back.frames, frames)


def test_gif_is_written(tmp_path, noise_frames):
    back = Video.load(Video(noise_frames).save(tmp_path / "clip.gif"))
    assert back.frames.shape == noise_frames.shape


def test_digest_depends_on_every_pixel_and_shape(noise_frames):
    changed = noise_frames.copy()
    changed[4, 10, 10, 1] ^= 1
    assert Video(changed).digest != Video(noise_frames).digest
    assert Video(noise_frames.reshape(9, 64, 48, 3)).digest != Video(noise_frames).digest


def test_bad_frames_and_paths_are_clear_errors(tmp_path, noise_frames):
    with pytest.raises(ValueError, match=r"^frames: must be uint8 \(T, H, W, 3\) with values 0-255; got dtype float32"):
        Video(noise_frames.astype(np.float32))
    with pytest.raises(ValueError,
                       match=r"^frames: must be uint8 \(T, H, W, 3\) \(RGB frames\); got shape \(9, 48, 64\)"):
        Video(noise_frames[..., 0])
    with pytest.raises(ValueError, match=r"^fps: must be a positive number; got 0"):
        Video(noise_frames, fps=0)
    with pytest.raises(ValueError, match=r"^path: must end in .mp4, .mkv, .gif or .npz; got '.*clip.avi'"):
        Video(noise_frames).save(tmp_path / "clip.avi")
    with pytest.raises(FileNotFoundError, match="no such video file"):
        Video.load(tmp_path / "missing.mp4")


def test_repr_html_plays_inline_at_fps(noise_frames):
    html = Video(noise_frames, fps=16, params=Params(prompt="a <b> cat", width=64, height=48, num_frames=9,
                                                    seed=1))._repr_html_()
    assert html.count("<video") == 1 and "data:video/mp4;base64," in html and "autoplay loop" in html
    assert "a &lt;b&gt; cat" in html and "16 fps" in html


def test_frame_grid_labels_frame_indices(noise_frames):
    from wanlab.plots import frame_grid

    fig = frame_grid(Video(noise_frames), n=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["frame 0", "frame 3", "frame 5", "frame 8"]
    fig = frame_grid(Video(noise_frames), frames=[0, 2])
    assert [ax.get_title() for ax in fig.axes] == ["frame 0", "frame 2"]
    with pytest.raises(ValueError, match=r"^frames: must be indices in 0..8; got \[9\]"):
        frame_grid(Video(noise_frames), frames=[9])


def test_generated_video_round_trips_with_its_record(pipe, small, tmp_path):
    video = pipe.generate(prompt="a cat", seed=2, **small)
    back = Video.load(video.save(tmp_path / "gen.mp4"))
    assert back.digest == video.digest and back.params == video.params
    assert back.record["settings"]["max_sequence_length"] == 512
    assert back.record["environment"]["versions"]["torch"]
