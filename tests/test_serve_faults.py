"""``wanlab serve`` against what attackers and faults bring (a real server on loopback): lone surrogates,
duplicate keys, disconnects and trickling bodies, damaged runs and task files, symlinks in the store, a
full disk (a tmpfs of its own, where this machine lets root mount one), and LoRA errors without server paths.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from wanlab.server.testing import HOST, start_server
from wanlab.taskstatus import TaskStatus

BODY = {"prompt": "a blue circle moving left slowly", "width": 32, "height": 32, "num_frames": 5, "steps": 2}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("private-lora-folder")


@pytest.fixture(scope="module")
def server(tmp_path_factory, lora_dir):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("faults") / "store", keys=2,
                       args=["--body-timeout", "1.5", "--lora-dir", str(lora_dir)])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as client:
        yield client


def post_raw(http, text: str):
    return http.post("/v3/async/wan-t2v", content=text.encode(), headers={"Content-Type": "application/json"})


def done(http, server, seed: int) -> dict:
    task_id = http.post("/v3/async/wan-t2v", json={**BODY, "seed": seed}).json()["task_id"]
    result = server.wait_task(task_id)
    assert result["task"]["status"] == TaskStatus.SUCCEED, result
    return result


def test_lone_surrogates_anywhere_are_a_400_naming_the_field(server, http):
    cases = {'{"prompt": "a fox \\ud800"}': "prompt",
             '{"prompt": "a fox", "negative_prompt": "\\udfff blur"}': "negative_prompt",
             '{"prompt": "a fox", "loras": [{"path": "\\ud83d.safetensors"}]}': "loras[0].path",
             '{"prompt": "a fox", "\\ud800": 1}': "'\\ud800'"}
    for text, field in cases.items():
        answer = post_raw(http, text)
        assert answer.status_code == 400, (text, answer.text)
        assert answer.json()["metadata"]["field"] == field and "surrogate" in answer.json()["message"]
    # the server still answers, and every task it accepted reads back after a restart
    posted = http.post("/v3/async/wan-t2v", json={**BODY, "prompt": "a caf\u00e9 \U0001F98A", "seed": 4})
    task_id = posted.json()["task_id"]
    assert server.wait_task(task_id)["task"]["status"] == TaskStatus.SUCCEED
    server.stop()
    server.restart()
    assert http.get("/v3/async/task-result", params={"task_id": task_id}).json()["task"]["status"] == TaskStatus.SUCCEED
    assert "Traceback" not in server.log()


def test_the_client_refuses_a_lone_surrogate_before_sending(server):
    import wanlab
    from wanlab.errors import ParamError

    with wanlab.connect(server.base_url, api_key=server.key) as remote:
        sent = remote.transport.stats["requests"]
        with pytest.raises(ParamError, match=r"^prompt: must be valid Unicode text \(no lone UTF-16 surrogate\)"):
            remote.submit(prompt="a fox \ud800", width=32, height=32, num_frames=5)
        with pytest.raises(ParamError, match=r"^loras\.path: must be valid Unicode text") as caught:
            remote.submit(prompt="a fox", loras=[("\ud800.safetensors", 1.0)], width=32, height=32, num_frames=5)
        assert "a fox" not in str(caught.value)
        with pytest.raises(ParamError, match=r"^task_id: must be valid Unicode text"):
            remote.task_result("\ud800")
        assert remote.transport.stats["requests"] == sent


def test_duplicate_keys_are_an_ambiguous_request(http):
    answer = post_raw(http, '{"prompt": "a fox", "seed": 1, "seed": 2}')
    assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "seed"
    assert "twice" in answer.json()["message"]
    nested = post_raw(http, '{"prompt": "a fox", "loras": [{"path": "a/b", "path": "c/d"}]}')
    assert nested.status_code == 400 and nested.json()["metadata"]["field"] == "path"


def test_hand_made_inputs_fuzzers_miss_never_get_a_500(http):
    """Every prefix of a full body, a lone surrogate in every text, every key twice, odd values in every field."""
    import json

    full = json.dumps({**BODY, "negative_prompt": "blur", "seed": 7, "guidance_scale": 3.5, "flow_shift": 2.0,
                       "loras": [{"path": "owner/repo", "scale": 0.5}], "enable_safety_checker": True,
                       "fast_mode": False, "extra": {"webhook": {"url": "https://hooks.example.org/x"}}})
    bodies = [full[:n] for n in range(0, len(full), 7)]
    for field in ("prompt", "negative_prompt", "path", "url"):
        bodies.append(full.replace(f'"{field}": "', f'"{field}": "\\ud800', 1))
        bodies.append(full.replace(f'"{field}": "', f'"{field}": "x\\udc00y', 1))
    for key in json.loads(full):
        bodies.append(full[:-1] + f', "{key}": null}}')
    for value in ("-0.0", "1e400", "NaN", "-1e-400", "[]", "{}", '"\\u0000"', "true", "99999999999999999999999"):
        for key in ("seed", "steps", "guidance_scale", "width", "prompt", "loras", "extra", "frames"):
            bodies.append(json.dumps({**BODY, "prompt": "x"})[:-1] + f', "{key}": {value}}}')
    statuses = set()
    for text in bodies:
        answer = post_raw(http, text)
        statuses.add(answer.status_code)
        assert answer.status_code < 500, (text, answer.text)
        if answer.status_code != 200:
            error = answer.json()
            assert set(error) == {"code", "reason", "message", "metadata"} and error["code"] == answer.status_code
    assert statuses <= {200, 400} and 400 in statuses


def raw_socket(server) -> socket.socket:
    sock = socket.create_connection((HOST, server.port), timeout=10)
    head = (f"POST /v3/async/wan-t2v HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {server.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n")
    sock.sendall(head.encode())
    return sock


def test_a_client_that_leaves_mid_body_is_one_log_line_and_a_trickle_is_cut(server, http):
    before = server.log()
    sock = raw_socket(server)
    sock.sendall(b'{"prompt": "a fo')
    sock.close()
    time.sleep(1.0)
    assert http.get("/health").status_code == 200
    new = server.log()[len(before):]
    assert new.count("closed the connection before") == 1 and "Traceback" not in new, new
    sock = raw_socket(server)
    started = time.monotonic()
    answer = b""
    with sock:
        for _ in range(40):  # one byte every 0.1 s: never the whole body within the 1.5 s allowed
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"must arrive whole within 1.5 s" in answer and time.monotonic() - started < 4.0


def test_requests_uvicorn_cannot_parse_get_the_documented_error_body(server):
    import json

    for garbage in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
        with socket.create_connection((HOST, server.port), timeout=10) as sock:
            sock.sendall(garbage)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, answer
        error = json.loads(body)
        assert error["code"] == 400 and error["reason"] == "INVALID_HTTP_REQUEST"
        assert error["metadata"]["field"] == "request"
        assert error["message"].startswith("request: must be valid HTTP/1.1; got ")


def test_damaged_runs_are_never_a_success_and_symlinks_are_never_served(server, http):
    import wanlab

    result = done(http, server, seed=21)
    run_key = result["extra"]["wanlab"]["run_key"]
    folder = server.store / run_key
    files = result["extra"]["wanlab"]["files"]
    assert set(files["sha256"]) == {"video.mp4", "video.lossless.mkv"}
    record = http.get(files["record_url"]).json()
    assert "extra" not in record and result["task"]["task_id"] not in str(record)  # no other key's task id
    video_url = result["videos"][0]["video_url"]
    lossless = folder / "video.lossless.mkv"
    data = lossless.read_bytes()
    lossless.write_bytes(data[: len(data) // 2])  # truncated
    answer = http.get("/v3/async/task-result", params={"task_id": result["task"]["task_id"]}).json()
    assert answer["task"]["status"] == TaskStatus.FAILED and answer["videos"] == []
    assert "damaged" in answer["task"]["reason"] and "video.lossless.mkv" in answer["task"]["reason"]
    row = wanlab.Store(server.store).df.set_index("key").loc[run_key]
    assert row["status"] == "damaged" and "truncated" in row["reason"]
    lossless.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the same size, one bit changed
    flipped = http.get("/v3/async/task-result", params={"task_id": result["task"]["task_id"]}).json()
    assert flipped["task"]["status"] == TaskStatus.FAILED and "sha256" in flipped["task"]["reason"]
    lossless.write_bytes(data)
    assert http.get("/v3/async/task-result", params={"task_id": result["task"]["task_id"]}).json()["task"][
        "status"] == TaskStatus.SUCCEED
    mp4 = folder / "video.mp4"
    saved = mp4.read_bytes()
    mp4.unlink()
    mp4.symlink_to(server.store / "server" / "secret.key")  # a link inside the store to the server's secret
    stolen = http.get(video_url)
    assert stolen.status_code == 404 and stolen.content != (server.store / "server" / "secret.key").read_bytes()
    assert "not a regular file" in http.get("/v3/async/task-result", params={
        "task_id": result["task"]["task_id"]}).json()["task"]["reason"]
    mp4.unlink()
    mp4.write_bytes(saved)
    assert "Traceback" not in server.log() and "is damaged" in server.log()


def test_a_damaged_task_file_is_logged_and_reported_to_its_owner_only(server, http):
    first, second = (done(http, server, seed=s)["task"]["task_id"] for s in (22, 23))
    server.stop()
    (server.store / "tasks" / f"{first}.json").write_text('{"format": 2, "task_id": "')  # cut short: owner unknown
    file = server.store / "tasks" / f"{second}.json"
    data = json.loads(file.read_text())
    data["result"]["task"]["eta"] = "NaN"  # an edit the provider's SDK could not parse
    file.write_text(json.dumps(data))
    server.restart()
    for _ in range(3):
        answer = http.get("/v3/async/task-result", params={"task_id": first})
        assert answer.status_code == 404 and answer.json()["reason"] == "TASK_NOT_FOUND"  # to every key alike
    assert server.log().count(f"task {first} cannot be answered") == 1  # logged once
    answer = http.get("/v3/async/task-result", params={"task_id": second})
    assert answer.status_code == 404 and answer.json()["reason"] == "TASK_DAMAGED"  # its owner is told
    with server.client(server.keys[1]) as other:
        assert other.get("/v3/async/task-result", params={"task_id": second}).json()["reason"] == "TASK_NOT_FOUND"


def test_a_run_removed_replaced_by_a_link_or_with_an_edited_record_is_failed_never_a_500(server, http):
    result = done(http, server, seed=31)
    task_id, run_key = result["task"]["task_id"], result["extra"]["wanlab"]["run_key"]
    record_url = result["extra"]["wanlab"]["files"]["record_url"]
    folder = server.store / run_key
    assert "created" not in http.get(record_url).json()  # when it was made tells another key who asked first

    def answer() -> dict:
        got = http.get("/v3/async/task-result", params={"task_id": task_id})
        assert got.status_code == 200, got.text
        return got.json()["task"]

    record = json.loads((folder / "record.json").read_text())
    (folder / "record.json").write_text(json.dumps({**record, "stored": [1, 2]}))
    assert answer()["status"] == TaskStatus.FAILED and "malformed" in answer()["reason"]
    (folder / "record.json").write_text("[1]")
    assert answer()["status"] == TaskStatus.FAILED and http.get(record_url).status_code == 404
    (folder / "record.json").write_text(json.dumps(record))
    assert answer()["status"] == TaskStatus.SUCCEED
    real = folder.with_name(run_key + ".real")
    folder.rename(real)
    folder.symlink_to(real)  # the run folder itself a link
    assert answer()["status"] == TaskStatus.FAILED and "link" in answer()["reason"]
    folder.unlink()
    assert answer()["status"] == TaskStatus.FAILED and "not in the store" in answer()["reason"]  # removed
    real.rename(folder)
    mp4 = folder / "video.mp4"
    stamp = mp4.stat()
    data = mp4.read_bytes()
    mp4.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(mp4, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # size and modification time put back
    assert answer()["status"] == TaskStatus.FAILED and "sha256" in answer()["reason"]
    mp4.write_bytes(data)
    assert answer()["status"] == TaskStatus.SUCCEED and "Traceback" not in server.log()


def test_numbers_beyond_any_float_lora_urls_and_a_lone_width_are_checked_at_submit(http):
    huge = "9" * 400
    for field in ("guidance_scale", "flow_shift", "width"):
        answer = post_raw(http, json.dumps({**BODY})[:-1] + f', "{field}": {huge}}}')
        assert answer.status_code == 400 and answer.json()["metadata"]["field"] == field, answer.text
    scale = post_raw(http, f'{{"prompt": "a", "loras": [{{"path": "owner/repo", "scale": -{huge}}}]}}')
    assert scale.status_code == 400 and scale.json()["metadata"]["field"] == "loras.scale"
    for url, said in (("https://[::1]:99999/x", "port in 1..65535"), ("https://127.0.0.1/x.safetensors", "public"),
                      ("https://[::ffff:10.0.0.1]/x", "public"), ("http://example.org/x", "https")):
        answer = http.post("/v3/async/wan-t2v", json={**BODY, "loras": [{"path": url}]})
        assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "loras[0].path", answer.text
        assert said in answer.json()["message"]
    lone = http.post("/v3/async/wan-t2v", json={"prompt": "a fox", "width": "abc"})  # height missing: 832x480
    assert lone.status_code == 400 and lone.json()["metadata"]["field"] == "width"


def test_a_connection_that_sends_no_whole_request_is_closed_after_the_header_timeout(server, monkeypatch):
    from wanlab.server import run

    with socket.create_connection((HOST, server.port), timeout=1) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers that never end: one more each second
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 30:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                sock.sendall(b"X-Trickle: 1\r\n")
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b'"REQUEST_TIMEOUT"' in answer
    assert run.HEADERS_TIMEOUT_S - 1 < time.monotonic() - started < run.HEADERS_TIMEOUT_S + 5


def test_lora_errors_name_the_request_not_the_servers_paths(http, lora_dir):
    answer = http.post("/v3/async/wan-t2v", json={**BODY, "loras": [{"path": "missing.safetensors"}]})
    assert answer.status_code == 400 and answer.json()["metadata"]["field"] == "loras[0].path"
    assert str(lora_dir) not in answer.text and str(Path.home()) not in answer.text


# --- a full disk: the store on a 24 MiB tmpfs of its own -------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()[:80]}): the full-disk test needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full (unbuffered: nothing is left to flush); delete it to free the space."""
    filler = folder / "filler"
    with open(filler, "ab", buffering=0) as out:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_full_disk_is_507_and_a_task_whose_end_cannot_be_written_is_never_queued_again(small_disk):
    store = small_disk / "store"
    with start_server(model="tiny", store=store, keys=1) as srv, srv.client() as http:
        filler = fill(small_disk)
        answer = http.post("/v3/async/wan-t2v", json={**BODY, "seed": 1})
        assert answer.status_code == 507 and answer.json()["reason"] == "INSUFFICIENT_STORAGE"
        assert "no room" in answer.json()["message"] and answer.headers["retry-after"]
        filler.unlink()
        try:
            task_id = http.post("/v3/async/wan-t2v", json={**BODY, "seed": 2, "num_frames": 33, "steps": 30}).json()[
                "task_id"]
        except Exception as exc:  # what the server said, for a failure here
            raise AssertionError(f"{exc!r}; the server's log:\n{srv.log()[-4000:]}") from exc
        fill(small_disk)  # the task file is written; its video and its end find no room
        result = srv.wait_task(task_id)
        assert result["task"]["status"] == TaskStatus.FAILED and "could not be stored" in result["task"]["reason"]
        assert not (store / "tasks" / f"{task_id}.json").exists()  # set aside: never read as queued
        srv.kill()
        (small_disk / "filler").unlink()
        srv.restart()
        again = http.get("/v3/async/task-result", params={"task_id": task_id}).json()
        assert again["task"]["status"] == TaskStatus.FAILED and "final state" in again["task"]["reason"]
        assert http.get("/health").json()["queue"][TaskStatus.QUEUED] == 0  # not resumed, not run again
        assert "Traceback" not in srv.log()
