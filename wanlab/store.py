"""The run store: one folder per run on local disk, written atomically, indexed for fast tables.

A store is a folder::

    STORE/
      <key>/                  one run; the key is 16 hex digits (see :func:`run_key`)
        video.mp4             playable h264 (yuv420p), for looking at
        video.lossless.mkv    FFV1 RGB: reads back bit for bit, the frames of record
        record.json           the reproducibility record (params, model, settings, environment, digest, ...)
        metrics.json          measurements, once computed
        latents.npy           the final latents (float32), when asked for (acceleration sweeps
                              compare them with the exact run's)
      failures/<key>.json     requests that failed (not runs: a retry runs them again)
      tasks/<task_id>.json    finished results of ``pipe.submit`` tasks
      index.sqlite            a cache of the run folders behind ``df()`` and ``find()``
      .tmp-*                  runs being written; never visible as runs

A run is built in a temporary folder beside its final place, fsynced and renamed into place, so
it is whole or absent, never half written, even when the writer is killed. Two processes may
write one store at once: different keys land in different folders, and for the same key the
second writer finds the first one's run and returns it. The index is rebuilt from the run
folders when it is missing, damaged or stale (a folder added, removed or edited by hand).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .errors import ParamError, TaskError, WanlabError
from .fsutil import atomic_dir, atomic_file, write_json
from .params import LoRA, Params
from .record import now_iso, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .pipeline import Pipeline
    from .video import Video

#: Bumped when what goes into a run key changes (old runs then simply no longer match).
KEY_VERSION = 1
KEY_LENGTH = 16
KEY_RE = re.compile(r"^[0-9a-f]{16}$")
TASK_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STORE_FORMAT = 1
INDEX_NAME = "index.sqlite"
INDEX_VERSION = "2"
MP4_NAME = "video.mp4"
LOSSLESS_NAME = "video.lossless.mkv"
RECORD_NAME = "record.json"
METRICS_NAME = "metrics.json"
LATENTS_NAME = "latents.npy"
FAILURES_DIR = "failures"
TASKS_DIR = "tasks"
#: Temporary build folders older than this are left-overs of killed writers and are removed.
STALE_TEMP_SECONDS = 3600.0
#: Columns of ``Store.df()`` before the metric and extra columns, in this order.
CORE_COLUMNS = ("key", *Params.field_names(), "model", "fingerprint", "digest", "seconds", "created",
                "device", "dtype", "accel", "path", "mp4")


class RunNotFoundError(WanlabError, KeyError):
    """No run with that key in the store (a ``KeyError`` too, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --- run keys ---------------------------------------------------------------------------------------
def _model_fingerprint(model: Any) -> str:
    if isinstance(model, Mapping):
        model = model.get("fingerprint")
    if not isinstance(model, str) or not model:
        raise ValueError("run key: the record names no model fingerprint (record['model']['fingerprint']); "
                         "store runs made by Pipeline.generate, whose records carry one")
    return model


def key_parts(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a run key is the hash of: resolved params (LoRA files by sha256 and scale), the model's
    weights fingerprint, generation settings (dtype, max_sequence_length, scheduler, ...) and
    acceleration settings. Environment, timings and creation time are not part of it."""
    if not isinstance(record, Mapping) or "params" not in record:
        raise ValueError("run key: needs a record with 'params', 'model', 'settings', 'accel' and 'loras'")
    raw = record["params"]
    params = raw.to_dict() if isinstance(raw, Params) else dict(raw)
    if params.get("seed", -1) == -1:
        raise ParamError("seed", "resolved (not -1) before a run key can be computed", params.get("seed"))
    loras = record.get("loras") or []
    requested = params.get("loras") or []
    if len(loras) != len(requested):
        raise ValueError(f"run key: the record lists {len(requested)} LoRAs in params but {len(loras)} LoRA "
                         "file hashes; records from Pipeline.generate carry both")
    params["loras"] = [{"sha256": lo["sha256"], "scale": float(lo["scale"])} for lo in loras]
    return {"v": KEY_VERSION, "params": params, "model": _model_fingerprint(record.get("model")),
            "settings": dict(record.get("settings") or {}), "accel": dict(record.get("accel") or {})}


def run_key(record_or_parts: Any) -> str:
    """The run key (16 hex digits) of a record dict, a :class:`Video` from ``generate``, or
    :func:`key_parts`' output: the same request on the same weights and settings gives the same
    key in every process."""
    data = record_or_parts.to_record() if hasattr(record_or_parts, "to_record") else record_or_parts
    if isinstance(data, Mapping) and data.get("v") == KEY_VERSION and isinstance(data.get("model"), str):
        parts = dict(data)
    else:
        parts = key_parts(data)
    return stable_hash(parts, KEY_LENGTH)


def pipe_accel(pipe: Any) -> dict[str, Any]:
    """The acceleration settings a pipeline will record (``{"cache": "none"}`` when it has none)."""
    fn = getattr(pipe, "accel_settings", None)
    if callable(fn):
        return dict(fn())
    value = getattr(pipe, "accel", None)
    if isinstance(value, Mapping):
        return dict(value)
    return {"cache": "none"}


def accel_record(pipe: Any, accel: Any = None) -> dict[str, Any]:
    """The record's ``"accel"`` entry for a call with ``accel`` (None: the pipeline's default)."""
    if accel is None:
        return pipe_accel(pipe)
    from .accel import Accel

    return Accel.coerce(accel).to_dict()


def key_for(pipe: "Pipeline", params: Params, accel: Any = None) -> str:
    """The key ``pipe.generate(params, accel=accel)`` will be stored under, computed before generating.

    ``params`` must have a resolved seed (``params.resolved()``); LoRA files are hashed (a missing
    file raises :class:`~wanlab.LoRAError`); ``accel`` is a per-call acceleration setting (an
    ``Accel``, preset name or mapping; None means the pipeline's default).
    """
    if not isinstance(params, Params):
        raise ParamError("params", "a wanlab.Params", params)
    if params.seed == -1:
        raise ParamError("seed", "resolved (not -1) before a run key can be computed; use params.resolved()", -1)
    record = {"params": params.to_dict(), "model": pipe.fingerprint, "settings": pipe.generation_settings(),
              "accel": accel_record(pipe, accel), "loras": pipe.loras.describe(params.loras)}
    return run_key(key_parts(record))


def loras_text(loras: Any) -> str:
    """LoRAs as one string for tables: ``path:scale`` joined by ``; `` (empty when none)."""
    items = [LoRA.coerce(lo) for lo in (loras or [])]
    return "; ".join(f"{lo.path}:{lo.scale:g}" for lo in items)


# --- small file helpers -----------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays to plain Python, recursively (json's default=str would stringify them)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and type(value).__module__.startswith("numpy"):
        return value.tolist()
    return value


def _save_latents(path: Path, latents: Any) -> None:
    import numpy as np

    with open(path, "wb") as fh:  # np.save(str) would append ".npy" to a temporary name
        np.save(fh, np.ascontiguousarray(np.asarray(latents, dtype=np.float32)), allow_pickle=False)


def accel_label(data: Any) -> str:
    """The short label of a record's ``"accel"`` entry (``exact``, ``fbc``, ``first_block(threshold=0.3)``)."""
    return "exact" if not data else _accel_label(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _accel_label(text: str) -> str:
    """Labels by canonical JSON: a store has few settings and many runs (the index builds one per run)."""
    from .accel import Accel

    try:
        return Accel.from_dict(json.loads(text)).label
    except (ValueError, TypeError):  # a setting this version no longer knows: show it as recorded
        return text


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _stamp(folder: str) -> str | None:
    """What changes when a run's record or metrics change; None when the folder is not a run."""
    try:
        rec = os.stat(os.path.join(folder, RECORD_NAME))
    except OSError:
        return None
    try:
        met = os.stat(os.path.join(folder, METRICS_NAME))
        metrics = f"{met.st_mtime_ns}:{met.st_size}"
    except OSError:
        metrics = "-"
    return f"{rec.st_mtime_ns}:{rec.st_size}/{metrics}"


# --- one run ----------------------------------------------------------------------------------------
class Run:
    """One stored run: ``key``, ``path`` (its folder), ``record``, ``params``, ``metrics``, ``video()``, ``mp4``."""

    def __init__(self, path: str | os.PathLike[str], record: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.key = self.path.name
        self._record = dict(record) if record is not None else None

    def __repr__(self) -> str:
        try:
            p = self.params
            what = f"seed={p.seed}, {p.width}x{p.height}x{p.num_frames}, steps={p.steps}"
        except (OSError, ValueError, KeyError):
            what = "unreadable record"
        return f"Run({self.key}, {what})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.path.resolve() == self.path.resolve()

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def record(self) -> dict[str, Any]:
        """The reproducibility record (``record.json``), read once."""
        if self._record is None:
            file = self.path / RECORD_NAME
            if not file.is_file():
                raise RunNotFoundError(f"{self.path} is not a wanlab run folder: it has no {RECORD_NAME}")
            self._record = _read_json(file)
        return self._record

    @property
    def params(self) -> Params:
        return Params.from_dict(self.record["params"])

    @property
    def seed(self) -> int:
        return int(self.record["params"]["seed"])

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.record.get("model") or {})

    @property
    def digest(self) -> str:
        """sha256 of the raw frames (as :attr:`Video.digest`)."""
        return str(self.record["digest"])

    @property
    def created(self) -> str | None:
        return self.record.get("created")

    @property
    def seconds(self) -> float | None:
        return (self.record.get("timings") or {}).get("total")

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.record.get("extra") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        """Measurements stored with the run (``metrics.json``); empty until computed."""
        file = self.path / METRICS_NAME
        try:
            return _read_json(file)
        except FileNotFoundError:
            return {}

    @property
    def mp4(self) -> Path:
        """The playable h264 mp4 (for looking; its pixels are not exact)."""
        return self.path / MP4_NAME

    @property
    def lossless(self) -> Path:
        """The FFV1 file holding the exact frames."""
        return self.path / LOSSLESS_NAME

    @property
    def has_latents(self) -> bool:
        return (self.path / LATENTS_NAME).is_file()

    def latents(self) -> Any:
        """The final latents (float32 numpy array) when they were stored (``put(latents=True)``), else None."""
        if not self.has_latents:
            return None
        import numpy as np

        return np.load(self.path / LATENTS_NAME, allow_pickle=False)

    def video(self, *, check: bool = True) -> "Video":
        """The run's video with its exact (lossless) frames and its record.

        With ``check`` (default) the frames' digest is compared with the recorded one and a
        mismatch raises :class:`WanlabError` (a damaged file).
        """
        from .video import Video

        rec = self.record
        frames = Video.load(self.lossless).frames
        meta = {k: v for k, v in rec.items() if k not in ("fps", "shape", "digest", "timings", "model", "params")}
        video = Video(frames, fps=float(rec.get("fps", 16.0)), params=self.params, model=self.model,
                      timings=dict(rec.get("timings") or {}), record=meta, path=self.mp4)
        if check and video.digest != rec.get("digest"):
            raise WanlabError(f"run {self.key}: the frames in {self.lossless.name} do not match the recorded digest "
                              "(the file is damaged, or record.json was edited)")
        return video


# --- the store --------------------------------------------------------------------------------------
class Store:
    """A run store on local disk (see the module docstring for the layout).

    ``put`` writes runs atomically; ``get``/``has``/``find``/``runs`` read them; ``df()`` is a
    pandas table of every run, served from an SQLite index that is rebuilt from the run folders
    when missing or stale. Safe for several processes (and threads) at once.
    """

    def __init__(self, path: str | os.PathLike[str] = "runs") -> None:
        if isinstance(path, Store):
            path = path.path
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise WanlabError(f"store: {self.path} is a file; a store is a folder")

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __len__(self) -> int:
        return len(self._scan())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.has(key)

    def __iter__(self) -> Iterator[Run]:
        return self.runs()

    # --- keys ----------------------------------------------------------------------------------------
    def key_for(self, pipe: "Pipeline", params: Params, accel: Any = None) -> str:
        """The key ``pipe.generate(params, accel=accel)`` will be stored under (``params`` needs a
        resolved seed; ``accel=None`` means the pipeline's default acceleration)."""
        return key_for(pipe, params, accel)

    def has(self, key: str) -> bool:
        """True when a whole run with this key is in the store."""
        return isinstance(key, str) and bool(KEY_RE.match(key)) and (self.path / key / RECORD_NAME).is_file()

    def get(self, key: str) -> Run:
        """The run with this key (or a unique prefix of at least 6 digits of it)."""
        if isinstance(key, Run):
            return key
        if not isinstance(key, str) or not re.match(r"^[0-9a-f]{6,16}$", key):
            raise RunNotFoundError(f"run key: must be 6 to {KEY_LENGTH} hex digits; got {key!r}")
        if self.has(key):
            return Run(self.path / key)
        matches = [k for k in self._scan() if k.startswith(key)] if len(key) < KEY_LENGTH else []
        if len(matches) == 1:
            return Run(self.path / matches[0])
        if len(matches) > 1:
            raise RunNotFoundError(f"run key {key!r} is ambiguous in {self.path}: it starts {len(matches)} keys "
                                   f"({', '.join(sorted(matches)[:4])}...); give more digits")
        raise RunNotFoundError(f"no run {key!r} in store {self.path}")

    # --- writing -------------------------------------------------------------------------------------
    def put(self, video: "Video", metrics: Mapping[str, Any] | None = None,
            extra: Mapping[str, Any] | None = None, *, latents: bool = False) -> Run:
        """Store a video from ``Pipeline.generate`` as a run, atomically; return the :class:`Run`.

        If the key is already stored (this or another process wrote it), the existing run is
        returned and nothing is rewritten; ``metrics`` given then are merged into its metrics.
        ``extra`` (JSON-able) is kept in the record under ``"extra"`` (sweep name, notes, ...).
        ``latents=True`` also keeps the video's final latents (``latents.npy``, float32); they are
        added to an existing run that lacks them when the frames are the same (same digest).
        """
        if not hasattr(video, "to_record") or getattr(video, "params", None) is None:
            raise ValueError("store.put: needs a wanlab.Video with params (as Pipeline.generate returns)")
        if latents and getattr(video, "latents", None) is None:
            raise ValueError("store.put: latents=True needs a Video with latents (as Pipeline.generate returns)")
        record = video.to_record()
        parts = key_parts(record)
        key = run_key(parts)
        folder = self.path / key
        if not self.has(key):
            files = {"mp4": MP4_NAME, "lossless": LOSSLESS_NAME, **({"latents": LATENTS_NAME} if latents else {})}
            record.update(key=key, key_parts=parts, store_format=STORE_FORMAT, extra=_jsonable(dict(extra or {})),
                          files=files)
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                with atomic_dir(folder) as tmp:
                    video.save(tmp / MP4_NAME)
                    (tmp / MP4_NAME).with_suffix(".json").unlink(missing_ok=True)  # record.json replaces it
                    write_json(tmp / RECORD_NAME, record)
                    if latents:
                        _save_latents(tmp / LATENTS_NAME, video.latents)
                    if metrics:
                        write_json(tmp / METRICS_NAME, _jsonable(dict(metrics)))
                metrics = None
            except FileExistsError:
                if not self.has(key):
                    raise WanlabError(f"store: {folder} exists but is not a whole run (it has no {RECORD_NAME}); "
                                      "move it away and put again") from None
                # another writer stored the same key first: theirs is as good as ours
        run = Run(folder)
        if latents and not run.has_latents:
            if run.digest != video.digest:
                raise WanlabError(f"store: run {key} holds other frames than this video (digest {run.digest[:12]} vs "
                                  f"{video.digest[:12]}), so its latents cannot be added")
            with atomic_file(folder / LATENTS_NAME) as tmp:
                _save_latents(tmp, video.latents)
        if metrics:
            self.put_metrics(key, metrics)
        video.path = folder / MP4_NAME
        self._index_put([key])
        self.forget_failure(key)
        return run

    def put_metrics(self, key: str, metrics: Mapping[str, Any], *, replace: bool = False) -> Run:
        """Add ``metrics`` to a run's ``metrics.json`` (or replace it all with ``replace=True``), atomically."""
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics: must be a dict of name -> value; got {type(metrics).__name__}")
        run = self.get(key)
        with self._lock():
            current = {} if replace else run.metrics
            current.update(_jsonable(dict(metrics)))
            write_json(run.path / METRICS_NAME, current)
        self._index_put([run.key])
        return run

    def put_failure(self, key: str, params: Params, error: str, extra: Mapping[str, Any] | None = None) -> None:
        """Record that the request with this key failed (``failures/<key>.json``); not a run, so
        ``has(key)`` stays False and a retry runs it again. A later successful ``put`` removes it."""
        self._check_key(key)
        data = {"key": key, "params": params.to_dict() if isinstance(params, Params) else dict(params),
                "error": str(error), "extra": _jsonable(dict(extra or {})), "created": now_iso()}
        write_json(self.path / FAILURES_DIR / f"{key}.json", data)

    def forget_failure(self, key: str) -> None:
        """Drop the failure recorded under ``key``, if any (a later attempt succeeded)."""
        (self.path / FAILURES_DIR / f"{key}.json").unlink(missing_ok=True)

    def failures(self) -> dict[str, dict[str, Any]]:
        """Recorded failures by key (those whose key has since been stored are left out)."""
        folder = self.path / FAILURES_DIR
        out: dict[str, dict[str, Any]] = {}
        if not folder.is_dir():
            return out
        for file in sorted(folder.glob("*.json")):
            if KEY_RE.match(file.stem) and not self.has(file.stem):
                with contextlib.suppress(OSError, ValueError):
                    out[file.stem] = _read_json(file)
        return out

    # --- task results (see wanlab.tasks) --------------------------------------------------------------
    def put_task(self, task_id: str, result: Mapping[str, Any]) -> None:
        """Keep a finished task's result (``tasks/<task_id>.json``)."""
        self._check_task_id(task_id)
        write_json(self.path / TASKS_DIR / f"{task_id}.json", _jsonable(dict(result)))

    def task_result(self, task_id: str) -> dict[str, Any]:
        """A finished task's result in the hosted API's shape, from any process."""
        self._check_task_id(task_id)
        file = self.path / TASKS_DIR / f"{task_id}.json"
        try:
            return _read_json(file)
        except FileNotFoundError:
            raise TaskError(f"unknown task id {task_id!r}: store {self.path} holds no finished task with it") from None

    def task_ids(self) -> list[str]:
        """Ids of the finished tasks kept in this store."""
        folder = self.path / TASKS_DIR
        return sorted(f.stem for f in folder.glob("*.json") if TASK_ID_RE.match(f.stem)) if folder.is_dir() else []

    # --- reading -------------------------------------------------------------------------------------
    def runs(self) -> Iterator[Run]:
        """Every run, oldest first."""
        for row in self._rows():
            yield Run(self.path / row["key"])

    def find(self, model: Any = None, **params: Any) -> list[Run]:
        """Runs whose params match every given field, oldest first.

        A value may be a list (or tuple/set) of accepted values, except for ``loras`` (a list of
        LoRAs is one value). ``model`` matches the model id, its fingerprint or a fingerprint
        prefix of at least 8 digits (or a ``Pipeline``: its fingerprint).
        """
        names = Params.field_names()
        for name, value in params.items():
            if name not in names:
                raise ParamError(name, f"a Params field ({', '.join(names)}) or model", value)
        if model is not None and hasattr(model, "fingerprint") and not isinstance(model, str):
            model = model.fingerprint
        tests = {name: _matcher(name, value) for name, value in params.items()}
        out = []
        for row in self._rows():
            core = row["core"]
            if model is not None and not (core["model"] == str(model) or core["fingerprint"] == model
                                          or (len(str(model)) >= 8 and core["fingerprint"].startswith(str(model)))):
                continue
            if all(test(core.get(name)) for name, test in tests.items()):
                out.append(Run(self.path / row["key"]))
        return out

    def df(self) -> "pd.DataFrame":
        """One row per run: ``key``, every Params field (``loras`` as text), ``model`` (id),
        ``fingerprint``, ``digest``, ``seconds`` (total generation time), ``created``, ``device``,
        ``dtype``, ``accel`` (the acceleration setting's label, ``exact`` when none), ``path`` (run
        folder), ``mp4``, then one column per metric, then the ``extra``
        values (prefixed ``extra_`` where a name is taken). Oldest first."""
        import pandas as pd

        rows = []
        root = str(self.path)
        for row in self._rows():
            flat = row["core"]
            flat["path"] = folder = os.path.join(root, row["key"])
            flat["mp4"] = os.path.join(folder, MP4_NAME)
            for name, value in row["metrics"].items():
                flat[name if name not in flat else f"metric_{name}"] = value
            for name, value in row["extra"].items():
                flat[name if name not in flat else f"extra_{name}"] = value
            rows.append(flat)
        columns = list(CORE_COLUMNS)
        seen = set(columns)
        for flat in rows:
            for name in flat:
                if name not in seen:
                    seen.add(name)
                    columns.append(name)
        return pd.DataFrame(rows, columns=columns)

    def rebuild_index(self) -> int:
        """Rebuild the index from the run folders (also removes left-overs of killed writers); returns
        the number of runs."""
        self._clean_temp()
        if not self.path.is_dir():
            return 0
        with self._index() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM runs")
            con.execute("COMMIT")
        return len(self._rows())

    # --- internals -----------------------------------------------------------------------------------
    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ValueError(f"run key: must be {KEY_LENGTH} hex digits; got {key!r}")

    @staticmethod
    def _check_task_id(task_id: str) -> None:
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            raise TaskError(f"unknown task id {task_id!r}: task ids are uuid4 strings as returned by pipe.submit")

    def _scan(self) -> dict[str, str]:
        """{key: stamp} of every whole run folder (temporary build folders never match a key)."""
        out: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.path))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for entry in entries:
            if KEY_RE.match(entry.name):
                stamp = _stamp(entry.path)
                if stamp is not None:
                    out[entry.name] = stamp
        return out

    def _row(self, key: str) -> dict[str, Any] | None:
        """The index row of one run: core columns, metrics and extra."""
        run = Run(self.path / key)
        try:
            rec = run.record
            metrics = run.metrics
            params = dict(rec["params"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a hand-damaged record: not listed until repaired
        params["loras"] = loras_text(params.get("loras"))
        model = rec.get("model") or {}
        env = rec.get("environment") or {}
        core = {"key": key, **{name: params.get(name) for name in Params.field_names()},
                "model": model.get("id"), "fingerprint": model.get("fingerprint"), "digest": rec.get("digest"),
                "seconds": (rec.get("timings") or {}).get("total"), "created": rec.get("created"),
                "device": env.get("device"), "dtype": (rec.get("settings") or {}).get("dtype"),
                "accel": accel_label(rec.get("accel"))}
        metrics = metrics if isinstance(metrics, dict) else {}
        extra = rec.get("extra") if isinstance(rec.get("extra"), dict) else {}
        return {"key": key, "core": core, "metrics": metrics, "extra": extra}

    @contextlib.contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index, created (or recreated when damaged or of another version)."""
        file = self.path / INDEX_NAME
        for attempt in (1, 2):
            con = sqlite3.connect(file, timeout=60.0, isolation_level=None)
            try:
                con.execute("PRAGMA busy_timeout=60000")
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
                file.unlink(missing_ok=True)  # damaged ("not a database", "malformed"): only a cache
                continue
            try:
                yield con
            finally:
                con.close()
            return

    def _index_put(self, keys: Sequence[str]) -> None:
        with contextlib.suppress(sqlite3.Error, OSError):  # the index is a cache; the next read repairs it
            rows = []
            for key in keys:
                stamp, row = _stamp(os.path.join(self.path, key)), self._row(key)
                if stamp is not None and row is not None:
                    rows.append((key, stamp, row["core"]["created"], json.dumps(row, default=str)))
            with self._index() as con:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", rows)
                con.execute("COMMIT")

    def _rows(self) -> list[dict[str, Any]]:
        """Every run's index row, oldest first, after bringing the index up to date with the folders."""
        if not self.path.is_dir():
            return []
        if not (self.path / INDEX_NAME).exists():
            self._clean_temp()
        folders = self._scan()
        try:
            return self._synced_rows(folders)
        except (sqlite3.OperationalError, OSError):
            if os.access(self.path, os.W_OK):
                raise
            # a read-only store (someone else's runs): read the folders without an index
            rows = [row for row in (self._row(key) for key in folders) if row is not None]
            return sorted(rows, key=lambda row: (row["core"]["created"] or "", row["key"]))

    def _synced_rows(self, folders: dict[str, str]) -> list[dict[str, Any]]:
        with self._index() as con:
            indexed = dict(con.execute("SELECT key, stamp FROM runs").fetchall())
            stale = [key for key, stamp in folders.items() if indexed.get(key) != stamp]
            gone = [key for key in indexed if key not in folders]
            if stale or gone:
                rows = []
                for key in stale:
                    row = self._row(key)
                    if row is not None:
                        rows.append((key, folders[key], row["core"]["created"], json.dumps(row, default=str)))
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", rows)
                con.executemany("DELETE FROM runs WHERE key = ?", [(key,) for key in gone])
                con.execute("COMMIT")
            found = con.execute("SELECT row FROM runs ORDER BY created, key").fetchall()
        return [json.loads(text) for (text,) in found]

    def _clean_temp(self, max_age: float = STALE_TEMP_SECONDS) -> None:
        """Remove build folders of writers that were killed (older than ``max_age`` seconds)."""
        now = time.time()
        for folder in self.path.glob(".tmp-*") if self.path.is_dir() else []:
            with contextlib.suppress(OSError):
                if folder.is_dir() and now - folder.stat().st_mtime > max_age:
                    shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on the store across processes (for read-modify-write of metrics)."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        with open(self.path / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _matcher(name: str, value: Any):
    """A predicate over an index value for ``find``."""
    if name == "loras":
        want = value if isinstance(value, str) else loras_text(value)
        return lambda got: got == want
    if isinstance(value, (list, tuple, set, frozenset)):
        tests = [_matcher(name, v) for v in value]
        return lambda got: any(t(got) for t in tests)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return lambda got: isinstance(got, (int, float)) and float(got) == float(value)
    return lambda got: got == value


def default_store_path() -> Path:
    """Where tasks go and keys are looked up by default: ``$WANLAB_STORE`` or ``runs/tasks``."""
    return Path(os.environ.get("WANLAB_STORE", "runs/tasks"))


def find_run(ref: Any, store: Any = None) -> Run:
    """A run from a :class:`Run`, a run folder (or a file in it), or a key looked up in ``store``
    (default: ``$WANLAB_STORE``, ``runs`` and each store folder directly under ``runs``)."""
    if isinstance(ref, Run):
        return ref
    text = os.fspath(ref) if isinstance(ref, (str, os.PathLike)) else None
    if text is None:
        raise ValueError(f"run: must be a Run, a run folder or a run key; got {ref!r}")
    path = Path(text).expanduser()
    if path.is_file() and path.parent.joinpath(RECORD_NAME).is_file():
        path = path.parent
    if path.is_dir():
        if not (path / RECORD_NAME).is_file():
            raise RunNotFoundError(f"{path} is not a wanlab run folder: it has no {RECORD_NAME}")
        return Run(path)
    if path.exists():
        raise RunNotFoundError(f"{path} is a file outside any run folder; give a run folder (made by Store.put) "
                               "or a run key")
    if not re.match(r"^[0-9a-f]{6,16}$", text):
        raise FileNotFoundError(f"run: no such run folder, and not a run key: {text}")
    if store is not None:
        return Store(store).get(text)
    candidates = []
    if os.environ.get("WANLAB_STORE"):
        candidates.append(Path(os.environ["WANLAB_STORE"]))
    root = Path("runs")
    candidates.append(root)
    if root.is_dir():
        candidates.extend(sorted(p for p in root.iterdir() if p.is_dir() and not KEY_RE.match(p.name)))
    for folder in candidates:
        with contextlib.suppress(RunNotFoundError):
            return Store(folder).get(text)
    looked = ", ".join(str(c) for c in candidates)
    raise RunNotFoundError(f"no run {text!r} in {looked}; pass the run folder or --store DIR")
