"""Re-generate a stored run from its record and report whether it comes out identical, or what differs.

:func:`verify` runs in the current environment on purpose (it does not re-apply the recorded torch
thread count or versions): the point is to learn whether *this* environment reproduces the run, and if
not, which recorded facts differ from now and how far the frames moved. :func:`format_report` and
:func:`to_json` present its answer.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WanlabError
from .frames import frames_digest, psnr_per_frame
from .keys import record_key_parts, run_key
from .params import Params
from .record import ENVIRONMENT_FIELDS, environment, stable_hash
from .store import find_run
from .video import RUN_RECORD, Video, lossless_path, sidecar_path

#: Extensions of files ``Video.save`` writes (a file with one of these outside a run folder is a saved video).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".npz", ".gif")


class SavedVideo:
    """A saved or in-memory :class:`~wanlab.Video` as something to verify, with a stored Run's interface.

    Args:
        video: the video (its params and model recorded by ``generate``).
        path: the file it was saved to (None: in memory).
        record: its sidecar record as written (None: ``video.to_record()``).

    Attributes:
        record: the generation record.
        key: the run key its record hashes to.
        path: the file, or ``<in memory>``.
        exact: whether the frames are lossless (in memory, a lossless copy beside the file, or .mkv/.npz).

    Raises:
        WanlabError: the video holds no generation record.

    Example:
        >>> SavedVideo.load(Path("out/fox.mp4")).key  # doctest: +SKIP
        '47b29c18240fe222'
    """

    def __init__(self, video: Video, path: Path | None = None, record: Mapping[str, Any] | None = None) -> None:
        if video.params is None:
            where = f"{path}: its sidecar {sidecar_path(path).name} is missing or" if path else "this Video"
            raise WanlabError(f"{where} holds no generation record (params, model): only videos made by "
                              "wanlab's generate can be re-generated")
        self._video = video
        self.record = dict(record) if record is not None else video.to_record()
        self.path = path if path is not None else Path(str(video.path or "<in memory>"))
        try:
            self.key = run_key(record_key_parts(self.record))
        except ValueError:  # a sidecar without settings/accel/loras: not a generate() record
            self.key = self.record["digest"][:16]
        self.exact = path is None or lossless_path(path).exists() or path.suffix.lower() in (".mkv", ".npz")

    @classmethod
    def load(cls, path: Path) -> SavedVideo:
        """A video file saved with ``Video.save``, with the record in its JSON sidecar.

        Args:
            path: the video file.

        Returns:
            The :class:`SavedVideo`.

        Raises:
            WanlabError: no sidecar beside the file, one that cannot be read, or one without a generation record.
        """
        if not sidecar_path(path).is_file():
            raise WanlabError(f"{path}: no sidecar {sidecar_path(path).name} beside it: a video cannot be "
                              "re-generated without the record Video.save writes there")
        # the sidecar as written, not the loaded video's to_record(): its digest is of the frames
        # generated, which an h264-only file no longer holds
        try:
            record = json.loads(sidecar_path(path).read_text())
        except (OSError, ValueError) as exc:
            raise WanlabError(f"{sidecar_path(path)}: the video's record cannot be read ({exc})") from None
        return cls(Video.load(path), path, record)

    def video(self, check: bool = False) -> Video:
        """The video, as verify compares it (the lossless copy's frames where there is one).

        Args:
            check: accepted for a stored Run's signature; the frames were checked when loaded.

        Returns:
            The :class:`~wanlab.Video`.
        """
        return self._video


def _source(run: Any, store: Any) -> Any:
    """What ``verify`` was given, as an object with ``record``, ``key``, ``path`` and ``video()``."""
    if isinstance(run, Video):
        return SavedVideo(run)
    if isinstance(run, (str, os.PathLike)):
        path = Path(os.fspath(run)).expanduser()
        if (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES
                and not path.parent.joinpath(RUN_RECORD).is_file()):
            return SavedVideo.load(path)
    return find_run(run, store)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data} if prefix else {"": data}


def _changes(recorded: Mapping[str, Any], now: Mapping[str, Any], strip: str = "") -> dict[str, tuple[Any, Any]]:
    """{field: (recorded, now)} for every flattened field whose value differs."""
    a, b = _flatten(recorded), _flatten(now)
    out = {}
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            label = name[len(strip):] if strip and name.startswith(strip) else name
            out[label] = (a.get(name), b.get(name))
    return out


def _env_subset(env: Mapping[str, Any]) -> dict[str, Any]:
    return {name: env.get(name) for name in ENVIRONMENT_FIELDS if name in env}


def frame_differences(expected: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Per-frame max |delta| (0..255) and PSNR (dB, inf for an equal frame) of two equal-shaped videos.

    Args:
        expected: the stored frames, uint8 (T, H, W, 3).
        actual: the re-generated frames, the same shape.

    Returns:
        ``max_abs_delta`` and ``psnr`` (lists, one per frame), ``max_abs_delta_max``, ``psnr_min`` and
        ``frames_differing``.

    Example:
        >>> a = np.zeros((3, 4, 4, 3), np.uint8)
        >>> b = a.copy(); b[2, 0, 0, 0] = 10
        >>> d = frame_differences(a, b)
        >>> d["max_abs_delta"], d["frames_differing"], round(d["psnr_min"], 2)
        ([0, 0, 10], 1, 44.94)
    """
    deltas = [int(np.max(np.abs(e.astype(np.int16) - a.astype(np.int16)))) for e, a in zip(expected, actual)]
    psnrs = [float(v) for v in psnr_per_frame(expected, actual)]
    return {"max_abs_delta": deltas, "psnr": psnrs, "max_abs_delta_max": max(deltas), "psnr_min": min(psnrs),
            "frames_differing": sum(1 for d in deltas if d)}


def _pick_device(recorded: str | None) -> str | None:
    """The recorded device when this machine has it, else the default (the change is then reported)."""
    import torch

    if not recorded:
        return None
    if recorded.startswith("cuda"):
        return recorded if torch.cuda.is_available() else None
    if recorded == "mps":
        return recorded if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else None
    return recorded


def check_record(source: Any) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """What a record says about itself, without any model.

    Args:
        source: a stored Run or a :class:`SavedVideo` (anything with ``record``, ``key`` and ``path``).

    Returns:
        ``(param_changes, setting_changes, notes)``: the params and key-relevant settings changed in
        the record after the run (its frozen ``key_parts`` against what it says now), each
        ``{field: (value the run was made with, value now)}``, and sentences about what cannot be told.

    Raises:
        WanlabError: the record lacks ``params``, ``model`` or ``digest``.

    Example:
        >>> check_record(wanlab.Store("runs/demo").get("47b29c18240fe222"))  # doctest: +SKIP
        ({}, {}, [])
    """
    record = source.record
    for field in ("params", "model", "digest"):
        if field not in record:
            raise WanlabError(f"{source.path} has a record with no {field!r}: it is not a complete wanlab record")
    notes: list[str] = []
    key = record.get("key") or source.key
    param_changes: dict[str, tuple[Any, Any]] = {}
    setting_changes: dict[str, tuple[Any, Any]] = {}
    now_parts = record_key_parts(record)
    original = record.get("key_parts")
    if isinstance(original, Mapping):
        if stable_hash(dict(original), len(key)) != key:
            notes.append("record.json's key_parts no longer hash to the run key: the record was edited; "
                         "the values the run was made with cannot be told")
        else:
            param_changes = _changes(original.get("params", {}), now_parts["params"])
            other = {k: v for k, v in original.items() if k not in ("params", "v")}
            now_other = {k: v for k, v in now_parts.items() if k not in ("params", "v")}
            for name, change in _changes(other, now_other).items():
                setting_changes[f"record.{name}"] = change
    elif record.get("key") and stable_hash(now_parts, len(key)) != key:
        notes.append("the record's params or settings no longer match its run key: it was edited after the run")
    return param_changes, setting_changes, notes


def _backend_for(record: Mapping[str, Any], model: Any, device: str | None, source: Any) -> Any:
    """The recorded model (or ``model``), loaded with the recorded settings.

    It runs on ``device``, else the recorded device when this machine has it.
    """
    from .pipeline import load

    settings = dict(record.get("settings") or {})
    name = model if model is not None else (record.get("model") or {}).get("id")
    if not name:
        raise WanlabError(f"{source.path}: the record names no model id; pass model=")
    kwargs: dict[str, Any] = {"progress": False,
                              "device": device or _pick_device((record.get("environment") or {}).get("device"))}
    if settings.get("dtype"):
        kwargs["dtype"] = settings["dtype"]
    if settings.get("max_sequence_length"):
        kwargs["max_sequence_length"] = settings["max_sequence_length"]
    for flag in ("cpu_offload", "vae_tiling"):
        if isinstance(settings.get(flag), bool):
            kwargs[flag] = settings[flag]
    if settings.get("group_offload"):
        kwargs["group_offload"] = settings["group_offload"]
    return load(os.fspath(name) if isinstance(name, os.PathLike) else name, **kwargs)


def verify(run: Any, *, model: Any = None, backend: Any = None, pipe: Any = None, device: str | None = None,
           store: Any = None) -> dict[str, Any]:
    """Re-generate ``run`` from its record and compare; the record is checked first, with no model loaded.

    Args:
        run: A :class:`~wanlab.store.Run`, a run folder (or a file in it), a run key looked up in
            ``store``, a video file saved with ``Video.save`` (with its ``.json`` sidecar), or a
            :class:`~wanlab.Video`.
        model: A model to load instead of the record's model id (a built-in name, folder or hub id),
            with the recorded dtype, ``max_sequence_length`` and VAE/offload settings.
        backend: A loaded pipeline or other backend to re-generate on. A run downloaded from a service
            that is not wanlab (``exact: false``) cannot be re-generated bit for bit: give that service
            here and it is compared with a new download (digest and PSNR, no environment: ``lossy``).
        pipe: The same as ``backend`` (its older name).
        device: Where a loaded model runs (default: the recorded device when this machine has it).
        store: Where a run key is looked up (default: ``$WANLAB_STORE``, ``runs`` and the stores under it).

    Returns:
        A dict: ``identical`` (frames bit-identical and nothing below changed), ``frames_identical``,
        ``key``, ``run`` (folder), ``model`` (id used), ``digest_expected``/``digest_actual``,
        ``shape_expected``/``shape_actual``, ``environment_changes`` ({field: (recorded, now)}, e.g.
        ``torch_threads``, ``versions.torch``), ``param_changes`` ({field: (value the run was made with,
        value in the record now)}: non-empty only when the record was edited after the run),
        ``setting_changes`` (model fingerprint, dtype, scheduler, acceleration or LoRA files that differ
        between the record and the re-generation; names starting ``record.`` are key-relevant settings
        edited in the record after the run), ``frames`` (None when identical, else per-frame
        ``max_abs_delta`` and ``psnr`` lists with ``max_abs_delta_max``, ``psnr_min``,
        ``frames_differing``), ``damage`` (None, or why the stored run's files are missing, truncated or
        do not match their record: such a run is never ``identical``), ``seconds``, ``lossy`` and ``notes``.

    Raises:
        ValueError: Both a backend (``backend``/``pipe``) and ``model`` are given.
        WanlabError: The run cannot be found or its record is incomplete, it names no model, or it is a
            lossy download and no service to download it again is given.

    Example:
        >>> wanlab.verify("runs/demo/47b29c18240fe222")["identical"]  # doctest: +SKIP
        True
        >>> print(wanlab.format_report(wanlab.verify("out/fox.mp4", model="toy")))  # doctest: +SKIP
        identical: run 47b29c18240fe222 regenerates bit for bit on toy (cpu); digest ...
    """
    given = _given_backend(model, backend, pipe)
    source = _source(run, store)
    record = source.record
    param_changes, setting_changes, notes = check_record(source)
    key, exact = record.get("key") or source.key, bool(record.get("exact", True))
    if not exact and given is None:
        raise _lossy_refused(record, key)
    params = Params.from_dict(record["params"])
    backend_ = given if given is not None else _backend_for(record, model, device, source)
    notes += [] if exact else _lossy_notes(backend_)
    video = backend_.generate(params, progress=False, accel=record.get("accel"))  # the recorded acceleration
    setting_changes.update(_regeneration_changes(record, video.record))
    device_ = getattr(backend_, "device", "remote")
    environment_changes = _environment_changes(record, video.record, device_) if exact else {}
    frames_identical, frames, shape_expected, damage = _compare_frames(source, video, notes)
    identical = frames_identical and not (environment_changes or param_changes or setting_changes or damage)
    return {"identical": identical, "frames_identical": frames_identical, "key": key, "run": str(source.path),
            "damage": damage, "model": backend_.identity.model_id, "device": device_,
            "digest_expected": record["digest"], "digest_actual": video.digest, "shape_expected": shape_expected,
            "shape_actual": list(video.frames.shape), "environment_changes": environment_changes,
            "param_changes": param_changes, "setting_changes": setting_changes, "frames": frames,
            "seconds": float(video.timings.get("total", 0.0)), "lossy": not exact, "notes": notes}


def _given_backend(model: Any, backend: Any, pipe: Any) -> Any:
    """The backend ``verify`` was given (``backend`` or ``pipe``), or None.

    A ValueError when it was given two, or one and a model to load.
    """
    given = [b for b in (backend, pipe) if b is not None]
    if len(given) > 1 or (given and model is not None):
        raise ValueError("verify: pass backend= (a loaded pipeline or other backend) or model= (a model to load), "
                         "not both")
    return given[0] if given else None


def _lossy_refused(record: Mapping[str, Any], key: str) -> WanlabError:
    """Why a lossy download cannot be verified without the service it came from."""
    return WanlabError(f"run {key} was downloaded from {(record.get('model') or {}).get('id', 'a service')} as a "
                       "lossy mp4 (exact: false): it cannot be re-generated bit for bit; pass that service as "
                       "backend= to compare it with a new download (digest and PSNR; the service bills it)")


def _lossy_notes(backend: Any) -> list[str]:
    """What comparing a lossy download with a new one can and cannot say."""
    notes = [("a lossy download compared with a new download of the same request: PSNR says how far apart "
              "two downloads are, not whether the model reproduces")]
    if getattr(backend.identity, "exact", True):
        notes.append(f"the new frames come from {backend.identity.model_id}, not from the service the run was "
                     "downloaded from: they differ by the service's compression at least")
    return notes


def _regeneration_changes(record: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What the re-generation's record says differently from the run's.

    Weights, generation settings, acceleration (and MagCache calibration), LoRA file contents.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    recorded_model = (record.get("model") or {}).get("fingerprint")
    if recorded_model != (now.get("model") or {}).get("fingerprint"):
        changes["model.fingerprint"] = (recorded_model, (now.get("model") or {}).get("fingerprint"))
    for section in ("settings", "accel"):
        for name, change in _changes(record.get(section) or {}, now.get(section) or {}).items():
            changes[f"{section}.{name}"] = change
    recorded_loras = [lo.get("sha256") for lo in record.get("loras") or []]
    now_loras = [lo.get("sha256") for lo in now.get("loras") or []]
    if recorded_loras != now_loras:
        changes["loras.sha256"] = (recorded_loras, now_loras)
    calibration = [(r.get("accel_calibration") or {}).get("sha256") for r in (record, now)]
    if calibration[0] != calibration[1]:
        changes["accel_calibration.sha256"] = (calibration[0], calibration[1])
    return changes


def _environment_changes(record: Mapping[str, Any], now: Mapping[str, Any], device: Any) -> dict[str, tuple[Any, Any]]:
    """The recorded environment fields that differ now (the re-generation's, else this machine's)."""
    now_env = now.get("environment") or environment(device)
    return _changes(_env_subset(record.get("environment") or {}), _env_subset(now_env))


def _stored_frames(source: Any, notes: list[str]) -> np.ndarray | None:
    """The run's stored frames when they are exact (its lossless copy), else None and a note why."""
    lossless = getattr(source, "lossless", None)
    if lossless is not None and not Path(lossless).exists():
        notes.append(f"the run's lossless copy {Path(lossless).name} is missing, so its stored frames are not exact; "
                     "compared by digest only")
    elif bool(source.record.get("exact", True)) and not getattr(source, "exact", True):
        notes.append(f"{Path(source.path).name} has no lossless copy, so its frames are h264-compressed; compared by "
                     "digest only")
    else:
        try:
            return source.video(check=False).frames
        except (OSError, ValueError, WanlabError) as exc:
            notes.append(f"the stored frames could not be read ({exc}); compared by digest only")
    return None


def _compare_frames(source: Any, video: Video,
                    notes: list[str]) -> tuple[bool, dict[str, Any] | None, list[int], str | None]:
    """The re-generated frames against the stored run.

    ``frames_identical``, the per-frame differences (None when equal or not comparable), the expected
    shape and the stored run's damage; notes added.
    """
    digest_expected = source.record["digest"]
    shape_expected = list(source.record.get("shape") or [])
    expected_frames = _stored_frames(source, notes)
    if expected_frames is not None and not shape_expected:
        shape_expected = list(expected_frames.shape)
    if expected_frames is not None and frames_digest(expected_frames) != digest_expected:
        notes.append("the stored lossless frames do not match the recorded digest (damaged file or edited "
                     "record); frames were compared with the stored file")
    frames_identical = video.digest == digest_expected
    frames = None
    if expected_frames is not None and not np.array_equal(expected_frames, video.frames):
        frames_identical = False
        if expected_frames.shape == video.frames.shape:
            frames = frame_differences(expected_frames, video.frames)
        else:
            notes.append(f"frame shapes differ: {list(expected_frames.shape)} stored, {list(video.frames.shape)} now")
    damage = source.damage(deep=True) if hasattr(source, "damage") else None
    if damage:
        notes.append(f"the stored run is damaged: {damage}; it is not identical to its record, whatever the "
                     "re-generation gave (restore its files, or store the re-generated video again)")
    return frames_identical, frames, shape_expected, damage


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_report(result: Mapping[str, Any]) -> str:
    """The human-readable form of :func:`verify`'s dict (what ``wanlab verify`` prints).

    Args:
        result: what :func:`verify` returned.

    Returns:
        Lines of text: identical or different, and what differs (frames, environment, params, settings).

    Example:
        >>> a = np.zeros((3, 4, 4, 3), np.uint8)
        >>> b = a.copy(); b[2, 0, 0, 0] = 10
        >>> print(format_report({"identical": False, "frames_identical": False, "key": "47b29c18240fe222",
        ...                      "model": "toy", "device": "cpu", "frames": frame_differences(a, b),
        ...                      "environment_changes": {"torch_threads": (2, 4)}}))
        different: run 47b29c18240fe222 regenerated on toy (cpu)
          frames: 1 of 3 differ; max |delta| 10 (of 255), min PSNR 44.94 dB
            max |delta| per frame: 0 0 10
            PSNR per frame (dB):   inf inf 44.9
          environment (recorded -> now):
            torch_threads: 2 -> 4
    """
    key, model = result["key"], result["model"]
    if result["identical"]:
        how = "a new download gives the same frames" if result.get("lossy") else "regenerates bit for bit"
        lines = [f"identical: run {key} {how} on {model} ({result['device']}); digest {result['digest_actual'][:16]}"]
        return "\n".join(lines + [f"  note: {note}" for note in result.get("notes") or []])
    how = "downloaded again" if result.get("lossy") else "regenerated"
    lines = [f"different: run {key} {how} on {model} ({result['device']})"]
    frames = result.get("frames")
    if result["frames_identical"]:
        lines.append("  frames: bit-identical")
    elif frames:
        n = len(frames["max_abs_delta"])
        lines.append(f"  frames: {frames['frames_differing']} of {n} differ; max |delta| {frames['max_abs_delta_max']} "
                     f"(of 255), min PSNR {frames['psnr_min']:.2f} dB")
        lines.append("    max |delta| per frame: " + " ".join(str(d) for d in frames["max_abs_delta"]))
        lines.append("    PSNR per frame (dB):   " + " ".join("inf" if math.isinf(p) else f"{p:.1f}"
                                                            for p in frames["psnr"]))
    else:
        lines.append(f"  frames: differ (digest {result['digest_expected'][:16]} recorded, "
                     f"{result['digest_actual'][:16]} now; shape {result['shape_expected']} recorded, "
                     f"{result['shape_actual']} now)")
    sections = (("environment (recorded -> now)", "environment_changes"),
                ("params edited in the record (run made with -> record now)", "param_changes"),
                ("settings (recorded -> now)", "setting_changes"))
    for title, name in sections:
        if result.get(name):
            lines.append(f"  {title}:")
            for field, (before, after) in result[name].items():
                lines.append(f"    {field}: {_show(before)} -> {_show(after)}")
    for note in result.get("notes") or []:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def to_json(result: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`verify`'s dict as strict JSON data: infinite PSNRs as None, change pairs as lists.

    Args:
        result: what :func:`verify` returned.

    Returns:
        A dict ``json.dumps`` writes without ``Infinity``.

    Example:
        >>> to_json({"frames": {"psnr": [float("inf"), 31.5]}, "environment_changes": {"torch_threads": (2, 4)}})
        {'frames': {'psnr': [None, 31.5]}, 'environment_changes': {'torch_threads': [2, 4]}}
    """
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isinf(value):
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dict(result))


__all__ = ["verify", "check_record", "format_report", "frame_differences", "to_json", "SavedVideo"]
