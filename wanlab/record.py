"""Reproducibility records: what a run needs to be repeated, and the environment it ran in."""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
import time
from importlib import metadata
from typing import Any

#: Packages whose versions can change generated frames.
VERSIONED = ("torch", "diffusers", "transformers", "peft", "numpy", "accelerate", "wanlab")
#: Record fields that describe the environment, not the request (compared by ``verify``).
ENVIRONMENT_FIELDS = ("python", "platform", "machine", "versions", "torch_threads", "device", "device_name")


@functools.cache
def package_version(name: str) -> str | None:
    """Installed version of a package (cached: looking it up costs milliseconds on every run).

    Args:
        name: The distribution name.

    Returns:
        Its version, or None when not installed.

    Example:
        >>> package_version("numpy") is not None, package_version("no-such-package-x")
        (True, None)
    """
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """The environment a run ran in (:data:`ENVIRONMENT_FIELDS`).

    Args:
        device: The device that ran (``"cpu"``, ``"cuda:0"``).

    Returns:
        Python, platform, machine, the versions of :data:`VERSIONED`, torch thread count, the device
        and its name (the GPU's for CUDA).

    Example:
        >>> environment()["device"]  # doctest: +SKIP
        'cpu'
    """
    import torch

    device_name = platform.processor() or platform.machine()
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": {name: package_version(name) for name in VERSIONED},
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": device_name,
    }


def stable_hash(data: Any, length: int = 16) -> str:
    """Short hex sha256 of canonical JSON: the same data gives the same key in every process.

    Args:
        data: JSON-able data (values JSON cannot encode are hashed as their ``str``).
        length: Hex digits kept.

    Returns:
        The hash.

    Example:
        >>> stable_hash({"b": 1, "a": 2}) == stable_hash({"a": 2, "b": 1})
        True
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def now_iso() -> str:
    """The local time now, ISO 8601 with its UTC offset (``2026-12-06T07:30:00+0000``).

    Returns:
        The timestamp records carry as ``created``.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
