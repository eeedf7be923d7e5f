"""The same 12-point sweep in-process and on Ray pools of 1 and 2 workers: wall time, throughput,
scaling efficiency and Ray's overhead per point.

All three variants run the sweep of ``bench_sweep.py`` (3 seeds x 2 guidance x 2 shifts) into a
fresh store each round (the driver stores every run: playable mp4, lossless copy, record), with
1 torch thread per generation: in-process (``wanlab.load`` in this process), then a pool of 1 and
a pool of 2 Ray actors (1 thread each). Digests are asserted equal across the three. Rounds are
interleaved and rotated; the table shows the fastest round (the least disturbed on a shared
machine) and the median. The load average is printed before and after: on a machine shared with
other work, only numbers taken at a low load mean much.

- scaling efficiency = throughput(2 workers) / (2 x throughput(1 worker)); goal >= 0.85;
- overhead per point = (wall(pool of 1) - wall(in-process)) / points, also as a share of the
  in-process time per point; goal <= 5 %;
- CPU seconds per point of this process and all Ray processes (psutil): what the pool costs in
  work, which other load on the machine does not inflate the way it inflates wall time.

Ray starts here with 3 logical CPUs so both pools stay up between rounds (only one runs at a time;
each CPU actor reserves 1). ``--arch 1.3B`` (a CUDA machine) builds benchmarks/bench_gpu.py's
random bf16 1.3B architecture, saves it as a model folder and runs one actor per GPU instead.

    .venv/bin/python benchmarks/bench_ray.py [--rounds 3] [--size 64] [--frames 17] [--steps 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local Ray listens on 127.0.0.1 only
sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import add_sweep_args, twelve_points


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and all its descendants (Ray's GCS, raylet and workers):
    a cost that other work on a shared machine does not inflate, unlike wall time."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def gpu_model(arch: str, folder: Path) -> str:
    """bench_gpu.py's random-weight architecture saved as a diffusers folder the workers can load."""
    import torch
    from bench_gpu import build

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe, _ = build(arch, device, full_vae=False)
    pipe.save_pretrained(folder)
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(parser)
    parser.add_argument("--arch", default=None, choices=("smoke", "1.3B", "14B"),
                        help="instead of the tiny model: bench_gpu.py's architecture with random weights, one "
                             "worker per GPU (smoke: the same code path on CPU)")
    args = parser.parse_args()

    import ray
    import torch

    torch.set_num_threads(1)
    import wanlab
    import wanlab.ray

    print(f"load average before: {load_average()} (1/5/15 min), {os.cpu_count()} cores, ray {ray.__version__}")
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    gpus = args.arch in ("1.3B", "14B")
    model = gpu_model(args.arch, work / "model") if args.arch else "tiny"
    count = torch.cuda.device_count() if gpus else 2
    t = time.perf_counter()
    # CPU: 3 logical CPUs so both pools stay up between rounds (one runs at a time). GPU: one actor per
    # GPU, so the pools are made one after the other.
    ray.init(num_cpus=3 if not gpus else count + 1, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    pipe = wanlab.load(model, progress=False, device="cuda" if gpus else "cpu")
    sweep = twelve_points(args)
    n = len(sweep)
    assert n == 12
    names = ["in-process", "pool of 1"] + ([f"pool of {count}"] if count > 1 else [])  # one GPU: no scaling
    sizes = {name: int(name.split()[-1]) for name in names[1:]}
    pools: dict[str, object] = {}
    t_pools = 0.0

    def backend(name: str):
        nonlocal t_pools
        if name == names[0]:
            return pipe
        if name not in pools:
            if gpus:  # one pool holds the GPUs at a time
                for other in list(pools):
                    pools.pop(other).close()
            t = time.perf_counter()
            pools[name] = wanlab.ray.pool(model, workers=sizes[name], num_gpus=1 if gpus else 0)
            t_pools += time.perf_counter() - t
        return pools[name]

    cpu: dict[str, list[float]] = {k: [] for k in names}

    def run(name: str, folder: Path) -> tuple[float, list[str]]:
        b = backend(name)
        start, used = time.perf_counter(), cpu_seconds()
        result = sweep.run(b, store=folder, metrics=False, progress=False)
        wall = time.perf_counter() - start
        cpu[name].append(cpu_seconds() - used)
        assert result.complete and len(result.ran) == n, name
        return wall, list(result.df["digest"])

    walls: dict[str, list[float]] = {k: [] for k in names}
    reference = None
    order = [[names[(r + i) % len(names)] for i in range(len(names))] for r in range(args.rounds)]  # rotated
    if gpus:
        order = [[name] * args.rounds for name in names]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names if not gpus else []:  # warm up every backend once (first calls allocate)
            _, digests = run(name, Path(tmp) / "warm" / name.replace(" ", "-"))
            reference = reference or digests
            assert digests == reference, f"{name} gave other frames than in-process"
        for r, group in enumerate(order):
            for i, name in enumerate(group):
                if gpus and i == 0:  # warm-up round of this backend
                    _, digests = run(name, Path(tmp) / f"warm-{name.replace(' ', '-')}")
                    reference = reference or digests
                    assert digests == reference, f"{name} gave other frames than in-process"
                wall, digests = run(name, Path(tmp) / f"{r}-{i}-{name.replace(' ', '-')}")
                assert digests == reference, f"{name} gave other frames than in-process"
                walls[name].append(wall)
    after = load_average()

    best = {k: min(v) for k, v in walls.items()}
    median = {k: statistics.median(v) for k, v in walls.items()}
    what = f"{args.arch} architecture, random weights" if args.arch else "tiny"
    device = torch.cuda.get_device_name(0) if gpus else "CPU, 1 torch thread per generation"
    print(f"\n== {n}-point sweep, {what}, {args.size}x{args.size}, {args.frames} frames, {args.steps} steps; {device}")
    print(f"   Ray start {t_init:.1f} s, pools loaded in {t_pools:.1f} s (not in the walls); {args.rounds} rounds, "
          "best (median)")
    cpu_point = {k: statistics.median(v[-args.rounds:]) / n for k, v in cpu.items()}
    print(f"{'variant':<14}{'wall s':>16}{'runs/s':>9}{'speedup':>9}{'CPU s/point':>13}")
    for name in names:
        print(f"{name:<14}{best[name]:>8.2f} ({median[name]:.2f}){n / best[name]:>9.2f}"
              f"{best['in-process'] / best[name]:>9.2f}{cpu_point[name]:>13.3f}")
    one = best[names[1]]
    per_point = (one - best["in-process"]) / n
    share = per_point / (best["in-process"] / n)
    if count > 1:
        many = best[names[2]]
        print(f"scaling efficiency at {count} workers: {(n / many) / (count * n / one):.2f} (goal >= 0.85); "
              f"against in-process: {(n / many) / (count * n / best['in-process']):.2f}")
    print(f"Ray overhead per point: {per_point * 1000:+.1f} ms = {share * 100:+.1f} % of "
          f"{best['in-process'] / n:.3f} s in-process (goal <= 5 %)")
    extra = cpu_point[names[1]] - cpu_point["in-process"]
    print(f"CPU per point (this process + every Ray process, median): pool of 1 {extra * 1000:+.1f} ms = "
          f"{extra / cpu_point['in-process'] * 100:+.1f} % against in-process (what Ray costs, whatever the load)")
    print(f"load average after: {after}")
    for p in pools.values():
        p.close()
    ray.shutdown()


if __name__ == "__main__":
    main()
