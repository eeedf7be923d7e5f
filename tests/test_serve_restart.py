"""Nothing accepted is lost, told as one server life on one store (real ``wanlab serve`` subprocesses on
127.0.0.1; each start loads a model, so the phases share them):

1. while the model loads: ``/health`` and ``POST`` answer 503 with Retry-After;
2. ``kill -9`` mid-generation; then two servers start on the store at once and every accepted task
   is run once and finished, both answering for all of them;
3. SIGTERM: the running task finishes, queued ones stay queued (exit code 0);
4. SIGTERM with ``--drain-timeout``: the running task is written back as queued at once;
5. a restart runs what 3 and 4 left, from both servers' tasks.
"""
from __future__ import annotations

import time

import httpx

from wanlab.server.testing import start_server
from wanlab.store import Store
from wanlab.tasks import TaskFiles
from wanlab.taskstatus import TaskStatus

#: Slow enough on tiny to be caught mid-generation (about two seconds each on one thread).
SLOW = {"prompt": "a lighthouse beam sweeping over fog", "width": 64, "height": 64, "num_frames": 17, "steps": 40}


def submit_all(server, seeds, **fields) -> list[str]:
    with server.client() as http:
        return [http.post("/v3/async/wan-t2v", json={**SLOW, "seed": s, **fields}).json()["task_id"] for s in seeds]


def wait_for_status(server, task_id: str, status: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with server.client() as http:
        while http.get("/v3/async/task-result", params={"task_id": task_id}).json()["task"]["status"] != status:
            assert time.monotonic() < deadline, f"task {task_id} never became {status}"
            time.sleep(0.02)


def watch_loading(server) -> bool:
    """Poll a starting server until it is ready; True when it answered 503 "loading" to a submit meanwhile."""
    saw_loading = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{server.base_url}/health", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if health.status_code == 200:
            return saw_loading
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert health.headers["retry-after"] == "5"
        answer = httpx.post(f"{server.base_url}/v3/async/wan-t2v", json={**SLOW, "seed": 1}, headers=server.headers())
        if answer.status_code == 503:
            assert answer.json()["reason"] == "MODEL_LOADING" and answer.headers["retry-after"] == "5"
            saw_loading = True
        time.sleep(0.05)
    raise AssertionError(f"the server was not ready within 180 s:\n{server.log()[-3000:]}")


def test_a_server_life_loses_no_accepted_task(tmp_path):
    servers = []
    try:
        first = start_server(store=tmp_path / "store", wait=False)
        servers.append(first)
        assert watch_loading(first)  # 1
        files = TaskFiles(first.store)

        crashed = submit_all(first, range(1, 4))  # 2
        wait_for_status(first, crashed[0], TaskStatus.PROCESSING)
        deadline = time.monotonic() + 30  # the answer says PROCESSING a moment before the task file does
        while files.read(crashed[0])["status"] != TaskStatus.PROCESSING and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
        assert first.process.returncode == -9
        status = {task_id: files.read(task_id)["status"] for task_id in crashed}
        assert status[crashed[0]] == TaskStatus.PROCESSING
        assert set(status.values()) <= {TaskStatus.QUEUED, TaskStatus.PROCESSING}
        second = start_server(store=first.store, keys=first.keys, wait=False)
        third = start_server(store=first.store, keys=first.keys, wait=False, args=["--drain-timeout", "0.2"])
        servers += [second, third]
        second.wait_ready(), third.wait_ready()
        results = {task_id: second.wait_task(task_id) for task_id in crashed}
        assert [r["task"]["status"] for r in results.values()] == [TaskStatus.SUCCEED] * 3
        with third.client() as http:
            for task_id in crashed:
                answer = http.get("/v3/async/task-result", params={"task_id": task_id}).json()
                assert answer["task"]["status"] == TaskStatus.SUCCEED
        keys = {r["extra"]["wanlab"]["run_key"] for r in results.values()}
        store = Store(first.store)
        assert len(keys) == 3 and set(store.df["key"]) == keys  # each task once; the store whole
        # the kill may have caught the first server storing crashed[0]: its build folder stays (never a run)
        leftovers = [p.name for p in first.store.glob(".tmp-*")]
        assert len(leftovers) <= 1 and all(name.split("-")[1] in keys for name in leftovers), leftovers
        for result in results.values():
            assert store.get(result["extra"]["wanlab"]["run_key"]).params.seed == int(result["extra"]["seed"])

        stopped = submit_all(second, range(10, 13))  # 3
        wait_for_status(second, stopped[0], TaskStatus.PROCESSING)
        assert second.stop() == 0
        assert files.read(stopped[0])["status"] == TaskStatus.SUCCEED  # finished before the server stopped
        assert files.read(stopped[2])["status"] == TaskStatus.QUEUED  # never started: kept for the next server
        assert "Application shutdown complete" in second.log()

        (drained,) = submit_all(third, [20], width=128, height=128)  # 4: long enough to outlast the server's shutdown
        wait_for_status(third, drained, TaskStatus.PROCESSING)
        started = time.monotonic()
        assert third.stop() == 0 and time.monotonic() - started < 30
        data = files.read(drained)
        assert data["status"] == TaskStatus.QUEUED and data["result"]["task"]["status"] == TaskStatus.QUEUED
        assert "written back as queued" in third.log()

        second.restart()  # 5
        for task_id in [*stopped, drained]:
            assert second.wait_task(task_id)["task"]["status"] == TaskStatus.SUCCEED
        assert len(Store(first.store).df) == 7
    finally:
        for server in servers:
            server.kill()
