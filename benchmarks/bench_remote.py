"""The same 12-point sweep in-process and through a ``wanlab serve`` on loopback, with K = 1, 2, 4 tasks in flight.

In-process: ``sweep.run(wanlab.load("tiny"), store)``. Remote: ``sweep.run(wanlab.connect(url,
max_in_flight=K), store)`` against a server of the same model on 127.0.0.1 (a subprocess, one worker):
at most K tasks at the server at once; each point is submitted, polled, and its record, lossless copy
and mp4 downloaded, verified and stored (the sweep keeps one more point started than K, downloading
and storing while the server runs the next, as the in-process sweep stores one run while it
generates the next). The
digests of every point are asserted equal across all variants (this process runs torch with the
server's thread count, read from its first record). Variants run ``--rounds`` times, interleaved in
rotating order; the table
shows the fastest round (the least disturbed by other work on a shared machine) and the median, and
per run: bytes downloaded, task-result polls. "in-process, one job at a time" stores each run before
generating the next (``max_in_flight=1``), as the server's task queue does for each of its tasks.

Goal (DESIGN section 10): remote / in-process <= 1.10 at K=1 on tiny 64x64x17.

    .venv/bin/python benchmarks/bench_remote.py [--rounds 3] [--size 64] [--frames 17] [--steps 10] [--metrics]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(parser)
    parser.add_argument("--inflight", default="1,2,4", help="K values to measure, comma-separated")
    parser.add_argument("--metrics", action="store_true", help="compute motion metrics of every run (both sides)")
    args = parser.parse_args()

    import torch

    import wanlab
    from wanlab.server.testing import start_server

    ks = [int(k) for k in args.inflight.split(",")]
    load_before = os.getloadavg()
    pipe = wanlab.load("tiny", progress=False)
    sweep = twelve_points(args)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(model="tiny", store=Path(tmp) / "server", no_auth=True,
                              args=["--no-access-log", "--queue-size", str(max(ks) + 1)])
        try:
            remote = wanlab.connect(server.base_url)
            assert remote.kind == "wanlab" and remote.identity.same_model(pipe.identity)

            def in_process(folder: Path, jobs: int | None = None) -> list[str]:
                result = sweep.run(pipe, store=folder, metrics=args.metrics, progress=False, max_in_flight=jobs)
                assert result.complete and len(result.ran) == 12
                return list(result.df["digest"])

            remotes = {k: wanlab.connect(server.base_url, max_in_flight=k) for k in ks}

            def through_server(folder: Path, k: int) -> list[str]:
                result = sweep.run(remotes[k], store=folder, metrics=args.metrics, progress=False)
                assert result.complete and len(result.ran) == 12
                return list(result.df["digest"])

            # the server's torch thread count, here too (1 and 2 threads give other frames in the last bits)
            probe = remote.generate(sweep.points(remote)[0])
            torch.set_num_threads(int(probe.record["environment"]["torch_threads"]))
            # warm up both sides (first calls allocate; the server's first task pays its own start-up)
            reference = in_process(Path(tmp) / "warm-local")
            assert through_server(Path(tmp) / "warm-remote", max(ks)) == reference, "the server gave other frames"

            variants = ["in-process", "in-process, 1 job"] + [f"K={k}" for k in ks]
            times: dict[str, list[float]] = {v: [] for v in variants}
            traffic: dict[str, list[tuple[int, int]]] = {v: [] for v in variants}
            for r in range(args.rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for name in order:
                    folder = Path(tmp) / f"round{r}-{name}"
                    local = name.startswith("in-process")
                    client = remote if local else remotes[int(name[2:])]
                    before = (client.transport.stats["bytes"], client.stats["polls"])
                    start = time.perf_counter()
                    digests = in_process(folder, 1 if name.endswith("job") else None) if local else \
                        through_server(folder, int(name[2:]))
                    times[name].append(time.perf_counter() - start)
                    traffic[name].append((client.transport.stats["bytes"] - before[0],
                                          client.stats["polls"] - before[1]))
                    assert digests == reference, f"{name}: digests differ from the in-process sweep's"
            for client in (remote, *remotes.values()):
                client.close()
        finally:
            server.stop()

    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"bench_remote: 12 points (seeds 1-3 x guidance 3,5 x flow_shift 3,5), tiny model, {args.size}x{args.size}, "
          f"{args.frames} frames, {args.steps} steps, metrics {'on' if args.metrics else 'off'}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads here and in the server, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.1f} before and {os.getloadavg()[0]:.1f} after; {args.rounds} rounds")
    print("remote = wanlab.connect(max_in_flight=K) to `wanlab serve --model tiny` on 127.0.0.1 (one worker): at "
          "most K tasks at the server; ratio = against in-process, fastest rounds")
    print()
    print(f"| {'variant':<36} | {'wall best':>9} | {'wall median':>11} | {'ratio':>5} | {'bytes/run':>9} "
          f"| {'polls/run':>9} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 13}|{'-' * 7}|{'-' * 11}|{'-' * 11}|")
    labels = {"in-process": "in-process (wanlab.load)",
              "in-process, 1 job": "in-process, one job at a time"}
    for name in variants:
        label = labels.get(name, f"through the server, {name}")
        size, polls = min(traffic[name])
        print(f"| {label:<36} | {best[name]:9.2f} | {median[name]:11.2f} | {best[name] / best['in-process']:5.2f} "
              f"| {size / 12:9.0f} | {polls / 12:9.1f} |")
    print()
    k1 = "K=1" if "K=1" in best else next(v for v in variants if v.startswith("K="))  # the smallest K measured
    print(f"remote / in-process at {k1}: {best[k1] / best['in-process']:.2f} (median "
          f"{median[k1] / median['in-process']:.2f}); goal <= 1.10. Against in-process one job at a time (generating "
          f"and storing never overlap, as in the server's task queue): {best[k1] / best['in-process, 1 job']:.2f}")
    print("digests: identical for every point in every variant and round")


if __name__ == "__main__":
    main()
