"""The HTTP service under load: 32 clients submit 200 tasks to a real `wanlab serve` on loopback and poll them.

Run: python benchmarks/bench_serve.py [--tasks 200] [--clients 32] [--size 64] [--frames 17] [--steps 10]
                                      [--poll 1.0] [--threads N]

Each client submits the next request (distinct seeds), honours 429 with its Retry-After, polls
`task-result` every --poll seconds (the hosted API's SDK polls once a second) until the task has
finished, and goes on with the next. Checked: every task SUCCEEDs, none is lost or duplicated
(200 distinct task ids, 200 distinct runs in the store, each with its own seed).

Printed: latency of `task-result` (p50, p99, max) while tasks are generating, and the server's
overhead per task against the same requests run in-process through a `TaskQueue` over the same
model into a store (the same work without HTTP: validation, generation, storing), measured side by
side in one run, in-process before and after the server to show the drift of a shared machine.
Wall time of a run: first submit to last completion, from the tasks' own `debug_info` times.
Goals (DESIGN.md section 10): overhead <= 5 % of generation time; task-result p99 < 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from wanlab.taskstatus import FINISHED, TaskStatus

PROMPT = "a red square moving right quickly"


def requests(args) -> list[dict]:
    return [{"prompt": PROMPT, "width": args.size, "height": args.size, "num_frames": args.frames,
             "steps": args.steps, "seed": seed} for seed in range(1, args.tasks + 1)]


def span(results: list[dict]) -> tuple[float, float]:
    """(wall seconds from the first submit to the last completion, mean seconds each task ran)."""
    info = [r["extra"]["debug_info"] for r in results]
    first = min(int(i["submit_time_ms"]) for i in info)
    last = max(int(i["complete_time_ms"]) for i in info)
    ran = [(int(i["complete_time_ms"]) - int(i["execute_time_ms"])) / 1000 for i in info]
    return (last - first) / 1000, statistics.fmean(ran)


def in_process(bodies: list[dict], threads: int | None) -> tuple[float, float]:
    """The same requests through a TaskQueue in this process (no HTTP)."""
    import torch

    import wanlab
    from wanlab.params import Params
    from wanlab.tasks import TaskQueue

    if threads:
        torch.set_num_threads(threads)
    pipe = wanlab.load("tiny", progress=False)
    with tempfile.TemporaryDirectory() as folder:
        queue = TaskQueue(pipe, Path(folder) / "store", maxsize=len(bodies) + 1)
        ids = [queue.submit(Params.from_api(body, local=True)) for body in bodies]
        results = [queue.wait(task_id, timeout=3600) for task_id in ids]
        queue.close()
    assert all(r["task"]["status"] == TaskStatus.SUCCEED for r in results)
    return span(results)


async def client(http, bodies: list[dict], poll: float, polls: list, counts: dict, results: dict) -> None:
    """One client: submit the next request, poll it to the end, repeat."""
    while bodies:
        body = bodies.pop(0)
        while True:
            answer = await http.post("/v3/async/wan-t2v", json=body)
            if answer.status_code != 429:
                break
            counts["429"] += 1
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            await asyncio.sleep(poll)
            started = time.perf_counter()
            reply = await http.get("/v3/async/task-result", params={"task_id": task_id})
            polls.append((time.time(), time.perf_counter() - started))
            result = reply.json()
            if result["task"]["status"] in FINISHED:
                results.setdefault(task_id, []).append((body["seed"], result))
                break
        else:
            raise TimeoutError(f"task {task_id} did not finish within 600 s")


async def load(server, bodies: list[dict], clients: int, poll: float) -> tuple[list, dict, dict]:
    import httpx

    polls: list = []
    counts = {"429": 0}
    results: dict = {}
    queue = list(bodies)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # one API key per client, as a lab hands them out (one shared key would meet --max-queued-per-key)
    sessions = [httpx.AsyncClient(base_url=server.base_url, headers=server.headers(server.keys[i]), timeout=60.0,
                                  limits=limits) for i in range(clients)]
    try:
        await asyncio.gather(*(client(s, queue, poll, polls, counts, results) for s in sessions))
    finally:
        await asyncio.gather(*(s.aclose() for s in sessions))
    return polls, counts, results


def over_server(args, bodies: list[dict]) -> dict:
    from wanlab.server.testing import start_server
    from wanlab.store import Store

    with tempfile.TemporaryDirectory() as folder:
        server = start_server(model="tiny", store=Path(folder) / "store", threads=args.threads, keys=args.clients,
                              args=["--queue-size", str(args.queue_size)])
        try:
            polls, counts, results = asyncio.run(load(server, bodies, args.clients, args.poll))
            runs = len(Store(server.store).df)
        finally:
            server.stop()
    finals = [r for answers in results.values() for _, r in answers]
    succeeded = sum(r["task"]["status"] == TaskStatus.SUCCEED for r in finals)
    seeds_ok = all(int(r["extra"]["seed"]) == seed for answers in results.values() for seed, r in answers)
    keys = {r["extra"]["wanlab"]["run_key"] for r in finals}
    wall, ran = span(finals)
    first = min(int(r["extra"]["debug_info"]["submit_time_ms"]) for r in finals) / 1000
    last = max(int(r["extra"]["debug_info"]["complete_time_ms"]) for r in finals) / 1000
    during = sorted(latency for at, latency in polls if first <= at <= last)
    return {"wall": wall, "ran": ran, "tasks": len(results), "answers": len(finals), "succeeded": succeeded,
            "keys": len(keys), "runs": runs, "seeds_ok": seeds_ok, "429": counts["429"], "polls": during}


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="width = height (a multiple of 16)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls of one client")
    parser.add_argument("--queue-size", type=int, default=100, help="the server's --queue-size")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads, in-process and in the server (default: torch's, all cores)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `wanlab serve` runs with: the same work both ways

    import torch

    start_load = os.getloadavg()[0]
    bodies = requests(args)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs (shared), torch "
          f"{torch.__version__}, {args.threads or torch.get_num_threads()} torch thread(s); load average "
          f"{start_load:.1f} at start, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"{args.tasks} tasks of tiny at {args.size}x{args.size}x{args.frames}, {args.steps} steps, from "
          f"{args.clients} clients polling every {args.poll:g} s\n")
    before = in_process(bodies, args.threads)
    served = over_server(args, bodies)
    after = in_process(bodies, args.threads)
    reference = statistics.fmean([before[0], after[0]]) / args.tasks
    per_task = served["wall"] / args.tasks
    overhead = per_task - reference
    polls = served["polls"]
    rows = [
        ("in-process TaskQueue, wall per task (before / after)",
         f"{before[0] / args.tasks * 1000:.0f} / {after[0] / args.tasks * 1000:.0f} ms", ""),
        ("through the server, wall per task", f"{per_task * 1000:.0f} ms", ""),
        ("server overhead per task (vs mean in-process)", f"{overhead * 1000:+.0f} ms = {overhead / reference:+.1%}",
         "<= 5 %"),
        ("task-result latency while generating: p50 / p99 / max",
         f"{percentile(polls, 0.5) * 1000:.1f} / {percentile(polls, 0.99) * 1000:.1f} / "
         f"{(polls[-1] if polls else float('nan')) * 1000:.1f} ms ({len(polls)} polls)", "p99 < 50 ms"),
        ("tasks succeeded / submitted", f"{served['succeeded']} / {args.tasks}", "all"),
        ("distinct task ids / runs in the store / seeds as sent",
         f"{served['tasks']} / {served['runs']} / {'yes' if served['seeds_ok'] else 'NO'}", "none lost or doubled"),
        ("429 answers (queue full, retried after Retry-After)", str(served["429"]), ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | goal |\n|{'-' * (width + 2)}|---|---|")
    for name, value, goal in rows:
        print(f"| {name:<{width}} | {value} | {goal} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")
    ok = served["succeeded"] == served["tasks"] == served["answers"] == served["keys"] == served["runs"] == args.tasks
    if not (ok and served["seeds_ok"]):
        raise SystemExit("FAILED: tasks were lost, duplicated or failed (see the table)")


if __name__ == "__main__":
    main()
