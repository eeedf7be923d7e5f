"""Core numbers: `import wanlab` time, tiny-model end-to-end time, and wanlab vs a direct diffusers call.

Run: python benchmarks/bench_core.py [--repeats N]. Prints one table; ratios are measured side by side
in this one process (interleaved, best of N) so machine load affects both sides alike.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time


def import_time(repeats: int) -> float:
    """Best wall time of `import wanlab` in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import wanlab; print(time.perf_counter() - t)"
    return min(float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    t_import = import_time(args.repeats)
    import numpy as np
    import torch

    import wanlab
    from wanlab.frames import to_uint8

    t0 = time.perf_counter()
    pipe = wanlab.load("tiny", progress=False)
    t_load = time.perf_counter() - t0
    params = wanlab.Params(prompt="a red fox running through fresh snow", width=128, height=128, num_frames=81,
                           steps=30, seed=1)

    def via_wanlab():
        pipe.forget_embeddings()  # count the text encoder on both sides
        return pipe.generate(params)

    def via_diffusers():
        out = pipe.diffusers(prompt=params.prompt, negative_prompt="", height=128, width=128, num_frames=81,
                             num_inference_steps=30, guidance_scale=5.0, max_sequence_length=512,
                             generator=torch.Generator().manual_seed(1), output_type="np").frames[0]
        return to_uint8(out)

    via_wanlab()  # warm-up both paths
    via_diffusers()
    wl, df = [], []
    video = frames = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        video = via_wanlab()
        wl.append(time.perf_counter() - t)
        t = time.perf_counter()
        frames = via_diffusers()
        df.append(time.perf_counter() - t)
    assert np.array_equal(video.frames, frames), "wanlab and the direct call must give identical frames"

    rows = [
        ("import wanlab", f"{t_import:.3f} s", "< 0.3 s"),
        ("load('tiny') (incl. torch/diffusers import)", f"{t_load:.2f} s", "-"),
        ("tiny 128x128, 81 frames, 30 steps, end to end", f"{min(wl):.2f} s", "< 2 s"),
        ("  of which encode / denoise / decode",
         " / ".join(f"{video.timings[k]:.2f}" for k in ("encode", "denoise", "decode")) + " s", "-"),
        ("direct WanPipeline.__call__, same settings", f"{min(df):.2f} s", "-"),
        ("ratio wanlab / direct (best of each)", f"{min(wl) / min(df):.3f}", "<= 1.05"),
    ]
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"repeats {args.repeats}; frames identical: yes")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>22}  goal")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>22}  {goal}")


if __name__ == "__main__":
    main()
