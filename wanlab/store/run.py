"""One stored run (:class:`Run`): a folder named by its run key, with the video files, record and metrics.

:func:`file_problem` says what is wrong with one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunNotFoundError, WanlabError
from ..frames import WAN_FPS
from ..params import Params
from ..video import OWN_FIELDS, RUN_LOSSLESS, RUN_MP4, RUN_PROBES, RUN_RECORD

if TYPE_CHECKING:  # pragma: no cover
    from ..video import Video

METRICS_NAME = "metrics.json"
LATENTS_NAME = "latents.npy"
#: The files every run holds beside its record; the record keeps each one's size and sha256 (``"stored"``).
VIDEO_FILES = (RUN_MP4, RUN_LOSSLESS)


def read_json(path: Path) -> Any:
    """The parsed JSON of a file.

    Args:
        path: The file.

    Returns:
        Its content.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not JSON.
    """
    return json.loads(path.read_text())


def file_problem(folder: Path, stored: Any, *, deep: bool = False) -> str | None:
    """What is wrong with a run folder's video files, in one sentence.

    Args:
        folder: The run folder.
        stored: The sizes and hashes its record holds (``record["stored"]``); older runs have none:
            then presence and non-zero size are checked.
        deep: Also compare the files' sha256s.

    Returns:
        The problem, or None when the files are whole.

    Example:
        >>> file_problem(Path("runs/demo/7db355e5747bd6ab"), run.record.get("stored"))  # doctest: +SKIP
        'video.mp4 is empty'
    """
    import stat as stat_

    try:
        folder_mode = os.lstat(folder).st_mode
        record_mode = os.lstat(folder / RUN_RECORD).st_mode
    except OSError:
        return f"{RUN_RECORD} is missing"
    if not stat_.S_ISDIR(folder_mode):
        return "the run folder is not a folder of its own (a link)"
    if not stat_.S_ISREG(record_mode):
        return f"{RUN_RECORD} is not a regular file (a link or a folder)"
    if stored and not (isinstance(stored, Mapping) and all(isinstance(stored.get(n), Mapping) for n in VIDEO_FILES)):
        return f"the record's list of stored files is malformed ({RUN_RECORD} was edited)"
    for name in VIDEO_FILES:
        try:
            info = os.lstat(folder / name)
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror})"
        if not stat_.S_ISREG(info.st_mode):
            return f"{name} is not a regular file (a link or a folder)"
        want = stored.get(name) if isinstance(stored, Mapping) else None
        if isinstance(want, Mapping) and info.st_size != want.get("bytes"):
            return f"{name} is {info.st_size} bytes; the record says {want.get('bytes')} (truncated or replaced)"
        if info.st_size == 0:
            return f"{name} is empty"
        if deep and isinstance(want, Mapping):
            from ..fsutil import sha256_file

            if sha256_file(folder / name) != want.get("sha256"):
                return f"{name} does not match the sha256 its record holds (damaged or replaced)"
    return None


class Run:
    """One stored run: ``key``, ``path`` (its folder), ``record``, ``params``, ``metrics``, ``video()``, ``mp4``.

    Made by :class:`Store` (``put``, ``get``, ``find``, iteration); the record is read once, on first use.

    Args:
        path: The run folder.
        record: Its record when the caller has already read it.

    Example:
        >>> run = store.get("7db355")  # doctest: +SKIP
        >>> run.params.seed, run.metrics, run.mp4.name  # doctest: +SKIP
        (1, {'flow': 0.5}, 'video.mp4')
    """

    def __init__(self, path: str | os.PathLike[str], record: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.key = self.path.name
        self._record = dict(record) if record is not None else None

    def __repr__(self) -> str:
        try:
            p = self.params
            what = f"seed={p.seed}, {p.width}x{p.height}x{p.num_frames}, steps={p.steps}"
        except (OSError, ValueError, KeyError, WanlabError):
            what = "unreadable record"
        return f"Run({self.key}, {what})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.path.resolve() == self.path.resolve()

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def record(self) -> dict[str, Any]:
        """The reproducibility record (``record.json``), read once.

        Raises:
            RunNotFoundError: The folder has no record.
            WanlabError: The record does not read or has no params (the message names the file).
        """
        if self._record is None:
            file = self.path / RUN_RECORD
            if not file.is_file():
                raise RunNotFoundError(f"{self.path} is not a wanlab run folder: it has no {RUN_RECORD}")
            try:
                data = read_json(file)
            except (OSError, ValueError) as exc:
                raise WanlabError(f"{file}: the run's record cannot be read ({exc}); restore it from a backup, "
                                  "or forget the run by removing its folder") from None
            if not isinstance(data, dict) or "params" not in data:
                raise WanlabError(f"{file}: not a wanlab run record (no params)")
            self._record = data
        return self._record

    @property
    def params(self) -> Params:
        """The run's request (its seed resolved)."""
        return Params.from_dict(self.record["params"])

    @property
    def seed(self) -> int:
        """The seed the run used."""
        return int(self.record["params"]["seed"])

    @property
    def model(self) -> dict[str, Any]:
        """The model's identity as recorded (``id``, ``fingerprint``, ...)."""
        return dict(self.record.get("model") or {})

    @property
    def digest(self) -> str:
        """sha256 of the raw frames (as :attr:`Video.digest`)."""
        return str(self.record["digest"])

    @property
    def exact(self) -> bool:
        """Whether the stored frames are the generated ones bit for bit (False for lossy downloads)."""
        return bool(self.record.get("exact", True))

    @property
    def created(self) -> str | None:
        """When the run was generated (ISO 8601, UTC), None when not recorded."""
        return self.record.get("created")

    @property
    def seconds(self) -> float | None:
        """The generation's total seconds, None when not recorded."""
        return (self.record.get("timings") or {}).get("total")

    @property
    def extra(self) -> dict[str, Any]:
        """The values ``Store.put(extra=...)`` kept (sweep name, task id, ...)."""
        return dict(self.record.get("extra") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        """Measurements stored with the run (``metrics.json``); empty until computed."""
        try:
            data = read_json(self.path / METRICS_NAME)
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def mp4(self) -> Path:
        """The playable h264 mp4 (for looking; its pixels are not exact)."""
        return self.path / RUN_MP4

    @property
    def lossless(self) -> Path:
        """The FFV1 file holding the exact frames."""
        return self.path / RUN_LOSSLESS

    @property
    def has_latents(self) -> bool:
        """Whether the final latents were stored (``put(latents=True)``)."""
        return (self.path / LATENTS_NAME).is_file()

    def latents(self) -> Any:
        """The final latents when they were stored (``put(latents=True)``).

        Returns:
            A float32 numpy array, or None.

        Example:
            >>> store.get("7db355").latents().shape  # doctest: +SKIP
            (1, 16, 5, 60, 104)
        """
        if not self.has_latents:
            return None
        import numpy as np

        return np.load(self.path / LATENTS_NAME, allow_pickle=False)

    def damage(self, *, deep: bool = False) -> str | None:
        """Why the run's stored files cannot be trusted, in one sentence.

        Checks that the record reads, and that the mp4 and the lossless copy are regular files (not
        links) of the sizes the record holds.

        Args:
            deep: Also check their sha256 (or, for runs stored before sizes and hashes were recorded,
                the lossless frames against the recorded digest).

        Returns:
            The problem, or None when the files are whole.

        Example:
            >>> store.get("3f5a09c1").damage()  # doctest: +SKIP
            'video.lossless.mkv is 1024 bytes; the record says 88313 (truncated or replaced)'
        """
        try:
            stored = self.record.get("stored") or {}
        except WanlabError as exc:
            return str(exc)
        problem = file_problem(self.path, stored, deep=deep)
        if problem:
            return problem
        if deep and not stored:
            try:
                self.video(check=True)
            except Exception as exc:
                return f"its frames cannot be read back as recorded ({exc})"
        return None

    @property
    def has_probes(self) -> bool:
        """Whether the run holds recorded probes (``probes.npz``)."""
        return (self.path / RUN_PROBES).is_file()

    def probes(self) -> Any:
        """What probes recorded in this run.

        Returns:
            A :class:`wanlab.probes.Probes`, or None for a run without.
        """
        if not self.has_probes:
            return None
        from ..probes.bundle import Probes

        return Probes.load(self.path / RUN_PROBES)

    def video(self, *, check: bool = True) -> Video:
        """The run's video with its stored frames (the lossless copy) and its record.

        Args:
            check: Compare the frames' digest with the recorded one.

        Returns:
            The :class:`~wanlab.Video` (params, model, timings, record and probes filled in).

        Raises:
            WanlabError: No video file in the folder, or (with ``check``) frames that do not match the
                recorded digest (a damaged file).

        Example:
            >>> store.get("7db355").video().num_frames  # doctest: +SKIP
            81
        """
        from ..video import Video, read_frames

        rec = self.record
        source = self.lossless if self.lossless.exists() else self.mp4
        if not source.exists():
            raise WanlabError(f"run {self.key}: neither {RUN_LOSSLESS} nor {RUN_MP4} is in {self.path}")
        frames, _ = read_frames(source)
        meta = {k: v for k, v in rec.items() if k not in OWN_FIELDS}
        video = Video(frames, fps=float(rec.get("fps", WAN_FPS)), params=self.params, model=self.model,
                      timings=dict(rec.get("timings") or {}), record=meta, path=self.mp4, probes=self.probes())
        if check and video.digest != rec.get("digest"):
            raise WanlabError(f"run {self.key}: the frames in {source.name} do not match the recorded digest "
                              "(the file is damaged, or record.json was edited)")
        return video
