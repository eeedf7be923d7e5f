"""Which model a name means, told without loading any weight: :func:`resolve` gives a :class:`ResolvedModel`.

A name is a built-in (``tiny``, ``toy``), a checkpoint folder (a built-in's shipped folder is that
built-in) or a hub id in the local Hugging Face cache. The result carries what the model declares
about itself (native request fields, text length, recorded fingerprint: its card read once), so
:func:`wanlab.models.identity.identity` identifies it and :func:`wanlab.models.loading.load_weights`
loads it without resolving it again.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LoadError, ParamError
from .registry import (
    BUILTIN_NAMES,
    REAL_MAX_SEQUENCE_LENGTH,
    REAL_NATIVE,
    Builtin,
    builtin,
    builtin_for_folder,
    read_card,
)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved once, with what it declares about itself (its card read once).

    What :func:`identity` identifies and :func:`~wanlab.models.loading.load_weights` loads.

    Attributes:
        model_id: the built-in's name, the folder (resolved) or the hub id.
        source: ``builtin``, ``folder`` or ``hub``.
        builtin: the built-in's entry, for a built-in.
        folder: the checkpoint folder when there is one (a hub id's snapshot in the local cache).
        native: the request fields it declares (the built-in's, its card's, else Wan's own).
        max_sequence_length: the text length it declares.
        recorded: the weights fingerprint its built-in entry or card records (trusted only while its
            files match their ``SHA256SUMS``: :func:`recorded_fingerprint`).

    Example:
        >>> model = resolve("tiny")
        >>> model.model_id, model.source, model.native["num_frames"]
        ('tiny', 'builtin', 33)
    """

    model_id: str
    source: str
    builtin: Builtin | None = None
    folder: Path | None = None
    native: Mapping[str, Any] = field(default_factory=dict)
    max_sequence_length: int = REAL_MAX_SEQUENCE_LENGTH
    recorded: str | None = None


def _resolved(model_id: str, source: str, spec: Builtin | None, folder: Path | None) -> ResolvedModel:
    """A resolved model with what its built-in entry, else its folder's card, else Wan itself declares."""
    if spec is not None:
        return ResolvedModel(model_id, source, spec, folder, dict(spec.native), spec.max_sequence_length,
                             spec.fingerprint)
    card = read_card(folder) if folder is not None else None
    if card is not None:
        return ResolvedModel(model_id, source, None, folder, dict(card.native), card.max_sequence_length,
                             card.fingerprint)
    return ResolvedModel(model_id, source, None, folder, dict(REAL_NATIVE), REAL_MAX_SEQUENCE_LENGTH, None)


def resolve(model: Any) -> ResolvedModel:
    """Tell what ``model`` names (a built-in, a folder, a hub id) without loading any weight.

    A folder that is a built-in's shipped checkpoint is that built-in. A hub id is looked up in the
    local Hugging Face cache only; one that is not there is a :class:`LoadError` at once.

    Args:
        model: A built-in name, a checkpoint folder (str or path) or a hub id.

    Returns:
        The :class:`ResolvedModel`, its model card read.

    Raises:
        ParamError: ``model`` is not a non-empty string or path.
        LoadError: No such model, a folder that is not a diffusers Wan pipeline, a hub id not in the
            local cache, or a damaged model card.

    Example:
        >>> resolve("toy").source
        'builtin'
        >>> resolve("no-such-model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        wanlab.errors.LoadError: unknown model 'no-such-model': use a built-in model (tiny, toy), ...
    """
    name = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(name, str) or not name:
        raise ParamError("model", "a built-in name, a folder or a hub id", model)
    if name in BUILTIN_NAMES:
        spec = builtin(name)
        return _resolved(name, "builtin", spec, spec.folder)
    folder = Path(name).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise LoadError(f"{folder} is a file; a model is a built-in name, a diffusers folder or a hub id.")
        shipped = builtin_for_folder(folder)
        if shipped is not None:
            return _resolved(shipped.name, "builtin", shipped, shipped.folder)
        check_folder(folder)
        return _resolved(str(folder.resolve()), "folder", None, folder.resolve())
    if HUB_ID.match(name) and not name.startswith((".", "/", "~")):
        return _resolved(name, "hub", None, hub_folder(name))
    if any(sep in name for sep in ("/", os.sep)) or name.startswith((".", "~")):
        raise LoadError(f"no such model folder: {folder}.")
    raise LoadError(f"unknown model {name!r}: use a built-in model ({', '.join(BUILTIN_NAMES)}), a local diffusers "
                    "folder, or a hub id such as 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'.")


def check_folder(folder: Path) -> None:
    """Refuse a folder that is not a diffusers Wan pipeline (one sentence)."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise LoadError(f"{folder} is not a diffusers pipeline folder: it has no model_index.json.")
    try:
        cls = json.loads(index.read_text()).get("_class_name", "")
    except ValueError as exc:
        raise LoadError(f"{folder}/model_index.json is not valid JSON: {exc}.") from exc
    if not str(cls).startswith("Wan"):
        raise LoadError(f"{folder} holds a {cls or 'unnamed'} pipeline, not a Wan text-to-video pipeline.")


def hub_folder(repo_id: str) -> Path:
    """The local snapshot of a hub repository, or a LoadError saying how to get it here (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "hub")
        raise LoadError(f"{repo_id!r} is not in the local Hugging Face cache ({cache}): download it where there is "
                        f"internet (huggingface-cli download {repo_id}), then copy that cache folder here (or set "
                        "HF_HOME / HF_HUB_CACHE to it), or pass a local diffusers folder.") from None
