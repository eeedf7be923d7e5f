"""Acceleration settings: speedup and fidelity against the exact output, on the tiny model and a deeper variant.

Run: python benchmarks/bench_accel.py [--steps 30] [--size 64] [--frames 17] [--seeds 2] [--repeats 3]
                                       [--layers 2,8] [--threads 1] [--compile] [--quick] [--toy]

For each model (the built-in tiny model, 2 layers, and the same configuration with 8 layers,
seeded), `wanlab.accel.study` runs the exact baseline and every setting on the same requests
(interleaved, best of --repeats) and prints one table: setting, speedup of the denoising loop
(exact time / setting's time, mean over seeds and the worst), PSNR and SSIM of the frames vs exact,
relative L2 of the final latents, transformer calls served from the cache, and the fraction of
attention/FFN work that ran. Ratios are measured side by side in one process, so machine load
affects both sides alike; absolute times are not the point. The tiny models' random weights make
PSNR a rough guide (their VAE amplifies latent changes); rel L2 of latents is the steadier number.
`--compile` adds torch.compile settings (cold compile is excluded by a warm-up run; needs g++).
`--toy` also runs the trained toy model at its native request, twice: `sweeps/acceleration.toml`
as a sweep into a temporary store (single timed runs, what `wanlab sweep` reports) and the same
requests and settings through `study` (interleaved, best of --repeats), checking that both paths
give the same frames and showing how far single-run speedups are from repeated ones.
GPU numbers at full size: benchmarks/bench_gpu.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import time


def deep_pipeline(layers: int):
    """The tiny model's configuration with ``layers`` transformer blocks (seeded like tiny)."""
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    from wanlab.models import tiny
    from wanlab.models.identity import ModelIdentity, generation_settings, scheduler_settings, tensors_fingerprint
    from wanlab.models.registry import builtins
    from wanlab.pipeline import Pipeline

    base = tiny.build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.SEED + 1)
        transformer = WanTransformer3DModel(**{**tiny.TRANSFORMER_CONFIG, "num_layers": layers})
    transformer.eval().requires_grad_(False)
    pipe = WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, transformer=transformer,
                       vae=base.vae, scheduler=base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    spec = builtins()["tiny"]
    settings = generation_settings(dtype="float32", max_sequence_length=spec.max_sequence_length,
                                   scheduler=scheduler_settings(type(pipe.scheduler), pipe.scheduler.config))
    identity = ModelIdentity(f"tiny-{layers}layer", "builtin", tensors_fingerprint(pipe), settings, spec.native)
    return Pipeline(pipe, identity, device="cpu")


def settings(with_compile: bool) -> dict:
    from wanlab.accel import Accel

    out = {name: Accel.preset(name) for name in
           ("fbc", "fbc-fast", "mag", "mag-fast", "taylorseer", "taylorseer-fast", "pab", "seacache")}
    out["pab-shared"] = Accel("pab", {"per_branch": False})  # diffusers' one state for both branches
    out["fbc(0.05)"] = Accel("first_block", {"threshold": 0.05})  # diffusers' default threshold
    if with_compile:
        out["compile-blocks"] = Accel(compile="blocks")
        out["compile-transformer"] = Accel(compile="transformer")
        out["fbc+compile"] = Accel.preset("fbc").replace(compile="blocks")
    return out


def toy_section(args) -> None:
    """The trained toy model: the acceleration sweep's table next to study's, same requests and settings."""
    import tempfile
    from pathlib import Path

    import wanlab
    from wanlab.accel import study, summarize

    pipe = wanlab.load("toy", progress=False)
    sweep = wanlab.Sweep.load(Path(__file__).resolve().parents[1] / "sweeps" / "acceleration.toml")
    accels = list(dict.fromkeys(a for a in sweep.accels() if args.compile or a.compile == "off"))
    sweep = sweep.replace(grid={"seed": list(range(1, args.seeds + 1)), "accel": [a.label for a in accels]})
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        result = sweep.run(pipe, store=folder, progress=False, metrics=False)
        swept = result.accel_study()
        sweep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    studied = study(pipe, sweep, {a.label: a for a in accels}, repeats=args.repeats, timing="min")
    study_s = time.perf_counter() - t0
    same = sorted(swept["digest"]) == sorted(studied["digest"])
    p = sweep.points()[0]
    print(f"model toy (trained): {p.width}x{p.height}, {p.num_frames} frames, {p.steps} steps, guidance "
          f"{p.guidance_scale}, shift {p.flow_shift}, {args.seeds} seed(s); same frames through both paths: "
          f"{'yes' if same else 'NO'}")
    print(f"as a study (best of {args.repeats}, interleaved; {study_s:.0f} s):")
    print(table(summarize(studied)))
    print(f"\nas a sweep (`wanlab sweep sweeps/acceleration.toml`: single runs; {sweep_s:.0f} s):")
    print(table(summarize(swept)))
    print()


def table(summary) -> str:
    head = (f"{'setting':<20} {'speedup':>7} {'(min)':>6} {'PSNR dB':>8} {'SSIM':>6} {'rel L2':>8} "
            f"{'skipped':>9} {'work':>5} {'Pareto':>6}")
    lines = [head, "-" * len(head)]
    for row in summary.itertuples():
        psnr = "inf" if row.psnr == float("inf") else f"{row.psnr:.1f}"
        skipped = "n/a" if row.calls != row.calls else f"{row.skipped * row.calls:.0f}/{row.calls:.0f}"
        work = "n/a" if row.block_work != row.block_work else f"{row.block_work:.2f}"
        lines.append(f"{row.setting:<20} {row.speedup:>6.2f}x {row.speedup_min:>5.2f}x {psnr:>8} {row.ssim:>6.3f} "
                     f"{row.rel_l2:>8.1e} {skipped:>9} {work:>5} {'*' if row.pareto else '':>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=64, help="width = height, a multiple of 16")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", default="2,8", help="comma-separated block counts (2 = the tiny model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile settings")
    parser.add_argument("--quick", action="store_true", help="10 steps, 1 seed, 1 repeat (a smoke run)")
    parser.add_argument("--toy", action="store_true", help="also the trained toy model: sweep and study side by side")
    parser.add_argument("--plot", default=None, help="save the speed-vs-PSNR plot of each model to PREFIX_<model>.png")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds, args.repeats = 10, 1, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    import wanlab
    from wanlab.accel import plot_study, study, summarize

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s), load average {load_before[0]:.1f} at start")
    print(f"requests: {args.size}x{args.size}, {args.frames} frames, {args.steps} steps, guidance 5.0, "
          f"{args.seeds} seed(s), best of {args.repeats} interleaved repeat(s)\n")
    plan = settings(args.compile)
    for layers in [int(x) for x in args.layers.split(",")]:
        pipe = wanlab.load("tiny", progress=False) if layers == 2 else deep_pipeline(layers)
        points = [dict(prompt="a red fox running through fresh snow", width=args.size, height=args.size,
                       num_frames=args.frames, steps=args.steps, guidance_scale=5.0, seed=seed)
                  for seed in range(1, args.seeds + 1)]
        t0 = time.perf_counter()
        df = study(pipe, points, plan, repeats=args.repeats, timing="min")
        summary = summarize(df)
        exact_s = summary.set_index("setting").loc["exact", "denoise_s"]
        print(f"model {pipe.model_id} ({layers} layers): exact denoising {exact_s:.3f} s per video; "
              f"study took {time.perf_counter() - t0:.0f} s")
        print(table(summary))
        print()
        if args.plot:
            plot_study(df, title=f"{pipe.model_id}: speed vs fidelity").savefig(f"{args.plot}_{pipe.model_id}.png",
                                                                                dpi=120)
    if args.toy:
        toy_section(args)
    print(f"load average {os.getloadavg()[0]:.1f} at end. skipped = transformer calls whose block stack was "
          "served from the cache / all calls (2 per step with guidance); work = fraction of attention and "
          "feed-forward computations that ran; * = on the speed-vs-PSNR Pareto front.")


if __name__ == "__main__":
    main()
