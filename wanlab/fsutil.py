"""Atomic file and folder writes: a reader sees the old state or the whole new one, never a part.

Also the cross-process :func:`file_lock` and :func:`sha256_file`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


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


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` across processes.

    Several processes that need one result (Ray workers on one machine hashing a checkpoint)
    compute it once.

    Args:
        path: The lock file (created if missing, with its folder).

    Yields:
        None, while the lock is held.

    Example:
        >>> with file_lock("~/.cache/wanlab/fingerprint.lock"):  # doctest: +SKIP
        ...     fingerprint = compute_once()
    """
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
