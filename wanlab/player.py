"""``wanlab.show``: videos inline in a notebook, side by side and synchronized (:func:`show`, :class:`Player`).

Also the frame encoding and labelling helpers the widgets share (:func:`encode_frame`, :func:`as_labelled`).
"""
from __future__ import annotations

import base64
import html
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .frames import MIN_DISPLAY_HEIGHT, WAN_FPS, display_zoom
from .values import check_int, check_number

#: Frames with at most this many pixels are embedded as PNG under ``format="auto"``; larger as JPEG.
PNG_MAX_PIXELS = 256 * 256
FORMATS = ("auto", "png", "jpeg")
#: Encoded bytes :func:`show` embeds at most (all videos together); beyond it the videos are shown
#: downscaled, with a warning, as mediapy does: an 832x480x81 clip is 5-12 MB of frames, and a
#: notebook that embeds a few of them becomes slow to open and to save.
MAX_BYTES = 8 * 2**20


def encode_frame(frame: np.ndarray, fmt: str = "png", quality: int = 85) -> bytes:
    """One RGB frame as PNG or JPEG bytes (OpenCV).

    Args:
        frame: uint8 (H, W, 3) RGB.
        fmt: ``"png"`` or ``"jpeg"``.
        quality: JPEG quality, 1..100.

    Returns:
        The encoded bytes.

    Raises:
        ValueError: Another format.

    Example:
        >>> encode_frame(np.zeros((4, 4, 3), np.uint8))[1:4]
        b'PNG'
    """
    import cv2

    if fmt not in ("png", "jpeg"):
        raise ValueError(f"format: must be 'png' or 'jpeg'; got {fmt!r}")
    bgr = np.ascontiguousarray(frame[..., ::-1])
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 fails only on invalid input, which check_frames rules out
        raise RuntimeError(f"could not encode a {frame.shape} frame as {fmt}")
    return buf.tobytes()


def pick_format(fmt: str, height: int, width: int) -> str:
    """Resolve ``"auto"``: PNG (exact pixels) for small frames, JPEG for large ones.

    Args:
        fmt: ``"auto"``, ``"png"`` or ``"jpeg"``.
        height: Frame height.
        width: Frame width.

    Returns:
        ``"png"`` or ``"jpeg"`` (``"auto"`` gives PNG up to 256x256 px).

    Raises:
        ValueError: Another format.

    Example:
        >>> pick_format("auto", 64, 64), pick_format("auto", 480, 832)
        ('png', 'jpeg')
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "auto":
        return "png" if height * width <= PNG_MAX_PIXELS else "jpeg"
    return fmt


def fit_width(frames: np.ndarray, max_width: int | None) -> np.ndarray:
    """``frames`` shrunk (area averaging, aspect kept) to at most ``max_width`` pixels wide.

    Args:
        frames: uint8 (T, H, W, 3).
        max_width: The most pixels wide; None keeps the size.

    Returns:
        The frames (the same array when narrow enough).

    Example:
        >>> fit_width(np.zeros((1, 480, 832, 3), np.uint8), 416).shape
        (1, 240, 416, 3)
    """
    _, h, w, _ = frames.shape
    if max_width is None or w <= max_width:
        return frames
    import cv2

    size = (int(max_width), max(1, round(h * max_width / w)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def check_max_width(max_width: int | None) -> None:
    """Check a ``max_width`` setting.

    Args:
        max_width: An integer of at least 16 (pixels) or None.

    Raises:
        ParamError: Anything else.
    """
    check_int("max_width", max_width, 16, optional=True, rule="an integer of at least 16 (pixels) or None")


def auto_zoom(height: int, min_height: int = MIN_DISPLAY_HEIGHT) -> int:
    """The whole factor that brings a ``height``-pixel video to at least ``min_height`` (at most 8).

    :func:`wanlab.frames.display_zoom`, the one rule for every display of a video.

    Args:
        height: The video's height in pixels.
        min_height: The least height shown.

    Returns:
        The zoom factor, 1 to 8.

    Example:
        >>> auto_zoom(64)
        4
    """
    return display_zoom(height, min_height)


def _label_of(video: Any, index: int) -> str:
    params = getattr(video, "params", None)
    seed = getattr(video, "seed", None)
    if params is not None and getattr(params, "prompt", None):
        prompt = params.prompt if len(params.prompt) <= 40 else params.prompt[:39] + "…"
        return f"{prompt} (seed {seed})" if seed is not None else prompt
    return f"video {index}"


def as_labelled(videos: Any, titles: Iterable[str] | None = None) -> dict[str, Any]:
    """``video | [videos] | {label: video}`` -> ``{label: video}`` (labels unique, in order).

    Args:
        videos: One video, a list or tuple of videos, or a mapping of label to video.
        titles: One label per video instead (else the mapping's keys, or each video's prompt and
            seed, or ``video i``).

    Returns:
        Label to video; a repeated label gets `` (2)``, `` (3)``, ...

    Raises:
        ValueError: No videos, or a number of titles other than the number of videos.

    Example:
        >>> list(as_labelled([np.zeros((1, 2, 2, 3), np.uint8)] * 2, titles=["a", "a"]))
        ['a', 'a (2)']
    """
    if isinstance(videos, Mapping):
        items = [(str(k), v) for k, v in videos.items()]
    elif isinstance(videos, (list, tuple)):
        items = [(_label_of(v, i), v) for i, v in enumerate(videos)]
    else:
        items = [(_label_of(videos, 0), videos)]
    if not items:
        raise ValueError("videos: must hold at least one video; got none")
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != len(items):
            raise ValueError(f"titles: must give one title per video ({len(items)}); got {len(titles)}")
        items = [(t, v) for t, (_, v) in zip(titles, items)]
    out: dict[str, Any] = {}
    for label, video in items:
        name, n = label, 2
        while name in out:
            name, n = f"{label} ({n})", n + 1
        out[name] = video
    return out


def common_fps(videos: Mapping[str, Any], fps: float | None = None) -> float:
    """The playback rate: ``fps`` if given, else the videos' fps (the first one's if they differ).

    Args:
        videos: Label to video (a bare array counts as 16 fps).
        fps: A rate asked for.

    Returns:
        Frames per second.

    Raises:
        ParamError: ``fps`` is not a positive number.

    Example:
        >>> common_fps({"a": np.zeros((1, 2, 2, 3), np.uint8)})
        16.0
    """
    if fps is not None:
        return check_number("fps", fps, 0, lo_open=True, rule="a positive number")
    rates = [float(getattr(v, "fps", WAN_FPS)) for v in videos.values()]
    return rates[0]


@dataclass
class _Entry:
    label: str
    frames: np.ndarray
    fps: float
    size: tuple[int, int]  # the video's own (width, height), before max_width


class Player:
    """Synchronized inline playback of one or more videos (made by :func:`show`, whose arguments it takes).

    ``labels``, ``fps`` (playback rate), ``num_frames`` (the longest video; shorter ones hold their last
    frame), ``to_html()``, ``save(path)`` (a standalone .html file) and ``display()``.

    Raises:
        ValueError: Bad frames or settings (see :func:`show`).

    Example:
        >>> player = Player({"a": np.zeros((17, 64, 64, 3), np.uint8)})
        >>> player
        Player(1 video: a; 17 frames @ 16 fps)
    """

    def __init__(self, videos: Mapping[str, Any], *, fps: float | None = None, zoom: int | None = None,
                 format: str = "auto", quality: int = 85, max_width: int | None = None, loop: bool = True,
                 autoplay: bool = False, max_bytes: int | None = MAX_BYTES) -> None:
        from .frames import as_frames

        check_max_width(max_width)
        self.max_bytes = check_int("max_bytes", max_bytes, 1024, optional=True)
        self._entries = []
        for label, v in videos.items():
            frames = as_frames(v, f"videos[{label!r}]")
            self._entries.append(_Entry(label, fit_width(frames, max_width), float(getattr(v, "fps", WAN_FPS)),
                                        (frames.shape[2], frames.shape[1])))
        self.fps = common_fps(videos, fps)
        check_int("zoom", zoom, 1, 16, optional=True)
        check_int("quality", quality, 1, 100)
        pick_format(format, 1, 1)
        self.zoom = zoom
        self.format = format
        self.quality = quality
        self.max_width = max_width
        self.loop = bool(loop)
        self.autoplay = bool(autoplay)
        self._encoded: list[list[str]] | None = None

    # --- facts -----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """The videos' titles, in order."""
        return [e.label for e in self._entries]

    @property
    def num_frames(self) -> int:
        """Frames of the longest video (shorter ones hold their last frame)."""
        return max(e.frames.shape[0] for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (f"Player({len(self)} video{'s' if len(self) != 1 else ''}: {', '.join(self.labels)}; "
                f"{self.num_frames} frames @ {self.fps:g} fps)")

    # --- rendering ---------------------------------------------------------------------------------
    def _estimate(self, entry: _Entry) -> float:
        """Bytes the entry's frames will embed as base64: its first and last frames encoded, times T."""
        fmt = pick_format(self.format, *entry.frames.shape[1:3])
        ends = [entry.frames[0], entry.frames[-1]]
        return 4 / 3 * len(entry.frames) * sum(len(encode_frame(f, fmt, self.quality)) for f in ends) / 2

    def _fit_budget(self) -> None:
        """Downscale every video by one factor when their frames would embed more than ``max_bytes``."""
        import math
        import warnings

        if self.max_bytes is None:
            return
        estimate = sum(self._estimate(e) for e in self._entries)
        if estimate <= self.max_bytes:
            return
        scale = 0.95 * math.sqrt(self.max_bytes / estimate)  # encoded bytes grow with the pixels
        for e in self._entries:
            e.frames = fit_width(e.frames, max(16, int(e.frames.shape[2] * scale)))
        shown = ", ".join(f"{e.frames.shape[2]}x{e.frames.shape[1]}" for e in self._entries)
        warnings.warn(f"wanlab.show: the videos would embed about {estimate / 2**20:.1f} MB, more than max_bytes="
                      f"{self.max_bytes / 2**20:.1f} MB; shown at {shown} (max_bytes=None embeds them as they are)",
                      stacklevel=4)

    def _data_uris(self) -> list[list[str]]:
        if self._encoded is None:
            self._fit_budget()
            self._encoded = []
            for e in self._entries:
                fmt = pick_format(self.format, *e.frames.shape[1:3])
                mime = "image/png" if fmt == "png" else "image/jpeg"
                self._encoded.append([
                    f"data:{mime};base64," + base64.b64encode(encode_frame(f, fmt, self.quality)).decode("ascii")
                    for f in e.frames
                ])
        return self._encoded

    def to_html(self) -> str:
        """The self-contained HTML block (markup, frames and a small player script).

        No network and no widget kernel needed, so it survives in saved notebooks and exported HTML;
        without JavaScript (a static render) the first frames show.

        Returns:
            The HTML (what a notebook renders).
        """
        uid = "wanlab-show-" + uuid.uuid4().hex[:12]
        uris = self._data_uris()
        last = self.num_frames - 1
        figures = []
        for e, frames in zip(self._entries, uris):
            t, h, w, _ = e.frames.shape
            # enlarge by the videos' own heights (a video shrunk to fit max_width or max_bytes stays shrunk)
            z = self.zoom or auto_zoom(max(x.size[1] for x in self._entries))
            if self.max_width is not None and self.zoom is None:
                z = max(1, min(z, self.max_width // w))
            note = f"{e.size[0]}x{e.size[1]}, {t} frames" + (f", shown at {w}x{h}" if (w, h) != e.size else "")
            if e.fps != self.fps:
                note += f", recorded at {e.fps:g} fps"
            figures.append(
                f'<figure style="margin:0;display:flex;flex-direction:column;align-items:flex-start">'
                f'<figcaption style="font-weight:600;width:{max(w * z, 120)}px;overflow-wrap:anywhere;'
                f'min-height:2.6em;line-height:1.3em;display:-webkit-box;-webkit-line-clamp:2;'
                f'-webkit-box-orient:vertical;overflow:hidden" '
                f'title="{html.escape(e.label)} ({note})">'
                f"{html.escape(e.label)}</figcaption>"
                f'<img class="wanlab-frame" data-frame="0" alt="{html.escape(e.label)}, frame 0" src="{frames[0]}" '
                f'width="{w * z}" height="{h * z}" style="image-rendering:pixelated;max-width:none">'
                f'<span style="font-size:11px;color:#666">{html.escape(note)}</span></figure>'
            )
        config = {
            "fps": self.fps, "frames": uris, "last": last, "loop": self.loop, "autoplay": self.autoplay,
        }
        return (
            f'<div class="wanlab-show" id="{uid}" style="font-family:sans-serif;font-size:12px">'
            f'<div class="wanlab-videos" style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">'
            f'{"".join(figures)}</div>'
            f'<div class="wanlab-controls" style="display:flex;align-items:center;gap:8px;margin-top:6px">'
            f'<button type="button" class="wanlab-play" style="min-width:5.5em">&#9654; play</button>'
            f'<input type="range" class="wanlab-slider" min="0" max="{last}" value="0" step="1" '
            f'style="width:{min(480, max(160, 8 * (last + 1)))}px" aria-label="frame">'
            f'<span class="wanlab-label" style="font-variant-numeric:tabular-nums">'
            f"frame 0 / {last} · t = 0.00 s</span>"
            f'<span style="color:#666">{self.fps:g} fps</span></div>'
            f"<script>{_PLAYER_JS.replace('__UID__', uid).replace('__CONFIG__', json.dumps(config))}</script>"
            f"</div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a standalone HTML page holding the player.

        Args:
            path: The .html file to write.

        Returns:
            The path written.

        Example:
            >>> wanlab.show(video).save("fox.html")  # doctest: +SKIP
            PosixPath('fox.html')
        """
        target = Path(path)
        title = html.escape(", ".join(self.labels))
        target.write_text(
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body>{self.to_html()}</body></html>", encoding="utf-8",
        )
        return target

    def display(self) -> None:
        """Show the player now (for use inside loops, or not as a cell's last expression).

        Example:
            >>> wanlab.show(video).display()  # doctest: +SKIP
        """
        from IPython.display import display

        display(self)


def show(videos: Any, *, titles: Iterable[str] | None = None, fps: float | None = None, zoom: int | None = None,
         format: str = "auto", quality: int = 85, max_width: int | None = None, loop: bool = True,
         autoplay: bool = False, max_bytes: int | None = MAX_BYTES) -> Player:
    """Show ``video``, ``[videos]`` or ``{label: video}`` inline, side by side and synchronized.

    As the last expression of a cell the :class:`Player` renders as one self-contained HTML block
    (no network, no widget kernel needed, so it survives in saved notebooks and exported HTML): a
    title above each video, one play/pause button and one frame slider that drive *the same frame
    index* in every video. Elsewhere in a cell, ``display(wanlab.show(...))`` or ``player.display()``.

    Each video travels as a sequence of encoded frames, not as an mp4: a browser seeks mp4s only
    approximately, and a comparison that drifts a frame apart is a wrong comparison. The HTML embeds
    every frame, so a notebook that keeps the output grows by their encoded size (5-12 MB for one
    81-frame 832x480 video at full size).

    Args:
        videos: A :class:`wanlab.Video`, a list of them, or ``{label: video}``; videos may also be
            bare uint8 ``(T, H, W, 3)`` arrays (shown at 16 fps unless ``fps`` is given).
        titles: Titles, one per video (default: the dict's labels, or each video's prompt and seed).
        fps: The playback rate (default: the videos' fps; the first one's if they differ).
        zoom: Enlarge every video by a whole factor, pixelated (default: enough to bring small videos
            to at least 256 px high).
        format: ``"png"`` (exact pixels), ``"jpeg"`` (``quality``, smaller) or ``"auto"`` (PNG up to
            256x256 px per frame, JPEG above).
        quality: JPEG quality, 1..100.
        max_width: Shrink wider videos to that many pixels for display.
        loop: Start again after the last frame.
        autoplay: Start playing when shown.
        max_bytes: Beyond this many encoded bytes (all videos together; default :data:`MAX_BYTES`) the
            videos are shown downscaled by one factor, with a warning (as mediapy does); None embeds
            them as they are.

    Returns:
        The :class:`Player`.

    Raises:
        ValueError: Bad frames or settings (the message names the field).

    Example:
        >>> import numpy as np, wanlab
        >>> wanlab.show({"guidance 3": np.zeros((17, 64, 64, 3), np.uint8)}).num_frames
        17
        >>> wanlab.show({"guidance 3": a, "guidance 5": b})  # doctest: +SKIP
    """
    return Player(as_labelled(videos, titles), fps=fps, zoom=zoom, format=format, quality=quality,
                  max_width=max_width, loop=loop, autoplay=autoplay, max_bytes=max_bytes)


# The player: one shared frame index, advanced by wall-clock time at `fps` (dropped animation frames do
# not slow playback down), written into every <img>; a shorter video holds its last frame.
_PLAYER_JS = r"""
(function () {
  var cfg = __CONFIG__;
  var scriptEl = document.currentScript;
  var root = (scriptEl && scriptEl.parentNode) || document.getElementById("__UID__");
  if (!root || root.dataset.wanlabReady) { return; }
  root.dataset.wanlabReady = "1";
  var imgs = root.querySelectorAll("img.wanlab-frame");
  var slider = root.querySelector(".wanlab-slider");
  var button = root.querySelector(".wanlab-play");
  var label = root.querySelector(".wanlab-label");
  var n = cfg.last + 1, index = 0, playing = false, start = 0, startIndex = 0, timer = null;
  cfg.frames.forEach(function (list) { list.forEach(function (src) { var im = new Image(); im.src = src; }); });
  function render(i) {
    index = i;
    for (var k = 0; k < imgs.length; k++) {
      var list = cfg.frames[k], j = Math.min(i, list.length - 1);
      if (imgs[k].dataset.frame !== String(j)) { imgs[k].src = list[j]; imgs[k].dataset.frame = String(j); }
    }
    root.dataset.frame = String(i);
    slider.value = String(i);
    label.textContent = "frame " + i + " / " + cfg.last + " \u00b7 t = " + (i / cfg.fps).toFixed(2) + " s";
  }
  function tick() {
    if (!playing) { return; }
    if (!root.isConnected && root.dataset.wanlabSeen) { stop(); return; }
    if (root.isConnected) { root.dataset.wanlabSeen = "1"; }
    var i = startIndex + Math.floor((performance.now() - start) * cfg.fps / 1000);
    if (i >= n) {
      if (cfg.loop) { i = i % n; } else { render(n - 1); stop(); return; }
    }
    if (i !== index) { render(i); }
    timer = window.requestAnimationFrame(tick);
  }
  function play() {
    if (index >= n - 1 && !cfg.loop) { render(0); }
    playing = true; start = performance.now(); startIndex = index;
    button.innerHTML = "&#10074;&#10074; pause";
    timer = window.requestAnimationFrame(tick);
  }
  function stop() {
    playing = false;
    if (timer !== null) { window.cancelAnimationFrame(timer); timer = null; }
    button.innerHTML = "&#9654; play";
  }
  button.addEventListener("click", function () { if (playing) { stop(); } else { play(); } });
  slider.addEventListener("input", function () {
    render(parseInt(slider.value, 10));
    if (playing) { start = performance.now(); startIndex = index; }
  });
  root.tabIndex = 0;
  root.addEventListener("keydown", function (ev) {
    if (ev.target === slider) { return; }
    if (ev.key === "ArrowRight") { stop(); render(Math.min(n - 1, index + 1)); ev.preventDefault(); }
    else if (ev.key === "ArrowLeft") { stop(); render(Math.max(0, index - 1)); ev.preventDefault(); }
    else if (ev.key === " ") { if (playing) { stop(); } else { play(); } ev.preventDefault(); }
  });
  render(0);
  if (cfg.autoplay) { play(); }
})();
"""
