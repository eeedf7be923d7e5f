"""wanlab.show, wanlab.widgets: checked through the HTML they produce, widget state and the image bytes
they send (decoded back to pixels), and a patched IPython.display."""
from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest

import wanlab
from wanlab.video import Video


def moving_square(t: int = 17, h: int = 32, w: int = 32, fps: float = 16.0, offset: int = 0) -> Video:
    """A white square moving 1 px/frame over a background whose blue channel encodes the frame index,
    so every frame differs and its index can be read back from its pixels."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        x = (i + offset) % (w - 8)
        frames[i, ..., 2] = (i * 7) % 256
        frames[i, 8:16, x:x + 8] = 255
    return Video(frames, fps=fps)


def decode(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img[..., ::-1]


def shrink(img: np.ndarray, zoom: int) -> np.ndarray:
    return img[::zoom, ::zoom]


# --------------------------------------------------------------------------------------- show()
def data_uris(markup: str) -> list[list[str]]:
    import json

    config = re.search(r"var cfg = (\{.*?\});\n", markup, re.S)
    assert config, "player config not found"
    return json.loads(config.group(1))["frames"]


def test_show_is_lazy_public_api():
    assert wanlab.show is wanlab.show  # resolves through the lazy table
    from wanlab.player import Player

    assert isinstance(wanlab.show(moving_square()), Player)


@pytest.mark.parametrize("first", ["import wanlab.widgets", "from wanlab.player import Player", "import wanlab"])
def test_show_is_callable_whatever_was_imported_first(first):
    """``wanlab.show`` stays the function whichever module is imported first."""
    import subprocess
    import sys

    code = (f"{first}\nimport numpy as np, wanlab\n"
            "p = wanlab.show(np.zeros((3, 16, 16, 3), np.uint8))\n"
            "assert 'wanlab-show' in p._repr_html_(), p\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_show_single_video_embeds_every_frame_exactly():
    video = moving_square(t=9)
    player = wanlab.show(video)
    markup = player._repr_html_()
    frames = data_uris(markup)
    assert len(frames) == 1 and len(frames[0]) == 9
    assert markup.count('class="wanlab-slider"') == 1 and markup.count('class="wanlab-play"') == 1
    assert 'max="8"' in markup
    for i in (0, 4, 8):  # PNG for small frames: pixels come back exact
        uri = frames[0][i]
        assert uri.startswith("data:image/png;base64,")
        np.testing.assert_array_equal(decode(base64.b64decode(uri.split(",", 1)[1])), video.frames[i])
    assert "http://" not in markup and "https://" not in markup  # self-contained


def test_show_side_by_side_labels_titles_and_fps():
    a, b = moving_square(), moving_square(offset=3)
    player = wanlab.show({"guidance 3": a, "guidance <5>": b})
    markup = player.to_html()
    assert player.labels == ["guidance 3", "guidance <5>"]
    assert "guidance &lt;5&gt;" in markup and "guidance <5>" not in markup.split("<script>")[0]
    assert markup.count('class="wanlab-frame"') == 2
    assert markup.count('class="wanlab-slider"') == 1  # one shared scrubber
    assert '"fps": 16.0' in markup
    assert wanlab.show([a, b], titles=["x", "y"]).labels == ["x", "y"]
    assert wanlab.show([a, a]).labels == ["video 0", "video 1"]
    assert wanlab.show({"a": a}, fps=8).fps == 8.0
    assert wanlab.show(moving_square(fps=24)).fps == 24.0


def test_show_different_lengths_share_one_index():
    player = wanlab.show({"long": moving_square(t=17), "short": moving_square(t=5)})
    assert player.num_frames == 17
    frames = data_uris(player.to_html())
    assert [len(f) for f in frames] == [17, 5]  # the player holds the short one at its last frame
    assert "Math.min(i, list.length - 1)" in player.to_html()


def test_show_jpeg_for_large_frames_and_explicit_formats():
    big = moving_square(t=3, h=480, w=832)
    uris = data_uris(wanlab.show(big).to_html())[0]
    assert uris[0].startswith("data:image/jpeg;base64,")
    assert data_uris(wanlab.show(moving_square(t=3), format="jpeg").to_html())[0][0].startswith("data:image/jpeg")
    with pytest.raises(ValueError, match="format"):
        wanlab.show(big, format="gif")
    with pytest.raises(ValueError, match="zoom"):
        wanlab.show(big, zoom=0)
    with pytest.raises(ValueError, match="titles"):
        wanlab.show([big, big], titles=["one"])
    with pytest.raises(ValueError, match="at least one"):
        wanlab.show({})


def test_show_max_width_shrinks_large_videos_for_display():
    big = moving_square(t=2, h=480, w=832)
    markup = wanlab.show(big, max_width=416).to_html()
    assert 'width="416" height="240"' in markup and "832x480, 2 frames, shown at 416x240" in markup
    assert decode(base64.b64decode(data_uris(markup)[0][0].split(",", 1)[1])).shape == (240, 416, 3)
    assert 'width="832"' in wanlab.show(big, max_width=1000).to_html()
    with pytest.raises(ValueError, match="max_width"):
        wanlab.show(big, max_width=0)


def test_show_keeps_within_its_size_budget_and_says_so():
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (12, 480, 832, 3), dtype=np.uint8)  # compresses badly
    with pytest.warns(UserWarning, match=r"wanlab.show: the videos would embed about .* MB, more than "
                                         r"max_bytes=1.0 MB; shown at \d+x\d+"):
        markup = wanlab.show(noise, max_bytes=2**20).to_html()
    uris = data_uris(markup)[0]
    assert sum(len(u) for u in uris) <= 2**20 and "shown at" in markup
    full = data_uris(wanlab.show(noise, max_bytes=None).to_html())[0]
    assert sum(len(u) for u in full) > 2**20  # None embeds them as they are


def test_show_zooms_small_videos_pixelated():
    markup = wanlab.show(moving_square(h=32, w=48)).to_html()
    assert 'width="384" height="256"' in markup and "image-rendering:pixelated" in markup
    assert 'width="48" height="32"' in wanlab.show(moving_square(h=32, w=48), zoom=1).to_html()


def test_show_accepts_bare_arrays_and_saves_a_page(tmp_path):
    frames = moving_square(t=4).frames
    page = wanlab.show(frames).save(tmp_path / "p.html")
    assert page.read_text().startswith("<!doctype html>")


def test_player_display_uses_ipython_display(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    player = wanlab.show(moving_square(t=3))
    player.display()
    assert shown == [player]


# ------------------------------------------------------------------------------------ FrameCache
def test_frame_cache_encodes_lazily_once_per_frame():
    from wanlab.widgets import FrameCache

    video = moving_square(t=81)
    cache = FrameCache(video.frames)
    assert cache.encodes == 0 and cache.cached == []
    first = cache[40]
    assert cache[40] is first and cache.encodes == 1
    np.testing.assert_array_equal(decode(first), video.frames[40])
    with pytest.raises(IndexError):
        cache[81]


# ----------------------------------------------------------------------------------- FrameViewer
def test_frame_viewer_slider_changes_the_image_bytes():
    from wanlab.widgets import FrameViewer

    video = moving_square(t=17)
    viewer = FrameViewer(video, title="square")
    z = viewer.cache.zoom
    assert z == 8  # 32 px is enlarged to 256 px, as wanlab.show and a Video show it
    before = viewer.image.value
    np.testing.assert_array_equal(shrink(decode(before), z), video.frames[0])
    viewer.slider.value = 7  # what the browser does when the slider moves
    after = viewer.image.value
    assert after != before
    np.testing.assert_array_equal(shrink(decode(after), z), video.frames[7])
    assert viewer.label.value == "frame 7 / 16 · t = 0.44 s"
    assert viewer.index == 7 and np.array_equal(viewer.frame, video.frames[7])
    assert viewer.play.max == viewer.slider.max == 16
    assert viewer.play.interval == round(1000 / 16)


def test_frame_viewer_scrubbing_encodes_only_frames_looked_at():
    from wanlab.widgets import FrameViewer

    viewer = FrameViewer(moving_square(t=81))
    for i in (40, 41, 40, 80, 0, 41):
        viewer.index = i
    assert viewer.cache.cached == [0, 40, 41, 80]
    assert viewer.cache.encodes == 4
    with pytest.raises(ValueError, match="0..80"):
        viewer.index = 81


def test_frame_viewer_fps_and_start_index():
    from wanlab.widgets import FrameViewer

    viewer = FrameViewer(moving_square(t=9, fps=8.0), index=4, zoom=1)
    assert viewer.index == 4 and viewer.label.value == "frame 4 / 8 · t = 0.50 s"
    assert viewer.play.interval == 125
    np.testing.assert_array_equal(decode(viewer.image.value), viewer.video.frames[4])


def test_frame_viewer_shows_through_ipython_display(monkeypatch):
    import IPython.display

    from wanlab.widgets import FrameViewer

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    viewer = FrameViewer(moving_square(t=5))
    IPython.display.display(viewer)
    bundle = viewer._repr_mimebundle_()
    assert shown == [viewer]
    assert "application/vnd.jupyter.widget-view+json" in bundle


# --------------------------------------------------------------------------------------- Compare
def test_compare_shows_the_same_index_for_every_video():
    from wanlab.widgets import Compare

    videos = {"a": moving_square(), "b": moving_square(offset=5), "short": moving_square(t=5)}
    cmp = Compare(videos, metrics=False)
    assert list(cmp.images) == ["a", "b", "short"]
    z = cmp.caches["a"].zoom
    cmp.slider.value = 3
    assert cmp.indices == {"a": 3, "b": 3, "short": 3}
    for label, video in videos.items():
        np.testing.assert_array_equal(shrink(decode(cmp.images[label].value), z), video.frames[3])
    cmp.index = 12
    assert cmp.indices == {"a": 12, "b": 12, "short": 4}  # the short one holds its last frame
    for label, video in videos.items():
        np.testing.assert_array_equal(shrink(decode(cmp.images[label].value), z), video.frames[cmp.indices[label]])
    assert cmp.label.value.startswith("frame 12 / 16")
    assert cmp.metrics is None and cmp.table not in cmp.children


def test_compare_metrics_table():
    from wanlab.widgets import Compare

    a = moving_square()
    noisy = Video(np.clip(a.frames.astype(int) + np.random.default_rng(0).integers(-9, 10, a.frames.shape), 0, 255)
                  .astype(np.uint8))
    cmp = Compare([a, noisy], titles=["clean", "noisy"])
    table = cmp.metrics
    assert list(table.index) == ["clean", "noisy"]
    assert math.isinf(table.loc["clean", "psnr"]) and table.loc["clean", "ssim"] == pytest.approx(1.0)
    assert 20 < table.loc["noisy", "psnr"] < 50 and table.loc["noisy", "ssim"] < 1
    assert {"flow_magnitude", "temporal_flicker", "warp_error"} <= set(table.columns)
    assert "<table" in cmp.table.value and "∞" in cmp.table.value and "noisy" in cmp.table.value
    cmp2 = Compare({"clean": a, "noisy": noisy}, reference="noisy")
    assert math.isinf(cmp2.metrics.loc["noisy", "psnr"])
    with pytest.raises(ValueError, match="reference"):
        Compare({"clean": a}, reference="nope")


# --------------------------------------------------------------------------------- SweepExplorer
def sweep_table(tmp_path=None):
    """A sweep table and a loader, without running a sweep: the video of each point encodes its values."""
    import pandas as pd

    rows, videos = [], {}
    point = 0
    for seed in (1, 2):
        for gs in (3.0, 5.0, 7.0):
            status = "failed" if (seed, gs) == (2, 7.0) else "done"
            rows.append({"point": point, "seed": seed, "guidance_scale": gs, "status": status,
                         "error": "RuntimeError: boom" if status == "failed" else None, "seconds": 0.1 * point,
                         "flow_magnitude": gs * 10 + seed if status == "done" else math.nan,
                         "temporal_flicker": 0.9 - 0.01 * point, "key": f"k{point}", "path": None})
            videos[f"k{point}"] = moving_square(t=5 + point, offset=point)
            point += 1
    df = pd.DataFrame(rows)
    loaded = []

    def loader(row):
        loaded.append(row["key"])
        return videos[row["key"]]

    return df, loader, videos, loaded


def test_sweep_explorer_selection_shows_the_matching_run():
    from wanlab.widgets import FrameViewer, SweepExplorer

    df, loader, videos, loaded = sweep_table()
    ex = SweepExplorer(df, params=["seed", "guidance_scale"], loader=loader)
    assert list(ex.dropdowns) == ["seed", "guidance_scale"]
    assert [v for _, v in ex.dropdowns["guidance_scale"].options] == [3.0, 5.0, 7.0]
    assert ex.selected == {"seed": 1, "guidance_scale": 3.0}
    assert ex.metric == "flow_magnitude" and ex.x == "guidance_scale"
    assert ex.row["key"] == "k0" and ex.video is videos["k0"]

    ex.dropdowns["guidance_scale"].value = 5.0  # what the browser does
    assert ex.row["key"] == "k1" and ex.video is videos["k1"]
    assert isinstance(ex.viewer, FrameViewer) and ex.viewer_box.children == (ex.viewer,)
    np.testing.assert_array_equal(shrink(decode(ex.viewer.image.value), ex.viewer.cache.zoom), videos["k1"].frames[0])
    assert ex.marked == (5.0, 51.0)  # the selected point is the one marked on the plot
    assert "51" in ex.table.value
    ax = ex.figure.axes[0]
    assert ax.get_xlabel() == "guidance_scale" and ax.get_ylabel() == "flow_magnitude"
    assert bytes(ex.plot.value).startswith(b"\x89PNG")

    ex.dropdowns["seed"].value = 2
    assert ex.row["key"] == "k4" and ex.marked == (5.0, 52.0)
    ex.select(seed=1, guidance_scale=7.0)
    assert ex.row["key"] == "k2" and ex.video is videos["k2"]
    assert loaded.count("k1") == 1  # loaded videos are kept
    ex.select(guidance_scale=5.0)
    assert loaded.count("k1") == 1


def test_sweep_explorer_shows_the_effect_of_x_over_seeds():
    from wanlab.widgets import SweepExplorer

    df, loader, _, _ = sweep_table()
    ex = SweepExplorer(df, params=["seed", "guidance_scale"], loader=loader)
    means = ex.effects.means.set_index("guidance_scale")
    assert means.loc[3.0, "mean"] == 31.5 and means.loc[5.0, "mean"] == 51.5  # flow = 10 gs + seed
    assert means.loc[7.0, "seeds"] == 1  # seed 2 failed there
    diffs = ex.effects.differences.set_index(["a", "b"])
    assert diffs.loc[(3.0, 5.0), "difference"] == 20.0  # paired on seeds 1 and 2
    assert "flow_magnitude by guidance_scale" in ex.effects_pane.value
    ex.metric_dropdown.value = "temporal_flicker"
    assert ex.effects.metric == "temporal_flicker" and "temporal_flicker by" in ex.effects_pane.value
    ex.metric_dropdown.value = "seconds"
    assert ex.effects is None and ex.effects_pane.value == ""
    one_seed = SweepExplorer(df[df["seed"] == 1], params=["seed", "guidance_scale"], loader=loader)
    assert one_seed.effects is None and one_seed.effects_pane.value == ""


def test_sweep_explorer_keeps_the_frame_index_across_selections():
    from wanlab.widgets import SweepExplorer

    df, loader, _, _ = sweep_table()
    ex = SweepExplorer(df, params=["seed", "guidance_scale"], loader=loader)
    ex.viewer.index = 3
    ex.select(guidance_scale=5.0)
    assert ex.viewer.index == 3
    ex.select(seed=2, guidance_scale=7.0)  # failed: no viewer
    ex.select(seed=1, guidance_scale=3.0)
    assert ex.viewer.index == 3


def test_sweep_explorer_reuses_encoded_frames_and_closes_old_viewers():
    from wanlab.widgets import SweepExplorer

    df, loader, _, _ = sweep_table()
    ex = SweepExplorer(df, params=["seed", "guidance_scale"], loader=loader)
    first = ex.viewer
    first.index = 2
    cache = first.cache
    ex.select(guidance_scale=5.0)
    assert first.comm is None and first.slider.comm is None  # closed, in the browser too
    ex.select(guidance_scale=3.0)
    assert ex.viewer.cache is cache and cache.cached == [0, 2] and cache.encodes == 2  # nothing re-encoded


def test_sweep_explorer_failed_point_and_metric_choice():
    from wanlab.widgets import SweepExplorer

    df, loader, _, loaded = sweep_table()
    ex = SweepExplorer(df, params=["seed", "guidance_scale"], loader=loader, metric="temporal_flicker")
    assert ex.metric_dropdown.options == ("flow_magnitude", "temporal_flicker", "seconds")
    ex.select(seed=2, guidance_scale=7.0)
    assert ex.video is None and ex.viewer is None and ex.viewer_box.children == ()
    assert "failed" in ex.status.value and "RuntimeError: boom" in ex.status.value
    assert "k5" not in loaded and ex.marked is None
    ex.metric_dropdown.value = "seconds"
    assert ex.figure.axes[0].get_ylabel() == "seconds"
    with pytest.raises(ValueError, match="metric"):
        SweepExplorer(df, params=["seed"], loader=loader, metric="nope")
    with pytest.raises(ValueError, match="one of"):
        ex.select(seed=9)
    with pytest.raises(ValueError, match="not swept"):
        ex.select(steps=3)


def test_sweep_explorer_zip_table_snaps_to_an_existing_point():
    import pandas as pd

    from wanlab.widgets import SweepExplorer

    videos = {f"k{i}": moving_square(t=4, offset=i) for i in range(3)}
    df = pd.DataFrame({"point": [0, 1, 2], "steps": [2, 4, 8], "flow_shift": [1.0, 3.0, 5.0],
                       "status": "done", "flow_magnitude": [1.0, 2.0, 3.0], "key": list(videos)})
    ex = SweepExplorer(df, params=["steps", "flow_shift"], loader=lambda row: videos[row["key"]])
    ex.dropdowns["steps"].value = 8
    assert ex.selected == {"steps": 8, "flow_shift": 5.0} and ex.video is videos["k2"]


def test_sweep_explorer_default_loader_reads_paths(tmp_path):
    import pandas as pd

    from wanlab.widgets import SweepExplorer

    video = moving_square(t=5)
    path = video.save(tmp_path / "a.mkv")
    df = pd.DataFrame({"seed": [1, 2], "status": ["done", "done"], "flow_magnitude": [1.0, 2.0],
                       "path": [str(path), str(tmp_path / "missing.mkv")]})
    ex = SweepExplorer(df)  # params inferred: the Params fields that vary
    assert ex.params == ["seed"]
    np.testing.assert_array_equal(ex.video.frames, video.frames)
    ex.select(seed=2)
    assert ex.video is None and "could not load" in ex.status.value


def test_sweep_explorer_on_a_real_sweep_result(pipe, tmp_path):
    from wanlab.widgets import SweepExplorer

    sweep = wanlab.Sweep(base=wanlab.Params(prompt="a red fox", width=32, height=32, num_frames=5, steps=2),
                         grid={"seed": [1, 2], "guidance_scale": [3.0, 5.0]})
    result = sweep.run(pipe, store=tmp_path / "runs", progress=False)
    ex = SweepExplorer(result)
    assert ex.params == list(result.sweep.swept)
    ex.select(seed=2, guidance_scale=5.0)
    expected = result.video(seed=2, guidance_scale=5.0)
    assert ex.video.digest == expected.digest
    row = result.df[(result.df.seed == 2) & (result.df.guidance_scale == 5.0)].iloc[0]
    assert ex.marked == (5.0, pytest.approx(row["flow_magnitude"]))


def test_sweep_explorer_rejects_other_inputs():
    from wanlab.widgets import SweepExplorer

    with pytest.raises(TypeError, match="SweepResult"):
        SweepExplorer([1, 2, 3])
