"""Getting hold of Ray: the optional import, the cluster a pool runs on, and what that cluster can hold.

``address`` follows Ray's own rules, with one difference for the case where wanlab starts Ray itself:

- ``None``: the Ray this process already joined (``ray.init`` was called), else the cluster in
  ``$RAY_ADDRESS`` (``ray job submit`` sets it), else a new Ray instance on this machine alone,
  which listens on 127.0.0.1 only (a workstation's GPUs need no open ports);
- ``"auto"``: the cluster ``ray start`` runs on this machine;
- ``"HOST:PORT"`` (the head's GCS address) or ``"ray://HOST:10001"`` (Ray Client): that cluster.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import WanlabError

MISSING = "wanlab.ray needs Ray: pip install 'wanlab[ray]' (or pip install ray)"
#: Ray's switch for a machine-local instance: its node address is then 127.0.0.1 and it binds nothing else.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray() -> Any:
    """The ``ray`` module, imported now.

    Returns:
        The module.

    Raises:
        WanlabError: Ray is not installed (one line saying how to install it).
    """
    try:
        import ray
    except ImportError:
        raise WanlabError(MISSING) from None
    return ray


def connect(address: str | None) -> Any:
    """Join the Ray cluster ``address`` names (see the module docstring) and return the ``ray`` module.

    Args:
        address: None, ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``.

    Returns:
        The ``ray`` module, initialised.

    Raises:
        ParamError: ``address`` is not a non-empty string or None.
        WanlabError: Ray is not installed, or the cluster cannot be joined.
    """
    if address is not None and (not isinstance(address, str) or not address.strip()):
        from ..errors import ParamError

        raise ParamError("address", "None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT'", address)
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")  # read once, when ray is first imported
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "this machine"
        raise WanlabError(f"cannot join the Ray cluster at {where}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return ray


def capacity(ray: Any, num_gpus: float, threads: int) -> tuple[int, str]:
    """How many workers the cluster holds now, and in what.

    Args:
        ray: the connected ``ray`` module.
        num_gpus: GPUs per worker (0: CPU workers).
        threads: CPUs per CPU worker.

    Returns:
        ``(n, "GPU")`` at ``num_gpus`` each, or ``(n, "CPU")`` at ``threads`` CPUs each when the pool
        runs CPU actors.
    """
    resources = ray.cluster_resources()
    if num_gpus > 0:
        return int(resources.get("GPU", 0) // num_gpus), "GPU"
    return int(resources.get("CPU", 0) // threads), "CPU"


def has_gpus(ray: Any) -> bool:
    """Whether the Ray cluster ``ray`` is connected to has any GPU.

    Args:
        ray: the connected ``ray`` module.

    Returns:
        Whether it has one.
    """
    return ray.cluster_resources().get("GPU", 0) > 0
