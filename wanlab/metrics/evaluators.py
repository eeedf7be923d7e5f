"""The networks the reference metrics score with (:class:`Evaluator`), loaded once per process (:func:`loaded`).

Found in the local Hugging Face cache or a local folder, never downloaded.

The evaluators and what each reference loads are listed at their constants (``docs/metrics.md``
gives the file and line).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EvaluatorMissing


@dataclass(frozen=True)
class Evaluator:
    """A scoring network.

    Attributes:
        repo_id: Its Hugging Face repo id.
        architecture: ``"clip"`` (transformers CLIPModel) or ``"vit"`` (transformers ViTModel).
        revision: The revision wanlab documents.

    Example:
        >>> CLIP_B32.repo_id, CLIP_B32.architecture
        ('openai/clip-vit-base-patch32', 'clip')
    """

    repo_id: str
    architecture: str  # "clip" (transformers CLIPModel) or "vit" (transformers ViTModel)
    revision: str = "main"


#: OpenAI CLIP ViT-B/32, as converted to transformers; VBench's background consistency loads the same
#: weights through OpenAI's ``clip`` package (``clip.load("ViT-B/32")``), and CLIP score is commonly
#: reported with it.
CLIP_B32 = Evaluator("openai/clip-vit-base-patch32", "clip")
#: The image tower of the LAION aesthetic predictor.
CLIP_L14 = Evaluator("openai/clip-vit-large-patch14", "clip")
#: DINO ViT-B/16 (Caron et al. 2021), transformers' port of the ``dino_vitb16`` checkpoint VBench's
#: subject consistency loads through ``torch.hub``.
DINO_B16 = Evaluator("facebook/dino-vitb16", "vit")
#: The LAION aesthetic predictor's linear head (file name as LAION-AI/aesthetic-predictor publishes it;
#: 768 -> 1, as VBench uses it). It is not on the hub: it is read from a local file
#: (``$WANLAB_CACHE/evaluators/``, or any path or ``owner/repo/file`` of the hub cache you name).
AESTHETIC_HEAD = "sa_0_4_vit_l_14_linear.pth"
AESTHETIC_HEAD_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str, str], Any] = {}


def hub_cache() -> str:
    """The Hugging Face hub cache folder, read from the environment now.

    Returns:
        ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``.

    Example:
        >>> hub_cache()  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub'
    """
    home = os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface")
    return os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")


def wanlab_cache() -> Path:
    """The cache folder of wanlab.

    Returns:
        ``$WANLAB_CACHE``, default ``~/.cache/wanlab``.

    Example:
        >>> wanlab_cache()  # doctest: +SKIP
        PosixPath('/home/me/.cache/wanlab')
    """
    return Path(os.environ.get("WANLAB_CACHE") or Path.home() / ".cache" / "wanlab")


def resolve(source: str | os.PathLike[str], metric: str, revision: str = "main") -> Path:
    """The local folder of an evaluator (never downloaded).

    ``source`` itself when it is a folder, else the snapshot of the hub repo ``source`` in the local cache.

    Args:
        source: a hub repo id (``"openai/clip-vit-base-patch32"``) or a local folder.
        metric: the metric that needs it (named in the error).
        revision: the hub revision (branch, tag or commit) to read from the cache.

    Returns:
        The folder holding ``config.json`` and the weights.

    Raises:
        EvaluatorMissing: neither a folder nor in the cache; the message gives the download command.

    >>> resolve("no-such/evaluator", "clip_score")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wanlab.errors.EvaluatorMissing: clip_score needs the evaluator 'no-such/evaluator', which is ...
    """
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source), revision=revision, cache_dir=hub_cache(), local_files_only=True))
    except Exception:
        rev = f" --revision {revision}" if revision != "main" else ""
        raise EvaluatorMissing(
            f"{metric} needs the evaluator {str(source)!r}, which is not in the local Hugging Face cache "
            f"({hub_cache()}): run `huggingface-cli download {source}{rev}` where there is internet and copy "
            "the cache here (or set HF_HOME / HF_HUB_CACHE to it), or pass a local folder.") from None


def commit_of(folder: Path) -> str | None:
    """The hub commit a cache snapshot folder holds.

    Args:
        folder: A folder.

    Returns:
        The 40-digit commit of ``.../snapshots/<commit>``, None for other folders.

    Example:
        >>> commit_of(Path("hub/models--x--y/snapshots/" + "a" * 40)) == "a" * 40
        True
    """
    return folder.name if folder.parent.name == "snapshots" and len(folder.name) == 40 else None


def describe(folder: Path, source: str | os.PathLike[str]) -> str:
    """How a score names its evaluator.

    Args:
        folder: Where the evaluator was found.
        source: What the caller named (repo id or path).

    Returns:
        ``repo_id@commit`` for a hub cache snapshot, else the folder or file, resolved.

    Example:
        >>> describe(Path("hub/models--x--y/snapshots/" + "a" * 40), "x/y") == "x/y@" + "a" * 40
        True
    """
    commit = commit_of(folder)
    return f"{source}@{commit}" if commit and not Path(source).exists() else str(Path(folder).resolve())


def head_file(source: str | os.PathLike[str] | None, metric: str = "aesthetic_quality") -> Path:
    """The aesthetic head's weights file.

    Args:
        source: A file, or ``owner/repo/file`` in the hub cache; None for the default
            ``$WANLAB_CACHE/evaluators/sa_0_4_vit_l_14_linear.pth``.
        metric: The metric that needs it (named in the error).

    Returns:
        The file's path.

    Raises:
        EvaluatorMissing: The file is not here; the message says how to get it.

    Example:
        >>> head_file(None)  # doctest: +SKIP
        PosixPath('/home/me/.cache/wanlab/evaluators/sa_0_4_vit_l_14_linear.pth')
    """
    if source is None:
        path = wanlab_cache() / "evaluators" / AESTHETIC_HEAD
        if path.is_file():
            return path
        raise EvaluatorMissing(
            f"{metric} needs LAION's aesthetic head {AESTHETIC_HEAD}, which is not at {path}: run `wget "
            f"{AESTHETIC_HEAD_URL} -P {path.parent}` where there is internet and copy it there, or pass its path.")
    path = Path(source)
    if path.is_file():
        return path
    parts = str(source).split("/")
    if len(parts) >= 3:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), cache_dir=hub_cache(),
                                        local_files_only=True))
        except Exception:
            pass
    raise EvaluatorMissing(
        f"{metric} needs the aesthetic head {str(source)!r}, which is neither a file nor in the local Hugging Face "
        f"cache ({hub_cache()}): run `huggingface-cli download {'/'.join(parts[:2])} {'/'.join(parts[2:])}` "
        "where there is internet, or pass the file's path.")


def default_device() -> str:
    """Where evaluators run unless told: ``"cuda"`` when available, else ``"cpu"``.

    Returns:
        The device name.
    """
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def loaded(source: str | os.PathLike[str], architecture: str, metric: str, device: str | None = None,
           revision: str = "main") -> tuple[Any, Any, Path]:
    """An evaluator, loaded once per process and device and kept (:func:`clear` drops them).

    Models run in eval mode, float32, on the device the caller names (a pipeline's device when a
    sweep measures), with gradients off.

    Args:
        source: A hub repo id in the local cache, or a local folder that ``save_pretrained`` wrote.
        architecture: ``"clip"`` loads ``CLIPModel`` and its ``CLIPProcessor`` (tokenizer and image
            processor, as saved with it); ``"vit"`` loads ``ViTModel`` without its pooler.
        metric: The metric that needs it (named in the error).
        device: Where it runs (default CUDA when available, else CPU).
        revision: The hub revision to read from the cache.

    Returns:
        (model, processor or None, folder).

    Raises:
        EvaluatorMissing: the weights are not here (see :func:`resolve`).
        ValueError: ``architecture`` is neither ``"clip"`` nor ``"vit"``.

    Example:
        >>> model, processor, folder = loaded(CLIP_B32.repo_id, "clip", "clip_score")  # doctest: +SKIP
    """
    if architecture not in ("clip", "vit"):
        raise ValueError(f"architecture: must be 'clip' or 'vit'; got {architecture!r}")
    folder = resolve(source, metric, revision)
    device = device or default_device()
    key = (str(folder.resolve()), architecture, str(device))
    model, processor = once(key, lambda: _load(folder, architecture, device))
    return model, processor, folder


def once(key: tuple[str, str, str], load: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """The ``(model, processor or None)`` kept under ``key`` (folder, architecture, device), made by
    ``load()`` on first use, once per process even when threads ask at the same time."""
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


def loaded_keys() -> list[tuple[str, str, str]]:
    """The ``(folder, architecture, device)`` of every evaluator this process holds now."""
    with _LOCK:
        return list(_LOADED)


def _load(folder: Path, architecture: str, device: str) -> tuple[Any, Any]:
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from ..quiet import quiet

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars, once per evaluator, say nothing here
    with quiet():
        model: Any
        if architecture == "clip":
            model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
            processor = transformers.CLIPProcessor.from_pretrained(folder, local_files_only=True)
        else:
            model = transformers.ViTModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False,
                                                          dtype=torch.float32)
            processor = None
    if bars:
        hf_logging.enable_progress_bar()
    model.eval().requires_grad_(False).to(device)
    return model, processor


def clear() -> None:
    """Forget every loaded evaluator (frees their memory; the next use loads again).

    Example:
        >>> clear()
    """
    with _LOCK:
        _LOADED.clear()
