"""Prompt adherence and visual quality of real-model videos, as their reference implementations define them.

:func:`clip_score` (torchmetrics' ``CLIPScore``), VBench's :func:`subject_consistency`,
:func:`background_consistency` and :func:`aesthetic_quality`, :func:`quality` for several at once, and
the formulas and preprocessing they share. Sources, evaluators and differences: ``docs/metrics.md``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..frames import as_frames
from . import evaluators as ev

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: VBench's aesthetic head input width (CLIP ViT-L/14 embeddings) and its batch size.
AESTHETIC_DIM = 768
BATCH = 32
#: The keys of :func:`quality`, in order.
QUALITY_KEYS = ("clip_score", "subject_consistency", "background_consistency", "aesthetic_quality")


# --- formulas on features (no network) ---------------------------------------------------------------
def consistency_of(features: Any) -> float:
    """VBench's consistency of per-frame features ``(T, D)``.

    The mean over frames i >= 1 of ``(max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2``.

    Args:
        features: ``(T, D)`` array or tensor, T >= 2 (normalised here).

    Returns:
        A float in [0, 1]: 1.0 when every frame's features point the same way.

    Raises:
        ValueError: fewer than 2 frames, or not 2-D.

    Example:
        >>> round(consistency_of(np.ones((5, 3))), 9)
        1.0
    """
    f = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features: must be (T, D) with T >= 2; got shape {f.shape}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    prev = np.maximum((f[1:] * f[:-1]).sum(1), 0.0)
    first = np.maximum(f[1:] @ f[0], 0.0)
    return float(((prev + first) / 2).mean())


def clip_score_of(image_embeds: Any, text_embed: Any) -> float:
    """The CLIP score of frames against one text, as torchmetrics computes it.

    ``max(100 * mean_i cos(img_i, text), 0)``.

    Args:
        image_embeds: ``(T, D)`` image embeddings (array or tensor; normalised here).
        text_embed: ``(D,)`` text embedding.

    Returns:
        A float in [0, 100].

    Example:
        >>> clip_score_of(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0]))
        50.0
    """
    img = np.asarray(image_embeds.detach().cpu() if hasattr(image_embeds, "detach") else image_embeds, np.float64)
    txt = np.asarray(text_embed.detach().cpu() if hasattr(text_embed, "detach") else text_embed, np.float64).ravel()
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = txt / max(float(np.linalg.norm(txt)), 1e-12)
    return float(max(100.0 * float((img @ txt).mean()), 0.0))


# --- preprocessing as VBench does it (torchvision tensor transforms, reimplemented) -------------------
def resize_short(x: Any, size: int, mode: str) -> Any:
    """The torchvision ``Resize(size, interpolation=mode, antialias=False)`` of a uint8 ``(N, 3, H, W)`` tensor.

    As VBench calls torchvision's tensor ``Resize`` (uint8 in, ``antialias=False``, rounded back to
    uint8), reimplemented with ``torch.nn.functional.interpolate`` so torchvision is not needed.

    Args:
        x: uint8 ``(N, 3, H, W)`` tensor.
        size: The new short side.
        mode: ``"bicubic"`` or ``"bilinear"``.

    Returns:
        uint8 tensor: short side ``size``, long side ``int(size * long / short)`` (``x`` itself when unchanged).

    Example:
        >>> import torch  # doctest: +SKIP
        >>> resize_short(torch.zeros(1, 3, 480, 832, dtype=torch.uint8), 224, "bicubic").shape  # doctest: +SKIP
        torch.Size([1, 3, 224, 388])
    """
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return x
    y = F.interpolate(x.float(), size=(new_h, new_w), mode=mode, align_corners=False, antialias=False)
    if mode == "bicubic":
        y = y.clamp(0, 255)
    return torch.round(y).to(torch.uint8)


def center_crop(x: Any, size: int) -> Any:
    """The torchvision ``CenterCrop(size)`` of an ``(N, C, H, W)`` tensor.

    Args:
        x: A tensor (or array) at least ``size`` on each side.
        size: The crop's side.

    Returns:
        The centre ``size`` x ``size`` crop.

    Example:
        >>> center_crop(np.zeros((1, 3, 224, 388)), 224).shape
        (1, 3, 224, 224)
    """
    h, w = x.shape[-2:]
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return x[..., top:top + size, left:left + size]


def normalize(x: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """uint8 ``(N, 3, H, W)`` -> float ``/255``, then ``(x - mean) / std`` per channel.

    Args:
        x: A uint8 tensor.
        mean: Per-channel mean (of [0, 1] values).
        std: Per-channel standard deviation.

    Returns:
        A float32 tensor on ``x``'s device.

    Example:
        >>> normalize(x, CLIP_MEAN, CLIP_STD)  # doctest: +SKIP
    """
    import torch

    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


def vbench_clip_transform(x: Any, size: int = 224) -> Any:
    """VBench's ``clip_transform(224)`` (vbench/utils.py): bicubic resize, centre crop, CLIP mean/std.

    Args:
        x: uint8 ``(N, 3, H, W)`` tensor.
        size: The resize and crop size.

    Returns:
        Normalised float32 ``(N, 3, size, size)``.

    Example:
        >>> vbench_clip_transform(x).shape  # doctest: +SKIP
        torch.Size([8, 3, 224, 224])
    """
    return normalize(center_crop(resize_short(x, size, "bicubic"), size), CLIP_MEAN, CLIP_STD)


def vbench_dino_transform(x: Any, size: int = 224) -> Any:
    """VBench's ``dino_transform(224)`` (vbench/utils.py): bilinear short-side resize, no crop, ImageNet mean/std.

    Args:
        x: uint8 ``(N, 3, H, W)`` tensor.
        size: The new short side.

    Returns:
        Normalised float32, short side ``size``.

    Example:
        >>> vbench_dino_transform(x).shape  # doctest: +SKIP
        torch.Size([8, 3, 224, 388])
    """
    return normalize(resize_short(x, size, "bilinear"), IMAGENET_MEAN, IMAGENET_STD)


def _batches(frames: np.ndarray, device: str, batch: int):
    import torch

    for i in range(0, len(frames), batch):
        yield torch.from_numpy(np.ascontiguousarray(frames[i:i + batch])).permute(0, 3, 1, 2).to(device)


def _embeds(out: Any) -> Any:
    """The embedding tensor of ``get_image_features`` / ``get_text_features``, in either transformers.

    They give a tensor (transformers 4) or an output whose ``pooler_output`` is the projected
    embedding (transformers 5).
    """
    return out if hasattr(out, "ndim") else out.pooler_output


# --- features through the evaluators ------------------------------------------------------------------
def dino_features(video: Any, model: str | os.PathLike[str] = ev.DINO_B16.repo_id, *, device: str | None = None,
                  batch_size: int = BATCH, metric: str = "subject_consistency") -> Any:
    """DINO CLS features of every frame, after VBench's DINO preprocessing.

    Positional encodings are interpolated to the frame's aspect, as DINO's ``VisionTransformer`` does.

    Args:
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video``.
        model: A DINO ViT hub repo id in the local cache, or a local folder.
        device: Where the evaluator runs (default CUDA when available, else CPU).
        batch_size: Frames per forward pass.
        metric: The metric asking (named in a missing evaluator's message).

    Returns:
        A float32 CPU tensor ``(T, 768)``.

    Raises:
        EvaluatorMissing: The evaluator is not in the local cache.

    Example:
        >>> dino_features(video).shape  # doctest: +SKIP
        torch.Size([81, 768])
    """
    import torch

    frames = as_frames(video)
    net, _, _ = ev.loaded(model, "vit", metric, device)
    dev = str(next(net.parameters()).device)
    out = []
    with torch.inference_mode():
        for x in _batches(frames, dev, batch_size):
            hidden = net(pixel_values=vbench_dino_transform(x), interpolate_pos_encoding=True).last_hidden_state
            out.append(hidden[:, 0].float().cpu())
    return torch.cat(out)


def clip_image_features(video: Any, model: str | os.PathLike[str] = ev.CLIP_B32.repo_id, *,
                        device: str | None = None, batch_size: int = BATCH,
                        metric: str = "background_consistency") -> Any:
    """CLIP image embeddings of every frame, after VBench's ``clip_transform(224)``.

    Args:
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video``.
        model: A CLIP hub repo id in the local cache, or a local folder.
        device: Where the evaluator runs (default CUDA when available, else CPU).
        batch_size: Frames per forward pass.
        metric: The metric asking (named in a missing evaluator's message).

    Returns:
        A float32 CPU tensor ``(T, D)``, projected, as ``clip``'s ``encode_image``.

    Raises:
        EvaluatorMissing: The evaluator is not in the local cache.

    Example:
        >>> clip_image_features(video).shape  # doctest: +SKIP
        torch.Size([81, 512])
    """
    import torch

    frames = as_frames(video)
    net, _, _ = ev.loaded(model, "clip", metric, device)
    dev = str(next(net.parameters()).device)
    out = []
    with torch.inference_mode():
        for x in _batches(frames, dev, batch_size):
            out.append(_embeds(net.get_image_features(pixel_values=vbench_clip_transform(x))).float().cpu())
    return torch.cat(out)


# --- the metrics ----------------------------------------------------------------------------------------
def clip_score(video: Any, prompt: str, *, model: str | os.PathLike[str] = ev.CLIP_B32.repo_id,
               device: str | None = None, batch_size: int = BATCH) -> float:
    """CLIP score of a video against its prompt, as torchmetrics' ``CLIPScore`` computes it over the frames.

    Every frame is paired with the prompt: ``max(100 * mean_t cos(E_img(frame_t), E_txt(prompt)), 0)``,
    embeddings from the evaluator's ``get_image_features`` / ``get_text_features`` after its own
    ``CLIPProcessor`` (shortest side to 224 bicubic, centre crop 224, CLIP mean/std); the prompt is
    tokenised to at most 77 tokens (truncated, keeping the end token). This is the form the
    video-generation literature reports. Every frame is scored, in batches.

    Args:
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video``.
        prompt: the text the video was made from.
        model: a CLIP hub repo id in the local cache, or a local folder (default
            ``openai/clip-vit-base-patch32``).
        device: where the evaluator runs (default CUDA when available, else CPU).
        batch_size: frames per forward pass.

    Returns:
        A float in [0, 100] (higher: the frames match the prompt better).

    Raises:
        EvaluatorMissing: the evaluator is not in the local cache (the message says how to get it).
        ValueError: bad frames, or an empty prompt.

    Example:
        >>> wanlab.metrics.clip_score(video, "a cat on a fence")  # doctest: +SKIP
        31.2
    """
    import torch

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt: must be a non-empty string; got {prompt!r}")
    frames = as_frames(video)
    net, processor, _ = ev.loaded(model, "clip", "clip_score", device)
    dev = str(next(net.parameters()).device)
    limit = int(getattr(net.config.text_config, "max_position_embeddings", 77))
    with torch.inference_mode():
        text = processor.tokenizer([prompt], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        txt = _embeds(net.get_text_features(input_ids=text["input_ids"].to(dev),
                                            attention_mask=text["attention_mask"].to(dev)))[0].float().cpu()
        images = []
        for i in range(0, len(frames), batch_size):
            pixels = processor.image_processor(images=list(frames[i:i + batch_size]), return_tensors="pt")
            images.append(_embeds(net.get_image_features(pixel_values=pixels["pixel_values"].to(dev))).float().cpu())
    return clip_score_of(torch.cat(images), txt)


def subject_consistency(video: Any, *, model: str | os.PathLike[str] = ev.DINO_B16.repo_id,
                        device: str | None = None, batch_size: int = BATCH) -> float:
    """VBench's subject consistency: :func:`consistency_of` the DINO ViT-B/16 CLS features of every frame.

    Frames are resized to 224 on the short side without crop (bilinear) and normalised with the
    ImageNet mean/std (VBench's ``dino_transform``).

    Args:
        video: uint8 frames ``(T, H, W, 3)``, T >= 2, or a ``wanlab.Video``.
        model: a DINO ViT hub repo id in the local cache, or a local folder (default
            ``facebook/dino-vitb16``).
        device: where the evaluator runs (default CUDA when available, else CPU).
        batch_size: frames per forward pass.

    Returns:
        A float in [0, 1] (1: the subject looks the same in every frame).

    Raises:
        EvaluatorMissing: the evaluator is not in the local cache.
        ValueError: bad frames, or fewer than 2.

    Example:
        >>> wanlab.metrics.subject_consistency(video)  # doctest: +SKIP
        0.95
    """
    as_frames(video, min_frames=2)
    return consistency_of(dino_features(video, model, device=device, batch_size=batch_size))


def background_consistency(video: Any, *, model: str | os.PathLike[str] = ev.CLIP_B32.repo_id,
                           device: str | None = None, batch_size: int = BATCH) -> float:
    """VBench's background consistency: :func:`consistency_of` the CLIP ViT-B/32 image embeddings of every frame.

    Frames are resized to 224 (bicubic), centre-cropped and normalised with the CLIP mean/std
    (VBench's ``clip_transform``).

    Args:
        video: uint8 frames ``(T, H, W, 3)``, T >= 2, or a ``wanlab.Video``.
        model: a CLIP hub repo id in the local cache, or a local folder (default
            ``openai/clip-vit-base-patch32``).
        device: where the evaluator runs (default CUDA when available, else CPU).
        batch_size: frames per forward pass.

    Returns:
        A float in [0, 1].

    Raises:
        EvaluatorMissing: the evaluator is not in the local cache.
        ValueError: bad frames, or fewer than 2.

    Example:
        >>> wanlab.metrics.background_consistency(video)  # doctest: +SKIP
        0.93
    """
    as_frames(video, min_frames=2)
    return consistency_of(clip_image_features(video, model, device=device, batch_size=batch_size))


def load_aesthetic_head(source: str | os.PathLike[str] | None = None, device: str | None = None) -> Any:
    """LAION's linear aesthetic head (``nn.Linear(768, 1)``), loaded once per process and device.

    Args:
        source: A ``.pth`` / ``.safetensors`` state dict (see :func:`wanlab.metrics.evaluators.head_file`
            for where it is looked for when None).
        device: Where the head runs (default CUDA when available, else CPU).

    Returns:
        The head, in eval mode, without gradients.

    Raises:
        EvaluatorMissing: No head file.
        ValueError: The file is not a Linear(768, 1) state dict.

    Example:
        >>> load_aesthetic_head("sa_0_4_vit_l_14_linear.pth").in_features  # doctest: +SKIP
        768
    """
    import torch

    path = ev.head_file(source)
    device = device or ev.default_device()
    key = (str(path.resolve()), "aesthetic-head", str(device))

    def load() -> tuple[Any, None]:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        head = torch.nn.Linear(AESTHETIC_DIM, 1)
        try:
            head.load_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise ValueError(f"aesthetic head: {path} is not a Linear(768, 1) state dict (weight, bias): "
                             f"{str(exc).splitlines()[0]}") from None
        return head.eval().requires_grad_(False).to(device), None

    return ev.once(key, load)[0]


def aesthetic_quality(video: Any, *, model: str | os.PathLike[str] = ev.CLIP_L14.repo_id,
                      head: str | os.PathLike[str] | None = None, device: str | None = None,
                      batch_size: int = BATCH) -> float:
    """VBench's aesthetic quality: LAION's aesthetic predictor on every frame, divided by 10, averaged.

    The predictor takes CLIP ViT-L/14 image embeddings (after VBench's ``clip_transform``),
    L2-normalised, through a linear head (:func:`load_aesthetic_head`).

    Args:
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video``.
        model: the CLIP ViT-L/14 image tower (hub repo id in the local cache, or a folder).
        head: the linear head's weights file (default ``$WANLAB_CACHE/evaluators/sa_0_4_vit_l_14_linear.pth``).
        device: where the evaluators run (default CUDA when available, else CPU).
        batch_size: frames per forward pass (VBench: 32).

    Returns:
        A float, the LAION score / 10 (LAION's scale is about 1..10, so about 0.1..1).

    Raises:
        EvaluatorMissing: the CLIP model or the head is not here.
        ValueError: The CLIP model's embeddings do not fit the head (LAION's needs CLIP ViT-L/14).

    Example:
        >>> wanlab.metrics.aesthetic_quality(video)  # doctest: +SKIP
        0.52
    """
    import torch

    feats = clip_image_features(video, model, device=device, batch_size=batch_size, metric="aesthetic_quality")
    linear = load_aesthetic_head(head, device)
    if feats.shape[1] != linear.in_features:
        raise ValueError(f"aesthetic_quality: the CLIP model gives {feats.shape[1]}-d embeddings, the head takes "
                         f"{linear.in_features} (LAION's head needs CLIP ViT-L/14)")
    dev = next(linear.parameters()).device
    with torch.inference_mode():
        scores = linear(torch.nn.functional.normalize(feats, dim=-1, p=2).to(dev)).squeeze(-1).float().cpu()
    return float((scores / 10).mean())


def quality(video: Any, prompt: str | None = None, metrics: Sequence[str] = QUALITY_KEYS, *,
            device: str | None = None, **models: Any) -> dict[str, float]:
    """Several reference metrics of one video at once.

    Args:
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video``.
        prompt: The prompt (needed for ``clip_score``).
        metrics: Names among :data:`QUALITY_KEYS`.
        device: Where the evaluators run (default CUDA when available, else CPU).
        **models: An evaluator per metric: ``clip_score="folder"``, ``aesthetic_head="x.pth"``, ...

    Returns:
        ``{name: value}`` for each name of ``metrics``.

    Raises:
        ValueError: an unknown metric name, or ``clip_score`` without a prompt.
        EvaluatorMissing: An evaluator is not in the local cache.

    Example:
        >>> wanlab.metrics.quality(video, "a cat on a fence", ["clip_score", "aesthetic_quality"])  # doctest: +SKIP
        {'clip_score': 31.2, 'aesthetic_quality': 0.52}
    """
    unknown = [m for m in metrics if m not in QUALITY_KEYS]
    if unknown:
        raise ValueError(f"metrics: must be among {', '.join(QUALITY_KEYS)}; got {', '.join(map(repr, unknown))}")
    out: dict[str, float] = {}
    for name in metrics:
        kw: dict[str, Any] = {"device": device}
        if name in models:
            kw["model"] = models[name]
        if name == "clip_score":
            if prompt is None:
                raise ValueError("clip_score: needs the prompt")
            out[name] = clip_score(video, prompt, **kw)
        elif name == "aesthetic_quality":
            out[name] = aesthetic_quality(video, head=models.get("aesthetic_head"), **kw)
        else:
            out[name] = {"subject_consistency": subject_consistency,
                         "background_consistency": background_consistency}[name](video, **kw)
    return out
