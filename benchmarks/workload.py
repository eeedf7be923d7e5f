"""The workload bench_sweep, bench_remote and bench_ray share: one 12-point sweep (seeds 1-3 x
guidance 3, 5 x flow_shift 3, 5), so the ratios they print describe the same work."""
from __future__ import annotations

import argparse
from typing import Any


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """``--rounds``, ``--size``, ``--frames``, ``--steps``: how often and how large the sweep runs."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=10)


def twelve_points(args: argparse.Namespace) -> Any:
    """The shared sweep at ``args``' size, frames and steps."""
    from wanlab.sweep import Sweep

    sweep = Sweep(base=dict(prompt="a red fox running through fresh snow", negative_prompt="static, blurry",
                            width=args.size, height=args.size, num_frames=args.frames, steps=args.steps),
                  grid={"seed": [1, 2, 3], "guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0]}, name="bench")
    assert len(sweep) == 12
    return sweep
