"""The store's index (:class:`Index`): an SQLite cache of every run's table row, kept in step with the folders.

Also the table cells it shares with ``Store.df``: :func:`loras_text`, :func:`accel_label`.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import WanlabError
from ..keys import KEY_RE
from ..params import LoRA, Params
from ..video import RUN_RECORD
from .run import METRICS_NAME, Run

INDEX_NAME = "index.sqlite"
INDEX_VERSION = "4"
#: Columns of ``Store.df`` before the metric and extra columns, in this order.
CORE_COLUMNS = ("key", *Params.field_names(), "model", "fingerprint", "digest", "seconds", "created",
                "device", "dtype", "accel", "exact", "prompt_tokens", "truncated", "path", "mp4", "status", "reason")
#: The columns that say whether a run's files are whole (``Store.df``), computed on each read.
HEALTH = ("status", "reason")
#: Temporary build folders older than this are left-overs of killed writers and are removed.
STALE_TEMP_SECONDS = 3600.0


def loras_text(loras: Any) -> str:
    """LoRAs as one string for tables.

    Args:
        loras: LoRAs in any form :meth:`wanlab.LoRA.coerce` takes, or None.

    Returns:
        ``path:scale`` joined by ``; `` (empty when none).

    Example:
        >>> loras_text([("a.safetensors", 0.5), "b.safetensors"])
        'a.safetensors:0.5; b.safetensors:1'
    """
    items = [LoRA.coerce(lo) for lo in (loras or [])]
    return "; ".join(f"{lo.path}:{lo.scale:g}" for lo in items)


def accel_label(data: Any) -> str:
    """The short label of a record's ``"accel"`` entry.

    Args:
        data: The record's ``accel`` dict (None or empty for exact).

    Returns:
        The label (``exact``, ``fbc``, ``first_block(threshold=0.3)``); a setting this version no
        longer knows is shown as its JSON.

    Example:
        >>> accel_label(None)
        'exact'
    """
    return "exact" if not data else _accel_label(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _accel_label(text: str) -> str:
    """Labels by canonical JSON: a store has few settings and many runs (the index builds one per run)."""
    from ..accel.setting import Accel

    try:
        return Accel.from_dict(json.loads(text)).label
    except (ValueError, TypeError):  # a setting this version no longer knows: show it as recorded
        return text


def stamp(folder: str) -> str | None:
    """What changes when a run's record or metrics change.

    Args:
        folder: The run folder's path.

    Returns:
        ``mtime_ns:size`` of ``record.json`` and of ``metrics.json`` (``-`` when absent); None when
        the folder is not a run.
    """
    try:
        rec = os.stat(os.path.join(folder, RUN_RECORD))
    except OSError:
        return None
    try:
        met = os.stat(os.path.join(folder, METRICS_NAME))
        metrics = f"{met.st_mtime_ns}:{met.st_size}"
    except OSError:
        metrics = "-"
    return f"{rec.st_mtime_ns}:{rec.st_size}/{metrics}"


def row_of(folder: Path) -> dict[str, Any] | None:
    """The index row of one run folder.

    Args:
        folder: The run folder.

    Returns:
        ``{"key", "core", "metrics", "extra", "stored"}``; None for a damaged record (not listed
        until repaired: ``Run.record`` names the file).
    """
    run = Run(folder)
    try:
        rec = run.record
        metrics = run.metrics
        params = dict(rec["params"])
    except (OSError, ValueError, KeyError, TypeError, WanlabError):
        return None  # a hand-damaged record: not listed until repaired (Run.record names the file)
    params["loras"] = loras_text(params.get("loras"))
    model = rec.get("model") or {}
    env = rec.get("environment") or {}
    core = {"key": folder.name, **{name: params.get(name) for name in Params.field_names()},
            "model": model.get("id"), "fingerprint": model.get("fingerprint"), "digest": rec.get("digest"),
            "seconds": (rec.get("timings") or {}).get("total"), "created": rec.get("created"),
            "device": env.get("device"), "dtype": (rec.get("settings") or {}).get("dtype"),
            "accel": accel_label(rec.get("accel")), "exact": bool(rec.get("exact", True)),
            "prompt_tokens": rec.get("prompt_tokens"), "truncated": rec.get("truncated")}
    extra = rec.get("extra") if isinstance(rec.get("extra"), dict) else {}
    return {"key": folder.name, "core": core, "metrics": metrics, "extra": extra, "stored": rec.get("stored")}


class Index:
    """The index of the store at ``root``.

    The folders are the truth; ``index.sqlite`` only makes tables fast (3000 runs: ``df`` in ~0.2 s).
    Each row carries the stamp (size and modification time of ``record.json`` and ``metrics.json``)
    it was built from; a read compares stamps with the folders and rebuilds what is missing, stale
    or gone, so a folder added, removed or edited by hand shows at once. A damaged or older index
    file is rebuilt. Only one process at a time writes it (SQLite's own locking; SQLite over NFS is
    unreliable, which is why a Ray pool leaves the index to the driver).

    Args:
        root: The store's folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / INDEX_NAME

    def scan(self) -> dict[str, str]:
        """Every whole run folder with its stamp (temporary build folders never match a key).

        Returns:
            Key to :func:`stamp`.
        """
        out: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for entry in entries:
            if KEY_RE.match(entry.name):
                found = stamp(entry.path)
                if found is not None:
                    out[entry.name] = found
        return out

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index, created (or recreated when damaged or of another version).

        Yields:
            An open sqlite3 connection (closed on exit).

        Raises:
            sqlite3.Error: The index cannot be opened even after recreating it.
        """
        for attempt in (1, 2):
            con = sqlite3.connect(self.file, timeout=60.0, isolation_level=None)
            try:
                con.execute("PRAGMA busy_timeout=60000")
                con.execute("PRAGMA synchronous=OFF")  # a cache of the folders: a crash costs a rebuild, not data
                con.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, stamp TEXT NOT NULL, "
                            "created TEXT, row TEXT NOT NULL)")
                version = con.execute("SELECT value FROM meta WHERE name='version'").fetchone()
                if version is None or version[0] != INDEX_VERSION:
                    con.execute("BEGIN IMMEDIATE")
                    con.execute("DELETE FROM runs")
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
                    con.execute("COMMIT")
            except sqlite3.OperationalError:  # locked too long, read-only, cannot open: never a reason to delete
                con.close()
                raise
            except sqlite3.DatabaseError:
                con.close()
                if attempt == 2:
                    raise
                self.file.unlink(missing_ok=True)  # damaged ("not a database", "malformed"): only a cache
                continue
            try:
                yield con
            finally:
                con.close()
            return

    def put(self, keys: Sequence[str]) -> None:
        """Index (or re-index) these runs now.

        The index is a cache, so trouble here is left to the next read.

        Args:
            keys: Run keys in this store.
        """
        with contextlib.suppress(sqlite3.Error, OSError):
            rows = []
            for key in keys:
                found, row = stamp(str(self.root / key)), row_of(self.root / key)
                if found is not None and row is not None:
                    rows.append((key, found, row["core"]["created"], json.dumps(row, default=str)))
            with self.connect() as con:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", rows)
                con.execute("COMMIT")

    def rows(self) -> list[dict[str, Any]]:
        """Every run's row, oldest first, after bringing the index up to date with the folders.

        A read-only store (someone else's runs) is read from its folders without an index.

        Returns:
            The rows (as :func:`row_of`).

        Raises:
            sqlite3.OperationalError: The index of a writable store cannot be used.
        """
        if not self.root.is_dir():
            return []
        if not self.file.exists():
            self.clean_temp()
        folders = self.scan()
        try:
            return self._synced(folders)
        except (sqlite3.OperationalError, OSError):
            if os.access(self.root, os.W_OK):
                raise
            # a read-only store (someone else's runs): read the folders without an index
            rows = [row for row in (row_of(self.root / key) for key in folders) if row is not None]
            return sorted(rows, key=lambda row: (row["core"]["created"] or "", row["key"]))

    def _synced(self, folders: dict[str, str]) -> list[dict[str, Any]]:
        with self.connect() as con:
            indexed = dict(con.execute("SELECT key, stamp FROM runs").fetchall())
            stale = [key for key, found in folders.items() if indexed.get(key) != found]
            gone = [key for key in indexed if key not in folders]
            if stale or gone:
                rows = []
                for key in stale:
                    row = row_of(self.root / key)
                    if row is not None:
                        rows.append((key, folders[key], row["core"]["created"], json.dumps(row, default=str)))
                    elif key in indexed:
                        gone.append(key)  # its record no longer reads: not listed until repaired
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", rows)
                con.executemany("DELETE FROM runs WHERE key = ?", [(key,) for key in gone])
                con.execute("COMMIT")
            found = con.execute("SELECT row FROM runs ORDER BY created, key").fetchall()
        return [json.loads(text) for (text,) in found]

    def rebuild(self) -> int:
        """Rebuild from the run folders (also removes left-overs of killed writers).

        Returns:
            The number of runs.
        """
        self.clean_temp()
        if not self.root.is_dir():
            return 0
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM runs")
            con.execute("COMMIT")
        return len(self.rows())

    def clean_temp(self, max_age: float = STALE_TEMP_SECONDS) -> None:
        """Remove build folders of writers that were killed.

        Args:
            max_age: Seconds; younger build folders may belong to a writer at work and are kept.
        """
        import shutil

        now = time.time()
        for folder in self.root.glob(".tmp-*") if self.root.is_dir() else []:
            with contextlib.suppress(OSError):
                if folder.is_dir() and now - folder.stat().st_mtime > max_age:
                    shutil.rmtree(folder, ignore_errors=True)
