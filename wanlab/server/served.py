"""The runs a server hands out: whether a finished task's files are whole, and what a signed URL serves.

- :meth:`ServedRuns.damage`: why a run cannot be served (its record does not read; its folder, record,
  mp4 or lossless copy is missing, a link, truncated, or not the sha256 its record holds), else None.
  Every call compares the entries' stamps (inode, size, mtime, ctime: any write or replacement changes
  one); the full check, hashes included (or, for runs stored before they were recorded, the frames
  against the recorded digest), runs at first sight and after each change. Each problem is logged once.
- :meth:`ServedRuns.file`: a run file only as a regular file inside its run folder (no symlink,
  even one pointing within the store), of a whole run; :meth:`ServedRuns.record`: the record without
  ``extra`` and ``created`` (identical requests share a run; who stored it, and when, belongs to one key).
"""
from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

from ..store import Store
from ..store.run import VIDEO_FILES
from ..video import RUN_RECORD

log = logging.getLogger("wanlab.server")
#: Record fields a served record leaves out: the task that stored the run (``extra``) and when it was made
#: (``created``): identical requests share a run, and those belong to whoever asked first.
PRIVATE = ("extra", "created")


class ServedRuns:
    """The runs of ``store`` as the service serves them (see the module docstring).

    Args:
        store: the server's :class:`~wanlab.Store`.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._checked: dict[str, tuple[Any, str | None, dict[str, str]]] = {}  # key -> (stamps, problem, sha256s)
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def damage(self, run_key: Any) -> str | None:
        """Why the run ``run_key`` cannot be served, in one sentence; None when its files are whole.

        Checked again (sizes and hashes) whenever any of its files changed; each problem is logged once.

        Args:
            run_key: the run's key.

        Returns:
            The sentence, or None.
        """
        if not isinstance(run_key, str) or not self.store.has(run_key):
            return self._logged_once(str(run_key), f"its run {run_key} is not in the store (its record is missing)")
        folder = self.store.path / run_key
        # the folder's own entry too: a folder replaced by a link to a copy keeps its files' stamps
        stamp = tuple(_stamp(path) for path in (folder, *(folder / name for name in (*VIDEO_FILES, RUN_RECORD))))
        with self._lock:
            known = self._checked.get(run_key)
        if known is None or known[0] != stamp:  # first sight, or anything changed: check sizes and hashes
            run = self.store.get(run_key)
            problem = run.damage(deep=True)
            known = (stamp, problem, {} if problem else _hashes(run.record.get("stored")))
            with self._lock:
                self._checked[run_key] = known
        return self._logged_once(run_key, known[1]) if known[1] else None

    def hashes(self, run_key: str) -> dict[str, str]:
        """The sha256 of the run's video files as its record holds them (clients check their downloads).

        As read by the last :meth:`damage` check of a whole run (empty before it, or for a damaged run).

        Args:
            run_key: the run's key.

        Returns:
            File name -> sha256.
        """
        with self._lock:
            known = self._checked.get(run_key)
        return dict(known[2]) if known is not None else {}

    def file(self, run_key: str, name: str) -> Path | None:
        """The path of a run's file, or None (logged).

        None unless the run is whole and the file is a regular file in a real run folder.

        Args:
            run_key: the run's key.
            name: the file's name in the run folder.

        Returns:
            The path, or None.
        """
        if not self.store.has(run_key) or self.damage(run_key) is not None:
            return None
        folder = self.store.path / run_key
        if not _is(folder, stat.S_ISDIR) or not _is(folder / name, stat.S_ISREG):
            log.warning("refused to serve %s: not a regular file in a run folder (a link?)", folder / name)
            return None
        return folder / name

    def record(self, run_key: str) -> dict[str, Any]:
        """A run's record as a signed URL serves it.

        What makes the video, without what tells who asked for it or when (:data:`PRIVATE`).

        Args:
            run_key: the run's key.

        Returns:
            The record.
        """
        return {k: v for k, v in self.store.get(run_key).record.items() if k not in PRIVATE}

    def _logged_once(self, run_key: str, problem: str) -> str:
        with self._lock:
            first = problem not in self._logged
            self._logged.add(problem)
        if first:
            log.error("run %s in %s is damaged: %s; tasks of it are answered FAILED until it is restored", run_key,
                      self.store.path, problem)
        return problem


def _hashes(stored: Any) -> dict[str, str]:
    """File name -> sha256 from a record's ``stored`` entry."""
    if not isinstance(stored, dict):
        return {}
    return {name: entry["sha256"] for name, entry in stored.items()
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)}


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or written, even with its size and modification time put back."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _is(path: Path, kind: Any) -> bool:
    """Whether ``path`` itself (not what a link points to) is of ``kind`` (``stat.S_ISREG``, ``S_ISDIR``)."""
    try:
        return bool(kind(os.lstat(path).st_mode))
    except OSError:
        return False
