"""Measure what a generated clip shows: direction, speed class, colour and shape of its one shape.

:func:`score_frames` reads one uint8 clip (T, H, W, 3):

* **foreground**: each frame's background is its median colour (the shape covers under 10 % of the
  frame); a pixel is foreground when its RGB distance to the background exceeds half the frame's
  99th-percentile distance (and at least ``MIN_CONTRAST``).
* **velocity**: least-squares slope of the foreground centroid over time (px/frame), and, as a
  cross-check, the mean optical flow (``wanlab.metrics.flow``, DIS) over foreground pixels.
  The centroid slope decides; the flow velocity is reported alongside.
* **direction / speed class**: ``still`` when the speed is under ``STILL_MAX`` px/frame, else the
  dominant axis and sign; ``slowly`` below ``SLOW_MAX`` px/frame (midway between 1.25 and 2.5),
  ``quickly`` above (distances scale with the frame's short side / 64).
* **colour**: mean RGB of the strongest foreground pixels, nearest palette colour.
* **shape**: median over frames of the foreground's fill of its bounding box: square ~1, circle
  ~pi/4, triangle ~1/2 (thresholds :data:`SQUARE_MIN_FILL`, :data:`CIRCLE_MIN_FILL`).

:func:`evaluate` generates clips from a pipeline for seen and held-out captions and reports
accuracy per attribute and split; :func:`evaluate_clips` scores clips with known captions
(ground truth must score 100 %).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .data import COLOURS, HELD_OUT, TRAIN_CAPTIONS, parse_caption

ATTRIBUTES = ("direction", "speed", "colour", "shape")
MIN_CONTRAST = 40.0
STILL_MAX = 0.5
SLOW_MAX = 1.875
SQUARE_MIN_FILL = 0.92
CIRCLE_MIN_FILL = 0.65
#: A frame counts when at least this many pixels are foreground.
MIN_PIXELS = 6


def _foreground(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask (T, H, W) bool, distance to background (T, H, W) float32)."""
    f = frames.astype(np.float32)
    bg = np.median(f.reshape(len(f), -1, 3), axis=1)  # (T, 3)
    dist = np.sqrt(((f - bg[:, None, None, :]) ** 2).sum(-1))
    peak = np.percentile(dist.reshape(len(f), -1), 99.5, axis=1)
    thr = np.maximum(MIN_CONTRAST, 0.5 * peak)
    return dist > thr[:, None, None], dist


def _fill(mask: np.ndarray) -> float | None:
    ys, xs = np.nonzero(mask)
    if len(ys) < MIN_PIXELS:
        return None
    return float(len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def score_frames(frames: np.ndarray, *, use_flow: bool = True) -> dict[str, Any]:
    """What one clip shows: direction, speed (class), colour, shape, plus the measurements behind them."""
    from .. import metrics

    frames = np.asarray(getattr(frames, "frames", frames))
    T, H, W = frames.shape[:3]
    unit = min(H, W) / 64.0
    mask, dist = _foreground(frames)
    mask = np.stack([_largest_component(m) for m in mask])
    counts = mask.reshape(T, -1).sum(1)
    ok = counts >= MIN_PIXELS
    ys, xs = np.mgrid[0:H, 0:W]
    cx = np.array([(xs * m).sum() / max(m.sum(), 1) for m in mask])
    cy = np.array([(ys * m).sum() / max(m.sum(), 1) for m in mask])
    t = np.arange(T, dtype=np.float64)
    if ok.sum() >= 2:
        vx = float(np.polyfit(t[ok], cx[ok], 1)[0])
        vy = float(np.polyfit(t[ok], cy[ok], 1)[0])
    else:
        vx = vy = 0.0
    flow_v = None
    if use_flow and T >= 2 and min(H, W) >= 16:
        fl = metrics.flow(frames, max_short_side=None)  # (T-1, H, W, 2) px/frame
        sel = mask[:-1] & mask[1:]
        if sel.sum() > 0:
            flow_v = (float(fl[..., 0][sel].mean()), float(fl[..., 1][sel].mean()))
    speed = float(np.hypot(vx, vy))
    if speed < STILL_MAX * unit:
        direction, speed_class = "still", "still"
    else:
        direction = ("right" if vx > 0 else "left") if abs(vx) >= abs(vy) else ("down" if vy > 0 else "up")
        speed_class = "slowly" if speed < SLOW_MAX * unit else "quickly"
    colour = None
    if ok.any():
        core = mask & (dist >= np.percentile(dist[mask], 50))
        rgb = frames[core].astype(np.float64).mean(0)
        colour = min(COLOURS, key=lambda c: float(((np.array(COLOURS[c]) - rgb) ** 2).sum()))
    fills = [f for f in (_fill(m) for m in mask) if f is not None]
    fill = float(np.median(fills)) if fills else None
    if fill is None:
        shape = None
    elif fill >= SQUARE_MIN_FILL:
        shape = "square"
    elif fill >= CIRCLE_MIN_FILL:
        shape = "circle"
    else:
        shape = "triangle"
    return {"direction": direction, "speed": speed_class, "colour": colour, "shape": shape,
            "velocity": (vx, vy), "flow_velocity": flow_v, "fill": fill,
            "visible_frames": int(ok.sum())}


def _correct(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, bool]:
    return {a: pred[a] == truth[a] for a in ATTRIBUTES}


@dataclass
class Report:
    """Per-clip rows and accuracy per (split, attribute)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def accuracy(self, split: str | None = None, guidance: float | None = None) -> dict[str, float]:
        rows = [r for r in self.rows if (split is None or r["split"] == split)
                and (guidance is None or r.get("guidance_scale") == guidance)]
        if not rows:
            return {}
        return {a: float(np.mean([r["correct"][a] for r in rows])) for a in ATTRIBUTES} | {"n": len(rows)}

    def table(self) -> str:
        """Markdown table: attribute accuracy per split (and guidance, when several were run)."""
        guidances = sorted({r.get("guidance_scale") for r in self.rows}, key=lambda g: (g is None, g))
        splits = [s for s in ("seen", "held-out", "ground-truth") if any(r["split"] == s for r in self.rows)]
        head = "| guidance | captions | n | " + " | ".join(ATTRIBUTES) + " |"
        lines = [head, "|" + "---|" * (3 + len(ATTRIBUTES))]
        for g in guidances:
            for s in splits + ["all"]:
                acc = self.accuracy(None if s == "all" else s, g)
                if not acc:
                    continue
                cells = " | ".join(f"{100 * acc[a]:.1f}%" for a in ATTRIBUTES)
                lines.append(f"| {'-' if g is None else f'{g:g}'} | {s} | {acc['n']} | {cells} |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def evaluate_clips(clips: Iterable[Any], split: str = "ground-truth") -> Report:
    """Score clips whose caption is known (objects with ``.frames`` and ``.caption``)."""
    report = Report()
    for clip in clips:
        truth = parse_caption(clip.caption)
        pred = score_frames(clip.frames)
        report.rows.append({"caption": clip.caption, "split": split, "pred": pred, "truth": truth,
                            "correct": _correct(pred, truth)})
    return report


def prompts_for(n_prompts: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n_prompts`` (caption, split) pairs: half seen captions, half held-out, in a seeded spread."""
    rng = np.random.default_rng(seed)
    n_held = n_prompts // 2
    n_seen = n_prompts - n_held
    seen = [TRAIN_CAPTIONS[i] for i in rng.permutation(len(TRAIN_CAPTIONS))]
    held = [HELD_OUT[i] for i in rng.permutation(len(HELD_OUT))]
    out = [(seen[i % len(seen)], "seen") for i in range(n_seen)]
    out += [(held[i % len(held)], "held-out") for i in range(n_held)]
    return out


def evaluate(pipe: Any, n_prompts: int = 40, seeds: Sequence[int] = (1000, 1001), *,
             guidance_scales: Sequence[float] | None = None, prompts: Sequence[str] | None = None,
             progress: bool = False, **fields: Any) -> Report:
    """Generate clips with ``pipe`` (a ``wanlab.Pipeline``) and score them against their captions.

    Prompts: ``prompts`` (toy captions; split "seen" or "held-out" by :data:`HELD_OUT`) or
    :func:`prompts_for(n_prompts)`. Each prompt runs with every seed and guidance scale
    (default: the pipeline's native one). ``fields`` override other request fields (steps, ...).
    """
    if prompts is not None:
        pairs = [(p, "held-out" if p in HELD_OUT else "seen") for p in prompts]
    else:
        pairs = prompts_for(n_prompts)
    if guidance_scales is None:
        guidance_scales = [fields.pop("guidance_scale", getattr(pipe, "native", {}).get("guidance_scale", 5.0))]
    report = Report()
    total = len(pairs) * len(seeds) * len(guidance_scales)
    done = 0
    t0 = time.perf_counter()
    for g in guidance_scales:
        for text, split in pairs:
            truth = parse_caption(text)
            for seed in seeds:
                video = pipe.generate(prompt=text, seed=int(seed), guidance_scale=float(g), **fields)
                pred = score_frames(video.frames)
                report.rows.append({"caption": text, "split": split, "seed": int(seed), "guidance_scale": float(g),
                                    "pred": pred, "truth": truth, "correct": _correct(pred, truth)})
                done += 1
                if progress:
                    print(f"\r  evaluate {done}/{total} ({time.perf_counter() - t0:.0f} s)", end="", flush=True)
    if progress:
        print()
    return report


def empty_prompt_directions(pipe: Any, seeds: Sequence[int], **fields: Any) -> dict[str, int]:
    """Direction counts of clips generated from an empty prompt (should be spread, not one direction)."""
    counts: dict[str, int] = {}
    for seed in seeds:
        video = pipe.generate(prompt=" ", seed=int(seed), **fields)
        d = score_frames(video.frames)["direction"]
        counts[d] = counts.get(d, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m wanlab.toy.evaluate``: the full evaluation table of a model (default: the built-in toy)."""
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="python -m wanlab.toy.evaluate", description=main.__doc__)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--empty-seeds", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write rows and summaries here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import wanlab
    from .data import all_captions, make_clip

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    truth = evaluate_clips([make_clip(np.random.default_rng([3, i]), c) for i, c in enumerate(all_captions())])
    print("ground truth (135 clips):\n" + truth.table(), flush=True)
    pipe = wanlab.load(args.model, progress=False)
    fields = {"steps": args.steps} if args.steps else {}
    report = evaluate(pipe, args.prompts, args.seeds, guidance_scales=args.guidance, progress=True, **fields)
    print(report.table(), flush=True)
    empty = empty_prompt_directions(pipe, range(2000, 2000 + args.empty_seeds), **fields)
    print("empty prompt directions:", empty, flush=True)
    summary = {
        "model": pipe.model_info, "native": pipe.native, "prompts": args.prompts, "seeds": args.seeds,
        "guidance": args.guidance, "threads": args.threads, "seconds": time.perf_counter() - t0,
        "ground_truth": truth.accuracy(), "table": report.table(), "empty_prompt_directions": empty,
        "accuracy": {f"{s}@{g:g}": report.accuracy(s, g) for g in args.guidance for s in ("seen", "held-out")},
    }
    if args.json:
        rows = [{k: v for k, v in r.items() if k != "pred"} | {"pred": {k: r["pred"][k] for k in ATTRIBUTES}}
                for r in report.rows]
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "rows": rows}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
