"""The hosted API provider's own SDKs, unmodified, against a real ``wanlab serve`` on loopback.

- Python: PyPI ``novita-client`` (a test dependency) sends ``Authorization: Bearer KEY`` and parses every
  task-result into dataclasses whose ``*_time_ms``, ``seed``, ``eta``, ``progress_percent`` and
  ``video_url_ttl`` are ints: every state (queued, processing, succeeded, failed) must parse.
- JavaScript: npm ``novita-sdk`` (installed into tests/js by ``.ci/run``; skipped with the reason where Node
  or the package is absent) sends the bare key and names the frame count ``frames``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from wanlab.server.testing import start_server
from wanlab.taskstatus import TaskStatus

JS = Path(__file__).resolve().parent / "js"
BODY = {"prompt": "a red square moving right quickly", "width": 32, "height": 32, "steps": 2, "seed": 3}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("sdk") / "store", keys=2)
    yield srv
    srv.stop()


def test_the_python_sdk_parses_every_state_and_downloads_the_video(server):
    novita_client = pytest.importorskip("novita_client", reason="novita-client is a test dependency (pip install "
                                                                "'wanlab[test]')")
    from novita_client.proto import V3TaskResponse, V3TaskResponseStatus

    client = novita_client.NovitaClient(server.key, base_url=server.base_url)
    first = client._post("/v3/async/wan-t2v", {**BODY, "num_frames": 33, "steps": 8})["task_id"]
    second = client._post("/v3/async/wan-t2v", {**BODY, "num_frames": 5})["task_id"]
    waiting = client.async_task_result(second)  # queued behind the first: no time reached yet
    assert isinstance(waiting, V3TaskResponse) and waiting.task.status in (V3TaskResponseStatus.TASK_STATUS_QUEUED,
                                                                           V3TaskResponseStatus.TASK_STATUS_PROCESSING)
    assert isinstance(waiting.extra.debug_info.complete_time_ms, int) and waiting.extra.seed == 3
    assert isinstance(waiting.task.eta, int) and isinstance(waiting.task.progress_percent, int)
    seen = []
    done = client.wait_for_task_v3(first, callback=lambda progress: seen.append(progress.task.status))
    assert done.task.status == V3TaskResponseStatus.TASK_STATUS_SUCCEED and done.videos[0].video_url_ttl == 3600
    debug = done.extra.debug_info
    assert 0 < debug.submit_time_ms <= debug.execute_time_ms <= debug.complete_time_ms
    done.download_videos()
    assert done.video_bytes[0][4:8] == b"ftyp"  # an mp4, fetched by its signed URL without the key
    assert client.wait_for_task_v3(second).task.status == V3TaskResponseStatus.TASK_STATUS_SUCCEED
    # a task that fails when it runs (its LoRA URL's host never resolves: .invalid) parses too
    failing = client._post("/v3/async/wan-t2v", {**BODY, "num_frames": 5,
                                                 "loras": [{"path": "https://lora.invalid/x.safetensors"}]})["task_id"]
    failed = client.wait_for_task_v3(failing)
    assert failed.task.status == V3TaskResponseStatus.TASK_STATUS_FAILED and "download" in failed.task.reason
    assert failed.videos == [] and isinstance(failed.extra.debug_info.complete_time_ms, int)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (.ci/run installs it with the SDK): the JavaScript SDK is not tried")
    if not (JS / "node_modules" / "novita-sdk").is_dir():
        pytest.skip("npm novita-sdk is not installed: run `npm install --prefix tests/js` (.ci/run does)")
    return node


def run_js(server, body: dict, key: str | None = None) -> dict:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    out = subprocess.run([_node(), str(JS / "sdk_check.js"), server.base_url, key or server.key, json.dumps(body)],
                         capture_output=True, text=True, timeout=180, cwd=JS, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_javascript_sdk_submits_with_a_bare_key_and_frames_and_polls_to_the_end(server):
    ran = run_js(server, {"model_name": "wan-t2v", **BODY, "frames": 5})
    assert "error" not in ran, ran
    final = ran["final"]
    assert final["task"]["status"] == TaskStatus.SUCCEED and final["extra"]["wanlab"]["params"]["num_frames"] == 5
    video = httpx.get(final["videos"][0]["video_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    wrong = run_js(server, {**BODY, "frames": 5}, key="wanlab-not-a-key-0123456789")
    assert wrong["error"]["code"] == 401 and wrong["error"]["reason"] == "INVALID_API_KEY"
    both = run_js(server, {**BODY, "frames": 5, "num_frames": 9})
    assert both["error"]["code"] == 400 and both["error"]["metadata"]["field"] == "frames"
    assert "num_frames" in both["error"]["msg"]
