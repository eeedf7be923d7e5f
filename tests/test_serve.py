"""``wanlab serve`` through real HTTP: one uvicorn subprocess on 127.0.0.1 (tiny model, local sizes, two
API keys, webhooks to a loopback receiver, a LoRA folder) serves every test of this module.

Every route and status code, the published result shape field for field, served videos equal to
in-process generation, signed URLs and range requests, key isolation, LoRA paths, fast mode and
webhooks with retries and test mode. Restarts after ``kill -9`` and SIGTERM: test_serve_restart.py;
the API's own size rules, 429 and schema fuzzing: test_serve_api.py.
"""
from __future__ import annotations

import json
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import httpx
import numpy as np
import pytest

from wanlab.server.testing import WebhookReceiver, start_server
from wanlab.taskstatus import TaskStatus

PROMPT = "a paper boat drifting down a rain gutter"


def body(seed: int, **fields) -> dict:
    return {"prompt": PROMPT, "width": 32, "height": 32, "num_frames": 5, "steps": 2, "seed": seed, **fields}


@pytest.fixture(scope="module")
def hooks():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, pipe) -> Path:
    from tests.helpers import make_lora_files

    folder = tmp_path_factory.mktemp("server-loras")
    make_lora_files(pipe, folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, hooks, lora_dir):
    root = tmp_path_factory.mktemp("serve")
    srv = start_server(model="tiny", store=root / "store", keys=2, args=[
        "--webhook-allow", hooks.host, "--webhook-backoff", "0.05", "--lora-dir", str(lora_dir),
        "--lora-cache", str(root / "lora-cache")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as client:
        yield client


def submit(http, payload) -> str:
    response = http.post("/v3/async/wan-t2v", json=payload)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["task_id"]
    return response.json()["task_id"]


def check_published_shape(result: dict) -> None:
    """notes/hosted-api.md, field for field."""
    assert list(result) == ["task", "images", "videos", "audios", "extra"]
    task = result["task"]
    assert list(task) == ["task_id", "task_type", "status", "reason", "eta", "progress_percent"]
    assert task["task_type"] == "WAN_TXT_TO_VIDEO" and isinstance(task["eta"], int) and task["eta"] >= 0
    assert isinstance(task["progress_percent"], int) and 0 <= task["progress_percent"] <= 100
    assert result["images"] == [] and result["audios"] == []
    for video in result["videos"]:
        assert list(video) == ["video_url", "video_url_ttl", "video_type"]
        assert video["video_type"] == "mp4" and video["video_url_ttl"] == "3600"
        assert video["video_url"].startswith("http://127.0.0.1:")
    extra = result["extra"]
    assert set(extra) == {"seed", "debug_info", "wanlab"} and isinstance(extra["seed"], str)
    assert list(extra["debug_info"]) == ["request_info", "submit_time_ms", "execute_time_ms", "complete_time_ms"]
    assert "store" not in extra["wanlab"]  # no server paths


def test_health_is_the_served_models_identity(server):
    import wanlab

    response = httpx.get(f"{server.base_url}/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["version"] == wanlab.__version__
    assert health["model"]["fingerprint"] == wanlab.identity("tiny").fingerprint
    assert health["model"]["model_id"] == "tiny" and health["model"]["rules"] == "local"
    assert health["server"]["auth"] is True and health["server"]["webhooks"] is True
    assert set(health["queue"]) == {TaskStatus.QUEUED, TaskStatus.PROCESSING, "finished"}


def test_a_task_goes_queued_processing_succeed_in_the_published_shape(server, http):
    task_id = submit(http, body(11, steps=6))
    assert str(uuid.UUID(task_id, version=4)) == task_id
    seen, progress = [], []
    while True:
        result = http.get("/v3/async/task-result", params={"task_id": task_id}).json()
        check_published_shape(result)
        status = result["task"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        progress.append(result["task"]["progress_percent"])
        if status in (TaskStatus.SUCCEED, TaskStatus.FAILED):
            break
        assert result["videos"] == [] and result["task"]["progress_percent"] < 100
        time.sleep(0.02)
    assert seen[-1] == TaskStatus.SUCCEED
    assert set(seen) <= {TaskStatus.QUEUED, TaskStatus.PROCESSING, TaskStatus.SUCCEED}
    assert progress == sorted(progress) and progress[-1] == 100 and result["task"]["eta"] == 0
    assert result["extra"]["seed"] == "11" and len(result["videos"]) == 1
    wanlab = result["extra"]["wanlab"]
    assert wanlab["params"]["steps"] == 6 and wanlab["params"]["width"] == 32 and wanlab["accel"] is None
    assert set(wanlab["files"]) == {"lossless_url", "record_url", "sha256"}
    assert wanlab["service"]["safety_checker"].startswith("none")
    info = result["extra"]["debug_info"]
    assert int(info["submit_time_ms"]) <= int(info["execute_time_ms"]) <= int(info["complete_time_ms"])
    assert json.loads(info["request_info"])["steps"] == 6


def test_a_drawn_seed_is_reported(server, http):
    task_id = submit(http, body(-1))
    result = server.wait_task(task_id)
    seed = int(result["extra"]["seed"])
    assert 0 <= seed <= 9_999_999_999 and result["extra"]["wanlab"]["params"]["seed"] == seed


def test_the_served_video_is_the_generated_one_bit_for_bit(server, http, pipe):
    import torch

    from wanlab.frames import frames_digest
    from wanlab.video import read_frames

    result = server.wait_task(submit(http, body(12)))
    files = result["extra"]["wanlab"]["files"]
    record = httpx.get(files["record_url"]).json()
    lossless = httpx.get(files["lossless_url"])
    assert lossless.status_code == 200 and lossless.headers["content-type"] == "video/x-matroska"
    copy = Path(server.store.parent / "downloaded.mkv")
    copy.write_bytes(lossless.content)
    frames, _ = read_frames(copy)
    assert frames_digest(frames) == record["digest"]
    threads = torch.get_num_threads()
    torch.set_num_threads(record["environment"]["torch_threads"])
    try:
        local = pipe.generate(prompt=PROMPT, width=32, height=32, num_frames=5, steps=2, seed=12)
    finally:
        torch.set_num_threads(threads)
    assert local.digest == record["digest"] and np.array_equal(local.frames, frames)


def test_video_urls_serve_the_file_with_ranges_and_head(server, http):
    result = server.wait_task(submit(http, body(13)))
    url = result["videos"][0]["video_url"]
    on_disk = (server.store / result["extra"]["wanlab"]["run_key"] / "video.mp4").read_bytes()
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == on_disk and whole.headers["content-type"] == "video/mp4"
    assert whole.content[4:8] == b"ftyp" and whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == on_disk[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(on_disk)}"
    tail = httpx.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == on_disk[-16:]
    assert httpx.get(url, headers={"Range": f"bytes={len(on_disk) + 10}-"}).status_code == 416
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(on_disk)


def _signer(server, ttl: int):
    from wanlab.server.auth import ServerSecret
    from wanlab.server.urls import UrlSigner

    return UrlSigner(ServerSecret.of_store(server.store).derive("urls"), ttl)


def test_signed_urls_refuse_tampering_expiry_and_paths_outside_a_run(server, http):
    result = server.wait_task(submit(http, body(14)))
    url = result["videos"][0]["video_url"]
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    base = f"{parsed.scheme}://{parsed.netloc}"

    def get(path: str, **params):
        return httpx.get(base + path, params=params)

    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    assert get(parsed.path, expires=query["expires"], signature=flipped).json()["reason"] == "INVALID_SIGNATURE"
    later = str(int(query["expires"]) + 3600)
    assert get(parsed.path, expires=later, signature=query["signature"]).status_code == 403
    assert get(parsed.path).status_code == 403
    other = parsed.path.replace("video.mp4", "video.lossless.mkv")
    assert get(other, **query).status_code == 403  # a signature is good for its own path only
    run_key = result["extra"]["wanlab"]["run_key"]
    expired = _signer(server, 1).url(base, run_key, "video.mp4", now=time.time() - 10)
    answer = httpx.get(expired)
    assert answer.status_code == 403 and answer.json()["reason"] == "URL_EXPIRED"
    signer, expires = _signer(server, 60), int(time.time()) + 60
    for name in ("metrics.json", "..%2F..%2Fserver%2Fsecret.key"):  # signed, but not a file URLs may name
        path = f"/v3/files/{run_key}/{name}"
        answer = get(path, expires=str(expires), signature=signer.signature(path, expires))
        assert answer.status_code == 404 and answer.json()["code"] == 404
    connection = http_client(base)
    for raw in (f"/v3/files/{run_key}/../../server/secret.key", "/v3/files/../server/secret.key",
                f"/v3/files/{run_key}/%2e%2e/%2e%2e/server/secret.key"):
        connection.request("GET", raw)
        answer = connection.getresponse()
        data = answer.read()
        assert answer.status in (403, 404) and json.loads(data)["code"] == answer.status
        assert (server.store / "server" / "secret.key").read_bytes() not in data


def http_client(base: str) -> HTTPConnection:
    """A connection that sends paths exactly as given (httpx would resolve '..')."""
    parsed = urlparse(base)
    return HTTPConnection(parsed.hostname, parsed.port, timeout=10)


def test_keys_are_required_checked_and_isolate_their_tasks(server, http):
    url = f"{server.base_url}/v3/async/task-result"
    task_id = submit(http, body(15))
    server.wait_task(task_id)
    for headers in ({}, {"Authorization": "Bearer not-a-key-of-this-server"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {server.key}x"}, {"Authorization": "Bearer"}):
        answer = httpx.get(url, params={"task_id": task_id}, headers=headers)
        assert answer.status_code == 401 and answer.json()["reason"] == "INVALID_API_KEY"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert httpx.post(f"{server.base_url}/v3/async/wan-t2v", json=body(1), headers=headers).status_code == 401
    other = server.headers(server.keys[1])
    theirs = httpx.get(url, params={"task_id": task_id}, headers=other)
    unknown_id = str(uuid.uuid4())
    unknown = httpx.get(url, params={"task_id": unknown_id}, headers=other)
    assert theirs.status_code == unknown.status_code == 404
    assert json.loads(theirs.text.replace(task_id, "ID")) == json.loads(unknown.text.replace(unknown_id, "ID"))
    assert http.get(url, params={"task_id": task_id}).status_code == 200  # its own key reads it
    assert http.get(url, params={"task_id": "../../etc/passwd"}).status_code == 404
    task_file = json.loads((server.store / "tasks" / f"{task_id}.json").read_text())
    assert len(task_file["owner"]) == 64 and task_file["owner"] not in server.keys
    for key in server.keys:  # never stored, never logged
        assert key not in server.log()
        for file in server.store.rglob("*"):
            if file.is_file() and file.suffix in (".json", ".log", ".txt"):
                assert key not in file.read_text(errors="replace"), file


@pytest.mark.parametrize("fields, field, rule_part", [
    ({"steps": 50}, "steps", "1..40"),
    ({"guidance_scale": "high"}, "guidance_scale", "0..10"),
    ({"width": 33}, "width", "multiple of 16"),
    ({"seed": -2}, "seed", "-1..9999999999"),
    ({"seed": 1.5}, "seed", "integer"),
    ({"prompt": ""}, "prompt", "1..2000"),
    ({"num_frames": 6}, "num_frames", "4k+1"),
    ({"flow_shift": True}, "flow_shift", "1..10"),
    ({"loras": [{"path": "a.safetensors", "scale": 5}]}, "loras.scale", "0..4"),
    ({"loras": [{"path": "a.safetensors", "weight": 1}]}, "loras.weight", "a field of a LoRA"),
    ({"loras": {"path": "a.safetensors"}}, "loras", "list"),
    ({"loras": [{"path": f"{i}.safetensors"} for i in range(4)]}, "loras", "at most 3"),
    ({"model_name": "sdxl"}, "model_name", "wan2.1-t2v"),
    ({"enable_safety_checker": "yes"}, "enable_safety_checker", "True or False"),
    ({"fast_mode": 1}, "fast_mode", "True or False"),
    ({"extra": {"webhook": {"url": "http://x", "test_mode": {"return_task_status": "DONE"}}}},
     "extra.webhook.test_mode.return_task_status", "TASK_STATUS_SUCCEED"),
    ({"extra": {"hook": {}}}, "extra.hook", "a field of extra"),
])
def test_every_invalid_field_is_a_400_naming_field_rule_and_value(http, fields, field, rule_part):
    answer = http.post("/v3/async/wan-t2v", json={**body(1), **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["code"] == 400 and error["reason"] == "INVALID_REQUEST_BODY"
    assert error["metadata"]["field"] == field and rule_part in error["metadata"]["rule"]
    assert error["message"].startswith(f"{field}: must be ") and "; got " in error["message"]
    assert "detail" not in error


def test_unknown_and_missing_fields_are_named(http):
    answer = http.post("/v3/async/wan-t2v", json=body(1, fps=16, duration=5))
    assert answer.status_code == 400
    assert answer.json()["metadata"]["fields"] == ["duration", "fps"]
    assert answer.json()["message"].startswith("duration, fps: must be fields of the Wan 2.1 T2V API")
    missing = http.post("/v3/async/wan-t2v", json={"width": 32, "height": 32})
    assert missing.status_code == 400 and missing.json()["metadata"]["field"] == "prompt"
    for payload in ([body(1)], "a fox", None, 3):
        answer = http.post("/v3/async/wan-t2v", content=json.dumps(payload),
                           headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "body"


def test_model_name_may_name_the_api_model_or_the_served_one(server, http):
    for name in ("wan2.1-t2v", "wan-t2v", "tiny"):
        assert server.wait_task(submit(http, body(16, model_name=name)))["task"]["status"] == TaskStatus.SUCCEED


def test_bodies_that_are_not_json_too_large_or_malformed(server, http):
    url = "/v3/async/wan-t2v"
    assert http.post(url, content=b"prompt=a fox", headers={"Content-Type": "application/x-www-form-urlencoded"}
                     ).json()["code"] == 415
    assert http.post(url, content=b'{"prompt": "a fox"}', headers={"Content-Type": "text/plain"}).status_code == 415
    assert http.post(url, content=b'{"prompt": "a fox"}').status_code == 415  # no Content-Type at all
    json_type = {"Content-Type": "application/json"}
    for raw in (b"{", b'{"prompt": "a", "seed": NaN}', b'{"prompt": "a", "guidance_scale": Infinity}', b"\xff\xfe",
                b"[" * 5000 + b"]" * 5000, b""):
        answer = http.post(url, content=raw, headers=json_type)
        assert answer.status_code == 400 and answer.json()["reason"] == "INVALID_JSON", raw[:20]
    big = json.dumps(body(1, negative_prompt="x" * 70_000)).encode()
    answer = http.post(url, content=big, headers=json_type)
    assert answer.status_code == 413 and answer.json()["reason"] == "REQUEST_TOO_LARGE"
    chunked = http.post(url, content=iter([big[:40_000], big[40_000:]]), headers=json_type)  # no Content-Length
    assert chunked.status_code == 413
    assert http.post(url, content=json.dumps(body(1)).encode(),
                     headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_framework_errors_come_in_the_same_shape(server, http):
    missing = http.get("/v3/async/task-result")
    assert missing.status_code == 400 and missing.json()["metadata"]["field"] == "task_id"
    assert "detail" not in missing.json()
    for method, path in (("GET", "/v3/async/wan-t2v"), ("DELETE", "/v3/async/task-result"), ("GET", "/v3/nothing")):
        answer = http.request(method, path)
        assert answer.status_code in (404, 405) and set(answer.json()) == {"code", "reason", "message", "metadata"}
    assert http.get("/v3/async/task-result", params={"task_id": str(uuid.uuid4())}).json()["reason"] == "TASK_NOT_FOUND"


def test_lora_paths_in_the_allowed_folder_hub_cache_and_urls(server, http, lora_dir):
    name = "style_diffusers.safetensors"
    by_name = server.wait_task(submit(http, body(17, loras=[{"path": name, "scale": 0.8}])))
    by_path = server.wait_task(submit(http, body(17, loras=[{"path": str(lora_dir / name), "scale": 0.8}])))
    plain = server.wait_task(submit(http, body(17)))
    assert by_name["task"]["status"] == by_path["task"]["status"] == TaskStatus.SUCCEED, by_name["task"]["reason"]
    record = httpx.get(by_name["extra"]["wanlab"]["files"]["record_url"]).json()
    assert record["loras"][0]["source"] == "file" and len(record["loras"][0]["sha256"]) == 64
    assert by_name["extra"]["wanlab"]["run_key"] == by_path["extra"]["wanlab"]["run_key"]  # the same file
    assert by_name["extra"]["wanlab"]["run_key"] != plain["extra"]["wanlab"]["run_key"]
    outside = lora_dir.parent / "outside.safetensors"
    outside.write_bytes((lora_dir / name).read_bytes())
    for path in (f"../{outside.name}", str(outside), "/etc/passwd", "nobody-here/no-such-lora",
                 "http://example.org/a.safetensors", "ftp://example.org/a.safetensors"):
        answer = http.post("/v3/async/wan-t2v", json=body(18, loras=[{"path": path}]))
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()
        assert error["metadata"]["field"] == "loras[0].path" and "\n" not in error["message"]
        assert error["message"].startswith("loras[0].path: ")
    offline = server.wait_task(submit(http, body(18, loras=[{"path": "https://lora.invalid/style.safetensors"}])))
    reason = offline["task"]["reason"]
    assert offline["task"]["status"] == TaskStatus.FAILED and "lora.invalid" in reason
    assert "\n" not in reason and "Traceback" not in reason and offline["videos"] == []


def test_fast_mode_runs_the_documented_preset_and_the_safety_checker_is_stated(server, http):
    from wanlab.accel import Accel
    from wanlab.server.config import FAST_MODE_PRESET

    fast = server.wait_task(submit(http, body(19, fast_mode=True, enable_safety_checker=False)))
    assert fast["task"]["status"] == TaskStatus.SUCCEED, fast["task"]["reason"]
    wanlab = fast["extra"]["wanlab"]
    assert wanlab["accel"] == Accel.preset(FAST_MODE_PRESET).to_dict()
    assert wanlab["service"]["fast_mode"] is True and wanlab["service"]["enable_safety_checker"] is False
    record = httpx.get(wanlab["files"]["record_url"]).json()
    assert record["accel"]["cache"] == Accel.preset(FAST_MODE_PRESET).cache
    exact = server.wait_task(submit(http, body(19)))
    assert exact["extra"]["wanlab"]["run_key"] != wanlab["run_key"]
    assert httpx.get(f"{server.base_url}/health").json()["server"]["fast_mode_accel"] == FAST_MODE_PRESET


def test_a_webhook_announces_the_final_result(server, http, hooks):
    task_id = submit(http, body(20, extra={"webhook": {"url": hooks.url("/ok/final?token=abc")}}))
    (event,) = hooks.wait(1, "/ok/final?token=abc")
    assert event["event_type"] == "ASYNC_TASK_RESULT"
    payload = event["payload"]
    check_published_shape(payload)
    assert payload["task"]["task_id"] == task_id and payload["task"]["status"] == TaskStatus.SUCCEED
    assert httpx.get(payload["videos"][0]["video_url"]).status_code == 200
    result = server.wait_task(task_id)
    assert result["extra"]["wanlab"]["webhook"] == {"state": "delivered", "attempts": 1, "test_mode": False}
    assert "token=abc" not in server.log()  # the receiver's query is not logged


def test_a_failing_webhook_is_retried_with_backoff_and_each_try_logged(server, http, hooks):
    task_id = submit(http, body(21, extra={"webhook": {"url": hooks.url("/fail/2/retry")}}))
    events = hooks.wait(3, "/fail/2/retry")
    assert [e["payload"]["task"]["task_id"] for e in events] == [task_id] * 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = json.loads((server.store / "webhooks" / f"{task_id}.json").read_text())
        if record["state"] == "delivered":
            break
        time.sleep(0.05)
    assert record["state"] == "delivered" and [a["status"] for a in record["attempts"]] == [500, 500, 200]
    assert server.log().count(f"webhook for task {task_id}, try") == 3


def test_webhook_test_mode_sends_a_simulated_event_without_running(server, http, hooks):
    for status in (TaskStatus.SUCCEED, TaskStatus.FAILED):
        path = f"/ok/test-{status}"
        hook = {"url": hooks.url(path), "test_mode": {"enabled": True, "return_task_status": status}}
        task_id = submit(http, body(22, extra={"webhook": hook}))
        (event,) = hooks.wait(1, path)
        assert event["payload"]["task"] == {**event["payload"]["task"], "task_id": task_id, "status": status}
        result = http.get("/v3/async/task-result", params={"task_id": task_id}).json()
        check_published_shape(result)
        assert result["task"]["status"] == status and result["videos"] == []
        assert (result["task"]["reason"] == "") == (status == TaskStatus.SUCCEED)
        assert result["extra"]["wanlab"]["webhook"]["test_mode"] is True


def test_webhook_destinations_are_limited_to_the_allow_list_also_after_redirects(server, http, hooks):
    for url in (f"http://127.0.0.1:{hooks.port + 1 if hooks.port < 65535 else 1}/x", "http://10.0.0.1/x",
                f"http://localhost:{hooks.port}/x", "file:///etc/passwd", f"http://user:pw@{hooks.host}/x"):
        answer = http.post("/v3/async/wan-t2v", json=body(23, extra={"webhook": {"url": url}}))
        assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "extra.webhook.url", url
    target = quote(f"http://127.0.0.2:{hooks.port}/ok/after-redirect", safe="")
    path = f"/redirect-307/{target}"  # a redirect that keeps the POST is followed only to a listed host
    task_id = submit(http, body(23, extra={"webhook": {"url": hooks.url(path)}}))
    hooks.wait(1, path)
    record = settled_webhook(server, task_id)
    assert record["state"] == "failed" and len(record["attempts"]) == 1  # refused: not retried
    assert "must go to one of the allowed hosts" in record["attempts"][0]["error"]
    assert hooks.posts("/ok/after-redirect") == []
    path = "/redirect/" + quote(hooks.url("/ok/landing"), safe="")  # 302 on a POST: never resent as a GET
    task_id = submit(http, body(24, extra={"webhook": {"url": hooks.url(path)}}))
    record = settled_webhook(server, task_id, timeout=30)
    assert record["state"] == "failed" and {a["status"] for a in record["attempts"]} == {302}
    assert hooks.posts("/ok/landing") == []


def settled_webhook(server, task_id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while (record := json.loads((server.store / "webhooks" / f"{task_id}.json").read_text()))["state"] == "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return record
