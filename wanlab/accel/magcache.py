"""MagCache's magnitude ratios, measured on the model itself and cached (memory and disk).

Holds :func:`calibrate` (what the ratios are and how they are measured is there), the cache key
(:func:`calibration_inputs`, :func:`calibration_key`), :func:`remember` for ratios another process
measured, and :func:`clear_calibrations` / :func:`cache_dir` for the cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParamError
from ..models import internals
from .setting import Accel

if TYPE_CHECKING:  # pragma: no cover
    from ..params import Params

CALIBRATION_VERSION = 1
_CALIBRATIONS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where calibrations are kept on disk: ``$WANLAB_CACHE/magcache`` (default ``~/.cache/wanlab``).

    Returns:
        The folder (it may not exist yet).

    Example:
        >>> cache_dir().name
        'magcache'
    """
    from ..models.identity import cache_root

    return cache_root() / "magcache"


def clear_calibrations(disk: bool = False) -> None:
    """Forget calibrated MagCache ratios held in memory (and on disk when ``disk=True``).

    Args:
        disk: Also delete the calibration files in :func:`cache_dir`.

    Example:
        >>> clear_calibrations()
    """
    with _LOCK:
        _CALIBRATIONS.clear()
    if disk and cache_dir().is_dir():
        for file in cache_dir().glob("*.json"):
            file.unlink(missing_ok=True)


def calibration_inputs(pipe: Any, params: Params, accel: Accel) -> dict[str, Any]:
    """Everything MagCache's calibrated ratios depend on (hashed into :func:`calibration_key`).

    That is the model weights (and LoRAs), the request's shape and sampler settings, the calibration
    prompt and seed, device, thread count (it changes results in the last bits) and library versions.

    Args:
        pipe: A :class:`wanlab.Pipeline`.
        params: The request.
        accel: A MagCache setting (its ``calibration_prompt`` and ``calibration_seed``).

    Returns:
        A JSON-ready dict, stored with the calibration as ``inputs``.

    Example:
        >>> calibration_inputs(pipe, params, Accel(cache="mag"))["steps"] == params.steps  # doctest: +SKIP
        True
    """
    import torch

    from ..record import package_version

    cp = accel.cache_params
    return {
        "v": CALIBRATION_VERSION, "model": pipe.identity.fingerprint, "loras": pipe.loras.describe(params.loras),
        "steps": params.steps, "guidance_scale": params.guidance_scale, "flow_shift": params.flow_shift,
        "width": params.width, "height": params.height, "num_frames": params.num_frames,
        "settings": dict(pipe.identity.settings), "prompt": cp["calibration_prompt"], "negative_prompt": "",
        "seed": cp["calibration_seed"], "device": pipe.device, "torch_threads": torch.get_num_threads(),
        "versions": {"torch": package_version("torch"), "diffusers": package_version("diffusers")},
    }


def calibration_key(pipe: Any, params: Params, accel: Accel) -> str:
    """The key a calibration is cached under: a stable hash of :func:`calibration_inputs`.

    Args:
        pipe: A :class:`wanlab.Pipeline`.
        params: The request.
        accel: A MagCache setting.

    Returns:
        24 hex digits; the calibration file is ``cache_dir() / f"{key}.json"``.

    Example:
        >>> calibration_key(pipe, params, Accel(cache="mag"))  # doctest: +SKIP
    """
    from ..record import stable_hash

    return stable_hash(calibration_inputs(pipe, params, accel), 24)


def _ratios_sha256(ratios: Sequence[float]) -> str:
    return hashlib.sha256(json.dumps([float(r) for r in ratios]).encode()).hexdigest()


def _from_disk(file: Path, key: str, steps: int) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("key") == key and len(data.get("ratios") or []) == steps else None


def calibrate(pipe: Any, params: Params, accel: Accel | str | Mapping[str, Any] = "mag", *,
              force: bool = False) -> dict[str, Any]:
    """MagCache magnitude ratios for ``params``' step count and settings on ``pipe``'s model.

    MagCache (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache") skips
    steps by predicting how much the block stack's residual changes from one step to the next; the
    per-step ratios are a property of the model, its LoRAs and the sampler settings, not of the
    prompt. They are measured with one exact run of a fixed calibration prompt and seed at the
    request's size, frames, steps, guidance and flow shift, the way diffusers'
    ``MagCacheConfig(calibrate=True)`` does (``MagCacheBlockHook._perform_calibration_step``): mean
    over tokens of ``|residual(step)| / |residual(step - 1)|``, where the residual is the block
    stack's output minus its input. They are kept per :func:`calibration_key` in memory and under
    :func:`cache_dir`; several processes that need the same calibration at once (Ray actors on one
    machine) wait on a file lock, so it is computed once.

    Args:
        pipe: A :class:`wanlab.Pipeline`.
        params: The request whose shape and sampler settings the ratios are for.
        accel: A MagCache setting, or anything :meth:`Accel.coerce` takes (default ``"mag"``).
        force: Measure again even when a cached calibration exists.

    Returns:
        ``{"key", "ratios", "cond", "uncond", "sha256", "source", "prompt", "seed", "seconds", ...}``:
        ``ratios`` (one per step) is what MagCache uses, the mean of the conditional and unconditional
        branches' ratios (``cond``/``uncond``; ``uncond`` is None without guidance). ``source`` says
        whether the ratios were ``"calibrated"`` now or came from the ``"memory"`` or ``"disk"`` cache.

    Raises:
        wanlab.ParamError: ``accel`` is not a MagCache setting.

    Example:
        >>> wanlab.accel.calibrate(pipe, pipe.params(prompt="a fox"))["source"]  # doctest: +SKIP
        'calibrated'
    """
    from ..fsutil import file_lock, write_json

    accel = Accel.coerce(accel)
    if accel.cache != "mag":
        raise ParamError("accel.cache", "'mag' to calibrate MagCache", accel.cache)
    key = calibration_key(pipe, params, accel)
    with _LOCK:
        if not force and key in _CALIBRATIONS:
            return {**_CALIBRATIONS[key], "source": "memory"}
    file = cache_dir() / f"{key}.json"
    with file_lock(cache_dir() / f".{key}.lock"):
        data = None if force else _from_disk(file, key, params.steps)
        if data is not None:
            source = "disk"
        else:
            start = time.perf_counter()
            cond, uncond = _measure_ratios(pipe, params, accel)
            ratios = cond if uncond is None else [(a + b) / 2.0 for a, b in zip(cond, uncond)]
            data = {"key": key, "ratios": ratios, "cond": cond, "uncond": uncond, "sha256": _ratios_sha256(ratios),
                    "prompt": accel.cache_params["calibration_prompt"], "seed": accel.cache_params["calibration_seed"],
                    "steps": params.steps, "seconds": time.perf_counter() - start,
                    "inputs": calibration_inputs(pipe, params, accel)}
            source = "calibrated"
            with contextlib.suppress(OSError):
                write_json(file, data)
    with _LOCK:
        _CALIBRATIONS[key] = data
    return {**data, "source": source}


def remember(calibration: Mapping[str, Any]) -> None:
    """Keep in memory a calibration another process measured on the same model and settings.

    A Ray pool's other worker sends the ``accel_calibration`` of its record, so this process does not
    measure it again. A calibration already held under the same key is kept.

    Args:
        calibration: ``key``, ``ratios`` and ``sha256`` (``cond``, ``uncond``, ``prompt``, ``seed``,
            ``seconds`` when known).

    Raises:
        ValueError: The ratios do not hash to ``sha256``.
        KeyError: ``key`` or ``ratios`` is missing.

    Example:
        >>> remember(video.record["accel_calibration"])  # doctest: +SKIP
    """
    ratios = [float(r) for r in calibration["ratios"]]
    if _ratios_sha256(ratios) != calibration.get("sha256"):
        raise ValueError(f"calibration.sha256: must be the sha256 of its ratios; got {calibration.get('sha256')!r}")
    data = {"key": str(calibration["key"]), "ratios": ratios, "cond": calibration.get("cond"),
            "uncond": calibration.get("uncond"), "sha256": calibration["sha256"], "prompt": calibration.get("prompt"),
            "seed": calibration.get("seed"), "steps": len(ratios), "seconds": calibration.get("seconds")}
    with _LOCK:
        _CALIBRATIONS.setdefault(data["key"], data)


def _measure_ratios(pipe: Any, params: Params, accel: Accel) -> tuple[list[float], list[float] | None]:
    """One exact run of the calibration request, recording the block stack's residual ratios per branch."""
    import torch

    transformer = pipe.diffusers.transformer
    blocks = internals.transformer_blocks(transformer)
    cfg = params.guidance_scale > 1.0
    branches = ("cond", "uncond") if cfg else ("cond",)  # WanPipeline's call order within a step
    seen: dict[str, Any] = {"calls": 0, "branch": "cond", "input": None}
    previous: dict[str, Any] = {}
    ratios: dict[str, list[float]] = {b: [] for b in branches}

    def on_call(_module: Any, _args: Any) -> None:
        seen["branch"] = branches[seen["calls"] % len(branches)]
        seen["calls"] += 1

    def on_head(_module: Any, args: tuple, kwargs: dict) -> None:
        seen["input"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def on_tail(_module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        residual = out - seen["input"]
        branch = seen["branch"]
        prev = previous.get(branch)
        if prev is None:
            ratio = 1.0
        else:  # diffusers' MagCacheBlockHook._perform_calibration_step, verbatim
            curr_norm = torch.linalg.norm(residual.float(), dim=-1)
            prev_norm = torch.linalg.norm(prev.float(), dim=-1)
            ratio = (curr_norm / (prev_norm + 1e-8)).mean().item()
        ratios[branch].append(ratio)
        previous[branch] = residual

    cp = accel.cache_params
    request = params.replace(prompt=cp["calibration_prompt"], negative_prompt="", seed=cp["calibration_seed"])
    handles = [transformer.register_forward_pre_hook(on_call),
               blocks[0].register_forward_pre_hook(on_head, with_kwargs=True),
               blocks[-1].register_forward_hook(on_tail)]
    try:
        pipe.denoise(request, accel=Accel())
    finally:
        for handle in handles:
            handle.remove()
    return ratios["cond"], (ratios["uncond"] if cfg else None)
