"""Named metric sets: what ``Sweep.run(metrics=[...])``, sweep files and ``wanlab sweep --metrics`` compute.

Each name computes one or more values per video, stored with the run (``metrics.json``) and shown
as columns of ``result.df`` / ``Store.df``:

========================== ============================================ ===================
name                       values                                       needs
========================== ============================================ ===================
``motion``                 :data:`~wanlab.metrics.MOTION_KEYS`          frames
``adherence``              :data:`~wanlab.metrics.ADHERENCE_KEYS`       a toy caption
``clip_score``             ``clip_score``                               the prompt, CLIP
``subject_consistency``    ``subject_consistency``                      DINO ViT-B/16
``background_consistency`` ``background_consistency``                   CLIP ViT-B/32
``aesthetic_quality``      ``aesthetic_quality``                        CLIP ViT-L/14, head
========================== ============================================ ===================

``quality`` stands for the last four. ``True`` means the default set (``motion``), ``False`` none.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ParamError
from ..frames import WAN_FPS


@dataclass(frozen=True)
class MetricSet:
    """One name of :data:`METRIC_SETS`.

    Attributes:
        name: The set's name.
        keys: The values it stores.
        done_key: The value whose presence in a run's metrics marks it done.
        needs_prompt: Whether it compares the frames with the prompt.

    Example:
        >>> METRIC_SETS["clip_score"].needs_prompt
        True
    """

    name: str
    keys: tuple[str, ...]
    done_key: str
    needs_prompt: bool = False


def _sets() -> dict[str, MetricSet]:
    from . import ADHERENCE_KEYS, MOTION_KEYS

    sets = [MetricSet("motion", MOTION_KEYS, "static"),
            MetricSet("adherence", ADHERENCE_KEYS, "adherence", needs_prompt=True),
            MetricSet("clip_score", ("clip_score",), "clip_score", needs_prompt=True)]
    sets += [MetricSet(n, (n,), n) for n in ("subject_consistency", "background_consistency", "aesthetic_quality")]
    return {s.name: s for s in sets}


METRIC_SETS: dict[str, MetricSet] = _sets()
#: Names that stand for several sets.
ALIASES = {"quality": ("clip_score", "subject_consistency", "background_consistency", "aesthetic_quality")}
DEFAULT = ("motion",)


def check_metrics(value: Any, field: str = "metrics") -> tuple[str, ...]:
    """The metric sets a ``metrics`` option names, in order, without repeats.

    Args:
        value: ``True`` (the default set, motion), ``False`` or ``None`` (none), a name, or a list of
            names of :data:`METRIC_SETS` (``"quality"`` stands for the four reference metrics).
        field: the option's name in errors.

    Returns:
        A tuple of set names.

    Raises:
        ParamError: anything else, naming the unknown names.

    Example:
        >>> check_metrics(["motion", "adherence", "motion"])
        ('motion', 'adherence')
        >>> check_metrics("quality")
        ('clip_score', 'subject_consistency', 'background_consistency', 'aesthetic_quality')
    """
    if value is True:
        return DEFAULT
    if value is False or value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ParamError(field, f"True, False or a list of metric names ({', '.join(known_names())})", value)
    unknown = [v for v in items if v not in METRIC_SETS and v not in ALIASES]
    if unknown:
        raise ParamError(field, f"names among {', '.join(known_names())} (unknown: {', '.join(map(repr, unknown))})",
                         value)
    out: list[str] = []
    for v in items:
        for name in ALIASES.get(v, (v,)):
            if name not in out:
                out.append(name)
    return tuple(out)


def known_names() -> list[str]:
    """Every name ``metrics=`` accepts.

    Returns:
        The set names, then the aliases (``quality``).
    """
    return [*METRIC_SETS, *ALIASES]


def missing(stored: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The sets of ``names`` a run's stored metrics lack and that did not fail before.

    Args:
        stored: The run's metrics.
        names: Set names.

    Returns:
        The names still to compute (a failure is kept under :func:`error_key`).

    Example:
        >>> missing({"static": 0.0}, ["motion", "adherence"])
        ['adherence']
    """
    out = []
    for name in names:
        error_key = "metrics_error" if name == "motion" else f"{name}_error"
        if METRIC_SETS[name].done_key not in stored and not stored.get(error_key):
            out.append(name)
    return out


def error_key(name: str) -> str:
    """Where a set's failure is kept in a run's metrics.

    Args:
        name: A set name.

    Returns:
        ``<name>_error``; ``metrics_error`` for motion, as earlier wanlab versions recorded it.

    Example:
        >>> error_key("motion"), error_key("clip_score")
        ('metrics_error', 'clip_score_error')
    """
    return "metrics_error" if name == "motion" else f"{name}_error"


def error_keys() -> tuple[str, ...]:
    """Every key a set's failure can be kept under.

    Returns:
        ``metrics_error``, ``adherence_error``, ...
    """
    return tuple(error_key(n) for n in METRIC_SETS)


def compute(name: str, video: Any, prompt: str | None = None, *, device: str | None = None,
            fps: float = WAN_FPS, evaluators: dict[str, Any] | None = None) -> dict[str, float]:
    """The values of one metric set for one video.

    Args:
        name: a name of :data:`METRIC_SETS`.
        video: uint8 frames ``(T, H, W, 3)`` or a ``wanlab.Video`` (its ``fps`` is used for motion).
        prompt: the prompt the video was made from (``adherence``, ``clip_score``).
        device: where evaluators run (the pipeline's device in a sweep).
        fps: frame rate for motion, when ``video`` is a bare array.
        evaluators: per-set evaluator overrides, e.g. ``{"clip_score": "/models/clip"}``,
            ``{"aesthetic_head": "x.pth"}``.

    Returns:
        ``{key: float}`` for the set's keys; a reference metric adds ``<name>_evaluator`` (a string:
        ``repo_id@commit`` or the folder that scored it), kept with the run beside its value.

    Raises:
        ParamError: an unknown name, or a set that needs the prompt without one.
        EvaluatorMissing: A reference metric's evaluator is not in the local cache.

    Example:
        >>> import numpy as np
        >>> video = np.zeros((3, 16, 16, 3), np.uint8)
        >>> compute("motion", video)["flow_magnitude"]
        0.0
    """
    from . import adherence, motion
    from .reference import quality

    if name not in METRIC_SETS:
        raise ParamError("metric", f"one of {', '.join(METRIC_SETS)}", name)
    if METRIC_SETS[name].needs_prompt and not prompt:
        raise ParamError("prompt", f"the video's prompt ({name} compares the frames with it)", prompt)
    if name == "motion":
        return {k: float(v) for k, v in motion(video, fps=float(getattr(video, "fps", fps))).items()}
    if name == "adherence":
        return adherence(video, str(prompt))
    values: dict[str, Any] = quality(video, prompt, [name], device=device, **(evaluators or {}))
    values[f"{name}_evaluator"] = evaluator_of(name, evaluators)
    return values


def evaluator_of(name: str, evaluators: dict[str, Any] | None = None) -> str:
    """What scored a reference metric, as stored beside its value (``<name>_evaluator``).

    Args:
        name: A reference metric's name.
        evaluators: Per-set evaluator overrides (as :func:`compute` takes them).

    Returns:
        ``repo_id@commit`` of the cache snapshot (or the folder given), plus the aesthetic head's file.

    Raises:
        EvaluatorMissing: The evaluator is not in the local cache.

    Example:
        >>> evaluator_of("clip_score")  # doctest: +SKIP
        'openai/clip-vit-base-patch32@3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268'
    """
    from . import evaluators as ev

    default = {"clip_score": ev.CLIP_B32, "subject_consistency": ev.DINO_B16,
               "background_consistency": ev.CLIP_B32, "aesthetic_quality": ev.CLIP_L14}[name].repo_id
    source = (evaluators or {}).get(name) or default
    text = ev.describe(ev.resolve(source, name), source)
    if name == "aesthetic_quality":
        text += f" + {ev.head_file((evaluators or {}).get('aesthetic_head'))}"
    return text
