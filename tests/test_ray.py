"""wanlab.ray on a local Ray (2 CPUs, CPU actors, the tiny model): the same keys and frames as in-process,
a task queue over the pool, a point failing for its own reason, affinity and MagCache calibrated once,
workers killed mid-point (``kill -9`` of the process, ``ray.kill``), the driver killed mid-sweep and
resumed, a worker with other weights refused. Ray starts once for the module; the pool's two workers
serve every test until the last ones, which need the CPUs for their own."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import wait
from pathlib import Path

import pytest

from wanlab import LoRA, Params, Sweep, WanlabError
from wanlab.backend import Job
from wanlab.store import Store
from wanlab.taskstatus import TaskStatus

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(prompt="a red fox running through fresh snow", width=32, height=32, num_frames=5, steps=2)
KEY = re.compile(r"^[0-9a-f]{16}$")  # a run folder (a killed writer leaves .tmp-* folders, never runs)
SLOW = dict(SMALL, width=64, height=64, num_frames=17, steps=20)  # long enough to be killed in the middle


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray for the module (listening on 127.0.0.1 only), its workers' caches in a fresh folder
    (they inherit this environment). Ray is imported here, not when the tests are collected (seconds)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is first imported
    ray = pytest.importorskip("ray")
    saved = os.environ.get("WANLAB_CACHE")
    os.environ["WANLAB_CACHE"] = str(tmp_path_factory.mktemp("wanlab-cache"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("WANLAB_CACHE", None)
    else:
        os.environ["WANLAB_CACHE"] = saved


@pytest.fixture(scope="module")
def pool2(cluster):
    import wanlab.ray

    backend = wanlab.ray.pool("tiny", workers=2, num_gpus=0)
    yield backend
    backend.close()


@pytest.fixture()
def one_thread():
    """In-process runs with 1 torch thread, as each worker has (frames depend on it in the last bits)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def small_sweep(name: str, **grid) -> Sweep:
    return Sweep(base=dict(SMALL), grid=grid or {"seed": [1, 2, 3], "guidance_scale": [3.0, 5.0]}, name=name)


def stored(folder: Path) -> set[str]:
    """Keys of the whole runs in a store folder, read from disk (the driver is the only index writer)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if KEY.match(p.name) and (p / "record.json").is_file()}


def running_worker(backend, timeout: float = 120) -> dict:
    """The first worker seen running a job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in backend.status()["workers"]:
            if worker["state"] == "running":
                return worker
        time.sleep(0.01)
    raise AssertionError(f"no worker ever ran a job: {backend.status()}")


def test_without_ray_one_line_says_how_to_get_it(monkeypatch):
    from wanlab.ray.cluster import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees where it is not installed
    with pytest.raises(WanlabError) as err:
        import_ray()
    assert str(err.value) == "wanlab.ray needs Ray: pip install 'wanlab[ray]' (or pip install ray)"


@pytest.mark.parametrize("options, message", [
    (dict(device="cuda:1"), "device: must be left to the pool"),
    (dict(progres=True), "progres: must be a wanlab.load option a pool passes on (dtype, cpu_offload"),
    (dict(workers=0), "workers: must be an integer in 1..4096 or None; got 0"),
    (dict(num_gpus=-1), "num_gpus: must be a number of GPUs per worker in 0..64; got -1"),
    (dict(runtime_env="env"), "runtime_env: must be None or a dict"),
])
def test_bad_pool_options_are_refused_before_ray_is_touched(options, message):
    import wanlab.ray

    with pytest.raises(WanlabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        wanlab.ray.pool("tiny", **options)


def test_the_command_line_wants_ray_for_workers(tmp_path, capsys):
    from wanlab.cli import main

    file = small_sweep("cli").save(tmp_path / "s.toml")
    assert main(["sweep", str(file), "--workers", "2"]) == 2
    assert "--workers: must be used with --ray; got 2" in capsys.readouterr().err


def test_the_scheduler_keeps_affinity_retries_first_and_gates_a_calibration():
    from wanlab.ray.scheduler import Scheduler, Ticket

    p = Params(**SMALL, seed=1)
    s = Scheduler()
    s.join("a"), s.join("b")
    study = [Ticket(Job(p.replace(seed=i), affinity="study")) for i in range(2)]
    plain = Ticket(Job(p.replace(seed=9)))
    for t in (*study, plain):
        s.put(t)
    assert s.take("a") is study[0]
    assert s.take("b") is plain  # study[1] waits for worker a, which ran its first job
    assert s.take("b", timeout=0.05) is None
    assert s.take("a") is study[1]
    s.retry(study[1])  # a died under it: it goes first, to whoever is free, bound again there
    s.leave("a")
    late = Ticket(Job(p.replace(seed=5)))
    s.put(late)
    assert s.take("b") is study[1] and s.take("b") is late
    mag = [Ticket(Job(p.replace(seed=i)), calibration_group="g") for i in range(3)]
    for t in mag:
        s.put(t)
    assert s.take("b") is mag[0] and mag[0].calibrating
    assert s.take("a", timeout=0.05) is None  # a joins later: still nothing, b is measuring
    s.join("a")
    assert s.take("a", timeout=0.05) is None
    s.done(mag[0], {"key": "k", "ratios": [1.0]})
    assert s.take("a") is mag[1] and mag[1].calibration == {"key": "k", "ratios": [1.0]} and not mag[1].calibrating
    mag[2].future.cancel()
    assert s.take("a", timeout=0.05) is None and s.queued() == 0  # a cancelled job is dropped


def test_a_sweep_on_the_pool_has_the_keys_and_frames_of_the_same_sweep_in_process(pool2, pipe, one_thread, tmp_path):
    sweep = small_sweep("same")
    on_pool = sweep.run(pool2, store=tmp_path / "pool", progress=False)
    local = sweep.run(pipe, store=tmp_path / "local", progress=False)
    assert on_pool.complete and len(on_pool.ran) == len(sweep) == 6
    assert list(on_pool.df["key"]) == list(local.df["key"])
    assert list(on_pool.df["digest"]) == list(local.df["digest"])
    workers = [Store(tmp_path / "pool").get(key).record["worker"] for key in on_pool.df["key"]]
    assert set(workers) == {"ray-0", "ray-1"}  # both workers ran points
    run = Store(tmp_path / "pool").get(on_pool.df["key"][0])
    assert run.record["environment"]["torch_threads"] == 1 and run.video().digest == run.digest
    assert pool2.max_in_flight == 3


def test_the_pool_passes_probes_to_its_workers_and_stores_what_they_recorded(pool2, pipe, one_thread, tmp_path):
    import numpy as np

    sweep = Sweep(base=dict(SMALL), grid={"seed": [1, 2]}, name="probes", probes=["trajectory", "features"])
    on_pool = sweep.run(pool2, store=tmp_path / "pool", progress=False)
    local = sweep.run(pipe, store=tmp_path / "local", progress=False)
    assert list(on_pool.df["digest"]) == list(local.df["digest"])
    assert on_pool.df["trajectory_decided_step"].notna().all()
    for key in on_pool.df["key"]:
        theirs, ours = Store(tmp_path / "pool").get(key).probes(), Store(tmp_path / "local").get(key).probes()
        assert list(theirs) == ["trajectory", "features"]
        assert np.array_equal(theirs["trajectory"].x0, ours["trajectory"].x0)


def test_a_task_queue_runs_on_the_pool_with_progress(pool2, pipe, one_thread, tmp_path):
    from wanlab.tasks import TaskQueue

    queue = TaskQueue(pool2, tmp_path / "tasks")
    try:
        ids = [queue.submit(Params(**dict(SMALL, steps=4), seed=s)) for s in (1, 2, 3)]
        results = [queue.wait(i, timeout=120) for i in ids]
    finally:
        queue.close()
    assert [r["task"]["status"] for r in results] == [TaskStatus.SUCCEED] * 3
    assert all(r["task"]["progress_percent"] == 100 for r in results)
    store = Store(tmp_path / "tasks")
    for seed, result in zip((1, 2, 3), results):
        run = store.get(result["extra"]["wanlab"]["run_key"])
        assert run.digest == pipe.generate(**dict(SMALL, steps=4), seed=seed).digest


def test_a_point_failing_for_its_own_reason_fails_once_and_the_workers_go_on(pool2, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    before = {w["worker"]: w for w in pool2.status()["workers"]}
    sweep = Sweep(base=dict(SMALL), grid={"seed": [1, 2], "loras": [[], [LoRA(str(bad))]]}, name="bad-lora")
    result = sweep.run(pool2, store=tmp_path / "runs", progress=False)
    df = result.df
    assert list(df["status"]) == ["done", "failed", "done", "failed"]
    assert all("could not load LoRA" in e for e in df["error"][df["status"] == "failed"])
    after = {w["worker"]: w for w in pool2.status()["workers"]}
    assert sum(after[w]["failures"] - before[w]["failures"] for w in after) == 2  # each ran once, not retried
    assert all(w["state"] == "ready" and w["deaths"] == before[name]["deaths"] for name, w in after.items())
    assert len(Store(tmp_path / "runs").failures()) == 2


def test_the_pools_lora_policy_reaches_every_worker(pool2, pipe, one_thread, tmp_path):
    from tests.helpers import make_lora_files
    from wanlab.lora import SourcePolicy

    make_lora_files(pipe, tmp_path / "loras")
    p = Params(**SMALL, seed=4, loras=[LoRA("style_diffusers.safetensors", 0.8)])  # a name inside the allowed root
    saved = pipe.lora_policy
    policy = SourcePolicy(local_roots=(str(tmp_path / "loras"),))
    pool2.set_lora_policy(policy)
    pipe.set_lora_policy(policy)
    try:
        videos = [f.result() for f in [pool2.start(Job(p)), pool2.start(Job(p))]]
        local = pipe.generate(p)
        assert pool2.key_parts(p) == pipe.key_parts(p)
    finally:
        pool2.set_lora_policy(None)
        pipe.set_lora_policy(saved)
    assert {v.record["worker"] for v in videos} == {"ray-0", "ray-1"}  # both resolved the name as the driver did
    assert {v.digest for v in videos} == {local.digest}


def test_affinity_keeps_jobs_on_one_worker_and_magcache_is_calibrated_once(pool2):
    from wanlab.accel import study

    p = Params(**dict(SMALL, steps=6), seed=1)
    jobs = [Job(p.replace(seed=i), affinity=f"request-{i % 2}") for i in range(6)]
    videos = [f.result() for f in [pool2.start(job) for job in jobs]]
    for group in (0, 1):
        assert len({v.record["worker"] for v, job in zip(videos, jobs) if job.affinity == f"request-{group}"}) == 1

    from wanlab.accel.setting import Accel

    mag = [pool2.start(Job(p.replace(seed=10 + i), Accel.coerce("mag"))) for i in range(4)]
    wait(mag)
    records = [f.result().record for f in mag]
    sources = sorted(r["accel_calibration"]["source"] for r in records)
    assert sources == ["calibrated", "memory", "memory", "memory"], sources
    assert len({r["accel_calibration"]["sha256"] for r in records}) == 1
    measured_on = next(r["worker"] for r in records if r["accel_calibration"]["source"] == "calibrated")
    assert any(r["worker"] != measured_on for r in records)  # another worker used it without measuring

    df = study(pool2, [p], ["fbc-fast"], warmup=False)
    assert list(df["setting"]) == ["exact", "fbc-fast"] and df["speedup"].notna().all()


def _sweep_in_thread(backend, sweep, store):
    out: dict = {}

    def target():
        try:
            out["result"] = sweep.run(backend, store=store, progress=False, metrics=False)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def _check_killed_sweep(pool2, sweep, store, out, victim):
    """Every point stored exactly once; the one under the killed worker ran again, on the other worker."""
    result = out.get("result")
    assert result is not None, out.get("error")
    assert result.complete and len(result.ran) == len(sweep)
    runs = list(Store(store).runs())
    assert len(runs) == len(sweep) and len({r.key for r in runs}) == len(sweep)  # none lost, none twice
    retried = [r for r in runs if r.record["ray"]["attempt"] == 2]
    assert len(retried) == 1 and retried[0].record["worker"] != victim["worker"]
    state = {w["worker"]: w for w in pool2.status()["workers"]}
    assert state[victim["worker"]]["deaths"] == victim["deaths"] + 1


def test_a_worker_whose_process_is_killed_mid_point_hands_the_point_on_and_comes_back(pool2, tmp_path):
    sweep = Sweep(base=dict(SLOW), grid={"seed": [1, 2, 3, 4]}, name="kill-9")
    thread, out = _sweep_in_thread(pool2, sweep, tmp_path / "runs")
    victim = running_worker(pool2)
    os.kill(victim["pid"], signal.SIGKILL)
    thread.join(300)
    _check_killed_sweep(pool2, sweep, tmp_path / "runs", out, victim)
    deadline = time.monotonic() + 180
    while True:  # Ray restarts the process; the worker reloads the model and is checked again
        back = {w["worker"]: w for w in pool2.status()["workers"]}[victim["worker"]]
        if back["state"] == "ready":
            break
        assert time.monotonic() < deadline, back
        time.sleep(0.2)
    assert back["pid"] != victim["pid"]


def test_a_worker_killed_with_ray_kill_mid_point_hands_the_point_on(cluster, pool2, tmp_path):
    sweep = Sweep(base=dict(SLOW), grid={"seed": [5, 6, 7, 8]}, name="ray-kill")
    thread, out = _sweep_in_thread(pool2, sweep, tmp_path / "runs")
    victim = running_worker(pool2)
    cluster.kill(pool2.actors[victim["worker"]])
    thread.join(300)
    _check_killed_sweep(pool2, sweep, tmp_path / "runs", out, victim)
    assert {w["worker"]: w["state"] for w in pool2.status()["workers"]}[victim["worker"]] == "dead"
    assert pool2.max_in_flight == 2  # one worker left


def test_a_worker_that_loads_other_weights_is_refused(pool2, pipe, tmp_path):
    import wanlab
    import wanlab.ray
    from wanlab.models.identity import cache_root

    pool2.close()  # its CPUs are needed from here on
    folder = pipe.save_pretrained(tmp_path / "model")
    expected = wanlab.identity(folder)  # the driver hashes the files (and caches their hashes)
    hashes = json.loads((cache_root() / "file-hashes.json").read_text())
    other = tmp_path / "node-cache"
    other.mkdir()
    (other / "file-hashes.json").write_text(json.dumps({k: "0" * 64 for k in hashes}))  # a node that has other files
    with pytest.raises(WanlabError, match=r"ray-0 .* loaded other weights than the driver identified") as err:
        wanlab.ray.pool(folder, workers=1, num_gpus=0, runtime_env={"env_vars": {"WANLAB_CACHE": str(other)}})
    assert expected.fingerprint[:12] in str(err.value)


def test_the_driver_killed_mid_sweep_resumes_from_the_store(cluster, tmp_path, capsys):
    from wanlab.cli import main

    sweep = Sweep(base=dict(SMALL, width=64, height=64, num_frames=9, steps=10), grid={"seed": list(range(1, 9))},
                  name="driver-killed")
    file = sweep.save(tmp_path / "sweep.toml")
    store = tmp_path / "runs"
    args = ["sweep", str(file), "--ray", cluster.get_runtime_context().gcs_address, "--store", str(store),
            "--no-metrics"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "wanlab.cli", *args, "--workers", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while len(stored(store)) < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the sweep never stored two runs"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the driver dies; Ray ends the workers it owned
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    landed = stored(store)
    assert 2 <= len(landed) < len(sweep), "killed too late to test resuming"
    capsys.readouterr()
    assert main([*args, "--workers", "2"]) == 0  # run again (here, on this process's Ray): the rest, and only the rest
    err = capsys.readouterr().err
    assert f"{len(landed)} already done" in err
    assert "ray-0: " in err and "ray-1: " in err  # the progress bar counts runs per worker
    table = Store(store).df
    assert len(table) == len(sweep) and table["key"].is_unique and set(table["key"]) >= landed


def test_wanlab_serve_runs_its_tasks_on_a_ray_pool(cluster, pipe, one_thread, tmp_path):
    """``wanlab serve --ray ADDRESS``: the server's tasks run on the pool's workers, the served frames are the
    in-process ones, and the health answer says the backend is a pool."""
    from wanlab.server.testing import start_server

    address = cluster.get_runtime_context().gcs_address
    with start_server(model="tiny", store=tmp_path / "store", no_auth=True,
                      args=["--ray", address, "--workers", "1"]) as server, server.client() as http:
        health = http.get("/health").json()
        body = {"prompt": SMALL["prompt"], "width": 32, "height": 32, "num_frames": 5, "steps": 2, "seed": 5}
        task_id = http.post("/v3/async/wan-t2v", json=body).json()["task_id"]
        result = server.wait_task(task_id)
    assert health["server"]["ray"] is True and health["server"]["workers"] == 1
    assert result["task"]["status"] == TaskStatus.SUCCEED, result["task"]["reason"]
    run = Store(tmp_path / "store").get(result["extra"]["wanlab"]["run_key"])
    assert run.record["worker"] == "ray-0"
    assert run.digest == pipe.generate(**SMALL, seed=5).digest
