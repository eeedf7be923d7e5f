"""The backend seam: sweeps and the task queue run on any backend (here one defined by the tests, with
no model), keys come from the backend's key_parts, and nothing above the protocol needs a Pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from tests.backends import FakeBackend
from wanlab import Params, Sweep, Video
from wanlab.backend import IdentityBackend, Job, is_backend
from wanlab.keys import run_key
from wanlab.store import Store
from wanlab.tasks import TaskQueue, TaskStatus

BASE = {"prompt": "a square moving right", "steps": 3}


def test_a_sweep_runs_on_a_backend_that_is_not_a_pipeline(tmp_path):
    backend = FakeBackend(max_in_flight=3, fail_seeds=(2,), step_seconds=0.05)
    assert is_backend(backend)
    sweep = Sweep(base=BASE, grid={"seed": [1, 2, 3], "guidance_scale": [1.0, 3.0]}, name="fake")
    store = Store(tmp_path / "runs")
    result = sweep.run(backend, store, progress=False)
    df = result.df
    assert list(df["status"]) == ["done", "done", "failed", "failed", "done", "done"]
    assert df["error"][2] == "RuntimeError: seed 2 fails on purpose" and len(store) == 4
    assert backend.peak == 3  # the runner keeps the backend's max_in_flight jobs running
    for i, p in enumerate(result.points):  # native settings filled in, keys from the backend
        assert (p.width, p.height, p.num_frames) == (32, 32, 5)
        assert df["key"][i] == run_key(backend.key_parts(p))
    # the square moves at guidance_scale px/frame: the stored metrics see it
    done = df[df.status == "done"]
    fast, slow = (done[done.guidance_scale == g]["flow_magnitude"].to_numpy() for g in (3.0, 1.0))
    assert (fast > slow).all()
    again = sweep.run(backend, store, progress=False, retry_failed=False)
    assert again.ran == [] and len(backend.ran) == 4  # resumed: nothing generated twice
    assert sweep.result(backend, store).df.equals(again.df)


def test_max_in_flight_one_runs_one_job_at_a_time(tmp_path):
    backend = FakeBackend(max_in_flight=4, step_seconds=0.01)
    sweep = Sweep(base=BASE, grid={"seed": [1, 2, 3, 4]}, name="serial")
    sweep.run(backend, tmp_path / "runs", progress=False, metrics=False, max_in_flight=1)
    assert backend.peak == 1


def test_the_task_queue_runs_on_a_backend_that_is_not_a_pipeline(tmp_path):
    backend = FakeBackend()
    queue = TaskQueue(backend, tmp_path / "store")
    task_id = queue.submit(prompt="a square", seed=5)
    result = queue.wait(task_id, timeout=30)
    assert result["task"]["status"] == TaskStatus.SUCCEED and result["extra"]["seed"] == "5"
    run = Store(tmp_path / "store").get(result["extra"]["wanlab"]["run_key"])
    assert run.params.width == 32 and run.extra == {"task_id": task_id}
    queue.close()


def test_a_metrics_failure_never_loses_the_run(tmp_path):
    """Store first, then measure: a clip metrics cannot score is stored with the reason and the sweep goes on."""
    backend = FakeBackend()
    sweep = Sweep(base={**BASE, "num_frames": 1}, grid={"seed": [1, 2]}, name="short")
    result = sweep.run(backend, tmp_path / "runs", progress=False)
    df = result.df
    assert list(df["status"]) == ["done", "done"] and len(Store(tmp_path / "runs")) == 2
    assert df["error"][0].startswith("metrics: ValueError:") and "at least 3 frames" in df["error"][0]
    assert result.ran == [0, 1]
    assert sweep.run(backend, tmp_path / "runs", progress=False).ran == []  # the reason counts: not measured again


def test_remote_work_accepted_earlier_is_resumed_not_paid_again(tmp_path):
    """A key with pending remote work (a task id recorded before polling) is started with resume=that id."""
    store = Store(tmp_path / "runs")
    backend = FakeBackend()
    seen: list[Job] = []
    start = backend.start
    backend.start = lambda job: (seen.append(job), start(job))[1]  # the test's own backend, wrapped
    sweep = Sweep(base=BASE, grid={"seed": [1, 2]}, name="remote")
    key = run_key(backend.key_parts(sweep.points(backend)[1]))
    store.put_pending(key, {"task_id": "task-of-an-earlier-run", "service": "fake"})
    assert list(store.pending()) == [key]
    sweep.run(backend, store, progress=False, metrics=False)
    assert [job.resume for job in seen] == [None, "task-of-an-earlier-run"]
    assert store.pending() == {}  # stored, so nothing is pending any more


def test_keys_and_tables_need_no_loaded_model(tmp_path, pipe):
    """Sweep.result on a model name or identity gives the keys a loaded pipeline gives."""
    import wanlab

    sweep = Sweep(base=dict(BASE, width=32, height=32, num_frames=5, steps=2), grid={"seed": [1, 2]}, name="ids")
    loaded = sweep.result(pipe, tmp_path / "runs")
    by_name = sweep.result("tiny", tmp_path / "runs")
    by_identity = sweep.result(wanlab.identity("tiny"), tmp_path / "runs")
    assert list(loaded.df["key"]) == list(by_name.df["key"]) == list(by_identity.df["key"])
    assert isinstance(by_name.backend, IdentityBackend)


def test_videos_compare_by_their_frames():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[1] = 7
    a, b = Video(frames), Video(frames.copy(), params=Params(prompt="x", seed=1))
    other = frames.copy()
    other[2, 0, 0, 0] = 1
    assert a == b and hash(a) == hash(b) and a != Video(other)
    assert a != Video(frames, fps=8) and (a == "frames") is False
    assert len({a, b}) == 1


def test_the_library_and_the_command_line_share_one_default_store(tmp_path, monkeypatch, capsys):
    from wanlab.cli import main

    monkeypatch.chdir(tmp_path)
    sweep = Sweep(base=BASE, grid={"seed": [1]}, name="my sweep", model="tiny")
    file = sweep.save(tmp_path / "my.toml")
    assert sweep.default_store().as_posix() == "runs/my-sweep"
    assert main(["sweep", str(file), "--dry-run"]) == 0
    assert "store runs/my-sweep" in capsys.readouterr().out


def test_a_job_needs_a_resolved_request():
    with pytest.raises(Exception, match="job.params.seed: must be resolved"):
        Job(Params(prompt="x"))
