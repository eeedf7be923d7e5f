"""A video whose run files were encoded where it was made: :class:`EncodedVideo`.

A pool's worker encodes the playable mp4 and the lossless FFV1 copy of each video it makes (the
same ``Video.save`` as a local store runs), so the driver, which stores the runs of every worker,
writes their bytes instead of encoding them again: encoding is the costliest part of storing a
run, and done in one driver for N workers it would be what limits the pool. The frames still come
along (metrics are computed from them, and a Video holds them); the files decode to those frames.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..fsutil import atomic_file, write_json
from ..video import LOSSLESS_SUFFIX, Video, check_suffix, lossless_path, sidecar_path

MP4 = ".mp4"


@dataclass(eq=False)
class EncodedVideo(Video):
    """A :class:`~wanlab.Video` with its mp4 and lossless copy already encoded (``encoded``: suffix -> bytes).

    ``save("x.mp4")`` writes those bytes; any other format is encoded from the frames as usual.
    """

    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, video: Video) -> EncodedVideo:
        """``video`` with its mp4 and lossless copy encoded now (in a scratch folder, by ``Video.save``).

        Args:
            video: a generated video.

        Returns:
            The :class:`EncodedVideo`.
        """
        with tempfile.TemporaryDirectory(prefix="wanlab-encode-") as tmp:
            target = video.save(Path(tmp) / "video.mp4", sidecar=False, atomic=False)
            encoded = {MP4: target.read_bytes(), LOSSLESS_SUFFIX: lossless_path(target).read_bytes()}
        return cls(video.frames, fps=video.fps, params=video.params, model=video.model, timings=video.timings,
                   record=video.record, latents=video.latents, probes=video.probes, encoded=encoded)

    def save(self, path: str | os.PathLike[str], *, lossless: bool = True, sidecar: bool = True,
             atomic: bool = True) -> Path:
        """As :meth:`wanlab.Video.save`; an mp4 (and its lossless copy) is written from the encoded bytes.

        Args:
            path: the file to write.
            lossless: write the lossless copy beside an mp4.
            sidecar: write the JSON record beside it.
            atomic: write through a temporary file.

        Returns:
            The path written.
        """
        target = Path(path)
        if check_suffix(target) != MP4 or MP4 not in self.encoded or (lossless and LOSSLESS_SUFFIX not in self.encoded):
            return super().save(target, lossless=lossless, sidecar=sidecar, atomic=atomic)
        files = [(target, self.encoded[MP4])]
        if lossless:
            files.append((lossless_path(target), self.encoded[LOSSLESS_SUFFIX]))
        for file, data in files:
            if atomic:
                with atomic_file(file) as tmp:
                    tmp.write_bytes(data)
            else:
                file.write_bytes(data)
        if sidecar:
            write_json(sidecar_path(target), self.to_record(), atomic=atomic)
        self.path = target
        return target
