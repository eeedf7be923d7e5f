"""The client against a stand-in for the hosted API on 127.0.0.1 (tests/api_standin.py): real HTTP with
known answers for what a real service does only now and then (429 with Retry-After, 5xx, dropped
connections, cut-short downloads, refused keys), the hosted-API mode's records and refusals, and
keys that never leak. The client against ``wanlab serve`` itself is tests/test_client_serve.py."""
from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import wanlab
from tests.api_standin import RESULT, SUBMIT, Fault, StandinServer, frames_for, save_key
from wanlab.client import RetryPolicy, connect
from wanlab.client.credentials import ApiKey, find_key, read_key_file
from wanlab.client.download import DownloadError
from wanlab.client.service import service_identity
from wanlab.errors import AuthError, GenerationError, ParamError, ServiceError, TaskError, WanlabError
from wanlab.netguard import NetPolicy
from wanlab.sweep import Sweep
from wanlab.taskstatus import TaskStatus

KEY = "sk-standin-0123456789abcdef"
LOCAL = dict(width=32, height=32, num_frames=5, steps=2)
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, busy_s=10.0)
POST = f"POST {SUBMIT}"
GET = f"GET {RESULT}"


@pytest.fixture(scope="module")
def cdn():
    server = StandinServer()
    yield server
    server.stop()


@pytest.fixture()
def api(monkeypatch):
    for name in ("WANLAB_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = StandinServer(keys=(KEY,), task_seconds=0.04)
    yield server
    server.stop()


def local(server: StandinServer, **kwargs):
    """The stand-in in the hosted API's mode, taking local sizes (as a --allow-local-sizes server would)."""
    return connect(server.url, KEY, kind="api", rules="local", retry=FAST, **kwargs)


# --- telling services apart, identities, refusals before any call -------------------------------------------
def test_a_service_without_a_wanlab_identity_is_the_hosted_api(api):
    with pytest.warns(UserWarning, match="publishes no wanlab model identity at /health, so it is used as the "
                                         "hosted API"), connect(api.url, KEY) as remote:
        assert remote.kind == "api" and remote.identity.source == "service"
        assert remote.identity.exact is False and remote.identity.latents is False and remote.identity.rules == "api"
        assert remote.identity.model_id == "wan2.1-t2v" and remote.identity.settings["service"] == api.url
    assert api.routes("GET /health") == 1
    with pytest.raises(ServiceError, match="is not a wanlab server"):
        connect(api.url, KEY, kind="wanlab")
    with connect(api.url, KEY, kind="api"):
        assert api.routes("GET /health") == 2  # kind="api" asks nothing


def test_service_identity_keys_the_address_and_model_name():
    a = service_identity("https://API.example.org:443/")
    assert a.fingerprint == service_identity("https://api.example.org").fingerprint
    assert a.fingerprint != service_identity("https://api.example.org", model_name="wan-t2v").fingerprint
    assert a.fingerprint != service_identity("https://other.example.org").fingerprint


def test_requests_the_hosted_api_cannot_take_are_refused_before_any_call(api, tmp_path):
    remote = connect(api.url, KEY, kind="api", retry=FAST)
    with pytest.raises(ParamError, match=r"^width x height: must be one of the API sizes .*got '64x64'"):
        remote.generate(prompt="a fox", width=64, height=64)
    with pytest.raises(ParamError, match=r"^num_frames: must be 81 for the hosted API"):
        remote.submit(prompt="a fox", num_frames=17)
    with pytest.raises(ParamError, match=r"^accel: must be exact \(no acceleration\).*got 'fbc'"):
        remote.generate(prompt="a fox", accel="fbc")
    for path in (str(tmp_path / "style.safetensors"), "http://example.org/style.safetensors"):
        with pytest.raises(ParamError, match=r"^loras.path: must be .*an https URL"):
            remote.submit(prompt="a fox", loras=[{"path": path, "scale": 0.8}])
    sweep = Sweep(base=dict(prompt="a fox", **LOCAL), grid={"seed": [1, 2]})
    with pytest.raises(ParamError, match="width x height"):
        sweep.run(remote, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()
    assert api.routes(POST) == 0 and not api.accepted
    with pytest.raises(ParamError, match="^base_url: must be a URL without a user name or password"):
        connect(f"http://me:{KEY}@127.0.0.1:1")
    with pytest.raises(ParamError, match="^base_url: must be an http"):
        connect("ftp://127.0.0.1")
    with pytest.raises(ParamError, match="^kind: must be one of 'auto', 'wanlab', 'api'; got 'hosted'"):
        connect(api.url, kind="hosted")


# --- generating in the hosted API's mode ------------------------------------------------------------------------
def test_generate_downloads_the_served_mp4_and_records_where_it_came_from(api, tmp_path):
    remote = local(api)
    video = remote.generate(prompt="a fox", seed=7, guidance_scale=2.0, **LOCAL)
    body = api.accepted[0]
    assert body["seed"] == 7 and body["num_frames"] == 5 and body["model_name"] == "wan2.1-t2v"
    expected = frames_for(body)
    assert video.frames.shape == expected.shape
    assert wanlab.metrics.psnr(video, expected).mean > 30  # h264 of known frames: close, not equal
    record = video.record
    assert record["exact"] is False and record["model"]["source"] == "service"
    assert record["service"]["task_id"] and record["service"]["model_name"] == "wan2.1-t2v"
    assert record["service"]["debug_info"]["submit_time_ms"] and set(video.timings) == {"queue", "generate", "total"}
    assert "video_url" not in json.dumps(record) and "secret-signature" not in json.dumps(record)
    run = wanlab.Store(tmp_path / "store").put(video, key_parts=remote.key_parts(video.params))
    served = Path(video.files["video.mp4"]).read_bytes()
    assert (run.path / "video.mp4").read_bytes() == served  # kept as served, not encoded again
    assert run.record["service"]["downloaded"]["video.mp4"]["bytes"] == len(served)
    assert wanlab.Store(tmp_path / "store").df["exact"].tolist() == [False]
    assert run.video().digest == video.digest  # the lossless copy holds the decoded download


def test_the_api_mode_sends_the_published_body_at_the_api_sizes(api):
    remote = connect(api.url, KEY, kind="api", retry=FAST)
    task_id = remote.submit(prompt="a fox", seed=3, steps=1)
    assert api.accepted[0] == {"model_name": "wan2.1-t2v", "prompt": "a fox", "negative_prompt": "", "width": 832,
                               "height": 480, "seed": 3, "steps": 1, "guidance_scale": 5.0, "flow_shift": 5.0,
                               "loras": []}
    result = remote.wait(task_id, timeout=30)
    assert result["task"]["status"] == TaskStatus.SUCCEED
    video = remote.video(task_id)
    assert video.frames.shape == (81, 480, 832, 3) and video.record["exact"] is False
    assert api.routes(POST) == 1


def test_all_black_frames_are_a_failure(api):
    with pytest.raises(GenerationError, match="every frame the service returned is black"):
        local(api).generate(prompt="black", seed=1, **LOCAL)


def test_unknown_tasks_and_cancel(api):
    remote = local(api)
    with pytest.raises(TaskError, match="unknown task id 'nope'"):
        remote.task_result("nope")
    with pytest.raises(TaskError, match="no cancel route"):
        remote.cancel("nope")
    api.task_seconds = 30
    task_id = remote.submit(prompt="a fox", seed=1, **LOCAL)
    with pytest.raises(TaskError, match="still TASK_STATUS_QUEUED after 0 s"):
        remote.wait(task_id, timeout=0)


# --- errors as wanlab's, what the service said ------------------------------------------------------------------
def test_a_400_is_a_param_error_with_the_services_field(api):
    remote = local(api)
    api.faults[POST] = [Fault(400, {"code": 400, "reason": "INVALID_REQUEST_BODY",
                                    "message": "steps: must be an integer in 1..40; got 50",
                                    "metadata": {"field": "steps", "rule": "an integer in 1..40", "value": 50}})]
    with pytest.raises(ParamError) as info:
        remote.submit(prompt="a fox", seed=1, **LOCAL)
    assert (info.value.field, info.value.rule, info.value.value) == ("steps", "an integer in 1..40", 50)
    api.faults[POST] = [Fault(400, {"message": "loras.path: must be a file inside an allowed folder; got 'x'"})]
    with pytest.raises(ParamError, match=r"^loras.path: must be a file inside an allowed folder; got 'x'$"):
        remote.submit(prompt="a fox", seed=1, **LOCAL)
    api.faults[POST] = [Fault(400, "<html>bad</html>")]
    with pytest.raises(ParamError, match=r"^request: must be what the service accepts \(400 Bad Request: "):
        remote.submit(prompt="a fox", seed=1, **LOCAL)
    assert api.routes(POST) == 3 and not api.accepted


def test_a_refused_key_says_so_and_never_shows_the_key(api, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-key-do-not-print-42"
    remote = connect(api.url, wrong, kind="api", rules="local", retry=FAST)
    with pytest.raises(AuthError, match=r"the API key was refused \(401 Unauthorized; the key from the api_key "
                                        r"argument\): invalid API key") as info:
        remote.generate(prompt="a fox", seed=1, **LOCAL)
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert wrong not in repr(remote) and wrong not in repr(remote.transport) and wrong not in caplog.text
    assert api.log[-1]["headers"]["Authorization"] == f"Bearer {wrong}"  # it was sent, only there
    with pytest.raises(AuthError, match=r"asks for an API key and none was given: pass api_key=, set "
                                        r"\$WANLAB_API_KEY \(or \$NOVITA_API_KEY\)"):
        connect(api.url, kind="api", rules="local", retry=FAST).submit(prompt="a fox", seed=1, **LOCAL)
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    assert connect(api.url, kind="api", rules="local").submit(prompt="a fox", seed=1, **LOCAL)


def test_the_key_reaches_no_record_no_store_file_and_no_log(api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    remote = local(api)
    api.faults[GET] = [Fault(503, {"message": "busy"}, {"Retry-After": "0"}), Fault(500, {"message": "oops"})]
    sweep = Sweep(base=dict(prompt="a fox", **LOCAL), grid={"seed": [1, 2]}, name="secret")
    result = sweep.run(remote, tmp_path / "store", progress=False, metrics=False)
    assert (result.df["status"] == "done").all()
    for file in (tmp_path / "store").rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file
    assert KEY not in caplog.text and "trying again" in caplog.text
    assert KEY not in repr(remote) and KEY not in str(find_key(KEY))
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(find_key(KEY))


def test_429_waits_retry_after_and_sends_again(api):
    remote = local(api)
    api.faults[POST] = [Fault(429, {"message": "queue full"}, {"Retry-After": "1"})]
    start = time.monotonic()
    task_id = remote.submit(prompt="a fox", seed=1, **LOCAL)
    assert time.monotonic() - start >= 0.95
    assert task_id and api.routes(POST) == 2 and len(api.accepted) == 1
    assert remote.transport.stats["busy_waits"] == 1
    api.faults[POST] = [Fault(429, {"message": "queue full"}, {"Retry-After": "60"})]
    with pytest.raises(ServiceError, match=r"answered 429 Too Many Requests: queue full \(still busy after 0 s"):
        remote.submit(prompt="a fox", seed=2, **LOCAL)  # longer than the policy's 10 s of patience


def test_5xx_and_lost_connections_are_retried_but_a_submit_is_never_sent_twice(api):
    remote = local(api)
    api.faults[GET] = [Fault(502), Fault(500)]
    task_id = remote.submit(prompt="a fox", seed=1, **LOCAL)
    assert remote.wait(task_id, timeout=30)["task"]["status"] == TaskStatus.SUCCEED
    api.faults[GET] = [Fault(500)] * 3
    with pytest.raises(ServiceError, match=r"answered 500 Internal Server Error"):
        remote.task_result(task_id)  # 3 tries, then the error
    before = api.routes(POST)
    api.faults[POST] = [Fault(500, {"message": "boom"})]
    with pytest.raises(ServiceError, match="answered 500 Internal Server Error: boom"):
        remote.submit(prompt="a fox", seed=2, **LOCAL)
    api.faults[POST] = [Fault(drop=True, accept=True)]
    with pytest.raises(ServiceError, match="may have accepted it, so it is not sent again"):
        remote.submit(prompt="a fox", seed=3, **LOCAL)
    assert api.routes(POST) == before + 2  # each sent once
    api.faults[POST] = [Fault(503, {"message": "loading"}, {"Retry-After": "0"})]
    assert remote.submit(prompt="a fox", seed=4, **LOCAL)  # 503: not accepted, so sent again


def test_a_service_that_is_down_is_retried_a_bounded_number_of_times():
    from wanlab.client.transport import Transport

    dead = StandinServer()
    url = dead.url
    dead.stop()
    with pytest.raises(ServiceError, match=r"no answer from .* after 3 tries \(ConnectError"):
        connect(url, kind="auto", retry=FAST)
    transport = Transport(url, None, retry=FAST)
    start = time.monotonic()
    with pytest.raises(ServiceError, match="after 3 tries"):
        transport.send("GET", "/health")
    assert time.monotonic() - start < 2 and transport.stats["retries"] == 2


# --- downloads ----------------------------------------------------------------------------------------------------
def test_a_cut_short_download_is_fetched_again(api):
    remote = local(api)
    task_id = remote.submit(prompt="a fox", seed=1, **LOCAL)
    remote.wait(task_id, timeout=30)
    route = f"GET /videos/{task_id}.mp4"
    api.faults[route] = [Fault(truncate=100)]
    video = remote.video(task_id)
    assert api.routes(route) == 2 and video.record["service"]["downloaded"]["video.mp4"]["bytes"] > 100
    api.faults[route] = [Fault(truncate=100)] * 3
    with pytest.raises(DownloadError, match="could not be downloaded whole in 3 tries.*without paying again"):
        remote.video(task_id)


def test_videos_on_another_host_come_through_the_network_guard_without_the_key(monkeypatch, cdn):
    for name in ("WANLAB_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    api = StandinServer(keys=(KEY,), task_seconds=0.02, cdn=cdn)
    try:
        with pytest.raises(DownloadError, match=r"download refused: .*must be an https URL.*net_policy="):
            local(api).generate(prompt="a fox", seed=1, **LOCAL)
        allowed = NetPolicy(schemes=("http",), allow=("127.0.0.1",))
        video = local(api, net_policy=allowed).generate(prompt="a fox", seed=2, **LOCAL)
        assert video.frames.shape == (5, 32, 32, 3)
        fetched = [e for e in cdn.log if e["route"].startswith("GET /videos/")]
        assert fetched and all("Authorization" not in e["headers"] for e in fetched)
    finally:
        api.stop()


# --- sweeps -----------------------------------------------------------------------------------------------------
def test_a_sweep_in_the_api_mode_never_pays_twice_and_records_failures(api, tmp_path):
    remote = local(api, max_in_flight=3)
    api.fail_prompts.add("a fox")
    sweep = Sweep(base=dict(prompt="a cat", **LOCAL), name="api",
                  zip={"seed": [1, 2, 3], "prompt": ["a cat", "a fox", "a cat"], "guidance_scale": [1.0, 2.0, 3.0]})
    result = sweep.run(remote, tmp_path / "store", progress=False)
    df = result.df.set_index("seed")
    assert df.loc[1, "status"] == "done" and df.loc[3, "status"] == "done"
    assert df.loc[2, "status"] == "failed" and "the service could not run this prompt" in df.loc[2, "error"]
    assert len(api.accepted) == 3 and np.isfinite(df.loc[1, "flow_magnitude"])
    again = sweep.run(remote, tmp_path / "store", progress=False, retry_failed=False)
    assert len(api.accepted) == 3 and list(again.df["status"]) == list(result.df["status"])
    api.fail_prompts.clear()
    sweep.run(remote, tmp_path / "store", progress=False)  # the failed point is tried again: a new task
    assert len(api.accepted) == 4 and not wanlab.Store(tmp_path / "store").pending()


def test_a_pending_task_is_polled_not_paid_again(api, tmp_path):
    remote = local(api)
    sweep = Sweep(base=dict(prompt="a fox", **LOCAL), grid={"seed": [1, 2]}, name="resume")
    store = wanlab.Store(tmp_path / "store")
    points = sweep.points(remote)
    task_id = remote.submit(points[0])  # accepted earlier, by a client that was killed before storing it
    key = wanlab.keys.run_key(remote.key_parts(points[0]))
    store.put_pending(key, {"task_id": task_id, "service": remote.identity.model_id})
    result = sweep.run(remote, store, progress=False, metrics=False)
    assert (result.df["status"] == "done").all() and len(api.accepted) == 2
    assert store.get(key).record["service"]["task_id"] == task_id and not store.pending()
    assert remote.stats["resumed"] == 1


def test_a_point_whose_submit_got_no_answer_is_not_submitted_again_unless_asked(api, tmp_path):
    remote = local(api)
    sweep = Sweep(base=dict(prompt="a fox", **LOCAL), grid={"seed": [1, 2]}, name="uncertain")
    api.faults[POST] = [Fault(drop=True, accept=True)]  # the first submit is accepted there; its answer is lost
    first = sweep.run(remote, tmp_path / "store", progress=False, metrics=False, max_in_flight=1)
    assert list(first.df["status"]) == ["failed", "done"] and len(api.accepted) == 2
    assert "may have accepted it, so it is not sent again" in first.df["error"][0]
    assert "idempotency-key" not in {k.lower() for e in api.log for k in e["headers"]}  # the hosted API: none sent
    (key,) = wanlab.Store(tmp_path / "store").pending()
    posts = api.routes(POST)
    again = sweep.run(remote, tmp_path / "store", progress=False, metrics=False, max_in_flight=1)
    assert list(again.df["status"]) == ["failed", "done"] and api.routes(POST) == posts  # nothing sent
    assert "SubmitUncertain: an earlier submit of this request" in again.df["error"][0]
    assert "retry_uncertain=True" in again.df["error"][0] and key in wanlab.Store(tmp_path / "store").pending()
    api.faults[POST] = [Fault(400, {"message": "refused"})]  # a refusal: surely not accepted, nothing pending
    retried = sweep.run(remote, tmp_path / "store", progress=False, metrics=False, max_in_flight=1,
                        retry_uncertain=True)
    assert list(retried.df["status"]) == ["failed", "done"] and not wanlab.Store(tmp_path / "store").pending()
    final = sweep.run(remote, tmp_path / "store", progress=False, metrics=False, max_in_flight=1)
    assert (final.df["status"] == "done").all() and len(api.accepted) == 3  # the uncertain one, paid again
    with pytest.raises(ParamError, match="retry_uncertain: must be"):
        sweep.run(remote, tmp_path / "store", progress=False, retry_uncertain="yes")


def test_wanlab_sweep_retry_uncertain_reaches_the_sweep(api, tmp_path, monkeypatch):
    from wanlab import cli

    class Ran(Exception):
        pass

    seen: dict = {}

    def run(self, backend=None, store=None, **options):
        seen.update(options)
        raise Ran

    monkeypatch.setattr(Sweep, "run", run)
    sweep_file = tmp_path / "api.toml"
    sweep_file.write_text('name = "api"\n[base]\nprompt = "a fox"\nsteps = 2\n[grid]\nseed = [1, 2]\n')
    command = ["sweep", str(sweep_file), "--remote", api.url, "--remote-kind", "api", "--api-key-file",
               str(save_key(tmp_path, KEY)), "--store", str(tmp_path / "store"), "--quiet"]
    for flags, expected in (([], False), (["--retry-uncertain"], True)):
        with pytest.raises(Ran):
            cli.main([*command, *flags])
        assert seen.pop("retry_uncertain") is expected
    assert api.routes(POST) == 0


def test_verify_of_a_lossy_download_compares_with_a_new_download(api, tmp_path):
    remote = local(api)
    video = remote.generate(prompt="a fox", seed=5, **LOCAL)
    run = wanlab.Store(tmp_path / "store").put(video, key_parts=remote.key_parts(video.params))
    with pytest.raises(WanlabError, match=r"lossy mp4 \(exact: false\): it cannot be re-generated bit for bit; pass "
                                          r"that service as backend="):
        wanlab.verify(run)
    report = wanlab.verify(run, backend=remote)
    assert report["frames_identical"] and report["identical"] and not report["environment_changes"]
    assert any("lossy download compared with a new download" in note for note in report["notes"])
    assert len(api.accepted) == 2  # the comparison was a new (billed) task


# --- keys from the environment and from files -------------------------------------------------------------------
def test_keys_come_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    for name in ("WANLAB_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert find_key() is None
    monkeypatch.setenv("NOVITA_API_KEY", "sk-novita")
    assert find_key().source == "$NOVITA_API_KEY"
    monkeypatch.setenv("WANLAB_API_KEY", "sk-wanlab")
    assert find_key().source == "$WANLAB_API_KEY" and find_key("sk-arg").source == "the api_key argument"
    assert repr(find_key()) == "ApiKey(from $WANLAB_API_KEY, hidden)"
    with pytest.raises(ParamError, match=r"^api_key: must be one token without spaces.*got '<9 characters"):
        ApiKey("sk\nhidden", "a test")
    file = save_key(tmp_path, "sk-from-file")
    assert read_key_file(file).headers() == {"Authorization": "Bearer sk-from-file"}
    file.chmod(0o644)
    with pytest.warns(UserWarning, match="may be read by other users"):
        read_key_file(file)
    (tmp_path / "empty").write_text("# only a comment\n\n")
    with pytest.raises(ParamError, match=r"^api_key_file: must be a file with the key on a line of its own"):
        read_key_file(tmp_path / "empty")
    with pytest.raises(ParamError, match=r"^api_key_file: must be a readable text file"):
        read_key_file(tmp_path / "missing")


def test_a_key_with_a_byte_order_mark_or_other_non_ascii_is_one_sentence_without_the_key(tmp_path):
    secret = "sk-\u00e9l\u00e8ve-0123456789"  # an accented key, e.g. pasted from a document
    with pytest.raises(ParamError) as caught:
        ApiKey(secret, "a test")
    assert str(caught.value).startswith("api_key: must be ASCII characters only") and "\n" not in str(caught.value)
    assert secret not in str(caught.value) + repr(caught.value) and "0123456789" not in str(caught.value)
    with pytest.raises(ParamError, match="byte-order mark") as caught:
        ApiKey("\ufeff" + KEY, "a test")
    assert KEY not in str(caught.value)
    file = tmp_path / "bom.key"
    file.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\n")  # as Notepad saves it: the mark is not the key's
    file.chmod(0o600)
    assert read_key_file(file).headers() == {"Authorization": f"Bearer {KEY}"}


# --- the command line -------------------------------------------------------------------------------------------
def test_the_cli_refuses_before_any_call_and_dry_runs_without_submitting(api, tmp_path):
    root = Path(__file__).resolve().parents[1]
    key_file = save_key(tmp_path, KEY)
    sweep_file = tmp_path / "api.toml"
    sweep_file.write_text('name = "api"\n[base]\nprompt = "a fox"\nsteps = 2\n[grid]\nseed = [1, 2, 3]\n')
    common = ["--remote", api.url, "--remote-kind", "api", "--api-key-file", str(key_file)]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "wanlab.cli", *args], capture_output=True, text=True, cwd=root,
                              timeout=300)

    dry = cli("sweep", str(sweep_file), *common, "--store", str(tmp_path / "store"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "a run would generate 3 (each a task" in dry.stdout and "832" not in dry.stderr
    small = cli("generate", *common, "--prompt", "a fox", "--width", "64", "--height", "64")
    assert small.returncode == 2 and "width x height: must be one of the API sizes" in small.stderr
    frames = cli("generate", *common, "--prompt", "a fox", "--num-frames", "17")
    assert frames.returncode == 2 and "num_frames: must be 81 for the hosted API" in frames.stderr
    accel = cli("generate", *common, "--prompt", "a fox", "--accel", "fbc")
    assert accel.returncode == 2 and "accel: must be exact" in accel.stderr
    local = cli("generate", *common, "--prompt", "a fox", "--device", "cpu")
    assert local.returncode == 2 and "--device: must be left out with --remote" in local.stderr
    assert api.routes(POST) == 0 and KEY not in dry.stdout + dry.stderr + small.stderr
