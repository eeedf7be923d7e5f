"""A 12-point sweep through wanlab vs a hand-written loop over diffusers' WanPipeline.

Both use the same pipeline object (``pipe.diffusers``), the same points in the same order, and
give the same frames (asserted: equal sha256 digests). The hand-written loop is what a researcher
writes without wanlab: per point, set the scheduler's flow_shift, call the pipeline with the prompt
texts and a seeded CPU generator, and save the video with diffusers' ``export_to_video``. wanlab's
sweep also writes each run to a store (playable mp4 + lossless FFV1, both encoded in-process with
PyAV on two threads, + record; one fsync per file, the run folder renamed into place) but encodes
each prompt text once. Each variant runs ``--rounds`` times, interleaved; the table shows the fastest
round (the least disturbed by other work on a shared machine) and the median.

Goal (DESIGN section 10; issue 12): ratio wanlab / hand-written < 0.85.

    .venv/bin/python benchmarks/bench_sweep.py [--rounds 3] [--size 64] [--frames 17] [--steps 10] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared workload beside this script
from workload import add_sweep_args, twelve_points

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the ffmpeg writers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice). On a machine where other processes "
                             "keep cores busy, 2 starved threads can run 10-50x slower: use 1 there")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers.utils import export_to_video

    import wanlab
    from wanlab.frames import frames_digest, to_uint8

    pipe = wanlab.load("tiny", progress=False)
    sweep = twelve_points(args)
    points = sweep.points(pipe)
    assert len(points) == 12
    texts = {t for p in points for t in ([p.prompt, p.negative_prompt] if p.guidance_scale > 1 else [p.prompt])}
    encodes_by_hand = sum(2 if p.guidance_scale > 1 else 1 for p in points)

    dpipe = pipe.diffusers
    dpipe.set_progress_bar_config(disable=True)
    scheduler_class, scheduler_config = type(dpipe.scheduler), dict(dpipe.scheduler.config)

    def hand_loop(folder: Path | None) -> list[str]:
        """The hand-written loop over diffusers' WanPipeline (same pipeline object, same order)."""
        digests = []
        for i, p in enumerate(points):
            dpipe.scheduler = scheduler_class.from_config(scheduler_config, flow_shift=p.flow_shift)
            generator = torch.Generator("cpu").manual_seed(p.seed)
            frames = dpipe(prompt=p.prompt, negative_prompt=p.negative_prompt, height=p.height, width=p.width,
                           num_frames=p.num_frames, num_inference_steps=p.steps, guidance_scale=p.guidance_scale,
                           generator=generator, output_type="np", max_sequence_length=pipe.max_sequence_length,
                           ).frames[0]
            if folder is not None:
                export_to_video(list(frames), str(folder / f"{i}.mp4"), fps=16)
            digests.append(frames_digest(to_uint8(frames)))
        return digests

    def wanlab_sweep(folder: Path, *, reuse: bool = True, metrics: bool = False) -> list[str]:
        run = pipe.run
        if not reuse:  # forget every prompt embedding before each run (the runner's jobs go through run)
            def run_fresh(*a, **k):
                pipe.forget_embeddings()
                return run(*a, **k)
            pipe.run = run_fresh  # type: ignore[method-assign]
        try:
            pipe.forget_embeddings()
            result = sweep.run(pipe, store=folder / "store", metrics=metrics, progress=False)
        finally:
            pipe.__dict__.pop("run", None)
        assert result.complete and len(result.ran) == 12
        return list(result.df["digest"])

    def encode_once() -> float:
        pipe.forget_embeddings()
        t = time.perf_counter()
        for text in texts:
            pipe.encode(text)
        return (time.perf_counter() - t) / len(texts)

    # warm up (first calls allocate, and JIT-like paths settle)
    with tempfile.TemporaryDirectory() as tmp:
        reference = hand_loop(None)
        assert wanlab_sweep(Path(tmp)) == reference, "wanlab's sweep gives other frames than the hand-written loop"

    variants = ("hand_save", "hand", "wanlab", "wanlab_noreuse")
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    encode: list[float] = []
    resume: list[float] = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name in variants[r % 4:] + variants[:r % 4]:  # rotate the order: no variant always goes first
                folder = root / name
                folder.mkdir()
                t, c = time.perf_counter(), cpu_seconds()
                if name == "hand":
                    digests = hand_loop(None)
                elif name == "hand_save":
                    digests = hand_loop(folder)
                else:
                    digests = wanlab_sweep(folder, reuse=name == "wanlab")
                times[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
                assert digests == reference, f"{name}: digests differ from the hand-written loop's"
            t = time.perf_counter()
            again = sweep.run(pipe, store=root / "wanlab" / "store", progress=False, metrics=False)
            resume.append(time.perf_counter() - t)
            assert again.ran == [] and list(again.df["digest"]) == reference
        encode.append(encode_once())
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        wanlab_sweep(Path(tmp), metrics=True)
        with_metrics = time.perf_counter() - t

    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    per_encode = min(encode)
    print(f"bench_sweep: 12 points (seeds 1-3 x guidance 3,5 x flow_shift 3,5), tiny model, {args.size}x{args.size}, "
          f"{args.frames} frames, {args.steps} steps, CFG on; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{args.rounds} rounds")
    print("wall = elapsed seconds; CPU = user+system seconds of this process and its children (export_to_video's "
          "ffmpeg; steadier on a shared machine); ratio = against the hand-written loop that saves its videos")
    print()
    print(f"| {'variant':<56} | {'wall best':>9} | {'wall median':>11} | {'CPU best':>8} | {'ratio wall':>10} "
          f"| {'ratio CPU':>9} |")
    print(f"|{'-' * 58}|{'-' * 11}|{'-' * 13}|{'-' * 10}|{'-' * 12}|{'-' * 11}|")
    rows = [
        ("hand-written loop over WanPipeline + export_to_video", "hand_save"),
        ("hand-written loop, frames only (nothing saved)", "hand"),
        ("wanlab sweep.run into a store (mp4 + lossless + record)", "wanlab"),
        ("wanlab sweep.run, embeddings not reused (cache cleared)", "wanlab_noreuse"),
    ]
    for label, key in rows:
        print(f"| {label:<56} | {best[key]:9.2f} | {median[key]:11.2f} | {best_cpu[key]:8.2f} "
              f"| {best[key] / best['hand_save']:10.2f} | {best_cpu[key] / best_cpu['hand_save']:9.2f} |")
    print()
    print(f"ratio wanlab / hand-written (both save their videos): wall {best['wanlab'] / best['hand_save']:.2f} "
          f"(median {median['wanlab'] / median['hand_save']:.2f}), CPU "
          f"{best_cpu['wanlab'] / best_cpu['hand_save']:.2f}; goal < 0.85")
    print(f"ratio wanlab / hand-written frames only (wanlab still saves): wall {best['wanlab'] / best['hand']:.2f}, "
          f"CPU {best_cpu['wanlab'] / best_cpu['hand']:.2f}")
    saved, saved_cpu = best["wanlab_noreuse"] - best["wanlab"], best_cpu["wanlab_noreuse"] - best_cpu["wanlab"]
    print(f"embedding reuse: {len(texts)} text encodes instead of {encodes_by_hand} "
          f"({per_encode * 1000:.0f} ms each on this model, i.e. "
          f"{(encodes_by_hand - len(texts)) * per_encode:.2f} s expected); measured saving: wall {saved:.2f} s "
          f"({saved / best['wanlab_noreuse'] * 100:.0f} % of the sweep), CPU {saved_cpu:.2f} s")
    print(f"resume with all 12 points in the store: {min(resume):.3f} s (nothing generated)")
    print(f"wanlab sweep.run with motion metrics: {with_metrics:.2f} s "
          f"(metrics add {with_metrics - best['wanlab']:.2f} s)")
    print("digests: identical for every point in every variant and round")


if __name__ == "__main__":
    main()
