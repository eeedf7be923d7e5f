"""The ``toy`` model's training and evaluation: captioned moving shapes.

``wanlab.toy.data`` generates the clips and captions, ``python -m wanlab.toy.train --out DIR``
trains a stock diffusers ``WanPipeline`` on them, and :func:`evaluate` (``wanlab.toy.scoring``,
``python -m wanlab.toy.scoring``) measures how well a pipeline's videos follow their captions:
direction, speed class, colour, shape, and one whole shape visible in every frame.
"""
from __future__ import annotations

from .. import lazy
from . import data

#: Names served from ``wanlab.toy.scoring`` (imported on first use, so ``python -m wanlab.toy.scoring`` runs clean).
_SCORING = ("Report", "empty_prompt_directions", "evaluate", "evaluate_clips", "prompts_for", "score_frames",
            "speed_contrast")

__all__ = ["data", *_SCORING]
__getattr__, __dir__ = lazy.attach(__name__, dict.fromkeys(_SCORING, "scoring"))
