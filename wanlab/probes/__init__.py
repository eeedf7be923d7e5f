"""Probes: looking inside the model while it generates (DESIGN.md section 11).

``pipe.generate(..., probes=["trajectory", "attention", "features"])`` records, beside the frames
and without changing them, the model's clean-video prediction at every step (:class:`Trajectory`),
cross-attention maps from the video to the prompt's words (:class:`Attention`) and each block's
step-to-step output change (:class:`Features`); ``video.probes`` holds them (:class:`Probes`) and
they are stored with the run. Definitions, with the papers and code they follow, are in
each class's docstring and docs/metrics.md.

Example:
    >>> video = pipe.generate(prompt="a red square moving right quickly", seed=1,  # doctest: +SKIP
    ...                       probes=["trajectory"])
    >>> video.probes["trajectory"].preview(-1).shape  # doctest: +SKIP
    (17, 64, 64, 3)
"""
from __future__ import annotations

from .bundle import Probes
from .results import Attention, Features, Trajectory
from .spec import NAMES, normalize

__all__ = ["Attention", "Features", "NAMES", "Probes", "Trajectory", "normalize"]
