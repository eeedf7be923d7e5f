"""What probes cost: time next to ``generate`` without probes, extra peak memory, stored size.

(1) Time: the toy model at its native settings (64x64, 17 frames, 25 steps, guidance 2), each probe
alone and all together against no probes, interleaved rounds in this one process, median of
--repeats wall times of ``generate`` (recording and turning the records into arrays included).
Goals (issue 25): trajectory <= 1.10x, features <= 1.10x, attention <= 1.35x.

(2) Extra peak memory per probe at the Wan 2.1 1.3B transformer's width (dim 1536, 12 heads,
ffn 8960, text_dim 4096, 512 text tokens; --layers of its 30 blocks; the architecture builder of
bench_gpu.py) at a smoke size on CPU: each probe runs in a fresh process that first generates without
probes, then with the probe; the peak resident memory it adds (ru_maxrss; on CUDA the allocator's
peak) is printed beside the probe's own output size, and the video-token count, to show the extra
memory follows what the probe keeps, not tokens x tokens.

    python benchmarks/bench_probes.py                       # both parts
    python benchmarks/bench_probes.py --part time --repeats 5
    python benchmarks/bench_probes.py --part memory --size 128x128 --frames 9 --layers 2
    python benchmarks/bench_probes.py --part memory --device cuda --layers 30 --size 832x480 --frames 81
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {"none": None, "trajectory": ["trajectory"], "features": ["features"], "attention": ["attention"],
            "all": ["trajectory", "attention", "features"]}
GOALS = {"trajectory": 1.10, "features": 1.10, "attention": 1.35}


def time_part(repeats: int) -> None:
    import torch

    import wanlab

    pipe = wanlab.load("toy", progress=False)
    kw = dict(prompt="a red square moving right quickly", seed=1, progress=False)
    for probes in SETTINGS.values():  # warm-up: first-call overheads, the projection read once
        pipe.generate(**kw, probes=probes)
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        for name, probes in SETTINGS.items():
            start = time.perf_counter()
            video = pipe.generate(**kw, probes=probes)
            times[name].append(time.perf_counter() - start)
            if probes:
                sizes[name] = len(video.probes.to_bytes())
    base = statistics.median(times["none"])
    print(f"(1) time: toy at native settings ({pipe.native}), median of {repeats} interleaved, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()} "
          f"{os.cpu_count()} cores")
    print(f"{'probes':<12}{'median s':>10}{'ratio':>8}{'goal':>7}{'stored KB':>11}")
    for name in SETTINGS:
        med = statistics.median(times[name])
        goal = GOALS.get(name)
        print(f"{name:<12}{med:>10.3f}{med / base:>7.2f}x{(f'{goal:.2f}x' if goal else '-'):>7}"
              f"{(f'{sizes[name] / 1024:.1f}' if name in sizes else '-'):>11}")


def child(probe: str, device: str, size: str, frames: int, layers: int) -> dict:
    """In a fresh process: build the 1.3B-width model, generate without probes, then with ``probe``."""
    import resource

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_gpu

    from wanlab import Params

    bench_gpu.ARCHS["1.3B-width"] = {**bench_gpu.ARCHS["1.3B"], "num_layers": layers}
    pipe, _ = bench_gpu.build("1.3B-width", device, False)
    width, height = (int(v) for v in size.lower().split("x"))
    p = Params(prompt=bench_gpu.PROMPT, width=width, height=height, num_frames=frames, steps=4, guidance_scale=5.0,
               seed=1)
    cuda = device.startswith("cuda")

    def reset() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        else:  # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")

    def peak() -> float:
        if cuda:
            return torch.cuda.max_memory_allocated(device) / 2 ** 20
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover

    def measured(probes: object) -> tuple[float, object]:
        reset()
        video = pipe.generate(p, progress=False, probes=probes)
        return peak(), video

    pipe.generate(p, progress=False)  # warm-up
    plain, probed = [], []
    for _ in range(2):  # alternate, keep the lowest peak of each (allocator noise)
        plain.append(measured(None)[0])
        value, video = measured(SETTINGS[probe])
        probed.append(value)
    before, after = min(plain), min(probed)
    cfg = pipe.diffusers.transformer.config
    lat = ((frames - 1) // 4 + 1, height // 8, width // 8)
    tokens = lat[0] * (lat[1] // cfg.patch_size[1]) * (lat[2] // cfg.patch_size[2])
    return {"probe": probe, "extra_mb": after - before, "output_mb": video.probes.nbytes / 2 ** 20 if video.probes
            else 0.0, "stored_kb": len(video.probes.to_bytes()) / 1024 if video.probes else 0.0, "tokens": tokens,
            "heads": cfg.num_attention_heads}


def memory_part(device: str, size: str, frames: int, layers: int) -> None:
    rows = []
    for probe in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--child", probe, "--device", device, "--size", size,
                              "--frames", str(frames), "--layers", str(layers)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    t = rows[0]["tokens"]
    print(f"\n(2) extra peak memory: Wan 2.1 1.3B width, {layers} of 30 blocks, {size}x{frames} frames, 4 steps, "
          f"guidance 5, {device}; {t} video tokens x 512 text tokens ({rows[0]['heads']} heads); "
          f"one video-token attention matrix per head would be {t * t * 4 / 2 ** 20:.1f} MB per block")
    print(f"{'probes':<12}{'extra peak MB':>15}{'output MB':>11}{'stored KB':>11}")
    for r in rows:
        print(f"{r['probe']:<12}{r['extra_mb']:>15.1f}{r['output_mb']:>11.2f}{r['stored_kb']:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("time", "memory", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="128x128", help="WIDTHxHEIGHT for the memory part")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--layers", type=int, default=2, help="blocks of the 1.3B architecture (30 in full)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        print(json.dumps(child(args.child, args.device, args.size, args.frames, args.layers)))
        return
    if args.part in ("time", "both"):
        time_part(args.repeats)
    if args.part in ("memory", "both"):
        memory_part(args.device, args.size, args.frames, args.layers)


if __name__ == "__main__":
    main()
