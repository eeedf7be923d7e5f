"""Where a LoRA path points: local files (inside allowed folders), Hugging Face repos in the local hub
cache, https URLs downloaded once into a sha256 cache; the network guard that keeps downloads (and the
service's webhooks) off loopback and private addresses.

Downloads are tested against a real http.server on 127.0.0.1, allowed explicitly by each test's policy.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import block_modules, random_delta, write_lora
from wanlab import LoRAError, Params
from wanlab.errors import UnsafeURLError
from wanlab.lora import SourcePolicy, download, locate
from wanlab.netguard import NetPolicy, check_url, request

LOOPBACK = NetPolicy(schemes=("http",), allow=("127.0.0.1/32",))


@pytest.fixture()
def base(small):
    return Params(prompt="a lighthouse in fog", seed=9, **small)


@pytest.fixture(scope="module")
def lora_file(pipe, tmp_path_factory):
    path = write_lora(tmp_path_factory.mktemp("src") / "style.safetensors", random_delta(pipe, block_modules(), seed=4),
                      "comfyui")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def server():
    """A real HTTP server on 127.0.0.1: ``routes[path] = (status, headers, body)``; ``seen`` logs requests."""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str, str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body_in: bytes) -> None:
            seen.append((self.command, self.path, self.headers.get("Host"), body_in))
            status, headers, body = routes.get(self.path, (404, {}, b"not here"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if "no-length" not in self.path:  # else the body ends when the connection closes (HTTP/1.0)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/stall":
                time.sleep(1.5)
            self._answer(b"")

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, routes=routes, seen=seen, stop=httpd.shutdown)
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture()
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a certificate for 127.0.0.1 from a throwaway CA (trustme)."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    body = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body["data"])))
            self.end_headers()
            self.wfile.write(body["data"])

        def log_message(self, *args) -> None:
            pass

    def start(names):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"https://127.0.0.1:{httpd.server_address[1]}"

    servers: list = []
    yield SimpleNamespace(start=start, ca_file=str(ca_file), body=body)
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def policy_on(pipe):
    """Set ``pipe.loras.policy`` for one test and restore the library default afterwards."""
    saved = pipe.loras.policy

    def use(policy: SourcePolicy) -> SourcePolicy:
        pipe.loras.policy = policy
        return policy

    yield use
    pipe.loras.policy = saved


def _serve(server, lora_file) -> str:
    server.routes["/files/style.safetensors"] = (200, {"Content-Type": "application/octet-stream"},
                                                 lora_file[0].read_bytes())
    return f"{server.url}/files/style.safetensors"


def test_a_url_is_downloaded_once_by_sha256_and_then_works_offline(pipe, base, lora_file, server, policy_on, tmp_path):
    url = _serve(server, lora_file)
    policy_on(SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache")))
    local = pipe.generate(base.replace(loras=[(str(lora_file[0]), 0.8)]))
    remote = pipe.generate(base.replace(loras=[(url, 0.8)]))
    assert remote.digest == local.digest
    entry = remote.record["loras"][0]
    assert entry["path"] == url and entry["source"] == "url" and entry["sha256"] == lora_file[1]
    assert [s[:2] for s in server.seen] == [("GET", "/files/style.safetensors")]
    assert server.seen[0][2] == f"127.0.0.1:{server.port}"  # the Host header names the host, not a pinned IP
    server.stop()  # offline from here on: the cache answers
    assert pipe.generate(base.replace(loras=[(url, 0.8)])).digest == local.digest
    cached = sorted(p.name for p in (tmp_path / "cache" / "sha256").iterdir())
    assert cached == [f"{lora_file[1]}.safetensors"]  # no temporary file left behind
    assert download(url, pipe.loras.policy) == (tmp_path / "cache" / "sha256" / cached[0], lora_file[1])


def test_https_downloads_verify_the_certificate_through_the_pinned_connection(lora_file, tls_server, tmp_path):
    tls_server.body["data"] = lora_file[0].read_bytes()
    net = NetPolicy(allow=("127.0.0.1",), ca_file=tls_server.ca_file)
    good = tls_server.start(["127.0.0.1"])
    policy = SourcePolicy(net=net, cache_dir=str(tmp_path / "cache"))
    assert locate(f"{good}/style.safetensors", policy).sha256 == lora_file[1]
    wrong = tls_server.start(["lora.example.org"])  # a valid certificate, for another host
    with pytest.raises(LoRAError, match=r"^loras\.path: could not download https://127\.0\.0\.1:\d+/style\.safetensors "
                                        r"\(ConnectError: .*certificate verify failed"):
        locate(f"{wrong}/style.safetensors", policy)
    untrusted = SourcePolicy(net=NetPolicy(allow=("127.0.0.1",)), cache_dir=str(tmp_path / "other"))
    with pytest.raises(LoRAError, match=r"certificate verify failed"):
        locate(f"{good}/style.safetensors", untrusted)  # the throwaway CA is not trusted by default


def test_redirects_are_followed_and_each_hop_is_checked(lora_file, server, tmp_path):
    _serve(server, lora_file)
    server.routes["/go"] = (302, {"Location": "/files/style.safetensors"}, b"")
    policy = SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache"))
    assert locate(f"{server.url}/go", policy).sha256 == lora_file[1]
    server.routes["/elsewhere"] = (302, {"Location": f"http://127.0.0.2:{server.port}/files/style.safetensors"}, b"")
    with pytest.raises(LoRAError, match=r"^loras\.path: http://127\.0\.0\.2:\d+/files/style\.safetensors: must reach "
                                        r"only public addresses; got 127\.0\.0\.2 \(loopback\)$"):
        locate(f"{server.url}/elsewhere", policy)
    assert [path for _, path, _, _ in server.seen] == ["/go", "/files/style.safetensors", "/elsewhere"]


@pytest.mark.parametrize(("url", "address", "kind"), [
    ("https://10.1.2.3/lora.safetensors", "10.1.2.3", "private"),
    ("https://192.168.1.20/lora.safetensors", "192.168.1.20", "private"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254", "link-local"),
    ("https://127.0.0.1:8443/lora.safetensors", "127.0.0.1", "loopback"),
    ("https://[::1]/lora.safetensors", "::1", "loopback"),
    ("https://[::ffff:10.0.0.1]/lora.safetensors", "10.0.0.1", "private"),
    ("https://100.64.0.1/lora.safetensors", "100.64.0.1", "not globally routable"),
    ("https://0.0.0.0/lora.safetensors", "0.0.0.0", "unspecified"),
])
def test_private_and_special_addresses_are_refused_before_any_connection(url, address, kind, tmp_path):
    with pytest.raises(UnsafeURLError, match=rf"^{re.escape(url)}: must reach only public addresses; got "
                                             rf"{re.escape(address)} \({kind}\)$"):
        check_url(url, NetPolicy())
    with pytest.raises(LoRAError, match=r"^loras\.path: .*must reach only public addresses"):
        locate(url, SourcePolicy(cache_dir=str(tmp_path / "cache")))
    assert not (tmp_path / "cache").exists()  # refused before anything was written


def test_an_allow_list_opens_exactly_its_networks():
    assert check_url("http://127.0.0.1:9/x", LOOPBACK).address.compressed == "127.0.0.1"
    with pytest.raises(UnsafeURLError, match=r"got 127\.0\.0\.2 \(loopback\)$"):
        check_url("http://127.0.0.2:9/x", LOOPBACK)
    with pytest.raises(UnsafeURLError, match=r"^allow: must be IP addresses or networks such as '10\.0\.0\.0/8'; got "
                                             r"'intranet'$"):
        NetPolicy(allow=("intranet",))
    with pytest.raises(UnsafeURLError, match=r"^https://u:p@example\.org/x: must not carry a user name or password$"):
        check_url("https://u:p@example.org/x", NetPolicy())


def test_plain_http_and_other_schemes_are_refused_by_default():
    with pytest.raises(LoRAError, match=r"^loras\.path: http://example\.org/x\.safetensors: must be an https URL; got "
                                        r"scheme 'http'$"):
        locate("http://example.org/x.safetensors")
    with pytest.raises(LoRAError, match=r"^loras\.path: must be a local file or a Hugging Face repo id here \(URLs are "
                                        r"not allowed\); got https://example\.org/x\.safetensors$"):
        locate("https://example.org/x.safetensors", SourcePolicy(urls=False))


def test_the_size_limit_stops_a_download_and_leaves_nothing(lora_file, server, tmp_path):
    url = _serve(server, lora_file)
    size = lora_file[0].stat().st_size
    with pytest.raises(LoRAError, match=rf"^loras\.path: {url} must be at most 1000 bytes to download as a LoRA; got "
                                        rf"{size} bytes or more$"):
        locate(url, SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache"), max_bytes=1000))
    assert not (tmp_path / "cache").exists()  # refused on the declared length, before writing anything
    server.routes["/no-length/style.safetensors"] = (200, {}, lora_file[0].read_bytes())
    with pytest.raises(LoRAError, match=r"must be at most 1000 bytes to download as a LoRA; got \d+ bytes or "
                                        r"more$"):
        locate(f"{server.url}/no-length/style.safetensors",
               SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache"), max_bytes=1000))
    assert list((tmp_path / "cache" / "sha256").iterdir()) == []  # the partial download is gone


def test_a_download_that_is_not_a_safetensors_file_is_refused_and_not_cached(server, tmp_path):
    server.routes["/login"] = (200, {"Content-Type": "text/html"}, b"<html>please sign in</html>")
    with pytest.raises(LoRAError, match=r"^loras\.path: the download from http://127\.0\.0\.1:\d+/login is not a "
                                        r"safetensors file \(27 bytes of text/html: "):
        locate(f"{server.url}/login", SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache")))
    assert list((tmp_path / "cache" / "sha256").iterdir()) == [] and not (tmp_path / "cache" / "urls").exists()


def test_server_errors_and_unreachable_hosts_are_one_sentence(server, tmp_path):
    policy = SourcePolicy(net=LOOPBACK, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(LoRAError, match=r"^loras\.path: could not download http://127\.0\.0\.1:\d+/missing: the server "
                                        r"answered 404 Not Found$"):
        locate(f"{server.url}/missing", policy)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(LoRAError, match=rf"^loras\.path: could not download http://127\.0\.0\.1:{port}/x\.safetensors "
                                        r"\(ConnectError: .*\); wanlab is offline or the host is unreachable, and the "
                                        r"URL is not in the LoRA cache "):
        locate(f"http://127.0.0.1:{port}/x.safetensors", policy)


def test_a_host_that_stalls_is_refused_after_the_timeout(server, tmp_path):
    policy = SourcePolicy(net=NetPolicy(schemes=("http",), allow=("127.0.0.1",), timeout_s=0.3),
                          cache_dir=str(tmp_path / "cache"))
    with pytest.raises(LoRAError, match=r"^loras\.path: could not download http://127\.0\.0\.1:\d+/stall: the host did "
                                        r"not answer within 0\.3 s \(ReadTimeout\)$"):
        locate(f"{server.url}/stall", policy)


def test_the_guard_sends_webhook_posts_too(server):
    server.routes["/hook"] = (200, {"Content-Type": "application/json"}, b'{"ok": true}')
    response = request("POST", f"{server.url}/hook", LOOPBACK, content=b'{"event_type": "ASYNC_TASK_RESULT"}',
                       headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert server.seen[-1][0] == "POST" and server.seen[-1][3] == b'{"event_type": "ASYNC_TASK_RESULT"}'
    with pytest.raises(UnsafeURLError, match="must reach only public addresses"):
        request("POST", f"{server.url}/hook", NetPolicy(schemes=("http",)))


def _hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache holding ``repo`` at one commit, laid out as huggingface_hub writes it."""
    commit = hashlib.sha1(repo.encode()).hexdigest()
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, data in files.items():
        target = folder / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def test_hugging_face_repos_and_files_come_from_the_local_hub_cache(pipe, base, lora_file, policy_on, tmp_path):
    data = lora_file[0].read_bytes()
    cache = _hub_cache(tmp_path / "hub", "someone/style-lora", {"style.safetensors": data})
    _hub_cache(cache, "someone/two-loras", {"a.safetensors": data, "sub/b.safetensors": data})
    policy_on(SourcePolicy(hub_cache=str(cache)))
    local = pipe.generate(base.replace(loras=[(str(lora_file[0]), 0.6)])).digest
    for path in ("someone/style-lora", "someone/style-lora/style.safetensors", "hf://someone/style-lora"):
        video = pipe.generate(base.replace(loras=[(path, 0.6)]))
        entry = video.record["loras"][0]
        assert video.digest == local and entry["sha256"] == lora_file[1] and entry["source"] == "hub", path
    with pytest.raises(LoRAError, match=r"^loras\.path: the Hugging Face repo someone/two-loras holds 2 \.safetensors "
                                        r"files \(a\.safetensors, sub/b\.safetensors\); name one as "
                                        r"someone/two-loras/<file>$"):
        pipe.loras.file_hash("someone/two-loras")
    with pytest.raises(LoRAError, match=r"^loras\.path: a Hugging Face file must be a path inside its repo, without "
                                        r"'\.\.'; got hf://someone/style-lora/\.\./\.\./\.\./etc/passwd$"):
        pipe.loras.file_hash("hf://someone/style-lora/../../../etc/passwd")
    with pytest.raises(LoRAError, match=r"^loras\.path: 'someone/absent' is neither a local file nor a Hugging Face "
                                        r"repo in the local hub cache \(.*hub\); download it first with "
                                        r"`huggingface-cli download someone/absent` or give a local file "
                                        r"\(LocalEntryNotFoundError\)$"):
        pipe.loras.file_hash("someone/absent")


def test_allowed_folders_admit_files_inside_and_refuse_escapes(lora_file, tmp_path):
    root = tmp_path / "loras"
    (root / "styles").mkdir(parents=True)
    inside = root / "styles" / "style.safetensors"
    inside.write_bytes(lora_file[0].read_bytes())
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    (root / "link.safetensors").symlink_to(outside)
    policy = SourcePolicy.service([str(root)], cache_dir=str(tmp_path / "cache"))
    assert locate(str(inside), policy).file == inside.resolve()
    assert locate("styles/style.safetensors", policy).file == inside.resolve()  # relative: inside the folder
    refused = rf"^loras\.path: must be a file inside the allowed LoRA folders \({root}\); got "
    for escape in (str(outside), "../secret.safetensors", "styles/../../secret.safetensors", "link.safetensors"):
        with pytest.raises(LoRAError, match=refused + re.escape(escape) + "$"):
            locate(escape, policy)
    with pytest.raises(LoRAError, match=r"^loras\.path: no such LoRA file: styles/other\.safetensors$"):
        locate("styles/other.safetensors", policy)
    with pytest.raises(LoRAError, match=r"^loras\.path: must be a Hugging Face repo id or an https URL here \(local "
                                        r"files are not allowed\); got .*style\.safetensors$"):
        locate(str(inside), SourcePolicy(local_roots=()))


def test_the_service_policy_is_strict_by_default(tmp_path):
    policy = SourcePolicy.service(["/srv/loras"], cache_dir=str(tmp_path))
    assert policy.net.schemes == ("https",) and policy.net.allow == () and not policy.hub_download
    assert policy.max_bytes == 2 << 30 and policy.local_roots == ("/srv/loras",)
    library = SourcePolicy()
    assert library.local_roots is None and library.hub and library.urls and library.net.schemes == ("https",)


def test_the_cli_passes_urls_through_as_lora_paths(capsys, tmp_path):
    from wanlab.cli import main

    for lora in ("https://10.0.0.1/style.safetensors:0.5", "https://10.0.0.1/style.safetensors"):
        assert main(["generate", "--prompt", "x", "--quiet", "--lora", lora, "--out", str(tmp_path / "x.mp4")]) == 2
        assert "loras.path: https://10.0.0.1/style.safetensors: must reach only public addresses; got 10.0.0.1 " \
               "(private)" in capsys.readouterr().err

