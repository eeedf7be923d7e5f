"""The GPU benchmark script runs end to end on its smoke architecture (on CPU), so it works the day a
GPU is lent: same code path as the 1.3B/14B runs, only the sizes differ."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_run_on_cpu():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--arch", "smoke", "--device", "cpu",
         "--size", "32x32", "--frames", "5", "--steps", "4", "--repeats", "1", "--settings", "fbc-fast"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    assert "== Wan 2.1 smoke architecture" in out
    assert "identical latents: yes" in out  # wanlab's generate and the direct call agree bit for bit
    assert "ratio " in out and "per denoising step: wanlab" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip().startswith(("exact", "fbc"))}
    assert set(rows) == {"exact", "fbc-fast"} and rows["exact"][1] == "1"


def test_bench_lora_smoke_run():
    import os

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_lora.py"), "--blocks", "1", "--rank", "4", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "| wanlab apply (musubi file) |" in out and "| wanlab stage: verify |" in out
    assert "same adapter weights as diffusers' loader (diffusers and musubi files): yes" in out


def test_bench_serve_smoke_run():
    import os

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--tasks", "4", "--clients", "2", "--size", "32",
         "--frames", "5", "--steps", "2", "--poll", "0.05", "--threads", "1"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "| tasks succeeded / submitted" in out and "| 4 / 4 |" in out
    assert "| 4 / 4 / yes |" in out  # distinct task ids / runs / seeds: none lost or doubled
    assert "task-result latency while generating: p50 / p99 / max" in out


def test_bench_remote_smoke_run():
    """The remote benchmark runs end to end on the smallest sizes (a real server on loopback)."""
    import os

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_remote.py"), "--rounds", "1", "--size", "32", "--frames", "5",
         "--steps", "2", "--inflight", "2"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "| in-process (wanlab.load)" in out and "| through the server, K=2" in out
    assert "digests: identical for every point in every variant and round" in out


def test_bench_metrics_quality_smoke_run(tmp_path):
    """The quality table runs end to end with 2-layer evaluators on a short video (random weights
    through a temporary hub cache, as the real-architecture timing does)."""
    import os

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_metrics.py"), "--quality-only", "--evaluators", "tiny",
         "--frames", "3"], capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WANLAB_CACHE": str(tmp_path)}).stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("adherence", "clip_score", "subject_consistency", "background_consistency", "aesthetic_quality"):
        assert name in rows, out
    assert "PASS: 10 s" in rows["clip_score"] and "none (ViT-L/14" in rows["aesthetic_quality"]


def test_bench_probes_time_part_smoke_run():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_probes.py"), "--part", "time",
                          "--repeats", "1"], capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"none", "trajectory", "features", "attention", "all"}
    assert rows["none"][2] == "1.00x" and rows["attention"][3] == "1.35x"
    assert float(rows["trajectory"][4]) > 0  # stored KB
