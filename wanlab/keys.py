"""Run keys: the one place that says what a run's key is the hash of.

:func:`key_parts` (or :func:`record_key_parts` for a stored record) names what a key hashes;
:func:`run_key` hashes it. Keys of existing stores never change: :data:`KEY_VERSION` is bumped only
with a new meaning, and ``tests/data/legacy_store`` proves that stores written before this module
read back with the same keys.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ParamError
from .inputs import AccelLike
from .params import Params
from .record import stable_hash
from .values import plain

if TYPE_CHECKING:  # pragma: no cover
    from .models.identity import ModelIdentity

#: Bumped when what goes into a run key changes (old runs then simply no longer match).
KEY_VERSION = 1
KEY_LENGTH = 16
KEY_PATTERN = f"[0-9a-f]{{{KEY_LENGTH}}}"
KEY_RE = re.compile(f"^{KEY_PATTERN}$")
#: A key given by a unique prefix of at least this many digits (``wanlab verify 47b29c``).
MIN_PREFIX = 6
PREFIX_RE = re.compile(f"^[0-9a-f]{{{MIN_PREFIX},{KEY_LENGTH}}}$")
#: The sha256 a LoRA that could not be read is keyed by (its failure is recorded under that key).
UNREADABLE = "unreadable:"


def accel_dict(accel: AccelLike) -> dict[str, Any]:
    """An acceleration setting in the canonical form records and keys hold.

    Args:
        accel: An ``Accel``, a preset name, a mapping, or None for exact.

    Returns:
        The setting's dict (``{"cache": "none"}`` when exact).

    Raises:
        ParamError: Not a setting wanlab knows.

    Example:
        >>> accel_dict(None)
        {'cache': 'none'}
    """
    from .accel.setting import Accel

    return Accel.coerce(accel).to_dict()


def key_parts(identity: ModelIdentity | Mapping[str, Any], params: Params, accel: AccelLike = None,
              loras: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What the run key of ``params`` on ``identity`` with ``accel`` is the hash of.

    A run key names the frames a request gives: the resolved request (LoRA files by sha256 and
    scale, not by path), the model's weights fingerprint, the generation settings that change
    frames (dtype, text length, scheduler, offload, tiling) and the acceleration setting.
    Environment, timings and creation time are not part of it.

    Args:
        identity: A :class:`~wanlab.models.identity.ModelIdentity` or a mapping with ``fingerprint``
            and ``settings``.
        params: The request, with a resolved seed.
        accel: The acceleration setting (see :func:`accel_dict`).
        loras: Each of ``params.loras`` described by its file's ``sha256`` (and ``scale``), in order.

    Returns:
        The parts (``v``, ``params``, ``model``, ``settings``, ``accel``), JSON-able.

    Raises:
        ParamError: ``params`` is not a Params, or its seed is -1.
        ValueError: A LoRA count that differs from the request's, or no model fingerprint.

    Example:
        >>> parts = key_parts({"fingerprint": "f" * 16, "settings": {}}, Params(prompt="a fox", seed=1))
        >>> parts["model"], parts["accel"]
        ('ffffffffffffffff', {'cache': 'none'})
    """
    if not isinstance(params, Params):
        raise ParamError("params", "a wanlab.Params", params)
    if params.seed == -1:
        raise ParamError("seed", "resolved (not -1) before a run key can be computed; use params.resolved()", -1)
    if len(loras) != len(params.loras):
        raise ValueError(f"run key: {len(params.loras)} LoRAs in the request but {len(loras)} LoRA descriptions")
    fingerprint = identity["fingerprint"] if isinstance(identity, Mapping) else identity.fingerprint
    settings = identity["settings"] if isinstance(identity, Mapping) else identity.settings
    return _parts(params.to_dict(), fingerprint, settings, accel_dict(accel), loras)


def _parts(params: dict[str, Any], fingerprint: Any, settings: Any, accel: Mapping[str, Any],
           loras: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("run key: the record names no model fingerprint (record['model']['fingerprint']); "
                         "store runs made by a backend's generate, whose records carry one")
    params["loras"] = [{"sha256": lo["sha256"], "scale": float(lo["scale"])} for lo in loras]
    return {"v": KEY_VERSION, "params": params, "model": fingerprint, "settings": plain(settings),
            "accel": dict(accel or {})}


def record_key_parts(record: Mapping[str, Any]) -> dict[str, Any]:
    """The key parts of a stored or generated record, for runs whose key was not given when they were stored.

    Args:
        record: A record with ``params``, ``model`` (its ``fingerprint``), ``settings``, ``accel``
            and ``loras`` (the LoRA files' hashes).

    Returns:
        The parts, as :func:`key_parts` gives them.

    Raises:
        ParamError: The record's seed is not resolved.
        ValueError: Not a record, LoRA hashes that do not match its LoRAs, or no model fingerprint.

    Example:
        >>> record_key_parts(run.record) == run.record["key_parts"]  # doctest: +SKIP
        True
    """
    if not isinstance(record, Mapping) or "params" not in record:
        raise ValueError("run key: needs a record with 'params', 'model', 'settings', 'accel' and 'loras'")
    raw = record["params"]
    params = raw.to_dict() if isinstance(raw, Params) else dict(raw)
    if params.get("seed", -1) == -1:
        raise ParamError("seed", "resolved (not -1) before a run key can be computed", params.get("seed"))
    loras = record.get("loras") or []
    if len(loras) != len(params.get("loras") or []):
        raise ValueError(f"run key: the record lists {len(params.get('loras') or [])} LoRAs in params but "
                         f"{len(loras)} LoRA file hashes; records from generate carry both")
    model = record.get("model")
    fingerprint = model.get("fingerprint") if isinstance(model, Mapping) else model
    return _parts(params, fingerprint, record.get("settings") or {}, record.get("accel") or {}, loras)


def run_key(parts: Mapping[str, Any]) -> str:
    """The run key of :func:`key_parts`' output.

    The same request on the same weights and settings gives the same key in every process.

    Args:
        parts: What :func:`key_parts` or :func:`record_key_parts` returned.

    Returns:
        16 hex digits.

    Raises:
        ValueError: Not key parts of this :data:`KEY_VERSION`.

    Example:
        >>> key = run_key(key_parts({"fingerprint": "f" * 16, "settings": {}}, Params(prompt="a fox", seed=1)))
        >>> len(key), KEY_RE.match(key) is not None
        (16, True)
        >>> run_key(key_parts(wanlab.identity("tiny"), Params(prompt="a fox", seed=1)))  # doctest: +SKIP
        '3f1c...'
    """
    if not isinstance(parts, Mapping) or parts.get("v") != KEY_VERSION or not isinstance(parts.get("model"), str):
        raise ValueError("run key: needs the output of wanlab.keys.key_parts (or record_key_parts)")
    return stable_hash(dict(parts), KEY_LENGTH)


def unreadable_loras(params: Params) -> list[dict[str, Any]]:
    """Stand-in LoRA descriptions (the path instead of the file's hash) for a request whose LoRA files cannot be read.

    Its failure is recorded under the key they give, and a later run with the files there forgets it.

    Args:
        params: The request.

    Returns:
        One ``{path, scale, sha256}`` per LoRA, the sha256 ``unreadable:<path>``.

    Example:
        >>> unreadable_loras(Params(prompt="a fox", loras=["x.safetensors"]))[0]["sha256"]
        'unreadable:x.safetensors'
    """
    return [{"path": lo.path, "scale": lo.scale, "sha256": f"{UNREADABLE}{lo.path}"} for lo in params.loras]


def check_key(key: Any) -> str:
    """``key`` when it is a run key (16 hex digits).

    Args:
        key: The value given.

    Returns:
        The key.

    Raises:
        ValueError: Anything else (the message names the rule).

    Example:
        >>> check_key("3f5a09c1d2e4b6a8")
        '3f5a09c1d2e4b6a8'
    """
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"run key: must be {KEY_LENGTH} hex digits; got {key!r}")
    return key


