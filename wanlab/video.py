"""The result of a generation: uint8 frames plus everything needed to know where they came from.

``Video.save("x.mp4")`` writes a browser-playable h264 mp4, a lossless FFV1 copy
(``x.lossless.mkv``) that reads back bit-exact, and a JSON sidecar (``x.json``) with the record.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fsutil import atomic_file, write_json
from .params import Params

WAN_FPS = 16.0
LOSSLESS_SUFFIX = ".lossless.mkv"
#: h264 yuv420p at a high quality: small files that every browser plays (not for analysis).
PLAYABLE_ARGS = ["-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium", "-movflags", "+faststart",
                 "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
#: FFV1 on planar RGB: lossless, so frames read back bit for bit.
LOSSLESS_ARGS = ["-pix_fmt", "bgr0", "-level", "3", "-g", "1"]


def check_frames(frames: Any, name: str = "frames", min_frames: int = 1) -> np.ndarray:
    """Return ``frames`` (an array, or a list of frames) as a C-contiguous uint8 (T, H, W, 3) array
    with at least ``min_frames`` frames, or raise ValueError naming ``name``, the rule and what was given.
    The one frame check of wanlab: videos, metrics, plots and widgets all use it."""
    if isinstance(frames, (list, tuple)):
        frames = np.asarray(frames)
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name}: must be a numpy uint8 array (T, H, W, 3), a list of frames or a Video; "
                         f"got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name}: must be uint8 (T, H, W, 3) with values 0-255; got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: must be uint8 (T, H, W, 3) (RGB frames); got shape {frames.shape}")
    if frames.shape[0] < min_frames or min(frames.shape[1:3]) < 1:
        raise ValueError(f"{name}: must hold at least {min_frames} frame{'s' * (min_frames > 1)} (T >= {min_frames}) "
                         f"of at least 1x1 px; got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of the raw frame bytes together with their shape (so a reshaped array differs)."""
    digest = hashlib.sha256(repr(tuple(frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def _write_ffmpeg(path: Path, frames: np.ndarray, fps: float, codec: str, args: list[str]) -> None:
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec=codec, pix_fmt_in="rgb24", output_params=args,
        macro_block_size=1, ffmpeg_log_level="error", quality=None,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    if not frames:
        raise ValueError(f"{path}: the file holds no video frames")
    return np.stack(frames), float(meta.get("fps") or WAN_FPS)


@dataclass
class Video:
    """Frames ``(T, H, W, 3)`` uint8 at ``fps``, with the request, model and record that made them."""

    frames: np.ndarray
    fps: float = WAN_FPS
    params: Params | None = None
    model: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    latents: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.frames = check_frames(self.frames)
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not self.fps > 0:
            raise ValueError(f"fps: must be a positive number; got {self.fps!r}")
        self.fps = float(self.fps)
        self._digest: str | None = None

    def __repr__(self) -> str:
        t, h, w, _ = self.frames.shape
        seed = self.params.seed if self.params else None
        return f"Video({t} frames, {w}x{h}, {self.fps:g} fps, seed={seed}, digest={self.digest[:12]})"

    # --- facts -----------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """sha256 of the raw frames: equal digests mean bit-identical videos."""
        if self._digest is None:
            self._digest = frames_digest(self.frames)
        return self._digest

    @property
    def seed(self) -> int | None:
        return self.params.seed if self.params else None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return self.num_frames

    # --- files -----------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The JSON sidecar: record, params, model, timings, fps, shape and digest."""
        out = dict(self.record)
        out.update(
            fps=self.fps, shape=list(self.frames.shape), digest=self.digest, timings=dict(self.timings),
            model=dict(self.model), params=self.params.to_dict() if self.params else None,
        )
        return out

    def save(self, path: str | os.PathLike[str], *, lossless: bool = True) -> Path:
        """Write the video by extension (.mp4, .mkv, .gif, .npz) plus a JSON sidecar; return the path.

        For .mp4, ``lossless=True`` also writes ``NAME.lossless.mkv`` (FFV1), which :meth:`load`
        prefers, since h264 yuv420p changes pixel values. .mkv and .npz are lossless themselves.
        """
        target = Path(path)
        ext = target.suffix.lower()
        if ext not in (".mp4", ".mkv", ".gif", ".npz"):
            raise ValueError(f"path: must end in .mp4, .mkv, .gif or .npz; got {str(path)!r}")
        if ext == ".mp4" and lossless:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=2) as pool:  # two ffmpeg processes at once
                jobs = [pool.submit(self._write, target, ext), pool.submit(self._write, lossless_path(target), ".mkv")]
                for job in jobs:
                    job.result()
        else:
            self._write(target, ext)
        write_json(sidecar_path(target), self.to_record())
        self.path = target
        return target

    def _write(self, target: Path, ext: str) -> None:
        """Write the frames alone to ``target`` in the format of ``ext``, atomically."""
        with atomic_file(target) as tmp:
            if ext in (".mp4", ".mkv"):
                staged = tmp.with_suffix(ext)
                codec, args = ("libx264", PLAYABLE_ARGS) if ext == ".mp4" else ("ffv1", LOSSLESS_ARGS)
                _write_ffmpeg(staged, self.frames, self.fps, codec, args)
                os.replace(staged, tmp)
            elif ext == ".gif":
                import imageio.v3 as iio

                iio.imwrite(tmp, self.frames, extension=".gif", duration=1000.0 / self.fps, loop=0)
            else:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, frames=self.frames, fps=np.float64(self.fps))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Video":
        """Read a saved video: frames from the lossless copy when present, record from the sidecar."""
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"path: no such video file: {source}")
        meta: dict[str, Any] = {}
        if sidecar_path(source).exists():
            meta = json.loads(sidecar_path(source).read_text())
        exact = lossless_path(source) if source.suffix.lower() == ".mp4" else source
        read_from = exact if exact.exists() else source
        if read_from.suffix.lower() == ".npz":
            with np.load(read_from) as data:
                frames, fps = data["frames"], float(data["fps"])
        elif read_from.suffix.lower() == ".gif":
            import imageio.v3 as iio

            frames = iio.imread(read_from, index=None)[..., :3]
            fps = float(meta.get("fps", WAN_FPS))
        else:
            frames, fps = _read_ffmpeg(read_from)
        fps = float(meta.get("fps", fps))
        params = Params.from_dict(meta["params"]) if meta.get("params") else None
        record = {k: v for k, v in meta.items() if k not in ("fps", "shape", "digest", "timings", "model", "params")}
        video = cls(np.ascontiguousarray(frames), fps=fps, params=params, model=meta.get("model", {}),
                    timings=meta.get("timings", {}), record=record, path=source)
        return video

    # --- looking -----------------------------------------------------------------------------------
    def to_mp4_bytes(self) -> bytes:
        """The playable h264 mp4 as bytes (for inline display and reports)."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "v.mp4"
            _write_ffmpeg(out, self.frames, self.fps, "libx264", PLAYABLE_ARGS)
            return out.read_bytes()

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.to_mp4_bytes()).decode()
        title = html.escape(self.params.prompt if self.params else "")
        return (
            f'<figure style="display:inline-block;margin:0"><video src="data:video/mp4;base64,{data}" '
            f'width="{self.width}" autoplay loop muted playsinline controls></video>'
            f'<figcaption style="font-size:small">{title} · {self.num_frames} frames @ {self.fps:g} fps'
            f"{f' · seed {self.seed}' if self.seed is not None else ''}</figcaption></figure>"
        )

    def frame_grid(self, n: int = 8, frames: list[int] | None = None, **kwargs: Any):
        """A matplotlib figure of ``n`` evenly spaced frames (or the given indices), labelled by index."""
        from .plots import frame_grid

        return frame_grid(self, n=n, frames=frames, **kwargs)


def sidecar_path(path: Path) -> Path:
    """``x.mp4`` -> ``x.json``."""
    return path.with_suffix(".json")


def lossless_path(path: Path) -> Path:
    """``x.mp4`` -> ``x.lossless.mkv``."""
    return path.with_suffix(LOSSLESS_SUFFIX)


def as_frames(video: Any, name: str = "video", min_frames: int = 1) -> np.ndarray:
    """Frames of a Video (anything with ``.frames``), or a frames array itself, checked by :func:`check_frames`."""
    return check_frames(getattr(video, "frames", video), name, min_frames)
