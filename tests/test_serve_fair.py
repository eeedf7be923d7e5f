"""A shared ``wanlab serve`` (tiny model, two keys, one server for the module) as several clients find it:
one key cannot fill the queue (429 naming the per-key limit, and the whole queue's), keys are served in
turn, a submit whose answer was lost is not paid twice (the ``Idempotency-Key``), and a long poll of
``task-result`` answers as soon as the task changes."""
from __future__ import annotations

import time

import httpx
import pytest

from wanlab.server.testing import start_server

SUBMIT = "/v3/async/wan-t2v"
RESULT = "/v3/async/task-result"
SMALL = dict(width=32, height=32, num_frames=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("serve-fair") / "store", keys=2,
                       args=["--queue-size", "5", "--max-queued-per-key", "3", "--no-access-log"])
    yield srv
    srv.stop()


def body(prompt: str, seed: int, steps: int = 2) -> dict:
    return {"prompt": prompt, "seed": seed, "steps": steps, **SMALL}


def status(http: httpx.Client, task_id: str) -> dict:
    return http.get(RESULT, params={"task_id": task_id}).json()["task"]


def test_one_key_cannot_fill_the_queue_and_keys_are_served_in_turn(server):
    a, b = server.client(server.keys[0]), server.client(server.keys[1])
    with a, b:
        long = {**body("fair a", 0, steps=40), "width": 64, "height": 64, "num_frames": 17}  # the rest waits
        first = a.post(SUBMIT, json=long).json()["task_id"]
        deadline = time.monotonic() + 60
        while status(a, first)["status"] != "TASK_STATUS_PROCESSING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        mine, over = [], None
        for seed in range(1, 6):  # 3 wait; a backend that takes 2 jobs at once has taken the first of them
            answer = a.post(SUBMIT, json=body("fair a", seed))
            if answer.status_code != 200:
                over = answer
                break
            mine.append(answer.json()["task_id"])
        assert over is not None and over.status_code == 429 and over.json()["reason"] == "KEY_QUEUE_FULL"
        assert over.json()["metadata"]["limit"] == "max_queued_per_key" and over.json()["metadata"]["value"] == 3
        assert "--max-queued-per-key 3" in over.json()["message"] and int(over.headers["retry-after"]) >= 1
        assert len(mine) in (3, 4), len(mine)
        theirs = [b.post(SUBMIT, json=body("fair b", s)).json()["task_id"] for s in (1, 2)]  # 5 waiting: the queue
        full = b.post(SUBMIT, json=body("fair b", 3))
        assert full.status_code == 429 and full.json()["reason"] == "QUEUE_FULL"
        assert full.json()["metadata"]["limit"] == "queue_size" and "--queue-size 5" in full.json()["message"]
        started = {}
        for key, task_id in [(0, first), *((0, t) for t in mine), *((1, t) for t in theirs)]:
            result = server.wait_task(task_id, key=server.keys[key])
            assert result["task"]["status"] == "TASK_STATUS_SUCCEED"
            started[task_id] = int(result["extra"]["debug_info"]["execute_time_ms"])
        order = sorted(started, key=started.__getitem__)
        taken, waiting = mine[:-3], mine[-3:]  # taken by the backend before b came
        # b had no task run yet, a just had one: b first, then in turn
        assert order == [first, *taken, theirs[0], waiting[0], theirs[1], waiting[1], waiting[2]], order
