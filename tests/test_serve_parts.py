"""The parts of ``wanlab serve`` that need no running server: the operator's configuration, API key files,
the store's secret, signed URLs, webhook destinations, error bodies and the ``serve`` command line."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wanlab.errors import ParamError, UnsafeURLError
from wanlab.netguard import NetPolicy, check_url, parse_host
from wanlab.server.auth import ApiKeys, ServerSecret, parse_keys, read_keys
from wanlab.server.config import ServerConfig
from wanlab.server.errors import ApiError
from wanlab.server.urls import UrlSigner
from wanlab.server.webhooks import WebhookRules
from wanlab.taskstatus import TaskStatus

ROOT = Path(__file__).resolve().parents[1]
KEY_A, KEY_B = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef"


def test_config_refuses_an_open_server_off_loopback_and_bad_values():
    with pytest.raises(ParamError, match=r"^api_keys: must be a file of API keys"):
        ServerConfig(model="tiny")
    with pytest.raises(ParamError, match=r"^host: must be a loopback address .*; got '0.0.0.0'"):
        ServerConfig(model="tiny", host="0.0.0.0", no_auth=True)
    with pytest.raises(ParamError, match=r"^no_auth: must be left off when --api-keys is given"):
        ServerConfig(model="tiny", api_keys="keys.txt", no_auth=True)
    for fields, message in (({"port": 0}, r"^port: must be an integer in 1..65535"),
                            ({"workers": 0}, r"^workers: must be an integer in 1..64"),
                            ({"webhook_allow": ("http://x/",)}, r"^webhook_allow: must be HOST or HOST:PORT"),
                            ({"lora_dirs": ("/no/such/folder",)}, r"^lora_dirs: must be existing folders"),
                            ({"public_url": "gpu1:8000"}, r"^public_url: must be an http\(s\) base URL"),
                            ({"fast_mode_accel": "warp-speed"}, r"^fast_mode_accel: must be an Accel"),
                            ({"url_ttl": 0}, r"^url_ttl: must be an integer")):
        with pytest.raises(ParamError, match=message):
            ServerConfig(model="tiny", no_auth=True, **fields)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert ServerConfig(model="tiny", host=host, no_auth=True).auth is False
    assert ServerConfig(model="tiny", host="::1", no_auth=True, port=9).public_base == "http://[::1]:9"
    assert ServerConfig(model="tiny", no_auth=True, public_url="https://gpu1.lab/").public_base == "https://gpu1.lab"


def test_key_files_take_comments_and_name_bad_lines_without_showing_keys(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(f"# lab keys\n{KEY_A}  # alice\n\n   {KEY_B}\n")
    assert read_keys(file) == [KEY_A, KEY_B]
    file.write_text(f"{KEY_A}\nshort-secret\n")
    assert read_keys(file) == [KEY_A]  # a line that is not a key is skipped, the others count
    keys, problems = parse_keys(f"{KEY_A}\nshort-secret\n")
    assert keys == [KEY_A] and problems[0].startswith("line 2:") and "short-secret" not in problems[0]
    file.write_text("# nothing here\n")
    with pytest.raises(ParamError, match="at least one key"):
        read_keys(file)
    file.write_text("short-secret\n")
    with pytest.raises(ParamError) as caught:
        read_keys(file)
    assert "line 1" in str(caught.value) and "short-secret" not in str(caught.value)
    with pytest.raises(ParamError, match="readable UTF-8 file"):
        read_keys(tmp_path / "missing.txt")
    file.write_bytes(b"\xef\xbb\xbf" + KEY_A.encode() + b"\n")  # a byte-order mark, as Windows editors write
    assert read_keys(file) == [KEY_A]


def test_keys_are_checked_as_digests_and_reread_when_the_file_changes(tmp_path):
    secret = ServerSecret.of_store(tmp_path / "store")
    file = tmp_path / "keys.txt"
    file.write_text(KEY_A + "\n")
    os.chmod(file, 0o600)
    keys = ApiKeys(file, secret, reload_s=0)
    owner = keys.owner(f"Bearer {KEY_A}")
    assert len(owner) == 64 and KEY_A not in owner and owner == keys.owner(f"bearer   {KEY_A} ")
    assert KEY_A not in repr(keys) and "hidden" in repr(secret)
    for header in (None, "", f"Basic {KEY_A}", "Bearer", f"Bearer {KEY_B}", f"Bearer {KEY_A}x"):
        with pytest.raises(ApiError) as caught:
            keys.owner(header)
        assert caught.value.status == 401 and caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    file.write_text(f"{KEY_A}\n{KEY_B}\n")
    os.utime(file, ns=(1, 10**18))  # a different modification time, whatever the clock's resolution
    assert keys.owner(f"Bearer {KEY_B}") != owner and len(keys) == 2
    file.write_text("broken\n")  # an edit that leaves no valid key: no key is valid
    os.utime(file, ns=(1, 2 * 10**18))
    with pytest.raises(ApiError):
        keys.owner(f"Bearer {KEY_A}")
    again = tmp_path / "again.txt"
    again.write_text(KEY_A + "\n")
    os.chmod(again, 0o600)
    same_store = ApiKeys(again, ServerSecret.of_store(tmp_path / "store"))
    assert same_store.owner(f"Bearer {KEY_A}") == owner  # the store's secret makes owners agree across servers
    assert ApiKeys(again, ServerSecret.of_store(tmp_path / "other")).owner(f"Bearer {KEY_A}") != owner


def test_a_key_may_hold_a_hash_and_a_line_of_other_bytes_spoils_only_itself(tmp_path, caplog):
    file = tmp_path / "keys.txt"
    with_hash = "wanlab#key-0123456789abcdef"
    file.write_bytes(f"{with_hash}  # carol\n".encode() + b"# caf\xe9 (Latin-1)\n" + KEY_B.encode() + b"\n")
    os.chmod(file, 0o600)
    keys = ApiKeys(file, ServerSecret.of_store(tmp_path / "store"))
    assert len(keys) == 2 and keys.owner(with_hash) and keys.owner(KEY_B)
    with pytest.raises(ApiError):
        keys.owner("wanlab")  # the part before the # is not the key


def test_a_loopback_name_in_the_allow_list_is_warned_about_at_start():
    config = ServerConfig(model="tiny", no_auth=True, webhook_allow=("localhost:9003", "LOCALHOST", "127.0.0.1:9003"))
    warnings = config.webhook_warnings()
    assert len(warnings) == 2 and all("list the address instead" in w for w in warnings)


def test_a_bare_key_is_accepted_as_the_javascript_sdk_sends_it(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(KEY_A + "\n")
    os.chmod(file, 0o600)
    keys = ApiKeys(file, ServerSecret.of_store(tmp_path / "store"))
    assert keys.owner(KEY_A) == keys.owner(f"Bearer {KEY_A}") == keys.owner(f"  {KEY_A} ")
    for header in (KEY_B, f"{KEY_A} extra", f"Token {KEY_A}", "Bearer  "):
        with pytest.raises(ApiError) as caught:
            keys.owner(header)
        assert caught.value.status == 401 and KEY_A not in caught.value.message


def test_a_removed_key_is_revoked_whatever_the_edit_and_no_file_means_no_key(tmp_path, caplog):
    file = tmp_path / "keys.txt"
    key_c = KEY_A.replace("alice", "carol")  # the same length: the edit keeps the file's size
    file.write_text(f"{KEY_A}\n{KEY_B}\n")
    os.chmod(file, 0o600)
    keys = ApiKeys(file, ServerSecret.of_store(tmp_path / "store"), reload_s=0)
    assert keys.owner(KEY_A) and keys.owner(KEY_B)
    stamp = file.stat()
    file.write_text(f"{key_c}\n{KEY_B}\n")
    os.utime(file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same size, same modification time
    assert file.stat().st_size == stamp.st_size and file.stat().st_mtime_ns == stamp.st_mtime_ns
    with pytest.raises(ApiError):
        keys.owner(KEY_A)
    assert keys.owner(key_c) and keys.owner(KEY_B)
    caplog.set_level("WARNING", logger="wanlab.server")
    file.write_text(f"{KEY_B}\nnot a key\nwanlab-\u00e9t\u00e9-0123456789abcdef\n")  # spaces; non-ASCII
    assert keys.owner(KEY_B) and len(keys) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("line 2:" in m for m in lines) and any("line 3:" in m for m in lines)
    assert not any("not a key\n" in m or "\u00e9t\u00e9" in m for m in lines)
    for edit in ("", "# all comments\n", None):
        caplog.clear()
        if edit is None:
            file.unlink()
        else:
            file.write_text(edit)
        for _ in range(3):
            with pytest.raises(ApiError) as caught:
                keys.owner(KEY_B)
            assert caught.value.status == 401
        assert sum("no API key is valid" in r.getMessage() for r in caplog.records) == 1  # logged once
    file.write_text(KEY_B + "\n")
    assert keys.owner(KEY_B)


def test_a_key_file_readable_by_others_is_warned_about(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(KEY_A + "\n")
    os.chmod(file, 0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        ApiKeys(file, ServerSecret.of_store(tmp_path / "store"))


def test_the_store_secret_is_made_once_private_and_kept(tmp_path):
    first = ServerSecret.of_store(tmp_path)
    file = tmp_path / "server" / "secret.key"
    assert file.stat().st_mode & 0o777 == 0o600 and len(file.read_bytes()) == 32
    assert ServerSecret.of_store(tmp_path).derive("urls") == first.derive("urls") != first.derive("owners")
    file.write_bytes(b"short")
    with pytest.raises(ParamError, match="secret.key"):
        ServerSecret.of_store(tmp_path)


def test_signed_urls_are_valid_for_their_path_until_they_expire():
    signer = UrlSigner(b"k" * 32, ttl=60)
    url = signer.url("http://h:1/", "0123456789abcdef", "video.mp4", now=1000)
    path, query = url.removeprefix("http://h:1").split("?")
    params = dict(part.split("=") for part in query.split("&"))
    assert path == "/v3/files/0123456789abcdef/video.mp4" and params["expires"] == "1060"
    signer.check(path, params["expires"], params["signature"], now=1059)
    signer.check(path, params["expires"], params["signature"].upper(), now=1000)
    refusals = [(path, params["expires"], params["signature"], 1061, "URL_EXPIRED"),
                (path, "1061", params["signature"], 1000, "INVALID_SIGNATURE"),
                (path.replace("video.mp4", "record.json"), params["expires"], params["signature"], 1000,
                 "INVALID_SIGNATURE"),
                (path, params["expires"], "é" * 64, 1000, "INVALID_SIGNATURE"),
                (path, "¹²³", params["signature"], 1000, "INVALID_SIGNATURE"),
                (path, None, None, 1000, "INVALID_SIGNATURE")]
    for where, expires, signature, now, reason in refusals:
        with pytest.raises(ApiError) as caught:
            signer.check(where, expires, signature, now=now)
        assert caught.value.status == 403 and caught.value.reason == reason
    assert UrlSigner(b"x" * 32, ttl=60).signature(path, 1060) != params["signature"]
    for key, name in (("../../etc", "video.mp4"), ("0123456789abcdef", "metrics.json")):
        with pytest.raises(ValueError):
            signer.url("http://h:1", key, name)


def test_webhook_destinations_need_the_operators_allow_list():
    with pytest.raises(ParamError, match=r"operator allowed no webhook destinations \(wanlab serve --webhook-allow"):
        WebhookRules((), 5.0).check("https://hooks.example.org/x")
    rules = WebhookRules(("hooks.example.org", "127.0.0.1:9000"), 5.0)
    assert rules.check("https://hooks.example.org/any/path?token=1") and rules.check("http://127.0.0.1:9000/x")
    for url in ("https://evil.example.org/x", "http://127.0.0.1:9001/x", "http://10.0.0.5/x",
                "ftp://hooks.example.org/", "https://user:pw@hooks.example.org/", "not a url", "http://[::1]:9000/"):
        with pytest.raises(ParamError, match=r"^extra\.webhook\.url: must be"):
            rules.check(url)
    assert rules.policy.allow == ("127.0.0.1",)  # listed as an address: reachable although loopback
    assert WebhookRules(("localhost:9000",), 5.0).policy.allow == ()  # a name does not allow its addresses


def test_net_policy_hosts_limit_every_hop_and_addresses_are_still_checked():
    assert parse_host("[::1]:8080") == ("::1", 8080) and parse_host("Hooks.Example.org") == ("hooks.example.org", None)
    for bad in ("http://x", "x:99999", "a b", "[::1", "x:", ""):
        with pytest.raises(UnsafeURLError, match="^host: must be HOST or HOST:PORT"):
            parse_host(bad)
    policy = NetPolicy(schemes=("http",), hosts=("127.0.0.1:9000",), allow=("127.0.0.1",))
    assert check_url("http://127.0.0.1:9000/a", policy).address.compressed == "127.0.0.1"
    with pytest.raises(UnsafeURLError, match="must go to one of the allowed hosts"):
        check_url("http://127.0.0.1:9001/a", policy)
    with pytest.raises(UnsafeURLError, match=r"got 127\.0\.0\.1 \(loopback\)"):
        check_url("http://localhost:9000/a", NetPolicy(schemes=("http",), hosts=("localhost:9000",)))


@pytest.mark.parametrize("host, inside, kind", [
    ("::ffff:127.0.0.1", "127.0.0.1", "loopback"), ("::7f00:1", "127.0.0.1", "loopback"),
    ("64:ff9b::7f00:1", "127.0.0.1", "loopback"), ("64:ff9b::a00:5", "10.0.0.5", "private"),
    ("2002:7f00:1::", "127.0.0.1", "loopback"), ("2002:a9fe:a9fe::1", "169.254.169.254", "link-local")])
def test_ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it(host, inside, kind):
    with pytest.raises(UnsafeURLError, match=rf"must reach only public addresses; got {re.escape(inside)} \({kind}\)"):
        check_url(f"https://[{host}]/x", NetPolicy())


def test_an_ipv6_form_of_a_public_ipv4_address_is_public():
    assert check_url("https://[64:ff9b::5db8:d822]/x", NetPolicy()).address.compressed == "64:ff9b::5db8:d822"


def test_webhook_allow_entries_admit_exactly_their_host_and_port():
    bare = WebhookRules(("127.0.0.1",), 5.0)
    assert bare.check("http://127.0.0.1/hook")  # a bare host: the scheme's own port only
    for url in ("http://127.0.0.1:6379/", "https://127.0.0.1:80/", "http://127.0.0.1:443/"):  # Redis; other ports
        with pytest.raises(ParamError, match="a host listed without a port admits only port 80 for http"):
            bare.check(url)
    named = WebhookRules(("localhost:9003", "127.0.0.1:9003"), 5.0)
    assert named.check("http://localhost:9003/h")  # the name is listed ...
    with pytest.raises(UnsafeURLError, match="a listed name admits no private address"):
        check_url("http://localhost:9003/h", named.policy)  # ... but not the loopback address it resolves to
    assert check_url("http://127.0.0.1:9003/h", named.policy).address.compressed == "127.0.0.1"
    with pytest.raises(ParamError):
        WebhookRules(("localhost:9003",), 5.0).check("http://127.0.0.1:9003/h")


def test_a_webhook_answered_with_a_redirect_is_not_resent_as_a_get_nor_called_delivered(tmp_path):
    import http.server
    import threading
    import time

    from wanlab.server.webhooks import Deliveries

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append("POST")
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(302)
            self.send_header("Location", "/landing")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            seen.append("GET")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = receiver.server_address[1]
    deliveries = Deliveries(tmp_path, WebhookRules((f"127.0.0.1:{port}",), 5.0), attempts=2, backoff_s=0.01)
    task_id, url = "0f8fad5b-d9cb-469f-a165-70867728950e", f"http://127.0.0.1:{port}/hook"
    try:
        deliveries.accepted(task_id, url)
        deliveries.send(task_id, url, {"event_type": "ASYNC_TASK_RESULT", "payload": {}})
        deadline = time.monotonic() + 20
        while (deliveries.read(task_id) or {}).get("state") == "waiting" and time.monotonic() < deadline:
            time.sleep(0.05)
        record = deliveries.read(task_id)
    finally:
        deliveries.close()
        receiver.shutdown()
    assert record["state"] == "failed" and [a["status"] for a in record["attempts"]] == [302, 302]
    assert "not followed as a GET" in record["attempts"][0]["error"] and seen == ["POST", "POST"]


def test_error_bodies_name_field_rule_and_value_and_echo_little():
    error = ApiError.invalid(ParamError("steps", "an integer in 1..40", 50))
    assert error.body() == {"code": 400, "reason": "INVALID_REQUEST_BODY",
                            "message": "steps: must be an integer in 1..40; got 50",
                            "metadata": {"field": "steps", "rule": "an integer in 1..40", "value": 50}}
    huge = ApiError.invalid(ParamError("loras", "at most 3 LoRAs", ["x" * 50] * 100))
    assert len(huge.message) < 300 and isinstance(huge.body()["metadata"]["value"], str)


def test_serve_without_fastapi_prints_how_to_install_it():
    code = ("import sys; sys.modules['fastapi'] = None; from wanlab.cli import main; "
            "sys.exit(main(['serve', '--model', 'tiny', '--no-auth']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "wanlab: error: wanlab serve needs FastAPI and uvicorn: pip install 'wanlab[serve]' (or: pip install "
        "fastapi uvicorn)"]


def test_serve_checks_its_options_before_loading_anything():
    done = subprocess.run([sys.executable, "-m", "wanlab.cli", "serve", "--model", "tiny", "--host", "0.0.0.0",
                           "--no-auth"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("wanlab: error: host: must be a loopback address")
    help_text = subprocess.run([sys.executable, "-m", "wanlab.cli", "serve", "--help"], capture_output=True,
                               text=True, cwd=ROOT, timeout=120).stdout
    for flag in ("--model", "--host", "--port", "--api-keys", "--store", "--workers", "--allow-local-sizes",
                 "--webhook-allow", "--no-auth"):
        assert flag in help_text


def test_workers_run_jobs_on_several_copies_at_once_with_the_same_frames(pipe, tmp_path):
    import torch

    import wanlab
    from tests.backends import FakeBackend
    from wanlab.tasks import TaskQueue
    from wanlab.workers import LocalWorkers

    second = wanlab.load("tiny", progress=False)
    try:
        workers = LocalWorkers([pipe, second])
        assert workers.identity == pipe.identity and workers.threads == max(1, (os.cpu_count() or 1) // 2)
        queue = TaskQueue(workers, tmp_path / "store")
        ids = [queue.submit(prompt="a kite", width=32, height=32, num_frames=5, steps=6, seed=s) for s in range(1, 5)]
        results = [queue.wait(task_id, timeout=300) for task_id in ids]
        queue.close()
        assert [r["task"]["status"] for r in results] == [TaskStatus.SUCCEED] * 4
        spans = [(int(r["extra"]["debug_info"]["execute_time_ms"]), int(r["extra"]["debug_info"]["complete_time_ms"]))
                 for r in results]
        assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])  # two at once
        run = queue.store.get(results[0]["extra"]["wanlab"]["run_key"])
        assert run.record["environment"]["torch_threads"] == workers.threads
        threads = torch.get_num_threads()
        torch.set_num_threads(workers.threads)
        try:
            alone = pipe.generate(prompt="a kite", width=32, height=32, num_frames=5, steps=6, seed=1)
        finally:
            torch.set_num_threads(threads)
        assert alone.digest == run.digest
        with pytest.raises(ValueError, match="must all run the same model"):
            LocalWorkers([pipe, FakeBackend()])
    finally:
        second.close()


def test_a_model_that_cannot_be_loaded_stops_the_server_with_its_reason(tmp_path):
    from wanlab.server.testing import free_port

    done = subprocess.run([sys.executable, "-m", "wanlab.cli", "serve", "--model", str(tmp_path / "no-such-model"),
                           "--no-auth", "--port", str(free_port()), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wanlab: error: the model {tmp_path / 'no-such-model'} could not be loaded: ")
