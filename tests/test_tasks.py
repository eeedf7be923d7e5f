"""Tasks in the hosted API's shape: states in order, progress, eta, failures, a bounded queue, cancel,
and results that outlive the process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from wanlab import LoRA, ParamError, Params, TaskError
from wanlab.store import Store
from wanlab.tasks import FAILED, PROCESSING, QUEUED, SUCCEED, TaskQueue, TaskTimeout

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a hot air balloon rising over a canyon at dawn"
ORDER = {QUEUED: 0, PROCESSING: 1, SUCCEED: 2, FAILED: 2}


def _request(seed: int, **fields) -> Params:
    return Params(**{"prompt": PROMPT, "seed": seed, "width": 32, "height": 32, "num_frames": 5, "steps": 2,
                     **fields})


def _check_shape(result: dict) -> None:
    assert set(result) == {"task", "videos", "extra"}
    assert {"task_id", "status", "reason", "eta", "progress_percent"} <= set(result["task"])
    for video in result["videos"]:
        assert set(video) == {"video_url", "video_url_ttl", "video_type"}


class _Gate:
    """Wraps a pipeline: each generate waits for the gate to open, and every step records the result."""

    def __init__(self, pipe) -> None:
        self.pipe, self.open, self.queue = pipe, threading.Event(), None
        self.seen: list[dict] = []

    def params(self, *args, **kwargs):
        return self.pipe.params(*args, **kwargs)

    def generate(self, params, *, progress=None, on_step=None):
        assert self.open.wait(60)

        def step(done, total):
            on_step(done, total)
            self.seen.append(self.queue.result(self.queue._current.task_id)["task"])

        return self.pipe.generate(params, progress=progress, on_step=step)


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def test_states_in_order_one_at_a_time_and_the_result(pipe, store):
    first = pipe.submit(_request(1), store=store)
    second = pipe.submit(_request(2, steps=6), store=store)
    assert str(uuid.UUID(second, version=4)) == second
    statuses, progress = [], []
    first_status_when_second_started = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = pipe.task_result(second)
        _check_shape(result)
        task = result["task"]
        if task["status"] == PROCESSING and first_status_when_second_started is None:
            first_status_when_second_started = pipe.task_result(first)["task"]["status"]
        statuses.append(task["status"])
        progress.append(task["progress_percent"])
        if task["status"] in (SUCCEED, FAILED):
            break
        time.sleep(0.002)
    assert statuses[0] == QUEUED and statuses[-1] == SUCCEED
    assert [ORDER[s] for s in statuses] == sorted(ORDER[s] for s in statuses)  # never goes back
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
    assert all(p < 100 for s, p in zip(statuses, progress) if s != SUCCEED)
    assert first_status_when_second_started == SUCCEED  # one task at a time, in order

    result = pipe.wait(second, timeout=60)
    task, videos, extra = result["task"], result["videos"], result["extra"]
    assert task["task_id"] == second and task["reason"] == "" and task["eta"] == 0
    assert extra["seed"] == "2" and len(videos) == 1
    assert videos[0]["video_type"] == "mp4" and videos[0]["video_url_ttl"] == "0"
    url = urlparse(videos[0]["video_url"])
    mp4 = Path(url2pathname(url.path))
    assert url.scheme == "file" and mp4.is_file() and mp4.parent.parent == store.path
    run = store.get(extra["run_key"])
    assert run.mp4 == mp4 and run.params == _request(2, steps=6) and run.extra == {"task_id": second}


def test_progress_follows_the_steps_and_eta_comes_from_measured_steps(pipe, store):
    gate = _Gate(pipe)
    queue = gate.queue = TaskQueue(gate, store)
    gate.open.set()
    a = queue.submit(_request(3, steps=4))
    assert queue.wait(a, timeout=60)["task"]["status"] == SUCCEED
    assert [t["progress_percent"] for t in gate.seen] == [25, 50, 75, 99]  # 100 only once stored
    assert all(t["status"] == PROCESSING for t in gate.seen)
    assert all(isinstance(t["eta"], int) and t["eta"] >= 0 for t in gate.seen)

    gate.open.clear()
    b = queue.submit(_request(4))  # now blocked: measured rates give queued tasks an eta
    c = queue.submit(_request(5))
    assert queue.result(c)["task"]["status"] == QUEUED and isinstance(queue.result(c)["task"]["eta"], int)
    gate.open.set()
    assert queue.wait(c, timeout=60)["task"]["status"] == SUCCEED
    assert queue.result(b)["task"]["status"] == SUCCEED


def test_a_failing_task_ends_failed_with_its_reason_and_the_next_one_runs(pipe, store, tmp_path):
    missing = tmp_path / "nowhere" / "style.safetensors"
    bad = pipe.submit(_request(6, loras=[LoRA(str(missing), 0.8)]), store=store)
    good = pipe.submit(_request(7), store=store)
    failed = pipe.wait(bad, timeout=60)
    assert failed["task"]["status"] == FAILED and failed["videos"] == []
    assert failed["task"]["reason"] == f"loras.path: no such LoRA file: {missing}"
    assert pipe.wait(good, timeout=60)["task"]["status"] == SUCCEED
    assert store.task_result(bad)["task"]["reason"] == failed["task"]["reason"]  # failures are kept too


def test_bounded_queue_cancel_and_wait_timeout(pipe, store):
    gate = _Gate(pipe)
    queue = gate.queue = TaskQueue(gate, store, maxsize=2)
    running = queue.submit(_request(8))
    deadline = time.monotonic() + 30
    while queue.result(running)["task"]["status"] != PROCESSING and time.monotonic() < deadline:
        time.sleep(0.005)
    waiting = [queue.submit(_request(9)), queue.submit(_request(10))]
    with pytest.raises(TaskError, match=r"queue is full \(2 tasks waiting\)"):
        queue.submit(_request(11))
    with pytest.raises(TaskTimeout, match="still TASK_STATUS_PROCESSING after 0.05 s"):
        queue.wait(running, timeout=0.05)
    with pytest.raises(TaskError, match="is TASK_STATUS_PROCESSING; only queued tasks can be cancelled"):
        queue.cancel(running)

    cancelled = queue.cancel(waiting[0])
    assert cancelled["task"]["status"] == FAILED and "cancelled" in cancelled["task"]["reason"]
    assert queue.result(waiting[0])["task"]["status"] == FAILED
    last = queue.submit(_request(12))  # the cancelled task freed a place
    gate.open.set()
    assert queue.wait(waiting[1], timeout=60)["task"]["status"] == SUCCEED
    with pytest.raises(TaskError, match="only queued tasks can be cancelled"):
        queue.cancel(waiting[1])
    assert queue.wait(last, timeout=60)["task"]["status"] == SUCCEED
    assert [t["task"]["status"] for t in queue.tasks()] == [SUCCEED, FAILED, SUCCEED, SUCCEED]
    with pytest.raises(ValueError, match="maxsize"):
        TaskQueue(pipe, store, maxsize=0)


def test_bad_requests_and_unknown_ids_are_clear_errors(pipe, store):
    with pytest.raises(ParamError, match="steps"):
        pipe.submit(store=store, prompt=PROMPT, steps=99)  # rejected at once, as the API answers 400
    for bad in ("not-a-task", str(uuid.uuid4()), None):
        with pytest.raises(TaskError, match="unknown task id"):
            pipe.task_result(bad)
        with pytest.raises(TaskError, match="unknown task id"):
            pipe.cancel(bad)
    with pytest.raises(TaskError, match="unknown task id"):
        store.task_result(str(uuid.uuid4()))


def test_finished_results_persist_for_other_processes(pipe, store, tmp_path):
    ok = pipe.submit(_request(14), store=store)
    bad = pipe.submit(_request(15, loras=[str(tmp_path / "missing.safetensors")]), store=store)
    results = {task_id: pipe.wait(task_id, timeout=60) for task_id in (ok, bad)}
    script = ("import json, sys; from wanlab.store import Store; s = Store(sys.argv[1]); "
              "print(json.dumps({t: s.task_result(t) for t in sys.argv[2:]}))")
    out = subprocess.run([sys.executable, "-c", script, str(store.path), ok, bad], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=60, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(results))
    fresh = TaskQueue(pipe, store)  # a new queue (as in a new process) knows nothing in memory
    assert fresh.result(ok)["videos"] == results[ok]["videos"]
    assert fresh.wait(bad, timeout=1)["task"]["status"] == FAILED
    assert sorted(store.task_ids()) == sorted([ok, bad])


def test_a_task_may_carry_its_own_acceleration_setting(pipe, store):
    task_id = pipe.submit(_request(16, steps=3), store=store, accel="fbc")
    result = pipe.wait(task_id, timeout=60)
    assert result["task"]["status"] == SUCCEED
    assert store.get(result["extra"]["run_key"]).record["accel"]["cache"] == "first_block"
    with pytest.raises(ParamError, match="accel"):
        pipe.submit(_request(17), store=store, accel="warp-speed")
