"""The run store (:class:`Store`): one folder per run on local disk, written atomically, indexed.

Also :func:`find_run` (a run from a folder or a key) and :func:`default_store_path`. A store is a folder::

    STORE/
      <key>/                  one run; the key is 16 hex digits (wanlab.keys)
        video.mp4             playable h264 (yuv420p), for looking at
        video.lossless.mkv    FFV1 RGB: reads back bit for bit, the frames of record
        record.json           the reproducibility record (params, model, settings, environment, digest, ...)
        metrics.json          measurements, once computed
        latents.npy           the final latents (float32), when asked for
      failures/<key>.json     requests that failed (not runs: a retry runs them again)
      pending/<key>.json      work a remote service accepted and that is not stored yet (its task id)
      tasks/<task_id>.json    tasks of the hosted API's shape (wanlab.tasks)
      index.sqlite            a cache of the run folders behind ``df`` and ``find`` (wanlab.store.index)
      .tmp-*                  runs being written; never visible as runs
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParamError, WanlabError
from ..fsutil import atomic_dir, atomic_file, file_lock, sha256_file, write_json
from ..inputs import PathLike, StoreLike
from ..keys import KEY_LENGTH, KEY_RE, MIN_PREFIX, PREFIX_RE, check_key, record_key_parts, run_key
from ..params import Params
from ..record import now_iso
from ..values import is_number, plain
from ..video import RUN_LOSSLESS, RUN_MP4, RUN_PROBES, RUN_RECORD
from .index import CORE_COLUMNS, HEALTH, Index, loras_text
from .run import LATENTS_NAME, METRICS_NAME, VIDEO_FILES, Run, RunNotFoundError, file_problem, read_json

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..video import Video

STORE_FORMAT = 1
FAILURES_DIR = "failures"
PENDING_DIR = "pending"


def _save_latents(path: Path, latents: Any) -> None:
    import numpy as np

    with open(path, "wb") as fh:  # np.save(str) would append ".npy" to a temporary name
        np.save(fh, np.ascontiguousarray(np.asarray(latents, dtype=np.float32)), allow_pickle=False)


def check_probe_size(probes: Any, limit_mb: float) -> None:
    """Refuse probes whose arrays exceed ``limit_mb`` megabytes (before compression).

    A run's probes stay bounded whatever the probe settings.

    Args:
        probes: A :class:`wanlab.probes.Probes` (anything with ``nbytes``).
        limit_mb: The most megabytes allowed.

    Raises:
        WanlabError: The probes are larger; the message names what to change.

    Example:
        >>> check_probe_size(video.probes, Store.max_probe_mb)  # doctest: +SKIP
    """
    mb = probes.nbytes / 2 ** 20
    if mb > limit_mb:
        raise WanlabError(f"store: this run's probes take {mb:.1f} MB, over the store's max_probe_mb={limit_mb:g}; "
                          "record fewer steps or blocks (probes settings) or raise Store.max_probe_mb")


class Store:
    """A run store on local disk (see the module docstring for the layout).

    ``put`` writes runs atomically; ``get``/``has``/``find``/``runs`` read them; ``df`` is a pandas
    table of every run, served from an SQLite index kept in step with the run folders. A store is a
    container of :class:`Run`: ``len(store)``, ``key in store``, ``for run in store``.

    A run is built in a temporary folder beside its final place, fsynced and renamed into place, so
    it is whole or absent, never half written, even when the writer is killed. Two processes (or
    threads) may write one store at once: different keys land in different folders, and for the
    same key the second writer finds the first one's run and returns it.

    Args:
        path: The store's folder (created on the first write); a Store gives its own path.

    Raises:
        WanlabError: ``path`` is a file.

    Example:
        >>> import tempfile, numpy as np
        >>> from wanlab import Params, Store, Video
        >>> store = Store(tempfile.mkdtemp())
        >>> video = Video(np.zeros((1, 16, 16, 3), np.uint8), params=Params(prompt="a fox", seed=1),
        ...               model={"id": "demo", "fingerprint": "f" * 16})  # as a backend's generate records it
        >>> run = store.put(video, metrics={"flow": 0.5})
        >>> len(store), store.get(run.key[:6]) == run, store.df[["seed", "flow", "status"]].values.tolist()
        (1, True, [[1, 0.5, 'stored']])
    """

    #: The most a run's probes may take (megabytes of arrays, before compression).
    max_probe_mb: float = 256.0

    def __init__(self, path: str | os.PathLike[str] = "runs") -> None:
        if isinstance(path, Store):
            path = path.path
        self.path: Path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise WanlabError(f"store: {self.path} is a file; a store is a folder")
        self.index = Index(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __len__(self) -> int:
        return len(self.index.scan())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.has(key)

    def __iter__(self) -> Iterator[Run]:
        return self.runs()

    # --- reading one run -----------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        """Whether a whole run with this key is in the store.

        Args:
            key: A full run key (16 hex digits); anything else gives False.

        Returns:
            True when the run folder and its record exist.

        Example:
            >>> store.has("7db355e5747bd6ab")  # doctest: +SKIP
            True
        """
        return isinstance(key, str) and KEY_RE.match(key) is not None and (self.path / key / RUN_RECORD).is_file()

    def get(self, key: str) -> Run:
        """The run with this key.

        Args:
            key: A run key, or a unique prefix of at least 6 hex digits of it (a Run is returned as is).

        Returns:
            The :class:`Run`.

        Raises:
            RunNotFoundError: Not a key or prefix, an ambiguous prefix, or no such run (also a ``KeyError``).

        Example:
            >>> store.get("7db355")  # doctest: +SKIP
            Run(7db355e5747bd6ab, seed=1, 832x480x81, steps=30)
        """
        if isinstance(key, Run):
            return key
        if not isinstance(key, str) or not PREFIX_RE.match(key):
            raise RunNotFoundError(f"run key: must be {MIN_PREFIX} to {KEY_LENGTH} hex digits; got {key!r}")
        if self.has(key):
            return Run(self.path / key)
        matches = [k for k in self.index.scan() if k.startswith(key)] if len(key) < KEY_LENGTH else []
        if len(matches) == 1:
            return Run(self.path / matches[0])
        if len(matches) > 1:
            raise RunNotFoundError(f"run key {key!r} is ambiguous in {self.path}: it starts {len(matches)} keys "
                                   f"({', '.join(sorted(matches)[:4])}...); give more digits")
        raise RunNotFoundError(f"no run {key!r} in store {self.path}")

    # --- writing -------------------------------------------------------------------------------------
    def put(self, video: Video, metrics: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
            *, key_parts: Mapping[str, Any] | None = None, latents: bool = False,
            files: Mapping[str, str | os.PathLike[str]] | None = None) -> Run:
        """Store a video as a run, atomically.

        If the key is already stored (this or another process wrote it), the existing run is returned
        and nothing is rewritten; ``metrics`` given then are merged into its metrics. The video's
        recorded probes (:attr:`~wanlab.Video.probes`) are kept as ``probes.npz`` (compressed), and
        like latents are added to an existing run that lacks them when the frames are the same (same
        digest). A failure or pending entry under the key is forgotten. Sets the video's ``path``.

        Args:
            video: A :class:`~wanlab.Video` with params (as a backend's ``generate`` returns).
            metrics: Measurements to keep in ``metrics.json``.
            extra: JSON-able values kept in the record under ``"extra"`` (sweep name, task id, ...).
            key_parts: A backend's ``key_parts(params, accel)``, computed before generating, which
                names the run; without it they are read from the video's record.
            latents: Also keep the video's final latents (``latents.npy``, float32).
            files: Existing files to place in the run folder as they are instead of encoding them
                (``{"video.mp4": path}``: the mp4 a service returned); by default the video's own
                :attr:`~wanlab.Video.files`.

        Returns:
            The stored :class:`Run`.

        Raises:
            ValueError: Not a Video with params, ``latents=True`` for a video without latents, or a
                record without a model fingerprint or resolved seed.
            WanlabError: Probes over :attr:`max_probe_mb`; a half-written folder in the run's place;
                probes or latents to add to a run that holds other frames.

        Example:
            >>> run = store.put(pipe.generate(prompt="a fox", seed=1), metrics={"flow": 0.5})  # doctest: +SKIP
        """
        if not hasattr(video, "to_record") or getattr(video, "params", None) is None:
            raise ValueError("store.put: needs a wanlab.Video with params (as a backend's generate returns)")
        if latents and getattr(video, "latents", None) is None:
            raise ValueError("store.put: latents=True needs a Video with latents (as Pipeline.generate returns)")
        record = video.to_record()
        probes = getattr(video, "probes", None)
        if probes:
            check_probe_size(probes, self.max_probe_mb)
        parts = dict(key_parts) if key_parts is not None else record_key_parts(record)
        key = run_key(parts)
        folder = self.path / key
        if not self.has(key):
            kept = (getattr(video, "files", None) or {}) if files is None else files
            given = {name: Path(src) for name, src in kept.items()}
            names = {"mp4": RUN_MP4, "lossless": RUN_LOSSLESS, **({"latents": LATENTS_NAME} if latents else {}),
                     **({"probes": RUN_PROBES} if probes else {})}
            record.update(key=key, key_parts=parts, store_format=STORE_FORMAT, extra=plain(dict(extra or {})),
                          files=names)
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                with atomic_dir(folder) as tmp:
                    for name, src in given.items():
                        shutil.copyfile(src, tmp / name)
                    if RUN_MP4 not in given:  # the build folder is atomic as a whole: plain writes inside
                        video.save(tmp / RUN_MP4, lossless=RUN_LOSSLESS not in given, sidecar=False, atomic=False)
                    elif RUN_LOSSLESS not in given:
                        video.save(tmp / RUN_LOSSLESS, sidecar=False, atomic=False)
                    record["stored"] = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                                        for name in VIDEO_FILES}
                    write_json(tmp / RUN_RECORD, record, atomic=False)
                    if latents:
                        _save_latents(tmp / LATENTS_NAME, video.latents)
                    if probes:
                        probes.save(tmp / RUN_PROBES, atomic=False)
                    if metrics:
                        write_json(tmp / METRICS_NAME, plain(dict(metrics)), atomic=False)
                metrics = None
            except FileExistsError:
                if not self.has(key):
                    raise WanlabError(f"store: {folder} exists but is not a whole run (it has no {RUN_RECORD}); "
                                      "move it away and put again") from None
                # another writer stored the same key first: theirs is as good as ours
        run = Run(folder)
        if probes and not run.has_probes:
            if run.digest != video.digest:
                raise WanlabError(f"store: run {key} holds other frames than this video (digest {run.digest[:12]} vs "
                                  f"{video.digest[:12]}), so its probes cannot be added")
            probes.save(folder / RUN_PROBES)
            record_now = dict(run.record)  # the record says what the run folder holds
            record_now["probes"] = video.record.get("probes") or {name: {} for name in probes}
            record_now["files"] = {**(record_now.get("files") or {}), "probes": RUN_PROBES}
            write_json(folder / RUN_RECORD, record_now)
            run = Run(folder)
        if latents and not run.has_latents:
            if run.digest != video.digest:
                raise WanlabError(f"store: run {key} holds other frames than this video (digest {run.digest[:12]} vs "
                                  f"{video.digest[:12]}), so its latents cannot be added")
            with atomic_file(folder / LATENTS_NAME) as tmp:
                _save_latents(tmp, video.latents)
        if metrics:
            self.put_metrics(key, metrics)
        video.path = folder / RUN_MP4
        self.index.put([key])
        self.forget_failure(key)
        self.forget_pending(key)
        return run

    def put_metrics(self, key: str, metrics: Mapping[str, Any], *, replace: bool = False) -> Run:
        """Add measurements to a run's ``metrics.json``, atomically.

        Args:
            key: The run's key or a unique prefix.
            metrics: Name to value (JSON-able; numpy values are made plain).
            replace: Replace the run's metrics as a whole instead of adding to them.

        Returns:
            The :class:`Run`.

        Raises:
            ValueError: ``metrics`` is not a mapping.
            RunNotFoundError: No such run.

        Example:
            >>> store.put_metrics(run.key, {"clip_score": 0.31}).metrics  # doctest: +SKIP
            {'flow': 0.5, 'clip_score': 0.31}
        """
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics: must be a dict of name -> value; got {type(metrics).__name__}")
        run = self.get(key)
        with self._lock():
            current = {} if replace else run.metrics
            current.update(plain(dict(metrics)))
            write_json(run.path / METRICS_NAME, current)
        self.index.put([run.key])
        return run

    # --- failures and pending remote work ---------------------------------------------------------------
    def put_failure(self, key: str, params: Params, error: str, extra: Mapping[str, Any] | None = None) -> None:
        """Record that the request with this key failed (``failures/<key>.json``).

        Not a run, so ``has(key)`` stays False and a retry runs it again. A later successful ``put``
        removes it.

        Args:
            key: The run key the request would have had.
            params: The request (a Params or its dict).
            error: What went wrong, in words.
            extra: JSON-able values kept beside it (sweep name, ...).

        Raises:
            ValueError: ``key`` is not a run key.
        """
        check_key(key)
        data = {"key": key, "params": params.to_dict() if isinstance(params, Params) else dict(params),
                "error": str(error), "extra": plain(dict(extra or {})), "created": now_iso()}
        write_json(self.path / FAILURES_DIR / f"{key}.json", data)

    def forget_failure(self, key: str) -> None:
        """Drop the failure recorded under ``key``, if any (a later attempt succeeded).

        Args:
            key: The run key.
        """
        (self.path / FAILURES_DIR / f"{key}.json").unlink(missing_ok=True)

    def failures(self) -> dict[str, dict[str, Any]]:
        """Recorded failures by key.

        Returns:
            Key to the failure's record (``params``, ``error``, ``extra``, ``created``); those whose key
            has since been stored are left out.
        """
        return {key: data for key, data in self._records(FAILURES_DIR).items() if not self.has(key)}

    def put_pending(self, key: str, data: Mapping[str, Any]) -> None:
        """Record remote work accepted for this key and not stored yet (``pending/<key>.json``).

        A sweep killed while waiting polls that task again instead of paying twice.

        Args:
            key: The run key.
            data: JSON-able facts of the work: the service, its task id.

        Raises:
            ValueError: ``key`` is not a run key.
        """
        check_key(key)
        write_json(self.path / PENDING_DIR / f"{key}.json", {"key": key, **plain(dict(data)), "created": now_iso()})

    def forget_pending(self, key: str) -> None:
        """Drop the pending entry under ``key``, if any (the run is stored, or the task is gone).

        Args:
            key: The run key.
        """
        (self.path / PENDING_DIR / f"{key}.json").unlink(missing_ok=True)

    def pending(self) -> dict[str, dict[str, Any]]:
        """Remote work accepted and not stored yet.

        Returns:
            Key to what :meth:`put_pending` recorded (plus ``key`` and ``created``).
        """
        return {key: data for key, data in self._records(PENDING_DIR).items() if not self.has(key)}

    def _records(self, sub: str) -> dict[str, dict[str, Any]]:
        folder = self.path / sub
        out: dict[str, dict[str, Any]] = {}
        if not folder.is_dir():
            return out
        for file in sorted(folder.glob("*.json")):
            if KEY_RE.match(file.stem):
                with contextlib.suppress(OSError, ValueError):
                    out[file.stem] = read_json(file)
        return out

    # --- reading -------------------------------------------------------------------------------------
    def runs(self) -> Iterator[Run]:
        """Every run, oldest first.

        Yields:
            Each :class:`Run` (damaged records are left out; :attr:`df` lists them).
        """
        for row in self.index.rows():
            yield Run(self.path / row["key"])

    def find(self, model: Any = None, **params: Any) -> list[Run]:
        """Runs whose params match every given field, oldest first.

        Args:
            model: The model id, its fingerprint or a fingerprint prefix of at least 8 digits (or a
                backend: its fingerprint); None for any model.
            **params: Params fields and the value to match; a value may be a list (or tuple/set) of
                accepted values, except for ``loras`` (a list of LoRAs is one value).

        Returns:
            The matching runs.

        Raises:
            ParamError: A name that is not a Params field.

        Example:
            >>> store.find(seed=[1, 2], guidance_scale=5.0)  # doctest: +SKIP
            [Run(7db355e5747bd6ab, seed=1, 832x480x81, steps=30)]
        """
        names = Params.field_names()
        for name, value in params.items():
            if name not in names:
                raise ParamError(name, f"a Params field ({', '.join(names)}) or model", value)
        if model is not None and hasattr(model, "identity") and not isinstance(model, str):
            model = model.identity.fingerprint
        tests = {name: _matcher(name, value) for name, value in params.items()}
        out = []
        for row in self.index.rows():
            core = row["core"]
            if model is not None and not (core["model"] == str(model) or core["fingerprint"] == model
                                          or (len(str(model)) >= 8 and core["fingerprint"].startswith(str(model)))):
                continue
            if all(test(core.get(name)) for name, test in tests.items()):
                out.append(Run(self.path / row["key"]))
        return out

    @property
    def df(self) -> pd.DataFrame:
        """The table of every run as the store holds it now (read on each access), oldest first.

        Columns: ``key``, every Params field (``loras`` as text), ``model`` (id), ``fingerprint``,
        ``digest``, ``seconds`` (generation time), ``created``, ``device``, ``dtype``, ``accel`` (the
        acceleration setting's label, ``exact`` when none), ``exact`` (frames bit-exact),
        ``prompt_tokens``, ``truncated``, ``path`` (run folder), ``mp4``, ``status`` (``stored``, or
        ``damaged`` when a video file is missing, a link, empty or not the size its record says, or the
        record does not read: such runs are listed, not dropped) and ``reason``, then one column per
        metric, then the ``extra`` values (prefixed ``extra_`` where a name is taken).

        Returns:
            A pandas DataFrame, one row per run.

        Example:
            >>> store.df[["seed", "guidance_scale", "flow_magnitude"]]  # doctest: +SKIP
        """
        import pandas as pd

        rows = []
        root = str(self.path)
        indexed = self.index.rows()
        for row in indexed:
            flat = {name: row["core"].get(name) for name in CORE_COLUMNS if name not in ("path", "mp4", *HEALTH)}
            flat["path"] = folder = os.path.join(root, row["key"])
            flat["mp4"] = os.path.join(folder, RUN_MP4)
            problem = file_problem(Path(folder), row.get("stored"))
            flat["status"], flat["reason"] = ("damaged", problem) if problem else ("stored", None)
            for name, value in row["metrics"].items():
                flat[name if name not in flat else f"metric_{name}"] = value
            for name, value in row["extra"].items():
                flat[name if name not in flat else f"extra_{name}"] = value
            rows.append(flat)
        listed = {row["key"] for row in indexed}
        for key in sorted(set(self.index.scan()) - listed):  # a record that does not read: shown, not dropped
            folder = os.path.join(root, key)
            rows.append({"key": key, "path": folder, "mp4": os.path.join(folder, RUN_MP4), "status": "damaged",
                         "reason": Run(folder).damage() or f"its {RUN_RECORD} cannot be read"})
        columns = list(CORE_COLUMNS)
        seen = set(columns)
        for flat in rows:
            for name in flat:
                if name not in seen:
                    seen.add(name)
                    columns.append(name)
        return pd.DataFrame(rows, columns=columns)

    def rebuild_index(self) -> int:
        """Rebuild the index from the run folders (also removes left-overs of killed writers).

        Returns:
            The number of runs.
        """
        return self.index.rebuild()

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on the store across processes (for read-modify-write of metrics)."""
        return file_lock(self.path / ".lock")


def _matcher(name: str, value: Any) -> Callable[[Any], bool]:
    """A predicate over an index value for ``find``."""
    if name == "loras":
        want = value if isinstance(value, str) else loras_text(value)
        return lambda got: got == want
    if isinstance(value, (list, tuple, set, frozenset)):
        tests = [_matcher(name, v) for v in value]
        return lambda got: any(t(got) for t in tests)
    if is_number(value):
        return lambda got: is_number(got) and float(got) == float(value)
    return lambda got: got == value


def default_store_path() -> Path:
    """Where tasks go and keys are looked up by default.

    Returns:
        ``$WANLAB_STORE`` when set, else ``runs/tasks``.

    Example:
        >>> default_store_path()  # doctest: +SKIP
        PosixPath('runs/tasks')
    """
    return Path(os.environ.get("WANLAB_STORE", "runs/tasks"))


def find_run(ref: Run | PathLike, store: StoreLike | None = None) -> Run:
    """A run from a :class:`Run`, a run folder (or a file in it), or a key.

    Args:
        ref: A Run, a run folder or a file in one, or a run key (or a unique prefix of 6+ digits).
        store: Where to look a key up; default: ``$WANLAB_STORE``, ``runs`` and each store folder
            directly under ``runs``.

    Returns:
        The :class:`Run`.

    Raises:
        ValueError: ``ref`` is none of these kinds.
        RunNotFoundError: A folder without a record, a file outside a run folder, or a key not found.
        FileNotFoundError: A path that does not exist and is not a key either.

    Example:
        >>> find_run("runs/demo/7db355e5747bd6ab").seed  # doctest: +SKIP
        1
    """
    if isinstance(ref, Run):
        return ref
    text = os.fspath(ref) if isinstance(ref, (str, os.PathLike)) else None
    if text is None:
        raise ValueError(f"run: must be a Run, a run folder or a run key; got {ref!r}")
    path = Path(text).expanduser()
    if path.is_file() and path.parent.joinpath(RUN_RECORD).is_file():
        path = path.parent
    if path.is_dir():
        if not (path / RUN_RECORD).is_file():
            raise RunNotFoundError(f"{path} is not a wanlab run folder: it has no {RUN_RECORD}")
        return Run(path)
    if path.exists():
        raise RunNotFoundError(f"{path} is a file outside any run folder; give a run folder (made by Store.put) "
                               "or a run key")
    if not PREFIX_RE.match(text):
        raise FileNotFoundError(f"run: no such run folder, and not a run key: {text}")
    if store is not None:
        return Store(store).get(text)
    candidates = []
    if os.environ.get("WANLAB_STORE"):
        candidates.append(Path(os.environ["WANLAB_STORE"]))
    root = Path("runs")
    candidates.append(root)
    if root.is_dir():
        candidates.extend(sorted(p for p in root.iterdir() if p.is_dir() and not PREFIX_RE.match(p.name)))
    for folder in candidates:
        with contextlib.suppress(RunNotFoundError):
            return Store(folder).get(text)
    looked = ", ".join(str(c) for c in candidates)
    raise RunNotFoundError(f"no run {text!r} in {looked}; pass the run folder or --store DIR")


__all__ = ["Store", "Run", "RunNotFoundError", "default_store_path", "find_run", "loras_text"]
