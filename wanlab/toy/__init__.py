"""The ``toy`` model's training and evaluation: captioned moving shapes.

``wanlab.toy.data`` generates the clips and captions, ``python -m wanlab.toy.train --out DIR``
trains a stock diffusers ``WanPipeline`` on them, and :func:`evaluate` (``wanlab.toy.scoring``)
measures how well a pipeline's videos follow their captions (direction, speed class, colour,
shape, one whole shape visible).
"""
from __future__ import annotations

from . import data
from .scoring import (Report, empty_prompt_directions, evaluate, evaluate_clips, prompts_for, score_frames,
                      speed_contrast)

__all__ = ["data", "evaluate", "evaluate_clips", "score_frames", "speed_contrast", "empty_prompt_directions",
           "prompts_for", "Report"]
