"""A request as a service receives it.

The JSON body of ``POST /v3/async/wan-t2v``, the LoRA paths the hosted API can read, and how LoRA
files are described in run keys when this machine cannot read them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParamError
from ..params import Params

if TYPE_CHECKING:  # pragma: no cover
    from ..lora import SourcePolicy
    from ..models.identity import ModelIdentity

#: How LoRA files a service reads (and this machine cannot) are keyed: by the request's path.
REQUEST_PATH = "request:"
#: A Hugging Face repo id or a file in one (``owner/name`` or ``owner/name/file.safetensors``).
HUB_PATH = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(/[^\s]+)?$")
LOCAL_FIELDS = ("prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift",
                "num_frames")


def body(params: Params, identity: ModelIdentity, kind: str) -> dict[str, Any]:
    """The JSON body for ``params``.

    The hosted API's fields, ``num_frames`` too where the service takes local sizes, and ``model_name``
    for a service that is not wanlab (a wanlab server needs none).

    Args:
        params: the validated request.
        identity: the service's identity (its ``rules`` decide the fields).
        kind: ``"wanlab"`` or ``"api"``.

    Returns:
        The body.

    Example:
        >>> from wanlab.client.service import service_identity
        >>> api = service_identity("https://api.example.org")
        >>> out = body(Params(prompt="a fox", seed=1), api, "api")
        >>> out["model_name"], out["width"], out["height"], "num_frames" in out
        ('wan2.1-t2v', 832, 480, False)
    """
    if identity.rules == "api":
        out = params.to_api()
        out.pop("model_name")
    else:
        out = {name: getattr(params, name) for name in LOCAL_FIELDS}
        out["loras"] = [lo.to_dict() for lo in params.loras]
    return out if kind == "wanlab" else {"model_name": identity.model_id, **out}


def check_service_lora(path: str) -> str:
    """A LoRA path the hosted API can read: a Hugging Face repo id or file, or an https URL.

    Anything else is refused before any call: the service cannot read files on this machine.

    Args:
        path: a LoRA's path.

    Returns:
        The path.

    Raises:
        ParamError: (field ``loras.path``) a URL other than https, or a local file or path.

    Example:
        >>> check_service_lora("Remade-AI/Cyberpunk")
        'Remade-AI/Cyberpunk'
    """
    if "://" in path:
        if not path.startswith("https://"):
            raise ParamError("loras.path", "an https URL or a Hugging Face repo id for the hosted API", path)
        return path
    if not HUB_PATH.match(path) or Path(path).expanduser().exists():
        raise ParamError("loras.path", "a Hugging Face repo id (owner/name) or an https URL for the hosted API: it "
                         "cannot read files on this machine", path)
    return path


def describe_loras(params: Params, kind: str, policy: SourcePolicy | None = None) -> list[dict[str, Any]]:
    """Each LoRA as run keys hold it.

    For a wanlab server a file by its sha256 when this machine can read it (the same file the server
    reads), else (and always for the hosted API) by the request's path. ``policy`` (a remote's
    ``set_lora_policy``): URLs it does not allow and local files outside its folders raise
    :class:`~wanlab.LoRAError` here, before any call (the service applies its own policy as well).

    Args:
        params: the request.
        kind: ``"wanlab"`` or ``"api"``.
        policy: the remote's LoRA source policy (None: none of its own).

    Returns:
        One dict per LoRA (path, scale, and the sha256 where known).

    Raises:
        LoRAError: a path the policy rules out.
    """
    from dataclasses import replace

    from ..errors import LoRAError
    from ..lora import SourcePolicy, file_hash

    local = SourcePolicy(hub=False, urls=False) if policy is None else replace(policy, hub=False, urls=False)
    out = []
    for lo in params.loras:
        if policy is not None and "://" in lo.path and not lo.path.startswith("hf://") and not policy.urls:
            raise LoRAError(f"loras.path: must be a local file or a Hugging Face repo id here (URLs are not "
                            f"allowed); got {lo.path}")
        sha = f"{REQUEST_PATH}{lo.path}"
        if (kind == "wanlab" or policy is not None) and Path(lo.path).expanduser().is_file():
            digest = file_hash(lo.path, local)  # a file the policy rules out raises LoRAError
            sha = digest if kind == "wanlab" else sha
        out.append({"path": lo.path, "scale": lo.scale, "sha256": sha})
    return out
