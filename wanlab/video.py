"""The result of a generation: :class:`Video` (uint8 frames plus the record of where they came from).

Also the file side of a video: :func:`encode` / :func:`decode` with PyAV, :func:`read_frames`, and the
names of the files beside a saved video (:func:`sidecar_path`, :func:`lossless_path`, :func:`probes_path`).
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WanlabError
from .frames import WAN_FPS, check_frames, display_zoom, frames_digest
from .fsutil import atomic_file, write_json
from .params import Params
from .values import check_number

LOSSLESS_SUFFIX = ".lossless.mkv"
#: h264 yuv420p at a high quality: small files that every browser plays (not for analysis).
PLAYABLE = {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"crf": "18", "preset": "veryfast"}}
#: FFV1 on planar RGB: lossless, so frames read back bit for bit.
LOSSLESS = {"codec": "ffv1", "pix_fmt": "bgr0", "options": {"level": "3", "g": "1"}}
#: Record keys that :meth:`Video.to_record` writes from the Video's own fields.
OWN_FIELDS = ("fps", "shape", "digest", "timings", "model", "params")
#: Names of a run folder's files (``wanlab.store`` writes runs in this layout).
RUN_MP4 = "video.mp4"
RUN_LOSSLESS = "video.lossless.mkv"
RUN_RECORD = "record.json"
RUN_PROBES = "probes.npz"
PROBES_SUFFIX = ".probes.npz"


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths with one black row/column: yuv420p needs even sizes."""
    t, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    out = np.zeros((t, h + h % 2, w + w % 2, 3), np.uint8)
    out[:, :h, :w] = frames
    return out


def encode(frames: np.ndarray, target: Any, fps: float, spec: dict[str, Any], container: str | None = None) -> None:
    """Encode uint8 RGB frames with PyAV (FFmpeg's libraries, in-process) into ``target``.

    No ffmpeg process is started per file: that made saving a small video cost more than generating it.
    Odd heights or widths are padded with one black row/column for yuv420p.

    Args:
        frames: uint8 (T, H, W, 3) RGB frames.
        target: A file path (an mp4 then starts with its index, so browsers play it while it loads)
            or a binary file object in memory.
        fps: Frame rate.
        spec: Codec, pixel format and options: :data:`PLAYABLE` (h264) or :data:`LOSSLESS` (FFV1).
        container: The container format (``"mp4"``, ``"matroska"``); None guesses it from a path's suffix.

    Example:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> encode(np.zeros((2, 16, 16, 3), np.uint8), buffer, 16.0, LOSSLESS, container="matroska")
        >>> buffer.getvalue()[:4] == bytes.fromhex("1a45dfa3")  # a Matroska header
        True
    """
    import fractions

    import av

    frames = _even(frames) if spec["pix_fmt"] == "yuv420p" else frames
    _, h, w, _ = frames.shape
    seekable_file = isinstance(target, (str, os.PathLike))
    options = {"movflags": "+faststart"} if spec["codec"] == "libx264" and seekable_file else {}
    target = os.fspath(target) if seekable_file else target
    with av.open(target, "w", format=container, options=options) as out:
        stream = out.add_stream(spec["codec"], rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, spec["pix_fmt"]
        stream.options = dict(spec["options"])
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def decode(path: Path) -> tuple[np.ndarray, float]:
    """All frames of a video file and its frame rate, decoded with PyAV.

    Args:
        path: A video file FFmpeg reads (.mp4, .mkv, ...).

    Returns:
        The frames as uint8 (T, H, W, 3) and the stream's average frame rate (16.0 when it has none).

    Raises:
        WanlabError: The file is not a readable video or holds no frames (a one-line message).

    Example:
        >>> frames, fps = decode(Path("fox.lossless.mkv"))  # doctest: +SKIP
    """
    import av

    try:
        with av.open(str(path)) as src:
            stream = src.streams.video[0]
            rate = float(stream.average_rate or stream.base_rate or WAN_FPS)
            frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise WanlabError(f"{path}: not a readable video file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no video stream'})") from None
    if not frames:
        raise WanlabError(f"{path}: the file holds no video frames")
    return np.stack(frames), rate


@dataclass(eq=False)
class Video:
    """Frames ``(T, H, W, 3)`` uint8 at ``fps``, with the request, model and record that made them.

    Two videos are equal when their frames are (same digest) at the same fps. In a notebook a Video
    shows itself as a looping player (small videos enlarged, pixelated).

    Attributes:
        frames: uint8 (T, H, W, 3) RGB frames (checked and made C-contiguous on creation).
        fps: Frame rate (a positive number; Wan's 16 by default).
        params: The request that made the video (None for frames from elsewhere).
        model: The model's identity (``wanlab.identity(...).to_dict()``).
        timings: Seconds per phase of the generation (``encode``, ``denoise``, ``decode``, ...).
        record: The rest of the run's record (everything but the fields above).
        path: Where the video was saved or loaded from.
        latents: The final latents when the backend kept them (not saved).
        files: Files these frames already are, by run-folder name (a service's downloads).
        probes: What probes recorded inside the model (a :class:`wanlab.probes.Probes`), or None.

    Raises:
        ValueError: ``frames`` is not uint8 (T, H, W, 3) or ``fps`` is not a positive number.

    Example:
        >>> import numpy as np
        >>> from wanlab import Video
        >>> video = Video(np.zeros((4, 8, 8, 3), np.uint8), fps=16)
        >>> video.num_frames, video.width, video.height, video.duration
        (4, 8, 8, 0.25)
        >>> video == Video(video.frames.copy(), fps=16)
        True
    """

    frames: np.ndarray
    fps: float = WAN_FPS
    params: Params | None = None
    model: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    latents: Any = field(default=None, repr=False)
    #: Files these frames already are, by run-folder name (a service's downloads: ``video.mp4`` as it was
    #: served, ``video.lossless.mkv``); ``Store.put`` keeps them as they are instead of encoding again.
    files: dict[str, Path] = field(default_factory=dict, repr=False)
    #: What probes recorded inside the model (a :class:`wanlab.probes.Probes`), None for a run without.
    probes: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.frames = check_frames(self.frames)
        self.fps = check_number("fps", self.fps, 0, lo_open=True, rule="a positive number")
        self._digest: str | None = None

    def __repr__(self) -> str:
        t, h, w, _ = self.frames.shape
        seed = self.params.seed if self.params else None
        return f"Video({t} frames, {w}x{h}, {self.fps:g} fps, seed={seed}, digest={self.digest[:12]})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Video):
            return NotImplemented
        return self.digest == other.digest and self.fps == other.fps

    def __hash__(self) -> int:
        return hash(self.digest)

    # --- facts -----------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """sha256 of the raw frames: equal digests mean bit-identical videos."""
        if self._digest is None:
            self._digest = frames_digest(self.frames)
        return self._digest

    @property
    def seed(self) -> int | None:
        """The request's seed (None without params)."""
        return self.params.seed if self.params else None

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height H in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width W in pixels."""
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Length in seconds: frames / fps."""
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return self.num_frames

    # --- files -----------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The JSON sidecar of the video.

        Returns:
            The record with the Video's own fields (:data:`OWN_FIELDS`: fps, shape, digest, timings,
            model, params) written over it; JSON-ready.

        Example:
            >>> Video(np.zeros((1, 2, 2, 3), np.uint8)).to_record()["shape"]
            [1, 2, 2, 3]
        """
        out = dict(self.record)
        out.update(
            fps=self.fps, shape=list(self.frames.shape), digest=self.digest, timings=dict(self.timings),
            model=dict(self.model), params=self.params.to_dict() if self.params else None,
        )
        return out

    def save(self, path: str | os.PathLike[str], *, lossless: bool = True, sidecar: bool = True,
             atomic: bool = True) -> Path:
        """Write the video by extension (.mp4, .mkv, .gif, .npz) plus a JSON sidecar.

        .mp4 is browser-playable h264; since h264 yuv420p changes pixel values, ``lossless=True`` also
        writes ``NAME.lossless.mkv`` (FFV1), which :meth:`load` prefers (the two are encoded at once,
        on two threads: FFmpeg's encoders run without Python's lock). .mkv and .npz are lossless
        themselves. With the sidecar, recorded probes go to ``NAME.probes.npz`` beside it (a store
        keeps them in the run folder itself). Sets :attr:`path`.

        Args:
            path: The file to write; its suffix picks the format.
            lossless: For .mp4, also write the lossless ``NAME.lossless.mkv``.
            sidecar: Also write ``NAME.json`` (:meth:`to_record`) and ``NAME.probes.npz``.
            atomic: Write each file atomically; False writes straight into a folder that is built
                atomically as a whole (a store's run).

        Returns:
            The path written.

        Raises:
            ValueError: The suffix is not one of .mp4, .mkv, .gif, .npz.

        Example:
            >>> video.save("fox.mp4")  # doctest: +SKIP
            PosixPath('fox.mp4')
        """
        target = Path(path)
        ext = check_suffix(target)
        jobs = [(target, ext)] + ([(lossless_path(target), ".mkv")] if ext == ".mp4" and lossless else [])
        if len(jobs) == 1:
            self._write(*jobs[0], atomic=atomic)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(jobs)) as pool:
                for done in [pool.submit(self._write, file, kind, atomic=atomic) for file, kind in jobs]:
                    done.result()
        if self.probes and sidecar:
            self.probes.save(probes_path(target), atomic=atomic)
        if sidecar:
            write_json(sidecar_path(target), self.to_record(), atomic=atomic)
        self.path = target
        return target

    def _write(self, target: Path, ext: str, *, atomic: bool = True) -> None:
        """Write the frames alone to ``target`` in the format of ``ext`` (atomically unless told not to)."""
        if not atomic:
            self._encode_to(target, ext)
            return
        with atomic_file(target) as tmp:
            self._encode_to(tmp, ext)

    def _encode_to(self, target: Path, ext: str) -> None:
        if ext in (".mp4", ".mkv"):
            encode(self.frames, target, self.fps, PLAYABLE if ext == ".mp4" else LOSSLESS,
                   container="mp4" if ext == ".mp4" else "matroska")
        elif ext == ".gif":
            import imageio.v3 as iio

            iio.imwrite(target, self.frames, extension=".gif", duration=1000.0 / self.fps, loop=0)
        else:
            with open(target, "wb") as fh:
                np.savez_compressed(fh, frames=self.frames, fps=np.float64(self.fps))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Video:
        """Read a saved video: frames from the lossless copy when present, record from the sidecar.

        Args:
            path: A video file wanlab wrote (.mp4, .mkv, .gif, .npz), or a run folder of a store (or
                its ``video.mp4``): then the frames come from the run's lossless copy and the record
                from its ``record.json``.

        Returns:
            The Video with its params, model, timings, record and probes (when saved beside it).

        Raises:
            FileNotFoundError: No file at ``path``.
            WanlabError: A folder that is not a run folder, an unreadable video or record.

        Example:
            >>> video = Video.load("fox.mp4")  # doctest: +SKIP
            >>> video.params.prompt  # doctest: +SKIP
            'a fox'
        """
        source = Path(path)
        if source.is_dir():
            if not (source / RUN_RECORD).is_file():
                raise WanlabError(f"{source} is a folder but not a wanlab run folder (it has no {RUN_RECORD}); "
                                  "give a video file (.mp4, .mkv, .gif, .npz) or a run folder")
            return cls._load_run(source)
        if not source.exists():
            raise FileNotFoundError(f"path: no such video file: {source}")
        if not sidecar_path(source).exists() and (source.parent / RUN_RECORD).is_file():
            return cls._load_run(source.parent, shown=source)
        meta: dict[str, Any] = {}
        if sidecar_path(source).exists():
            meta = _read_record(sidecar_path(source))
        exact = lossless_path(source) if source.suffix.lower() == ".mp4" else source
        frames, fps = read_frames(exact if exact.exists() else source)
        return cls._from_record(frames, float(meta.get("fps", fps)), meta, source, probes_path(source))

    @classmethod
    def _load_run(cls, folder: Path, shown: Path | None = None) -> Video:
        meta = _read_record(folder / RUN_RECORD)
        exact = folder / RUN_LOSSLESS
        frames, fps = read_frames(exact if exact.exists() else (shown or folder / RUN_MP4))
        return cls._from_record(frames, float(meta.get("fps", fps)), meta, shown or folder / RUN_MP4,
                                folder / RUN_PROBES)

    @classmethod
    def _from_record(cls, frames: np.ndarray, fps: float, meta: dict[str, Any], path: Path,
                     probes_file: Path | None = None) -> Video:
        params = Params.from_dict(meta["params"]) if meta.get("params") else None
        record = {k: v for k, v in meta.items() if k not in OWN_FIELDS}
        probes = None
        if probes_file is not None and probes_file.is_file():
            from .probes.bundle import Probes

            probes = Probes.load(probes_file)
        return cls(np.ascontiguousarray(frames), fps=fps, params=params, model=meta.get("model", {}),
                   timings=meta.get("timings", {}), record=record, path=path, probes=probes)

    # --- looking -----------------------------------------------------------------------------------
    def to_mp4_bytes(self) -> bytes:
        """The playable h264 mp4 as bytes (for inline display and reports).

        Returns:
            The bytes of an h264 yuv420p mp4 (:data:`PLAYABLE`).

        Example:
            >>> Video(np.zeros((2, 16, 16, 3), np.uint8)).to_mp4_bytes()[4:8]
            b'ftyp'
        """
        buffer = io.BytesIO()
        encode(self.frames, buffer, self.fps, PLAYABLE, container="mp4")
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.to_mp4_bytes()).decode()
        title = html.escape(self.params.prompt if self.params else "")
        zoom = display_zoom(self.height)  # a 64x64 clip plays at 256 px, as wanlab.show shows it
        size = f"{self.width}x{self.height}" + (f", shown x{zoom}" if zoom > 1 else "")
        return (
            f'<figure style="display:inline-block;margin:0"><video src="data:video/mp4;base64,{data}" '
            f'width="{self.width * zoom}" height="{self.height * zoom}" style="image-rendering:pixelated" '
            f'autoplay loop muted playsinline controls></video>'
            f'<figcaption style="font-size:small;max-width:{max(self.width * zoom, 256)}px">{title} · '
            f'{size} · {self.num_frames} frames @ {self.fps:g} fps'
            f"{f' · seed {self.seed}' if self.seed is not None else ''}</figcaption></figure>"
        )


SUFFIXES = (".mp4", ".mkv", ".gif", ".npz")


def check_suffix(path: str | os.PathLike[str]) -> str:
    """The lower-case suffix of a path :meth:`Video.save` can write.

    Checked before a video is made (``wanlab generate --out x.avi`` fails at once).

    Args:
        path: The file a video is to be saved to.

    Returns:
        Its suffix, lower-case (one of :data:`SUFFIXES`).

    Raises:
        ValueError: Any other suffix (the message names the rule and the path).

    Example:
        >>> check_suffix("fox.MP4")
        '.mp4'
    """
    ext = Path(path).suffix.lower()
    if ext not in SUFFIXES:
        raise ValueError(f"path: must end in {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]}; got {str(path)!r}")
    return ext


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WanlabError(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(data, dict):
        raise WanlabError(f"{path}: not a wanlab record (a JSON object was expected)")
    return data


def read_frames(path: Path) -> tuple[np.ndarray, float]:
    """Frames and frame rate of a video file of any format wanlab writes.

    Args:
        path: An .npz (frames and fps arrays), .gif (read at 16 fps) or a file FFmpeg decodes.

    Returns:
        uint8 (T, H, W, 3) frames and the frame rate.

    Raises:
        WanlabError: A video file FFmpeg cannot read (see :func:`decode`).

    Example:
        >>> frames, fps = read_frames(Path("fox.lossless.mkv"))  # doctest: +SKIP
    """
    if path.suffix.lower() == ".npz":
        with np.load(path) as data:
            return data["frames"], float(data["fps"])
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        return iio.imread(path, index=None)[..., :3], WAN_FPS
    return decode(path)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar beside a saved video.

    Args:
        path: The video's path.

    Returns:
        The path with the suffix ``.json``.

    Example:
        >>> sidecar_path(Path("runs/fox.mp4")).as_posix()
        'runs/fox.json'
    """
    return path.with_suffix(".json")


def probes_path(path: Path) -> Path:
    """The recorded probes beside a saved video.

    Args:
        path: The video's path.

    Returns:
        The path with the suffix ``.probes.npz``.

    Example:
        >>> probes_path(Path("fox.mp4")).name
        'fox.probes.npz'
    """
    return path.with_suffix(PROBES_SUFFIX)


def lossless_path(path: Path) -> Path:
    """The lossless FFV1 copy beside a saved mp4.

    Args:
        path: The mp4's path.

    Returns:
        The path with the suffix ``.lossless.mkv``.

    Example:
        >>> lossless_path(Path("fox.mp4")).name
        'fox.lossless.mkv'
    """
    return path.with_suffix(LOSSLESS_SUFFIX)
