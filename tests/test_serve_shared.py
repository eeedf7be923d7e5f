"""A shared ``wanlab serve`` (tiny model, two keys, one server for the module) as several clients find it:
one key cannot fill the queue (429 naming the per-key limit, and the whole queue's), keys are served in
turn, a submit whose answer was lost is not paid twice (the ``Idempotency-Key``), and a long poll of
``task-result`` answers as soon as the task changes."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import httpx
import pytest

import wanlab
from tests.helpers import accepted
from wanlab.client import RetryPolicy, connect
from wanlab.server.testing import start_server
from wanlab.sweep import Sweep
from wanlab.taskstatus import TaskStatus

SUBMIT = "/v3/async/wan-t2v"
RESULT = "/v3/async/task-result"
SMALL = dict(width=32, height=32, num_frames=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("serve-fair") / "store", keys=2,
                       args=["--queue-size", "5", "--max-queued-per-key", "3", "--no-access-log"])
    yield srv
    srv.stop()


FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, busy_s=60.0)


class LosingProxy:
    """A loopback proxy in front of a server that forwards every request and, for the next ``lose[prompt]``
    submits of a prompt, drops the connection instead of passing the answer on (the server has accepted the
    task: the client cannot tell). ``posts`` counts the submits it forwarded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60.0)
        self.lose: dict[str, int] = {}
        self.posts = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self.forward(None)

            def do_POST(self) -> None:
                self.forward(self.rfile.read(int(self.headers.get("content-length") or 0)))

            def forward(self, data) -> None:
                skip = ("connection", "content-length", "transfer-encoding", "accept-encoding")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = proxy.upstream.request(self.command, self.path, content=data, headers=headers)
                if data is not None:
                    proxy.posts += 1
                    prompt = json.loads(data).get("prompt")
                    if proxy.lose.get(prompt, 0) > 0:
                        proxy.lose[prompt] -= 1
                        self.connection.shutdown(socket.SHUT_RDWR)  # accepted there; the answer is lost
                        return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("connection", "content-length", "transfer-encoding", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


@pytest.fixture()
def proxy(server):
    losing = LosingProxy(server.base_url)
    yield losing
    losing.close()


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
        while status(a, first)["status"] != TaskStatus.PROCESSING:
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
            assert result["task"]["status"] == TaskStatus.SUCCEED
            started[task_id] = int(result["extra"]["debug_info"]["execute_time_ms"])
        order = sorted(started, key=started.__getitem__)
        taken, waiting = mine[:-3], mine[-3:]  # taken by the backend before b came
        # b had no task run yet, a just had one: b first, then in turn
        assert order == [first, *taken, theirs[0], waiting[0], theirs[1], waiting[1], waiting[2]], order


def test_the_per_key_limit_is_validated_and_defaults_to_a_quarter_of_the_queue():
    from wanlab.errors import ParamError
    from wanlab.server.config import ServerConfig

    assert ServerConfig(model="tiny", no_auth=True).max_queued_per_key == 25
    assert ServerConfig(model="tiny", no_auth=True, queue_size=2).max_queued_per_key == 1
    with pytest.raises(ParamError,
                       match=r"max_queued_per_key: must be an integer in 1\.\.8 \(at most queue_size\); got 9"):
        ServerConfig(model="tiny", no_auth=True, queue_size=8, max_queued_per_key=9)
    with pytest.raises(ParamError, match="max_queued_per_key"):
        ServerConfig(model="tiny", no_auth=True, max_queued_per_key=0)


# --- never paid twice ----------------------------------------------------------------------------------
def test_a_lost_answer_is_asked_again_under_its_idempotency_key_now_and_in_a_rerun(server, proxy, tmp_path):
    remote = connect(proxy.url, server.key, retry=FAST)
    assert remote.kind == "wanlab" and remote.idempotency_header == "Idempotency-Key"
    sweep = Sweep(base=dict(prompt="lost once", steps=2, **SMALL), grid={"seed": [1, 2]}, name="lost")
    proxy.lose["lost once"] = 99
    result = sweep.run(remote, tmp_path / "store", progress=False, metrics=False)
    # every answer lost, each point's POST sent FAST.attempts times: the server accepted each point once
    assert list(result.df["status"]) == ["failed", "failed"], list(result.df["error"])
    assert all("may have accepted it" in e and "same idempotency key" in e for e in result.df["error"])
    assert proxy.posts == 2 * FAST.attempts and len(accepted(server, "lost once")) == 2
    pending = wanlab.Store(tmp_path / "store").pending()
    assert len(pending) == 2 and all(p["submitting"] and "task_id" not in p for p in pending.values())
    proxy.lose.clear()  # the rerun asks under the recorded keys and gets the tasks accepted then
    again = sweep.run(remote, tmp_path / "store", progress=False, metrics=False)
    assert (again.df["status"] == "done").all() and len(accepted(server, "lost once")) == 2
    assert sorted(again.store.get(k).record["service"]["task_id"] for k in again.keys) == \
        sorted(t["task_id"] for t in accepted(server, "lost once"))
    assert not wanlab.Store(tmp_path / "store").pending()
    proxy.lose["lost in one try"] = 1  # one lost answer in a run: sent again at once under its key
    before = proxy.posts
    video = remote.generate(prompt="lost in one try", seed=3, steps=2, **SMALL)
    assert proxy.posts == before + 2 and len(accepted(server, "lost in one try")) == 1
    assert video.record["service"]["task_id"] == accepted(server, "lost in one try")[0]["task_id"]


def test_the_same_key_with_another_body_is_a_409_and_keys_hold_across_a_restart(server):
    with server.client() as http, server.client(server.keys[1]) as other:
        first = http.post(SUBMIT, json=body("keyed", 1), headers={"Idempotency-Key": "point-7"})
        assert first.status_code == 200, first.text
        task_id = first.json()["task_id"]
        assert http.post(SUBMIT, json=body("keyed", 1), headers={"Idempotency-Key": "point-7"}).json() == \
            {"task_id": task_id}
        theirs = other.post(SUBMIT, json=body("keyed", 1), headers={"Idempotency-Key": "point-7"})
        assert theirs.status_code == 200 and theirs.json()["task_id"] != task_id  # keys are per API key
        clash = http.post(SUBMIT, json=body("keyed", 2), headers={"Idempotency-Key": "point-7"})
        assert clash.status_code == 409 and clash.json()["metadata"]["field"] == "Idempotency-Key"
        assert clash.json()["message"].startswith("Idempotency-Key: must name one request")
        bad = http.post(SUBMIT, json=body("keyed", 3), headers={"Idempotency-Key": "x" * 256})
        assert bad.status_code == 400 and bad.json()["metadata"]["field"] == "Idempotency-Key"
        assert "256 characters" in bad.json()["message"] and "x" * 50 not in bad.text
    # a restarted server (here: a second service on the same store, with the same keys) knows the key
    from wanlab.server import ServerConfig, Service
    from wanlab.server.errors import ApiError

    keys_file = server.args[server.args.index("--api-keys") + 1]
    again = Service(ServerConfig(model="tiny", api_keys=keys_file, store=str(server.store), allow_local_sizes=True))
    owner = again.authenticate(f"Bearer {server.key}")
    assert again.submit(body("keyed", 1), owner, "point-7") == task_id  # answered even before its model loads
    with pytest.raises(ApiError) as clash:
        again.submit(body("keyed", 2), owner, "point-7")
    assert clash.value.status == 409
    assert len(accepted(server, "keyed")) == 2


# --- the long poll -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["31", "-1", "nan", "inf", "soon", ""])
def test_the_long_poll_bound_is_validated(server, value):
    with server.client() as http:
        answer = http.get(RESULT, params={"task_id": "00000000-0000-4000-8000-000000000000", "wanlab_wait": value})
    assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "wanlab_wait"
    assert answer.json()["message"].startswith("wanlab_wait: must be a number of seconds in 0..30")


def test_a_long_poll_answers_as_soon_as_the_task_changes_and_at_once_when_it_has_ended(server):
    with server.client() as http:
        task_id = http.post(SUBMIT, json=body("long poll", 1, steps=20)).json()["task_id"]
        seen, polls = [], 0
        while not seen or seen[-1][0] not in (TaskStatus.SUCCEED, TaskStatus.FAILED):
            answer = http.get(RESULT, params={"task_id": task_id, "wanlab_wait": "30"})
            polls += 1
            assert answer.status_code == 200, answer.text
            now = (answer.json()["task"]["status"], answer.json()["task"]["progress_percent"])
            assert not seen or now != seen[-1]  # each answer came because something changed
            seen.append(now)
            arrived = time.time()
        result = answer.json()
        assert seen[-1] == (TaskStatus.SUCCEED, 100) and polls <= 25  # about one per step, never per 10 ms
        assert arrived - int(result["extra"]["debug_info"]["complete_time_ms"]) / 1000 < 1.0
        assert result["videos"] and http.get(result["videos"][0]["video_url"]).status_code == 200
        start = time.monotonic()
        assert http.get(RESULT, params={"task_id": task_id, "wanlab_wait": "30"}).json()["task"] == result["task"]
        missing = http.get(RESULT, params={"task_id": "00000000-0000-4000-8000-000000000000", "wanlab_wait": "30"})
        assert missing.status_code == 404 and time.monotonic() - start < 2.0  # neither waits


def test_the_client_long_polls_a_wanlab_server_and_polls_other_services(server):
    remote = connect(server.base_url, server.key)
    assert remote.long_poll_s == 25.0  # 30 s offered, 5 s under the 30 s read timeout
    video = remote.generate(prompt="long polled", seed=1, steps=20, **SMALL)
    assert video.frames.shape == (5, 32, 32, 3) and remote.stats["polls"] <= 25
    assert connect(server.base_url, server.key, timeout=5.0).long_poll_s is None  # no room under the timeout
    assert connect(server.base_url, server.key, kind="api", rules="local").long_poll_s is None  # the API's mode


class _Queue:
    """What the long poll asks of a task queue: listeners told of each change, and its tasks."""

    def __init__(self) -> None:
        self.listeners: set = set()

    def listen(self, fn) -> None:
        self.listeners.add(fn)

    def unlisten(self, fn) -> None:
        self.listeners.discard(fn)

    def task(self, task_id):
        return object()


class _Service:
    def __init__(self) -> None:
        self.queue = _Queue()
        self.status, self.progress = TaskStatus.QUEUED, 0

    def result(self, task_id, owner, base):
        return {"task": {"status": self.status, "progress_percent": self.progress}}

    def change(self, after: float, **fields) -> None:
        """From another thread, as the queue's threads do: change the task and tell the listeners."""
        def later():
            time.sleep(after)
            self.status = fields.get("status", self.status)
            self.progress = fields.get("progress", self.progress)
            for fn in list(self.queue.listeners):
                fn()
        threading.Thread(target=later, daemon=True).start()


@pytest.mark.parametrize("fields, least, most", [
    ({"status": TaskStatus.PROCESSING}, 0.1, 2.0),  # a status change: answered at once (not after 10 s)
    ({"progress": 50}, 0.5, 2.0),  # progress alone: not before 0.5 s from the request
])
def test_a_long_poll_wakes_on_the_queues_change(fields, least, most):
    import asyncio

    from wanlab.server.longpoll import answer

    service = _Service()
    service.change(0.1, **fields)
    start = time.monotonic()
    result = asyncio.run(answer(service, "t", None, "http://x", 10.0))
    took = time.monotonic() - start
    assert least <= took < most and result["task"] == {"status": service.status, "progress_percent": service.progress}
    assert not service.queue.listeners  # let go of


def test_a_long_poll_ends_when_the_server_stops_and_when_its_time_is_up():
    import asyncio

    from wanlab.server.longpoll import answer

    service = _Service()
    stop_at = time.monotonic() + 0.2
    start = time.monotonic()
    asyncio.run(answer(service, "t", None, "http://x", 30.0, stopping=lambda: time.monotonic() > stop_at))
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    assert asyncio.run(answer(service, "t", None, "http://x", 0.3))["task"]["status"] == TaskStatus.QUEUED
    assert 0.3 <= time.monotonic() - start < 2.0
