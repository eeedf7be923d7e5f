"""The client against a real ``wanlab serve`` (tiny model, loopback, one server for the module): frames,
run keys and digests equal to in-process runs, sweeps with K tasks in flight that never submit a point
twice (also when the client is killed with -9 mid-sweep, and when the server is), 429s from a small
queue, refused keys, the hosted-API mode's lossy frames, and the CLI's ``--remote``.

The server counts what it accepted: one task file per accepted request in its store's ``tasks/``.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import wanlab
from tests.conftest import SMALL
from wanlab.client import RetryPolicy, connect
from wanlab.errors import AuthError, TaskError
from wanlab.keys import run_key
from wanlab.server.testing import start_server
from wanlab.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
#: Long enough to outlast a restart of the server on a busy 2-core machine.
PATIENT = RetryPolicy(attempts=80, backoff_s=0.2, max_backoff_s=2.0, busy_s=600.0)
GRID = {"seed": [1, 2, 3], "guidance_scale": [1.0, 3.0], "flow_shift": [3.0, 5.0]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("serve") / "store", keys=2)
    yield srv
    srv.stop()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads (1 and 2 threads give other frames in the last bits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def accepted(server, prompt: str) -> list[dict]:
    """The requests the server accepted (its task files) with this prompt."""
    out = []
    for file in (server.store / "tasks").glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(file.read_text())
            if (data.get("params") or {}).get("prompt") == prompt:
                out.append(data)
    return out


def once_each(tasks: list[dict]) -> bool:
    """Whether no request was accepted twice."""
    requests = [json.dumps(t["params"], sort_keys=True) for t in tasks]
    return len(requests) == len(set(requests))


def test_a_wanlab_server_gives_the_frames_and_keys_of_an_in_process_run(server, pipe, tmp_path):
    remote = connect(server.base_url, server.key)
    assert remote.kind == "wanlab" and remote.identity.same_model(pipe.identity) and remote.identity.exact
    p = remote.params(prompt="a fox on snow", seed=11, **SMALL)
    video = remote.generate(p)
    with torch_threads(video.record["environment"]["torch_threads"]):
        local = pipe.generate(p, progress=False)
    assert video.digest == local.digest  # the lossless copy: bit for bit
    assert remote.key_parts(p) == pipe.key_parts(p)
    key = run_key(pipe.key_parts(p))
    assert video.record["service"]["run_key"] == key  # the server keyed it the same

    both = wanlab.Store(tmp_path / "both")
    assert both.put(local, key_parts=pipe.key_parts(p)).key == both.put(video, key_parts=remote.key_parts(p)).key
    assert len(both) == 1  # one store holds local and remote runs of the same request as one run

    run = wanlab.Store(tmp_path / "remote").put(video, key_parts=remote.key_parts(p))
    for name in ("video.mp4", "video.lossless.mkv"):
        assert (run.path / name).read_bytes() == (server.store / key / name).read_bytes()  # as served
    assert server.key not in (run.path / "record.json").read_text()
    with torch_threads(video.record["environment"]["torch_threads"]):
        report = wanlab.verify(run, backend=pipe)
    assert report["identical"], wanlab.reproduce.format_report(report)


def test_a_sweep_keeps_k_tasks_in_flight_and_never_submits_a_point_twice(server, pipe, tmp_path):
    remote = connect(server.base_url, server.key)
    sweep = Sweep(base=dict(prompt="a sweep of twelve", **SMALL), grid=GRID, name="remote")
    result = sweep.run(remote, tmp_path / "store", max_in_flight=4, progress=False)
    assert (result.df["status"] == "done").all() and len(result.df) == 12
    tasks = accepted(server, "a sweep of twelve")
    assert len(tasks) == 12 and once_each(tasks)
    moments = sorted([(t["submitted"], 1) for t in tasks] + [(t["finished"], -1) for t in tasks])
    in_flight = peak = 0
    for _, change in moments:
        in_flight += change
        peak = max(peak, in_flight)
    assert peak <= 4
    assert result.keys == sweep.result(pipe, tmp_path / "store").keys  # the same keys in-process
    assert not wanlab.Store(tmp_path / "store").pending()
    again = sweep.run(remote, tmp_path / "store", max_in_flight=4, progress=False)
    assert len(accepted(server, "a sweep of twelve")) == 12 and again.ran == []


def test_a_refused_key_and_another_keys_tasks(server):
    wrong = "wanlab-test-not-a-key-of-this-server"
    remote = connect(server.base_url, wrong)
    with pytest.raises(AuthError, match=r"the API key was refused \(401") as info:
        remote.generate(prompt="never runs", seed=1, **SMALL)
    assert wrong not in str(info.value) and not accepted(server, "never runs")
    mine = connect(server.base_url, server.keys[0])
    task_id = mine.submit(prompt="only mine", seed=1, **SMALL)
    with pytest.raises(TaskError, match="unknown task id"):
        connect(server.base_url, server.keys[1]).task_result(task_id)
    assert mine.wait(task_id, timeout=120)["task"]["status"] == "TASK_STATUS_SUCCEED"


def test_the_hosted_api_mode_gives_lossy_frames_keyed_by_the_service(server, tmp_path):
    exact = connect(server.base_url, server.key)
    lossy = connect(server.base_url, server.key, kind="api", rules="local")
    assert lossy.kind == "api" and lossy.identity.exact is False
    p = exact.params(prompt="lossy or not", seed=4, **SMALL)
    a, b = exact.generate(p), lossy.generate(p)
    assert b.record["exact"] is False and b.record["service"]["model_name"] == "wan2.1-t2v"
    assert a.digest != b.digest and 25 < wanlab.metrics.psnr(a, b).mean < 80  # h264 yuv420p of the same frames
    assert run_key(lossy.key_parts(p)) != run_key(exact.key_parts(p))
    run = wanlab.Store(tmp_path / "store").put(b, key_parts=lossy.key_parts(p))
    assert not run.exact and wanlab.Store(tmp_path / "store").df["exact"].tolist() == [False]


def test_the_cli_generates_and_sweeps_on_a_remote(server, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(server.key + "\n")
    key_file.chmod(0o600)
    out = subprocess.run([sys.executable, "-m", "wanlab.cli", "generate", "--remote", server.base_url,
                          "--api-key-file", str(key_file), "--prompt", "from the cli", "--seed", "2",
                          "--width", "32", "--height", "32", "--num-frames", "5", "--steps", "2", "--quiet",
                          "--out", str(tmp_path / "x.mp4")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "exact frames" in out.stdout and (tmp_path / "x.lossless.mkv").is_file()
    key = json.loads((tmp_path / "x.json").read_text())["service"]["run_key"]
    assert (tmp_path / "x.mp4").read_bytes() == (server.store / key / "video.mp4").read_bytes()
    bad = subprocess.run([sys.executable, "-m", "wanlab.cli", "generate", "--remote", server.base_url,
                          "--api-key-file", str(key_file), "--prompt", "x", "--model", "toy", "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "--model: must be the model" in bad.stderr and "(tiny)" in bad.stderr


def _sweep_file(tmp_path: Path, prompt: str, steps: int) -> Path:
    file = tmp_path / "remote.toml"
    file.write_text(f'name = "killed"\n[base]\nprompt = "{prompt}"\nwidth = 32\nheight = 32\nnum_frames = 5\n'
                    f'steps = {steps}\n[grid]\nseed = [1, 2, 3]\nguidance_scale = [1.0, 3.0]\nflow_shift = [3.0, 5.0]\n')
    return file


def test_a_client_killed_mid_sweep_polls_what_it_submitted_instead_of_paying_again(server, tmp_path):
    prompt = "killed and resumed"
    file = _sweep_file(tmp_path, prompt, steps=20)  # slow tasks: the kill lands while the first one runs
    key_file = tmp_path / "key"
    key_file.write_text(server.key + "\n")
    key_file.chmod(0o600)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "wanlab.cli", "sweep", str(file), "--remote", server.base_url, "--api-key-file",
               str(key_file), "--store", str(store), "--max-in-flight", "4", "--no-metrics", "--quiet"]
    client = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list((store / "pending").glob("*.json"))) < 4:  # four accepted, recorded, none stored yet
        assert client.poll() is None and time.monotonic() < deadline, client.stderr.read() if client.poll() else ""
        time.sleep(0.005)
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    assert len(list(store.glob("*/record.json"))) == 0 and len(accepted(server, prompt)) == 4
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    tasks = accepted(server, prompt)
    assert len(tasks) == 12 and once_each(tasks)  # the four submitted before the kill were polled, not paid again
    assert len(list(store.glob("*/record.json"))) == 12 and not list((store / "pending").glob("*.json"))


def test_a_server_restarted_mid_sweep_and_a_full_queue(server, tmp_path):
    """Last in the module: the server comes back with a queue of one task, so the rest of the sweep meets 429s."""
    prompt = "through a restart"
    remote = connect(server.base_url, server.key, retry=PATIENT)
    sweep = Sweep(base=dict(prompt=prompt, **{**SMALL, "steps": 20}), grid=GRID, name="restart")
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(result=sweep.run(
        remote, tmp_path / "store", max_in_flight=4, progress=False, metrics=False)))
    worker.start()
    deadline = time.monotonic() + 240
    while len(accepted(server, prompt)) < 4:  # four accepted: the client submits no more until one is stored
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.005)
    server.kill()
    server.args += ["--queue-size", "1"]
    server.restart()
    worker.join(600)
    assert not worker.is_alive()
    result = done["result"]
    assert (result.df["status"] == "done").all(), result.df[["status", "error"]]
    tasks = accepted(server, prompt)
    assert len(tasks) == 12 and once_each(tasks)
    assert " 429 " in server.log() and remote.transport.stats["busy_waits"] > 0  # the full queue was waited out
