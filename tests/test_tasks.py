"""Tasks in the hosted API's shape: states in order, progress, eta, failures, a bounded queue, cancel,
results that outlive the process, tasks written when accepted and resumed by the next queue, and
every result field of the published shape. Most tests run through a backend defined in the tests."""
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

from tests.backends import FakeBackend
from wanlab import LoRA, ParamError, Params, TaskError
from wanlab.store import Store
from wanlab.tasks import TaskFiles, TaskQueue, TaskStatus, TaskTimeout, read_task_result

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a hot air balloon rising over a canyon at dawn"
ORDER = {TaskStatus.QUEUED: 0, TaskStatus.PROCESSING: 1, TaskStatus.SUCCEED: 2, TaskStatus.FAILED: 2}


def _request(seed: int, **fields) -> Params:
    return Params(**{"prompt": PROMPT, "seed": seed, "width": 32, "height": 32, "num_frames": 5, "steps": 2,
                     **fields})


def _check_shape(result: dict) -> None:
    """The published shape, field for field (notes/hosted-api.md)."""
    assert list(result) == ["task", "images", "videos", "audios", "extra"]
    task = result["task"]
    assert set(task) == {"task_id", "task_type", "status", "reason", "eta", "progress_percent"}
    assert task["task_type"] == "WAN_TXT_TO_VIDEO" and isinstance(task["eta"], int) and task["eta"] >= 0
    assert isinstance(task["progress_percent"], int) and result["images"] == [] and result["audios"] == []
    for video in result["videos"]:
        assert set(video) == {"video_url", "video_url_ttl", "video_type"}
        assert video["video_type"] == "mp4" and video["video_url_ttl"].isdigit() and int(video["video_url_ttl"]) > 0
    extra = result["extra"]
    assert isinstance(extra["seed"], str) and set(extra["debug_info"]) == {
        "request_info", "submit_time_ms", "execute_time_ms", "complete_time_ms"}
    assert set(extra) == {"seed", "debug_info", "wanlab"}  # wanlab's own additions under one key only


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def test_states_in_order_one_at_a_time_and_the_result(pipe, store):
    first = pipe.submit(_request(1), store=store)
    second = pipe.submit(_request(2, steps=6), store=store)
    assert str(uuid.UUID(second, version=4)) == second
    statuses, progress = [], []
    first_when_second_started = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = pipe.task_result(second)
        _check_shape(result)
        task = result["task"]
        if task["status"] == TaskStatus.PROCESSING and first_when_second_started is None:
            first_when_second_started = pipe.task_result(first)["task"]
        statuses.append(task["status"])
        progress.append(task["progress_percent"])
        if task["status"] in (TaskStatus.SUCCEED, TaskStatus.FAILED):
            break
        time.sleep(0.002)
    assert statuses[0] == TaskStatus.QUEUED and statuses[-1] == TaskStatus.SUCCEED
    assert [ORDER[s] for s in statuses] == sorted(ORDER[s] for s in statuses)  # never goes back
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
    assert all(p < 100 for s, p in zip(statuses, progress) if s != TaskStatus.SUCCEED)
    # one generation at a time, in order: the first had done all its steps when the second began (it may
    # still be storing its video where the pipeline overlaps storing with the next generation)
    assert first_when_second_started["status"] in (TaskStatus.PROCESSING, TaskStatus.SUCCEED)
    assert first_when_second_started["progress_percent"] >= 99

    result = pipe.wait(second, timeout=60)
    task, videos, extra = result["task"], result["videos"], result["extra"]
    assert task["task_id"] == second and task["reason"] == "" and task["eta"] == 0
    assert extra["seed"] == "2" and len(videos) == 1
    assert videos[0]["video_type"] == "mp4" and videos[0]["video_url_ttl"] == "86400"
    url = urlparse(videos[0]["video_url"])
    mp4 = Path(url2pathname(url.path))
    assert url.scheme == "file" and mp4.is_file() and mp4.parent.parent == store.path
    run = store.get(extra["wanlab"]["run_key"])
    assert run.mp4 == mp4 and run.params == _request(2, steps=6) and run.extra == {"task_id": second}
    info = extra["debug_info"]
    assert int(info["submit_time_ms"]) <= int(info["execute_time_ms"]) <= int(info["complete_time_ms"])
    assert json.loads(info["request_info"])["steps"] == 6


def test_progress_follows_the_steps_and_eta_is_always_a_number(store):
    gate = threading.Event()
    backend = FakeBackend(max_in_flight=1, gate=gate, step_seconds=0.01)
    queue = TaskQueue(backend, store)
    seen = []
    a = queue.submit(_request(3, steps=4))
    assert isinstance(queue.result(a)["task"]["eta"], int)  # before anything was measured: the prior
    gate.set()
    while queue.result(a)["task"]["status"] not in (TaskStatus.SUCCEED, TaskStatus.FAILED):
        seen.append(queue.result(a)["task"])
        time.sleep(0.001)
    assert queue.wait(a, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert {t["progress_percent"] for t in seen if t["status"] == TaskStatus.PROCESSING} <= {0, 25, 50, 75, 99}
    assert all(isinstance(t["eta"], int) and t["eta"] >= 0 for t in seen)

    gate.clear()
    b = queue.submit(_request(4))
    c = queue.submit(_request(5))  # blocked: measured rates give queued tasks an eta
    assert queue.result(c)["task"]["status"] == TaskStatus.QUEUED and isinstance(queue.result(c)["task"]["eta"], int)
    gate.set()
    assert queue.wait(c, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert queue.result(b)["task"]["status"] == TaskStatus.SUCCEED
    assert (store.path / "tasks" / "rates.json").is_file()  # the next queue starts from the measured rates
    queue.close()


def test_a_failing_task_ends_failed_with_its_reason_and_the_next_one_runs(pipe, store, tmp_path):
    missing = tmp_path / "nowhere" / "style.safetensors"
    bad = pipe.submit(_request(6, loras=[LoRA(str(missing), 0.8)]), store=store)
    good = pipe.submit(_request(7), store=store)
    failed = pipe.wait(bad, timeout=60)
    assert failed["task"]["status"] == TaskStatus.FAILED and failed["videos"] == []
    assert failed["task"]["reason"] == f"loras.path: no such LoRA file: {missing}"
    assert pipe.wait(good, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert read_task_result(store, bad)["task"]["reason"] == failed["task"]["reason"]  # failures are kept too


def test_bounded_queue_cancel_and_wait_timeout(store):
    gate = threading.Event()
    queue = TaskQueue(FakeBackend(max_in_flight=1, gate=gate), store, maxsize=2)
    running = queue.submit(_request(8))
    deadline = time.monotonic() + 30
    while queue.task(running).future is None and time.monotonic() < deadline:  # dispatched, held by the gate
        time.sleep(0.005)
    waiting = [queue.submit(_request(9)), queue.submit(_request(10))]
    with pytest.raises(TaskError, match=r"queue is full \(2 tasks waiting\)"):
        queue.submit(_request(11))
    with pytest.raises(TaskTimeout, match="still TASK_STATUS_QUEUED after 0.05 s"):
        queue.wait(running, timeout=0.05)
    cancelled = queue.cancel(waiting[0])
    assert cancelled["task"]["status"] == TaskStatus.FAILED and "cancelled" in cancelled["task"]["reason"]
    assert queue.result(waiting[0])["task"]["status"] == TaskStatus.FAILED
    assert read_task_result(store, waiting[0])["task"]["status"] == TaskStatus.FAILED  # on disk too
    last = queue.submit(_request(12))  # the cancelled task freed a place
    gate.set()
    assert queue.wait(waiting[1], timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    with pytest.raises(TaskError, match="only queued tasks can be cancelled"):
        queue.cancel(waiting[1])
    assert queue.wait(last, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert [t["task"]["status"] for t in queue.tasks()] == [TaskStatus.SUCCEED, TaskStatus.FAILED, TaskStatus.SUCCEED,
                                                           TaskStatus.SUCCEED]
    with pytest.raises(ValueError, match="maxsize"):
        TaskQueue(FakeBackend(), store, maxsize=0)
    queue.close()


def test_bad_requests_and_unknown_ids_are_clear_errors(pipe, store):
    with pytest.raises(ParamError, match="steps"):
        pipe.submit(store=store, prompt=PROMPT, steps=99)  # rejected at once, as the API answers 400
    for bad in ("not-a-task", str(uuid.uuid4()), None):
        with pytest.raises(TaskError, match="unknown task id"):
            pipe.task_result(bad)
        with pytest.raises(TaskError, match="unknown task id"):
            pipe.cancel(bad)
    with pytest.raises(TaskError, match="unknown task id"):
        read_task_result(store, str(uuid.uuid4()))
    with pytest.raises(ParamError, match="accel"):
        pipe.submit(_request(17), store=store, accel="warp-speed")


def test_results_persist_for_other_processes(pipe, store, tmp_path):
    ok = pipe.submit(_request(14), store=store)
    bad = pipe.submit(_request(15, loras=[str(tmp_path / "missing.safetensors")]), store=store)
    results = {task_id: pipe.wait(task_id, timeout=60) for task_id in (ok, bad)}
    script = ("import json, sys; from wanlab.tasks import read_task_result; "
              "print(json.dumps({t: read_task_result(sys.argv[1], t) for t in sys.argv[2:]}))")
    out = subprocess.run([sys.executable, "-c", script, str(store.path), ok, bad], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=60, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(results))
    fresh = TaskQueue(pipe, store)  # a new queue (as in a new process) knows nothing in memory
    assert fresh.result(ok)["videos"] == results[ok]["videos"]
    assert fresh.wait(bad, timeout=1)["task"]["status"] == TaskStatus.FAILED
    assert set(TaskFiles(store.path).ids()) >= {ok, bad}


def test_a_task_may_carry_its_own_acceleration_setting(pipe, store):
    task_id = pipe.submit(_request(16, steps=3), store=store, accel="fbc")
    result = pipe.wait(task_id, timeout=60)
    assert result["task"]["status"] == TaskStatus.SUCCEED
    assert store.get(result["extra"]["wanlab"]["run_key"]).record["accel"]["cache"] == "first_block"
    assert result["extra"]["wanlab"]["accel"]["cache"] == "first_block"


def test_tasks_are_written_when_accepted_and_the_next_queue_runs_them(store):
    """Queued tasks outlive their queue (a process that stopped): the next queue on the store runs them."""
    gate = threading.Event()
    first = TaskQueue(FakeBackend(max_in_flight=1, gate=gate), store)
    ids = [first.submit(_request(20 + i)) for i in range(3)]
    for task_id in ids:  # on disk at once, before anything ran
        assert TaskFiles(store.path).read(task_id)["status"] == TaskStatus.QUEUED
    first.close(timeout=0)  # stops taking tasks; nothing started but the one held at the gate
    backend = FakeBackend(max_in_flight=1)
    second = TaskQueue(backend, store)
    for task_id in ids[1:]:
        assert second.wait(task_id, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert [job.params.seed for job in backend.ran] == [21, 22]  # the one held by the first queue is its own
    gate.set()
    assert first.wait(ids[0], timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert TaskFiles(store.path).unfinished() == []
    assert {r.params.seed for r in store.runs()} == {20, 21, 22}
    second.close()


def test_two_queues_on_one_store_run_each_task_once(store):
    """Two processes sharing a store: each accepted task runs exactly once (a lock per task decides)."""
    gate = threading.Event()
    submitter = TaskQueue(FakeBackend(max_in_flight=1, gate=gate), store)
    ids = [submitter.submit(_request(30 + i)) for i in range(4)]
    a, b = FakeBackend(max_in_flight=1), FakeBackend(max_in_flight=1)
    qa, qb = TaskQueue(a, store), TaskQueue(b, store)
    gate.set()
    for task_id in ids:
        deadline = time.monotonic() + 60
        while read_task_result(store, task_id)["task"]["status"] != TaskStatus.SUCCEED and time.monotonic() < deadline:
            time.sleep(0.01)
    ran = [job.params.seed for job in a.ran + b.ran + submitter.backend.ran]
    assert sorted(ran) == [30, 31, 32, 33]  # none twice
    assert len(store) == 4
    for queue in (submitter, qa, qb):
        queue.close()


def test_finished_tasks_leave_memory_but_not_the_store(store):
    queue = TaskQueue(FakeBackend(), store, keep_finished=2)
    ids = [queue.submit(_request(40 + i)) for i in range(4)]
    for task_id in ids:
        queue.wait(task_id, timeout=60)
    assert [t["task"]["task_id"] for t in queue.tasks()] == ids[2:]
    assert queue.result(ids[0])["task"]["status"] == TaskStatus.SUCCEED  # read from the store
    queue.close()
    with pytest.raises(TaskError, match="closed"):
        queue.submit(_request(50))


def test_the_dispatcher_keeps_the_backends_jobs_in_flight(store):
    backend = FakeBackend(max_in_flight=3, step_seconds=0.02)
    queue = TaskQueue(backend, store)
    ids = [queue.submit(_request(60 + i, steps=3)) for i in range(6)]
    for task_id in ids:
        assert queue.wait(task_id, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert backend.peak == 3
    queue.close()


def test_task_files_of_the_earlier_format_read_back_as_written(tmp_path):
    import shutil

    legacy = ROOT / "tests" / "data" / "legacy_store"
    copy = tmp_path / "legacy"
    shutil.copytree(legacy, copy)
    expected = json.loads((ROOT / "tests" / "data" / "legacy_expected.json").read_text())
    assert read_task_result(copy, expected["task_id"]) == expected["task_result"]


def test_a_task_owned_by_another_queue_is_waited_for_through_its_file(store):
    """One queue accepted the task (and owns it); another queue on the store waits for it by its file."""
    gate = threading.Event()
    owner = TaskQueue(FakeBackend(max_in_flight=1, gate=gate), store)
    task_id = owner.submit(_request(70))
    other = TaskQueue(FakeBackend(), store)  # resumes nothing: the owner holds the task
    assert other.task(task_id) is None
    threading.Timer(0.3, gate.set).start()
    assert other.wait(task_id, timeout=30)["task"]["status"] == TaskStatus.SUCCEED
    with pytest.raises(TaskTimeout, match="another process runs it"):
        gate.clear()
        other.wait(owner.submit(_request(71)), timeout=0.2)
    gate.set()
    owner.close()
    other.close()


def test_a_task_file_that_cannot_be_read_back_fails_alone(store):
    files = TaskFiles(store.path)
    task_id = str(uuid.uuid4())
    files.write({"task_id": task_id, "status": TaskStatus.QUEUED, "model": "f" * 64,
                 "params": {"prompt": "x", "steps": 99}, "result": {}})
    queue = TaskQueue(FakeBackend(), store)  # starts, and its tasks run
    failed = read_task_result(store, task_id)
    assert failed["task"]["status"] == TaskStatus.FAILED
    assert f"{task_id}.json could not be read back" in failed["task"]["reason"]
    assert "steps" in failed["task"]["reason"]
    assert queue.wait(queue.submit(_request(72)), timeout=30)["task"]["status"] == TaskStatus.SUCCEED
    queue.close()


def test_reading_a_result_starts_no_queue(tmp_path, monkeypatch):
    """A backend that has submitted nothing answers from the default store's task files."""
    from wanlab.tasks import TaskMethods

    monkeypatch.setenv("WANLAB_STORE", str(tmp_path / "tasks"))
    owner = TaskQueue(FakeBackend(), tmp_path / "tasks")
    task_id = owner.submit(_request(73))
    owner.wait(task_id, timeout=30)

    class Reader(TaskMethods):
        """Only the task methods: it cannot run anything, so a result must come from the files."""

    reader = Reader()
    assert reader.task_result(task_id)["task"]["status"] == TaskStatus.SUCCEED
    assert reader.wait(task_id, timeout=5)["task"]["status"] == TaskStatus.SUCCEED and not reader.queue_started
    owner.close()


def test_a_backend_makes_its_task_queue_on_its_first_submit_and_lets_it_go_on_close(tmp_path):
    from wanlab.tasks import TaskMethods

    class Backend(FakeBackend, TaskMethods):
        """A backend with the task methods, as every wanlab backend has them."""

    backend = Backend()
    assert not backend.queue_started
    task_id = backend.submit(_request(74), store=tmp_path / "store")
    assert backend.queue_started and backend.task_queue() is backend.task_queue()
    assert backend.wait(task_id, timeout=30)["task"]["status"] == TaskStatus.SUCCEED
    backend.close()
    assert not backend.queue_started


def test_statuses_are_the_hosted_apis_strings_in_every_form():
    from wanlab.taskstatus import FINISHED

    wire = ["TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"]
    assert [s.value for s in TaskStatus] == wire
    assert [str(s) for s in TaskStatus] == [f"{s}" for s in TaskStatus] == wire
    assert ["%s" % s for s in TaskStatus] == ["{}".format(s) for s in TaskStatus] == wire  # noqa: UP031, UP032
    assert json.dumps({s: s for s in TaskStatus}) == json.dumps({w: w for w in wire})  # byte for byte
    assert [TaskStatus(w) for w in wire] == list(TaskStatus) and {w: 1 for w in wire}[TaskStatus.FAILED] == 1
    assert FINISHED == ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED") and "TASK_STATUS_QUEUED" not in FINISHED
    assert [s.finished for s in TaskStatus] == [False, False, True, True]
    with pytest.raises(ValueError, match="TASK_STATUS_DONE"):
        TaskStatus("TASK_STATUS_DONE")


def test_task_files_are_made_by_one_function_and_refuse_an_unknown_status(store):
    from wanlab.tasks.files import task_file_data
    from wanlab.tasks.shape import make_task_result

    queue = TaskQueue(FakeBackend(), store)
    queued = TaskFiles(store.path).read(queue.wait(queue.submit(_request(75)), timeout=30)["task"]["task_id"])
    queue.close()
    task_id, params = str(uuid.uuid4()), _request(76)
    result = make_task_result(task_id=task_id, status=TaskStatus.FAILED, reason="no", submitted=1.5, finished=2.5)
    data = task_file_data(task_id=task_id, status=TaskStatus.FAILED, reason="no", params=params, result=result,
                          submitted=1.5, finished=2.5, owner="someone", options={"webhook": {"url": "https://x"}})
    assert set(data) | {"format"} == set(queued)  # the same fields as the queue's own files
    assert (data["key"], data["key_parts"], data["accel"], data["run_key"], data["started"]) == (None,) * 5
    TaskFiles(store.path).write(data)
    written = TaskFiles(store.path).read(task_id)
    assert written == {"format": queued["format"], **json.loads(json.dumps(data))}
    assert written["status"] == "TASK_STATUS_FAILED"
    assert read_task_result(store, task_id) == json.loads(json.dumps(result))
    with pytest.raises(ValueError, match="task status: must be one of TASK_STATUS_QUEUED, .*; got 'DONE'"):
        TaskFiles(store.path).write({**data, "status": "DONE"})


def test_a_task_abandoned_at_shutdown_is_written_back_as_queued_and_runs_once_more(store):
    """A server whose drain time ran out: the running task is written back as queued, the end of its job
    is ignored (no run, no file written after), and the next queue on the store runs it once."""
    first = TaskQueue(FakeBackend(max_in_flight=1, step_seconds=0.4), store)
    task_id = first.submit(_request(40, steps=3))
    deadline = time.monotonic() + 30
    while first.result(task_id)["task"]["status"] != TaskStatus.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(TaskError, match="for a closed queue"):
        first.abandon()
    first.close(timeout=0)
    assert first.abandon() == [task_id] and first.abandon() == []
    assert TaskFiles(store.path).read(task_id)["status"] == TaskStatus.QUEUED
    time.sleep(1.6)  # the abandoned job ends meanwhile: nothing of it may land
    assert TaskFiles(store.path).read(task_id)["status"] == TaskStatus.QUEUED and list(store.runs()) == []
    backend = FakeBackend(max_in_flight=1)
    second = TaskQueue(backend, store)
    assert second.wait(task_id, timeout=60)["task"]["status"] == TaskStatus.SUCCEED
    assert [job.params.seed for job in backend.ran] == [40] and len(list(store.runs())) == 1
    second.close()
