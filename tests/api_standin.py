"""A stand-in for the hosted API (a service the tests cannot reach), on 127.0.0.1: its two routes with
the published bodies, Bearer keys, video URLs on its own address or on a second "CDN" server, and
faults queued per route (a status with headers and body, a dropped connection, a cut-short download),
so the client's retries and error mapping meet real HTTP with known answers.

Videos are made from the request alone (a square whose speed follows ``guidance_scale`` over a
background from the seed) and encoded as h264 mp4, as the hosted API serves them.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from wanlab.taskstatus import FINISHED, TaskStatus

SUBMIT = "/v3/async/wan-t2v"
RESULT = "/v3/async/task-result"


@dataclass
class Fault:
    """What the next request to a route gets instead of its answer: ``status`` with ``headers`` and
    ``body``; ``drop=True`` closes the connection unanswered (after acting on the request when
    ``accept`` is set); ``truncate`` sends only that many bytes of a download's body."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    accept: bool = False
    truncate: int | None = None


def frames_for(body: dict[str, Any]) -> np.ndarray:
    """The frames the stand-in returns for a request body (known content: a moving bright square)."""
    w, h = int(body.get("width", 832)), int(body.get("height", 480))
    t = int(body.get("num_frames", 81))
    rng = np.random.default_rng(int(body.get("seed", 0)))
    out = np.empty((t, h, w, 3), np.uint8)
    out[:] = rng.integers(30, 90, size=3, dtype=np.uint8)
    side = max(4, min(w, h) // 4)
    speed = float(body.get("guidance_scale", 5.0))
    for i in range(t):
        x = int(i * speed) % max(1, w - side)
        out[i, h // 3: h // 3 + side, x: x + side] = 230
    if body.get("prompt") == "black":
        out[:] = 0
    return out


class Handler(BaseHTTPRequestHandler):
    server: StandinServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, truncate: int | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else
                                            (body.encode() if isinstance(body, str) else json.dumps(body).encode()))
        self.send_response(status)
        hdrs = {"Content-Type": "application/json" if raw is None else "video/mp4", **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if truncate is None else data[:truncate])
        if truncate is not None:
            self.close_connection = True

    def _route(self) -> str:
        return f"{self.command} {urlparse(self.path).path}"

    def _fault(self) -> Fault | None:
        with self.server.lock:
            queue = self.server.faults.get(self._route())
            return queue.pop(0) if queue else None

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route = self._route()
        with srv.lock:
            srv.log.append({"route": route, "headers": dict(self.headers), "body": raw.decode(errors="replace"),
                            "path": self.path})
        fault = self._fault()
        if fault is not None and fault.truncate is None:
            if fault.drop:
                if fault.accept and route == f"POST {SUBMIT}":
                    srv.accept(json.loads(raw))
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(fault.status, fault.body, fault.headers)
            return
        path = urlparse(self.path).path
        if path.startswith("/videos/"):
            self._video(path.rsplit("/", 1)[-1].split(".")[0], fault)
            return
        if srv.keys and self.headers.get("Authorization") not in {f"Bearer {k}" for k in srv.keys}:
            self._send(401, {"message": "invalid API key"})
            return
        if route == f"POST {SUBMIT}":
            body = json.loads(raw)
            if body.get("width") == 999:  # the service refuses a field in wanlab's own words
                self._send(400, {"message": f"width: must be one of the API sizes; got {body['width']}"})
                return
            self._send(200, {"task_id": srv.accept(body)})
        elif route == f"GET {RESULT}":
            task_id = parse_qs(urlparse(self.path).query).get("task_id", [""])[0]
            result = srv.result(task_id)
            self._send(404, {"message": "task not found"}) if result is None else self._send(200, result)
        else:
            self._send(404, {"message": "not found"})

    def _video(self, task_id: str, fault: Fault | None) -> None:
        data = self.server.video_bytes(task_id)
        if data is None:
            self._send(404, {"message": "no such video"})
            return
        self._send(200, raw=data, truncate=fault.truncate if fault else None)


class StandinServer(ThreadingHTTPServer):
    """The stand-in (see the module docstring): ``accepted`` lists every request body it took, ``log``
    every request (route, headers, body), ``faults[route]`` the faults queued for a route
    (``"POST /v3/async/wan-t2v"``, ``"GET /v3/async/task-result"``, ``"GET /videos/..."``)."""

    daemon_threads = True

    def __init__(self, keys: tuple[str, ...] = (), task_seconds: float = 0.05, cdn: StandinServer | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.keys = keys
        self.task_seconds = task_seconds
        self.cdn = cdn
        self.lock = threading.Lock()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, bytes] = {}
        self.accepted: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.faults: dict[str, list[Fault]] = {}
        self.fail_prompts: set[str] = set()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def routes(self, route: str) -> int:
        with self.lock:
            return sum(1 for entry in self.log if entry["route"] == route)

    def accept(self, body: dict[str, Any]) -> str:
        task_id = str(uuid.uuid4())
        with self.lock:
            self.accepted.append(body)
            self.tasks[task_id] = {"body": body, "submitted": time.time()}
        return task_id

    def result(self, task_id: str) -> dict[str, Any] | None:
        with self.lock:
            task = self.tasks.get(task_id)
        if task is None:
            return None
        body = task["body"]
        age = time.time() - task["submitted"]
        status, progress, videos, reason = TaskStatus.QUEUED, 0, [], ""
        if age >= self.task_seconds:
            with self.lock:  # a task ends once: as it ended when first seen finished
                failed = task.setdefault("failed", body.get("prompt") in self.fail_prompts)
            if failed:
                status, reason = TaskStatus.FAILED, "the service could not run this prompt"
            else:
                status, progress = TaskStatus.SUCCEED, 100
                host = self.cdn or self
                host.store_video(task_id, body)
                videos = [{"video_url": f"{host.url}/videos/{task_id}.mp4?sig=secret-signature",
                           "video_url_ttl": "3600", "video_type": "mp4"}]
        elif age >= self.task_seconds / 2:
            status, progress = TaskStatus.PROCESSING, 50
        ms = lambda t: str(int(t * 1000))  # noqa: E731
        submitted = task["submitted"]
        return {"task": {"task_id": task_id, "task_type": "WAN_TXT_TO_VIDEO", "status": status, "reason": reason,
                         "eta": 0 if status in FINISHED else 1, "progress_percent": progress},
                "images": [], "videos": videos, "audios": [],
                "extra": {"seed": str(body.get("seed", -1)), "enable_nsfw_detection": False,
                          "debug_info": {"request_info": json.dumps(body), "submit_time_ms": ms(submitted),
                                         "execute_time_ms": ms(submitted + self.task_seconds / 2) if progress else "",
                                         "complete_time_ms": ms(submitted + self.task_seconds) if videos else ""}}}

    def store_video(self, task_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            if task_id in self.videos:
                return
        import io

        from wanlab.video import PLAYABLE, encode

        buffer = io.BytesIO()
        encode(frames_for(body), buffer, 16.0, PLAYABLE, container="mp4")
        with self.lock:
            self.videos[task_id] = buffer.getvalue()

    def video_bytes(self, task_id: str) -> bytes | None:
        with self.lock:
            return self.videos.get(task_id)


def save_key(folder: Path, key: str) -> Path:
    """A key file as ``--api-key-file`` reads it (mode 600)."""
    file = folder / "key.txt"
    file.write_text(f"# the stand-in's key\n{key}\n")
    file.chmod(0o600)
    return file
