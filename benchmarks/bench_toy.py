"""The toy model's budget: checkpoint size and generation time at its native settings on one thread.

Run: python benchmarks/bench_toy.py [--repeats N] [--model toy|FOLDER]. Prints one table. Wall time
counts other jobs on a shared machine; CPU time (this process) is what one core spends.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="toy")
    args = parser.parse_args()

    import torch

    import wanlab
    from wanlab.models.registry import TOY_FOLDER, builtin

    torch.set_num_threads(1)
    folder = TOY_FOLDER if args.model == "toy" else Path(args.model)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    t0 = time.perf_counter()
    pipe = (wanlab.load("toy", progress=False) if args.model == "toy"
            else wanlab.load(args.model, progress=False, max_sequence_length=builtin("toy").max_sequence_length))
    t_load = time.perf_counter() - t0
    fields = dict(builtin("toy").native)
    prompts = ["a red square moving right quickly", "a blue circle moving left slowly"]
    pipe.generate(prompt=prompts[0], seed=0, **fields)  # warm-up
    rows = []
    for label, extra in ((f"native (guidance {fields['guidance_scale']:g})", {}),
                         ("guidance 1 (no CFG pass)", {"guidance_scale": 1.0})):
        wall, cpu = [], []
        for i in range(args.repeats):
            c, t = time.process_time(), time.perf_counter()
            pipe.generate(prompt=prompts[i % 2], seed=i, **{**fields, **extra})
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append((label, min(wall), sorted(wall)[len(wall) // 2], min(cpu)))
    print(f"toy model: {folder} ({size / 1e6:.2f} MB), load {t_load:.2f} s, torch {torch.__version__}, "
          f"1 thread, {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"native: {fields}")
    print("| generation | wall best | wall median | CPU best | goal |")
    print("|---|---|---|---|---|")
    for label, best, median, cpu in rows:
        print(f"| {label} | {best:.3f} s | {median:.3f} s | {cpu:.3f} s | <= 1 s |")


if __name__ == "__main__":
    main()
