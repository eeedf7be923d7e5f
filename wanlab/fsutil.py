"""Atomic file and folder writes (a reader sees the old state or the whole new one, never a part) and
the one file lock every writer shares (:class:`FileLock`, :func:`file_lock`)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it to read it).

    Returns:
        The umask (e.g. ``0o022``).

    Example:
        >>> 0 <= umask() <= 0o777
        True
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash (errors are ignored).

    Args:
        path: The directory.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush (fsync) every file below ``path`` (and ``path`` itself when it is a file).

    Args:
        path: A file or folder.
    """
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path beside ``path``, then rename it onto ``path``.

    On success the file is fsynced, renamed and its folder fsynced; on an error the temporary file
    is removed and ``path`` is untouched. The file gets the usual mode (0666 less the umask).

    Args:
        path: The file to write (its folder is created).

    Yields:
        The temporary path to write to.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_file(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600; readers expect the usual mode
    try:
        yield tmp_path
        fsync_tree(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically.

    Args:
        path: The file.
        text: Its content.

    Returns:
        The path.

    Example:
        >>> write_text(Path(tempfile.mkdtemp()) / "a.txt", "done").read_text()  # doctest: +SKIP
        'done'
    """
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, *, atomic: bool = True) -> None:
    """Write ``data`` as indented, key-sorted JSON (values it cannot encode as their ``str``).

    Args:
        path: The file.
        data: JSON-able data.
        atomic: Write atomically; False writes straight into a folder that is itself being built
            atomically (see :func:`atomic_dir`).

    Example:
        >>> write_json("runs/demo/record.json", {"seed": 1})  # doctest: +SKIP
    """
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if atomic:
        write_text(path, text)
    else:
        Path(path).write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder atomically: yield a temporary folder beside ``path``, then rename it to ``path``.

    Files written into it need no atomic writes of their own: every file is fsynced once, then the
    folder is renamed into place. On an error the temporary folder is removed.

    Args:
        path: The folder to create (its parent is created).

    Yields:
        The temporary folder to fill.

    Raises:
        FileExistsError: ``path`` already exists when the build finishes (another writer won); the
            new build is discarded.

    Example:
        >>> with atomic_dir("runs/demo/3f5a09c1d2e4b6a8") as tmp:  # doctest: +SKIP
        ...     write_json(tmp / "record.json", record, atomic=False)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; readers expect the usual mode
    try:
        yield tmp
        fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if target.exists():
                raise FileExistsError(str(target)) from exc
            raise
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class FileLock:
    """An exclusive ``flock`` on a lock file (created, with its folder, if missing), across processes and
    threads: each holder opens the file itself, so two threads of one process exclude each other too.
    The kernel releases it when the holding process dies; the file is left in place.

    Args:
        path: the lock file.
        mode: permission bits of a lock file created here (the umask applies).

    >>> with FileLock("runs/.lock"):  # doctest: +SKIP
    ...     ...  # read-modify-write under the lock
    >>> claim = FileLock("runs/tasks/abc.lock")  # doctest: +SKIP
    >>> claim.acquire(blocking=False)  # doctest: +SKIP
    True
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o666) -> None:
        self.path = Path(path)
        self.mode = mode
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FileLock({str(self.path)!r}, locked={self.locked})"

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock, waiting for another holder unless ``blocking`` is False.

        Returns:
            True when held; False when ``blocking`` is False and another holder has it.

        Raises:
            RuntimeError: this object already holds it (the lock is not re-entrant).
            OSError: the lock file cannot be created or opened.
        """
        import fcntl

        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this FileLock is already held (it is not re-entrant)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (nothing when not held, so calling it twice is safe)."""
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, mode: int = 0o666) -> Iterator[None]:
    """Hold an exclusive :class:`FileLock` on ``path`` for the context: several processes that need one
    result (Ray workers on one machine hashing a checkpoint) compute it once; a read-modify-write of
    a shared file is not interleaved.

    >>> with file_lock("runs/.lock"):  # doctest: +SKIP
    ...     ...
    """
    with FileLock(path, mode=mode):
        yield


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes.

    Args:
        path: The file.
        chunk: Bytes read at a time.

    Returns:
        The hex digest.

    Example:
        >>> sha256_file("runs/demo/3f5a09c1d2e4b6a8/video.mp4")  # doctest: +SKIP
        'a5c3...'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
