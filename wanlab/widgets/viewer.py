"""Scrubbing one video in a notebook: :class:`FrameViewer` and :class:`FrameCache`.

Also the parts the other widgets share (play button and slider, image, caption, the frame index).
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..player import auto_zoom, common_fps, encode_frame, pick_format
from ..values import check_int


def frame_label(index: int, last: int, fps: float) -> str:
    """The line under a scrubbed frame.

    Args:
        index: The frame shown.
        last: The last frame index.
        fps: Frames per second.

    Returns:
        ``frame 3 / 16 · t = 0.19 s``.

    Example:
        >>> frame_label(3, 16, 16.0)
        'frame 3 / 16 · t = 0.19 s'
    """
    return f"frame {index} / {last} · t = {index / fps:.2f} s"


def _enlarge(frame: np.ndarray, zoom: int) -> np.ndarray:
    if zoom == 1:
        return frame
    return np.repeat(np.repeat(frame, zoom, axis=0), zoom, axis=1)


class FrameCache:
    """Encoded frames of one video, each encoded on first request and kept (index -> bytes).

    Frames travel to the browser as PNG (small frames) or JPEG bytes, so scrubbing an 81-frame
    video encodes only the frames looked at, each once.

    Args:
        frames: uint8 (T, H, W, 3) frames.
        format: ``"png"``, ``"jpeg"`` or ``"auto"`` (PNG up to 256x256 px, JPEG above).
        quality: JPEG quality.
        zoom: Enlarge each frame by a whole factor (nearest neighbour: pixels stay exact squares)
            before encoding.

    Attributes:
        encodes: The encodings done so far.

    Raises:
        ValueError: Bad frames or format.
        IndexError: ``cache[i]`` with ``i`` outside 0..T-1.

    Example:
        >>> cache = FrameCache(np.zeros((3, 8, 8, 3), np.uint8))
        >>> data = cache[1]; data = cache[1]
        >>> cache.encodes, cache.cached, cache.image_format
        (1, [1], 'png')
    """

    def __init__(self, frames: np.ndarray, *, format: str = "auto", quality: int = 85, zoom: int = 1) -> None:
        from ..frames import check_frames

        self.frames = check_frames(frames)
        self.zoom = int(zoom)
        self.format = pick_format(format, *self.frames.shape[1:3])
        self.quality = quality
        self._bytes: dict[int, bytes] = {}
        self.encodes = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, index: int) -> bytes:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"frame index must be in 0..{len(self) - 1}; got {index}")
        data = self._bytes.get(index)
        if data is None:
            data = encode_frame(_enlarge(self.frames[index], self.zoom), self.format, self.quality)
            self._bytes[index] = data
            self.encodes += 1
        return data

    @property
    def cached(self) -> list[int]:
        """Indices encoded so far."""
        return sorted(self._bytes)

    @property
    def image_format(self) -> str:
        """The ipywidgets ``Image.format`` of the bytes."""
        return "png" if self.format == "png" else "jpeg"


def zoom_for(heights: Iterable[int], zoom: int | None) -> int:
    """The zoom widgets show frames at.

    Args:
        heights: The videos' heights.
        zoom: A zoom asked for (1..16), or None.

    Returns:
        ``zoom``, or by default the whole factor that brings the tallest to a visible size.

    Raises:
        ParamError: ``zoom`` is not an integer in 1..16.
    """
    if zoom is None:
        return auto_zoom(max(heights))
    return check_int("zoom", zoom, 1, 16, optional=True)


def transport(last: int, fps: float, description: str = "frame") -> tuple[widgets.Play, widgets.IntSlider, Any]:
    """A play button and a slider over 0..last, linked in the browser.

    Playback does not wait on the kernel to move the slider.

    Args:
        last: The last frame index.
        fps: Playback rate.
        description: The slider's label.

    Returns:
        (play, slider, link).

    Example:
        >>> play, slider, link = transport(16, 16.0)
        >>> play.interval, slider.max
        (62, 16)
    """
    play = widgets.Play(value=0, min=0, max=last, step=1, interval=max(1, round(1000 / fps)), repeat=True,
                        description="play", show_repeat=True, layout=widgets.Layout(width="auto"))
    slider = widgets.IntSlider(value=0, min=0, max=last, step=1, description=description, readout=False,
                               continuous_update=True, layout=widgets.Layout(width="320px"))
    link = widgets.jslink((play, "value"), (slider, "value"))
    return play, slider, link


def image_of(cache: FrameCache) -> widgets.Image:
    """An Image widget showing the cache's first frame at its zoomed size.

    Args:
        cache: The frames.

    Returns:
        The ipywidgets Image.
    """
    h, w = cache.frames.shape[1:3]
    return widgets.Image(value=cache[0], format=cache.image_format, width=w * cache.zoom, height=h * cache.zoom,
                         layout=widgets.Layout(width=f"{w * cache.zoom}px", height=f"{h * cache.zoom}px"))


def caption(text: str, width_px: int) -> widgets.HTML:
    """A bold caption above a video, wrapped to its width, the full text in its tooltip.

    Args:
        text: The caption (HTML-escaped here).
        width_px: The most pixels wide.

    Returns:
        The ipywidgets HTML.
    """
    return widgets.HTML(
        f'<div style="font-weight:600;max-width:{width_px}px;line-height:1.3;overflow-wrap:anywhere" '
        f'title="{html.escape(text)}">{html.escape(text)}</div>')


class Scrubbed:
    """The frame index of a widget driven by ``self.slider`` over frames 0..``self.last`` (a mixin).

    Example:
        >>> viewer = FrameViewer(np.zeros((17, 8, 8, 3), np.uint8))
        >>> viewer.index = 20
        Traceback (most recent call last):
        ...
        ValueError: index: must be a frame index in 0..16; got 20
    """

    slider: Any
    last: int

    @property
    def index(self) -> int:
        """The frame index shown (settable; ValueError outside 0..last)."""
        return int(self.slider.value)

    @index.setter
    def index(self, value: int) -> None:
        value = int(value)
        if not 0 <= value <= self.last:
            raise ValueError(f"index: must be a frame index in 0..{self.last}; got {value}")
        self.slider.value = value


class FrameViewer(Scrubbed, widgets.VBox):
    """One video: the current frame, a play button and slider over frames, the frame index and time.

    ``viewer.index`` (get or set) is the frame shown; ``viewer.slider``, ``viewer.play`` and
    ``viewer.image`` are the ipywidgets inside; ``viewer.cache`` holds the encoded frames (encoded on
    first view, each once). Playback needs a live kernel (each step is a round trip).

    Args:
        video: A :class:`wanlab.Video` or uint8 (T, H, W, 3) frames.
        title: A caption above the frame.
        fps: The playback rate (default: the video's).
        zoom: Enlarge frames by a whole factor (default: small videos to a visible size).
        format: ``"png"``, ``"jpeg"`` or ``"auto"`` (see :class:`FrameCache`).
        quality: JPEG quality.
        index: The frame shown first.
        cache: The encoded frames of an earlier viewer of the same video (``viewer.cache``), reused.

    Raises:
        ValueError: Bad frames, fps, zoom or index, or a cache of another video's frames.

    Example:
        >>> import numpy as np
        >>> from wanlab.widgets import FrameViewer
        >>> viewer = FrameViewer(np.zeros((17, 64, 64, 3), np.uint8), fps=16)
        >>> viewer.index = 8
        >>> viewer.label.value
        'frame 8 / 16 · t = 0.50 s'
    """

    def __init__(self, video: Any, *, title: str | None = None, fps: float | None = None, zoom: int | None = None,
                 format: str = "auto", quality: int = 85, index: int = 0, cache: FrameCache | None = None) -> None:
        from ..frames import as_frames

        self.video = video
        frames = as_frames(video)
        self.fps = common_fps({"video": video}, fps)
        if cache is not None and cache.frames is not frames and not np.array_equal(cache.frames, frames):
            raise ValueError("cache: holds the frames of another video")
        z = cache.zoom if cache is not None else zoom_for([frames.shape[1]], zoom)
        self.cache = cache or FrameCache(frames, format=format, quality=quality, zoom=z)
        self.last = len(self.cache) - 1
        self.image = image_of(self.cache)
        self.play, self.slider, self._link = transport(self.last, self.fps)
        self.label = widgets.HTML(frame_label(0, self.last, self.fps))
        rows: list[widgets.Widget] = []
        if title:
            rows.append(caption(title, max(frames.shape[2] * z, 320)))
        self._parts = [self._link, self.play, self.slider, self.image, self.label, *rows]
        rows += [self.image, widgets.HBox([self.play, self.slider, self.label])]
        super().__init__(rows)
        self.add_class("wanlab-frame-viewer")
        self.slider.observe(self._on_index, names="value")
        if index:
            self.index = index

    @property
    def frame(self) -> np.ndarray:
        """The frame shown, as uint8 (H, W, 3) at the video's own size."""
        return self.cache.frames[self.index]

    def _on_index(self, change: Mapping[str, Any]) -> None:
        i = int(change["new"])
        self.image.value = self.cache[i]
        self.label.value = frame_label(i, self.last, self.fps)

    def close(self) -> None:
        """Close the viewer and the widgets inside it (frees them in the browser too)."""
        for part in self._parts:
            part.close()
        super().close()

    def __repr__(self) -> str:
        return f"FrameViewer({self.last + 1} frames @ {self.fps:g} fps, frame {self.index})"


#
