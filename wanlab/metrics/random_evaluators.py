"""Seeded random-weight evaluators, saved as the real ones are: for tests and timings without downloads.

Like the ``tiny`` Wan model, these exercise every code path of the reference metrics (loading from
the Hugging Face cache, preprocessing, batching, the formulas) with no weights downloaded: scores
from them mean nothing, but they equal what the reference code computes on the same weights.
``size="base"`` builds the real architectures (CLIP ViT-B/32, DINO ViT-B/16, CLIP ViT-L/14 from
transformers' configs) so their timings are those of the real evaluators.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: A character-level CLIP vocabulary (CLIP's BPE format: every letter, alone and word-final).
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'-!?"

TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
TINY_VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
#: CLIP ViT-L/14 (openai/clip-vit-large-patch14's config).
LARGE_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
LARGE_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    patch_size=14)


def _write_tokenizer(folder: Path) -> int:
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    return len(vocab)


def save_clip(folder: str | os.PathLike[str], size: str = "tiny", *, seed: int = 0,
              projection_dim: int | None = None) -> Path:
    """Save a random ``CLIPModel`` with its ``CLIPProcessor`` (character tokenizer, CLIP image processor).

    Args:
        folder: Where to save it (created).
        size: ``"tiny"`` (2 layers of width 32, 224 px, patch 32), ``"base"`` (ViT-B/32: transformers'
            default ``CLIPConfig``) or ``"large"`` (ViT-L/14, projection 768).
        seed: The weights' seed.
        projection_dim: The embedding size (default by size: 16, 512, 768).

    Returns:
        The folder.

    Raises:
        ValueError: Another size.

    Example:
        >>> folder = save_clip(tmp_path / "clip")  # doctest: +SKIP
        >>> wanlab.metrics.clip_score(video, "a fox", model=folder)  # doctest: +SKIP
    """
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel

    processor_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    if size not in ("tiny", "base", "large"):
        raise ValueError(f"size: must be 'tiny', 'base' or 'large'; got {size!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = _write_tokenizer(folder)
    text = {"tiny": TINY_TEXT, "base": {}, "large": LARGE_TEXT}[size]
    vision = {"tiny": dict(TINY_VISION, patch_size=32), "base": {}, "large": LARGE_VISION}[size]
    proj = projection_dim or {"tiny": 16, "base": 512, "large": 768}[size]
    config = CLIPConfig(text_config=dict(text, vocab_size=n_vocab, bos_token_id=0, eos_token_id=1, pad_token_id=1),
                        vision_config=dict(vision, image_size=224), projection_dim=proj)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    processor_class(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def save_vit(folder: str | os.PathLike[str], size: str = "tiny", *, seed: int = 0) -> Path:
    """Save a random ``ViTModel`` as ``facebook/dino-vitb16`` is saved.

    Args:
        folder: Where to save it.
        size: ``"tiny"`` (2 layers of width 32, patch 16) or ``"base"`` (ViT-B/16: transformers'
            default ``ViTConfig``).
        seed: The weights' seed.

    Returns:
        The folder.

    Raises:
        ValueError: Another size.

    Example:
        >>> wanlab.metrics.subject_consistency(video, model=save_vit(tmp_path / "dino"))  # doctest: +SKIP
    """
    import torch
    from transformers import ViTConfig, ViTModel

    if size not in ("tiny", "base"):
        raise ValueError(f"size: must be 'tiny' or 'base'; got {size!r}")
    folder = Path(folder)
    kwargs: dict[str, Any] = dict(TINY_VISION, patch_size=16) if size == "tiny" else {}
    torch.manual_seed(seed)
    ViTModel(ViTConfig(image_size=224, **kwargs), add_pooling_layer=False).eval().save_pretrained(folder)
    return folder


def save_aesthetic_head(path: str | os.PathLike[str], *, seed: int = 0, dim: int = 768) -> Path:
    """Save a random ``nn.Linear(dim, 1)`` state dict with ``torch.save``, as LAION's ``.pth`` is.

    Args:
        path: The file (its folder is created).
        seed: The weights' seed.
        dim: The input width (768: CLIP ViT-L/14 embeddings).

    Returns:
        The path.

    Example:
        >>> head = save_aesthetic_head(tmp_path / "head.pth")  # doctest: +SKIP
    """
    import torch

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.nn.Linear(dim, 1).state_dict(), path)
    return path


def into_hub_cache(folder: str | os.PathLike[str], cache: str | os.PathLike[str], repo_id: str,
                   commit: str = "0" * 40) -> Path:
    """Lay ``folder``'s files out as the Hugging Face cache holds ``repo_id`` at ``commit`` (on ``main``).

    Args:
        folder: A saved model's folder.
        cache: The hub cache folder.
        repo_id: The repo id it stands for (``openai/clip-vit-base-patch32``).
        commit: The snapshot's commit.

    Returns:
        The snapshot folder.

    Example:
        >>> into_hub_cache(save_clip(tmp_path / "clip"), hub, "openai/clip-vit-base-patch32")  # doctest: +SKIP
    """
    import shutil

    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
