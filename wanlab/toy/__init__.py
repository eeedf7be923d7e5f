"""The ``toy`` model's training and evaluation: captioned moving shapes.

``wanlab.toy.data`` generates the clips and captions, ``python -m wanlab.toy.train --out DIR``
trains a stock diffusers ``WanPipeline`` on them, and :func:`evaluate` measures how well a
pipeline's videos follow their captions (direction, speed class, colour, shape).
"""
from __future__ import annotations

from . import data
# Imported by name so that ``wanlab.toy.evaluate`` is the function, not its module.
from .evaluate import Report, empty_prompt_directions, evaluate, evaluate_clips, prompts_for, score_frames

__all__ = ["data", "evaluate", "evaluate_clips", "score_frames", "empty_prompt_directions", "prompts_for",
           "Report"]
