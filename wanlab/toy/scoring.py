"""Evaluate the toy model: how often its clips show what their captions ask.

Holds :func:`evaluate` / :func:`evaluate_clips` (accuracy per attribute in a :class:`Report`),
:func:`speed_contrast` and :func:`empty_prompt_directions`, and ``python -m wanlab.toy.scoring``
(:func:`main`), which prints all of them for a model. The clip reader (:func:`score_frames`) is
``wanlab.metrics.shapes``, re-exported here.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics.shapes import (
    AREA_TOLERANCE,
    ATTRIBUTES,
    CIRCLE_MIN_FILL,
    COLUMNS,
    DIRECTION_MIN,
    MIN_CONTRAST,
    MIN_PIXELS,
    SLOW_MAX,
    SQUARE_MIN_FILL,
    STILL_MAX,
    classify_direction,
    classify_speed,
    foreground,
    score_frames,
)
from .data import COLOURS, DIRECTIONS, HELD_OUT, SHAPES, TRAIN_CAPTIONS, caption, parse_caption

__all__ = ["AREA_TOLERANCE", "ATTRIBUTES", "CIRCLE_MIN_FILL", "COLUMNS", "DIRECTION_MIN", "MIN_CONTRAST", "MIN_PIXELS",
           "SLOW_MAX", "SQUARE_MIN_FILL", "STILL_MAX", "classify_direction", "classify_speed", "foreground",
           "score_frames", "Report", "evaluate_clips", "prompts_for", "evaluate", "speed_pairs", "speed_contrast",
           "speed_table", "empty_prompt_directions", "main"]


def _correct(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, bool]:
    return {a: pred[a] == truth[a] for a in ATTRIBUTES} | {"visible": bool(pred["visible"])}


@dataclass
class Report:
    """Per-clip rows; accuracy per (split, guidance) of each attribute, and the share of visible clips.

    Its ``repr`` is :meth:`table`, so a notebook cell ending in a report shows the table.

    Attributes:
        rows: One dict per clip: ``caption``, ``split`` (``"seen"``, ``"held-out"`` or
            ``"ground-truth"``), ``pred`` (:func:`score_frames`), ``truth`` (:func:`parse_caption`),
            ``correct`` (one bool per column of :data:`COLUMNS`), and for generated clips ``seed`` and
            ``guidance_scale``.

    Example:
        >>> from wanlab.toy import data
        >>> report = evaluate_clips([data.make_clip(np.random.default_rng(0), "a red square standing still")])
        >>> report.rows[0]["correct"]
        {'direction': True, 'speed': True, 'colour': True, 'shape': True, 'visible': True}
    """

    rows: list[dict[str, Any]] = field(default_factory=list)

    def accuracy(self, split: str | None = None, guidance: float | None = None) -> dict[str, float]:
        """Share of rows right per column (and ``n``), over one split and guidance or all of them.

        Args:
            split: Only rows of this split (``"seen"``, ``"held-out"``, ``"ground-truth"``); ``None``: all.
            guidance: Only rows generated at this guidance scale; ``None``: all.

        Returns:
            ``{column: share in [0, 1]}`` for each of :data:`COLUMNS`, plus ``"n"`` (the rows counted);
            ``{}`` when no row matches.

        Example:
            >>> from wanlab.toy import data
            >>> report = evaluate_clips([data.make_clip(np.random.default_rng(0), "a red square standing still")])
            >>> report.accuracy()["shape"], report.accuracy()["n"], report.accuracy("seen")
            (1.0, 1, {})
        """
        rows = [r for r in self.rows if (split is None or r["split"] == split)
                and (guidance is None or r.get("guidance_scale") == guidance)]
        if not rows:
            return {}
        return {a: float(np.mean([r["correct"][a] for r in rows])) for a in COLUMNS} | {"n": len(rows)}

    def table(self) -> str:
        """Markdown table: accuracy per split (and guidance, when several were run).

        Returns:
            One row per (guidance, split) with ``n`` and each column's accuracy in %, plus an ``all``
            row per guidance when there are several splits.

        Example:
            >>> from wanlab.toy import data
            >>> clips = [data.make_clip(np.random.default_rng(i), c) for i, c in enumerate(data.HELD_OUT[:3])]
            >>> print(evaluate_clips(clips).table())
            | guidance | captions | n | direction | speed | colour | shape | visible |
            |---|---|---|---|---|---|---|---|
            | - | ground-truth | 3 | 100.0% | 100.0% | 100.0% | 100.0% | 100.0% |
        """
        guidances = sorted({r.get("guidance_scale") for r in self.rows}, key=lambda g: (g is None, g))
        splits = [s for s in ("seen", "held-out", "ground-truth") if any(r["split"] == s for r in self.rows)]
        lines = ["| guidance | captions | n | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (3 + len(COLUMNS))]
        for g in guidances:
            for s in splits + (["all"] if len(splits) > 1 else []):
                acc = self.accuracy(None if s == "all" else s, g)
                if acc:
                    cells = " | ".join(f"{100 * acc[a]:.1f}%" for a in COLUMNS)
                    lines.append(f"| {'-' if g is None else f'{g:g}'} | {s} | {acc['n']} | {cells} |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def evaluate_clips(clips: Iterable[Any], split: str = "ground-truth") -> Report:
    """Score clips whose caption is known (objects with ``.frames`` and ``.caption``).

    Rendered ground truth (:func:`wanlab.toy.data.make_clip`) scores 100 %, which checks the reader.

    Args:
        clips: Objects with ``.frames`` (uint8 ``(T, H, W, 3)``) and ``.caption`` (a toy caption).
        split: The split recorded in each row.

    Returns:
        A :class:`Report` with one row per clip.

    Raises:
        ValueError: A clip's caption is not a toy caption.

    Example:
        >>> from wanlab.toy import data
        >>> clips = [data.make_clip(np.random.default_rng(i), c) for i, c in enumerate(data.HELD_OUT[:3])]
        >>> evaluate_clips(clips).accuracy()["direction"]
        1.0
    """
    report = Report()
    for clip in clips:
        truth = parse_caption(clip.caption)
        pred = score_frames(clip.frames)
        report.rows.append({"caption": clip.caption, "split": split, "pred": pred, "truth": truth,
                            "correct": _correct(pred, truth)})
    return report


def prompts_for(n_prompts: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n_prompts`` (caption, split) pairs: half seen captions, half held-out, in a seeded spread.

    Args:
        n_prompts: How many pairs; the held-out half is ``n_prompts // 2`` (captions repeat past 15).
        seed: Seed of the spread.

    Returns:
        ``(caption, "seen")`` pairs first, then ``(caption, "held-out")`` pairs.

    Example:
        >>> [split for _, split in prompts_for(5)]
        ['seen', 'seen', 'seen', 'held-out', 'held-out']
        >>> prompts_for(4)[2]
        ('a white triangle moving down slowly', 'held-out')
    """
    rng = np.random.default_rng(seed)
    n_held = n_prompts // 2
    seen = [TRAIN_CAPTIONS[i] for i in rng.permutation(len(TRAIN_CAPTIONS))]
    held = [HELD_OUT[i] for i in rng.permutation(len(HELD_OUT))]
    return ([(seen[i % len(seen)], "seen") for i in range(n_prompts - n_held)]
            + [(held[i % len(held)], "held-out") for i in range(n_held)])


def _native_guidance(pipe: Any, fields: dict[str, Any]) -> float:
    return float(fields.pop("guidance_scale", getattr(pipe, "native", {}).get("guidance_scale", 5.0)))


def evaluate(pipe: Any, n_prompts: int = 40, seeds: Sequence[int] = (1000, 1001), *,
             guidance_scales: Sequence[float] | None = None, prompts: Sequence[str] | None = None,
             progress: bool = False, **fields: Any) -> Report:
    """Generate clips with ``pipe`` (a ``wanlab.Pipeline``) and score them against their captions.

    Each prompt runs with every seed and guidance scale.

    Args:
        pipe: A pipeline, or anything with ``generate(prompt=, seed=, guidance_scale=, **fields)``
            returning an object with ``.frames``.
        n_prompts: How many prompts :func:`prompts_for` picks when ``prompts`` is not given.
        seeds: The seeds each prompt runs with.
        guidance_scales: The guidance scales to run; default: ``fields["guidance_scale"]`` if given,
            else the pipeline's native one (5.0 when it has none).
        prompts: Toy captions to run instead, each split "seen" or "held-out" by :data:`HELD_OUT`.
        progress: Print a counter with the elapsed time.
        **fields: Other request fields (``steps``, ``num_frames``, ...) passed to every ``generate``.

    Returns:
        A :class:`Report` with one row per (guidance, prompt, seed).

    Raises:
        ValueError: A prompt is not a toy caption.
        wanlab.ParamError: A field breaks its rule (raised by ``pipe.generate``).

    Example:
        >>> report = evaluate(wanlab.load("toy"), 8, [11])  # doctest: +SKIP
        >>> report.accuracy("held-out")["direction"]  # doctest: +SKIP
    """
    pairs = ([(p, "held-out" if p in HELD_OUT else "seen") for p in prompts] if prompts is not None
             else prompts_for(n_prompts))
    if guidance_scales is None:
        guidance_scales = [_native_guidance(pipe, fields)]
    report = Report()
    total, t0 = len(pairs) * len(seeds) * len(guidance_scales), time.perf_counter()
    for g in guidance_scales:
        for text, split in pairs:
            truth = parse_caption(text)
            for seed in seeds:
                video = pipe.generate(prompt=text, seed=int(seed), guidance_scale=float(g), **fields)
                pred = score_frames(video.frames)
                report.rows.append({"caption": text, "split": split, "seed": int(seed), "guidance_scale": float(g),
                                    "pred": pred, "truth": truth, "correct": _correct(pred, truth)})
                if progress:
                    print(f"\r  evaluate {len(report.rows)}/{total} ({time.perf_counter() - t0:.0f} s)", end="",
                          flush=True)
    if progress:
        print()
    return report


def speed_pairs(n_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n_pairs`` ("... quickly", "... slowly") caption twins (same colour, shape, direction), seeded spread.

    Args:
        n_pairs: How many twins (at most 60, the (colour, shape, direction) triples).
        seed: Seed of the spread.

    Returns:
        ``(quickly caption, slowly caption)`` pairs.

    Example:
        >>> speed_pairs(1)
        [('a green circle moving right quickly', 'a green circle moving right slowly')]
    """
    triples = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    order = np.random.default_rng(seed).permutation(len(triples))
    picks = [triples[i] for i in order[:n_pairs]]
    return [(caption(c, s, d, "quickly"), caption(c, s, d, "slowly")) for c, s, d in picks]


def speed_contrast(pipe: Any, guidance_scales: Sequence[float] = (2.0, 3.0, 4.0, 5.0), n_pairs: int = 8,
                   seeds: Sequence[int] = (1000, 1001), **fields: Any) -> list[dict[str, Any]]:
    """Per guidance: mean ``flow_magnitude`` of "quickly" and "slowly" twins, and how often quickly is larger.

    Each twin pair (:func:`speed_pairs`) runs with the same seeds; ``quicker`` is the share of
    (pair, seed) where the "quickly" clip measures the larger ``wanlab.metrics.flow_magnitude``
    (px/frame, whole frame).

    Args:
        pipe: A pipeline (as for :func:`evaluate`).
        guidance_scales: One result row per guidance scale.
        n_pairs: Twin pairs per guidance scale.
        seeds: The seeds each caption runs with.
        **fields: Other request fields passed to every ``generate``.

    Returns:
        One dict per guidance scale: ``guidance_scale``, ``n`` (pairs x seeds), ``quickly_flow``,
        ``slowly_flow`` (means, px/frame) and ``quicker`` (a share in [0, 1]); :func:`speed_table`
        prints them.

    Raises:
        wanlab.ParamError: A field breaks its rule (raised by ``pipe.generate``).

    Example:
        >>> rows = speed_contrast(wanlab.load("toy"), [2.0], n_pairs=2, seeds=[1])  # doctest: +SKIP
        >>> print(speed_table(rows))  # doctest: +SKIP
    """
    from .. import metrics

    out = []
    for g in guidance_scales:
        quick: list[float] = []
        slow: list[float] = []
        for q_text, s_text in speed_pairs(n_pairs):
            for seed in seeds:
                for text, into in ((q_text, quick), (s_text, slow)):
                    video = pipe.generate(prompt=text, seed=int(seed), guidance_scale=float(g), **fields)
                    into.append(metrics.flow_magnitude(video.frames).mean)
        q, s = np.array(quick), np.array(slow)
        out.append({"guidance_scale": float(g), "n": len(q), "quickly_flow": float(q.mean()),
                    "slowly_flow": float(s.mean()), "quicker": float(np.mean(q > s))})
    return out


def speed_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`speed_contrast` rows.

    Args:
        rows: The rows :func:`speed_contrast` returns.

    Returns:
        The table, one line per row.

    Example:
        >>> print(speed_table([{"guidance_scale": 3.0, "n": 16, "quickly_flow": 2.1, "slowly_flow": 1.05,
        ...                     "quicker": 0.9375}]))
        | guidance | pairs x seeds | flow_magnitude quickly | slowly | quickly larger |
        |---|---|---|---|---|
        | 3 | 16 | 2.10 | 1.05 | 94% |
    """
    lines = ["| guidance | pairs x seeds | flow_magnitude quickly | slowly | quickly larger |", "|---|---|---|---|---|"]
    lines += [f"| {r['guidance_scale']:g} | {r['n']} | {r['quickly_flow']:.2f} | {r['slowly_flow']:.2f} | "
              f"{100 * r['quicker']:.0f}% |" for r in rows]
    return "\n".join(lines)


def empty_prompt_directions(pipe: Any, seeds: Sequence[int], **fields: Any) -> dict[str, int]:
    """Direction counts of clips generated from an empty prompt (should be spread, not one direction).

    Args:
        pipe: A pipeline (as for :func:`evaluate`).
        seeds: One clip per seed, from the prompt ``" "``.
        **fields: Other request fields passed to every ``generate``.

    Returns:
        ``{direction: clips}`` as :func:`score_frames` reads them without optical flow (``"still"``
        included).

    Raises:
        wanlab.ParamError: A field breaks its rule (raised by ``pipe.generate``).

    Example:
        >>> counts = empty_prompt_directions(wanlab.load("toy"), range(16))  # doctest: +SKIP
        >>> sum(counts.values())  # doctest: +SKIP
        16
    """
    counts: dict[str, int] = {}
    for seed in seeds:
        video = pipe.generate(prompt=" ", seed=int(seed), **fields)
        d = score_frames(video.frames, use_flow=False)["direction"]
        counts[d] = counts.get(d, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m wanlab.toy.scoring``: the full evaluation of a model (default: the built-in toy)."""
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="python -m wanlab.toy.scoring", description=main.__doc__)
    parser.add_argument("--model", default="toy", help="'toy' or a folder written by python -m wanlab.toy.train")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--speed-guidance", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0])
    parser.add_argument("--speed-pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--empty-seeds", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write rows and summaries here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import wanlab

    from ..fsutil import write_json
    from .data import all_captions, make_clip

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    truth = evaluate_clips([make_clip(np.random.default_rng([3, i]), c) for i, c in enumerate(all_captions())])
    print("ground truth (135 clips):\n" + truth.table(), flush=True)
    from ..models.registry import builtin

    toy = builtin("toy")
    if args.model == "toy":
        pipe, fields = wanlab.load("toy", progress=False), {}
    else:  # a folder trained by wanlab.toy.train: run it at the toy's native settings
        pipe = wanlab.load(args.model, progress=False, max_sequence_length=toy.max_sequence_length)
        fields = {k: v for k, v in toy.native.items() if k != "guidance_scale"}
    if args.steps:
        fields["steps"] = args.steps
    report = evaluate(pipe, args.prompts, args.seeds, guidance_scales=args.guidance, progress=True, **fields)
    print(report.table(), flush=True)
    speed = speed_contrast(pipe, args.speed_guidance, args.speed_pairs, args.seeds, **fields)
    print(speed_table(speed), flush=True)
    empty = empty_prompt_directions(pipe, range(2000, 2000 + args.empty_seeds), **fields)
    print("empty prompt directions:", json.dumps(empty), flush=True)
    if args.json:
        summary = {
            "model": pipe.model_info, "native": pipe.native, "prompts": args.prompts, "seeds": args.seeds,
            "guidance": args.guidance, "threads": args.threads, "seconds": time.perf_counter() - t0,
            "ground_truth": truth.accuracy(), "table": report.table(), "speed_contrast": speed,
            "empty_prompt_directions": empty,
            "accuracy": {f"{s}@{g:g}": report.accuracy(s, g) for g in args.guidance for s in ("seen", "held-out")},
        }
        rows = [{k: v for k, v in r.items() if k != "pred"} | {"pred": {k: r["pred"][k] for k in COLUMNS}}
                | {"velocity": r["pred"]["velocity"], "components": r["pred"]["components"]} for r in report.rows]
        write_json(args.json, {"summary": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
