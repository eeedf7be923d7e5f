"""Exact prompt adherence on the toy model's captions: does the clip show what its caption asks?

:func:`adherence` checks a clip; :func:`caption_attributes` reads what a caption asks for.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParamError
from ..toy.data import WORDS, parse_caption
from .shapes import ATTRIBUTES, score_frames

#: The keys of :func:`adherence`, in order.
ADHERENCE_KEYS = ("adherence", *(f"adherence_{a}" for a in ATTRIBUTES), "adherence_visible")


def caption_attributes(prompt: str) -> dict[str, str]:
    """The attributes a toy caption asks for: colour, shape, direction, speed.

    A shape standing still has ``"still"`` for both direction and speed.

    Args:
        prompt: a caption of the toy's vocabulary, ``"a <colour> <shape> moving <direction> <speed>"``
            or ``"a <colour> <shape> standing still"`` (surrounding and repeated spaces are ignored).

    Returns:
        ``{"colour": ..., "shape": ..., "direction": ..., "speed": ...}``.

    Raises:
        ParamError: ``prompt`` is not a string, uses words outside the toy's vocabulary (named), or
            is not in one of the two caption forms.

    Example:
        >>> caption_attributes("a red square moving right quickly")["direction"]
        'right'
    """
    if not isinstance(prompt, str):
        raise ParamError("prompt", "a toy caption (a string)", prompt)
    unknown = list(dict.fromkeys(w for w in prompt.split() if w not in WORDS))
    if unknown:
        raise ParamError("prompt", f"a caption in the toy's vocabulary (unknown word{'s' * (len(unknown) > 1)}: "
                                   f"{', '.join(repr(w) for w in unknown)}; known: {' '.join(WORDS)})", prompt)
    try:
        attrs = parse_caption(" ".join(prompt.split()))
    except ValueError:
        raise ParamError("prompt", "a toy caption, 'a <colour> <shape> moving <direction> <speed>' or "
                                   "'a <colour> <shape> standing still'", prompt) from None
    return {k: str(v) for k, v in attrs.items()}


def adherence(video: Any, prompt: str) -> dict[str, float]:
    """Whether a toy-model clip shows what its caption asks, per attribute and overall.

    The toy's captions name four attributes (``"a red square moving right quickly"``: colour, shape,
    direction, speed class; ``"a blue circle standing still"``: direction and speed "still"), and
    its videos are simple enough to read them back exactly: :func:`wanlab.metrics.shapes.score_frames`,
    the strict reader of the toy evaluator (``wanlab.toy.scoring``), says which colour, shape,
    direction and speed class a clip shows, and this compares that reading with the caption,
    attribute by attribute. This is ground truth, not a learned proxy: every clip of
    ``wanlab.toy.data`` adheres fully to its own caption, and a caption that changes one attribute
    fails that attribute alone (``tests/test_adherence.py``). For real Wan prompts use the
    reference metrics (:func:`wanlab.metrics.clip_score` and the VBench dimensions), which need no
    closed vocabulary.

    Each attribute is 1.0 when the strict reader (:func:`wanlab.metrics.shapes.score_frames`) reads
    the caption's value from the frames and 0.0 otherwise; ``adherence`` is their mean (so in
    {0, 0.25, 0.5, 0.75, 1}; averaged over seeds it is the share of attributes right).
    ``adherence_visible`` (1.0 / 0.0) says whether one whole shape of steady area shows in every
    frame; it is reported alongside, not averaged in (a caption does not ask for it).

    Args:
        video: uint8 frames ``(T, H, W, 3)`` (T >= 2) or an object with ``.frames`` (``wanlab.Video``).
        prompt: the toy caption the clip was made from.

    Returns:
        ``{"adherence", "adherence_direction", "adherence_speed", "adherence_colour",
        "adherence_shape", "adherence_visible"}`` (:data:`ADHERENCE_KEYS`), floats in [0, 1].

    Raises:
        ParamError: the prompt is not a toy caption (the unknown words are named) or the frames are
            not uint8 ``(T, H, W, 3)`` with T >= 2.

    Example:
        >>> from wanlab.toy import data
        >>> clip = data.make_clip(np.random.default_rng(0), "a red square moving left quickly")
        >>> adherence(clip.frames, "a red square moving left quickly")["adherence"]
        1.0
        >>> adherence(clip.frames, "a blue square moving left quickly")["adherence_colour"]
        0.0
    """
    wanted = caption_attributes(prompt)
    frames = np.asarray(getattr(video, "frames", video))
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ParamError("video", "uint8 frames (T, H, W, 3) with T >= 2",
                         f"{frames.dtype} array of shape {frames.shape}")
    seen = score_frames(frames, use_flow=False)
    per = {a: float(seen[a] == wanted[a]) for a in ATTRIBUTES}
    out = {"adherence": float(np.mean(list(per.values())))}
    out.update({f"adherence_{a}": v for a, v in per.items()})
    out["adherence_visible"] = float(bool(seen["visible"]))
    return out
