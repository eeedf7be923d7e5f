"""``wanlab serve``: its options, turned into a :class:`~wanlab.server.config.ServerConfig` and run.

Everything is checked before anything loads or listens; without FastAPI and uvicorn the command
prints one line saying how to install them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_URL_TTL,
    FAST_MODE_PRESET,
    ServerConfig,
)

DESCRIPTION = (
    "Serve the hosted Wan 2.1 T2V API over HTTP on this machine: POST /v3/async/wan-t2v with "
    "'Authorization: Bearer KEY' returns a task_id; GET /v3/async/task-result?task_id=... answers in the "
    "published shape with signed, expiring video URLs; GET /health says when the model is ready. Tasks are kept "
    "in the store when accepted and survive restarts. SIGTERM stops cleanly (running tasks finish).")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``wanlab`` command's subparsers.

    Args:
        sub: the ``wanlab`` parser's subparsers.

    Returns:
        The ``serve`` parser.
    """
    from ..backends import add_backend_args

    p = sub.add_parser("serve", help="serve the hosted API (POST /v3/async/wan-t2v, task-result) over HTTP",
                       description=DESCRIPTION)
    p.add_argument("--model", required=True, help="a built-in model (toy, tiny), a local diffusers folder or a hub "
                                                  "id from the local Hugging Face cache")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-keys", default=None, metavar="FILE",
                   help="API keys, one per line (# comments; 16+ characters each); re-read when the file changes")
    p.add_argument("--no-auth", action="store_true", help="serve without keys (only on a loopback --host)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="run store for tasks and videos (default: $WANLAB_STORE, else runs/tasks)")
    add_backend_args(p, remote=False, local_workers=True)
    p.add_argument("--allow-local-sizes", action="store_true",
                   help="also accept num_frames and any size that is a multiple of 16 (for tiny/toy; default: the "
                        "API's four sizes and 81 frames only)")
    p.add_argument("--webhook-allow", action="append", default=[], metavar="HOST[:PORT]",
                   help="a host webhooks may be sent to (repeatable; none: bodies with a webhook are refused). "
                        "Loopback, private and link-local addresses must be listed as addresses themselves")
    p.add_argument("--webhook-backoff", type=float, default=None, metavar="S",
                   help="seconds before the first webhook retry, doubling for each next one (default 2)")
    p.add_argument("--public-url", default=None, metavar="URL",
                   help="base of the video URLs handed out (default: the address a client called, or "
                        "http://HOST:PORT for webhooks), e.g. behind a proxy")
    p.add_argument("--url-ttl", type=int, default=DEFAULT_URL_TTL, metavar="S",
                   help=f"seconds a signed video URL stays valid (default {DEFAULT_URL_TTL})")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE, metavar="N",
                   help=f"tasks waiting at most; more are answered 429 with Retry-After (default {DEFAULT_QUEUE_SIZE})")
    p.add_argument("--max-queued-per-key", type=int, default=None, metavar="N",
                   help="tasks one API key may have waiting; more from that key are answered 429 with Retry-After, "
                        "and keys are served in turn (default: a quarter of --queue-size, at least 1)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body; larger ones are answered 413 (default {DEFAULT_MAX_BODY})")
    p.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S",
                   help=f"seconds a request body may take to arrive; a slower one is cut with 408 "
                        f"(default {DEFAULT_BODY_TIMEOUT_S:g})")
    p.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose .safetensors files requests may name as LoRA paths (repeatable; default: "
                        "no local files, only hub-cache repo ids and https URLs)")
    p.add_argument("--lora-cache", default=None, metavar="DIR",
                   help="where LoRA downloads are kept by sha256 (default $WANLAB_LORA_CACHE or ~/.cache/wanlab/loras)")
    p.add_argument("--lora-max-mb", type=int, default=2048, metavar="MB",
                   help="largest LoRA download (default 2048)")
    p.add_argument("--fast-mode-accel", default=FAST_MODE_PRESET, metavar="PRESET",
                   help=f"the acceleration preset fast_mode: true runs (default {FAST_MODE_PRESET}, see the README)")
    p.add_argument("--drain-timeout", type=float, default=None, metavar="S",
                   help="on SIGTERM wait at most S seconds for running tasks, then write them back as queued "
                        "(default: wait for them)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on CUDA)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=cmd_serve)
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The validated configuration of ``wanlab serve`` arguments.

    Args:
        args: the parsed command line.

    Returns:
        The :class:`~wanlab.server.config.ServerConfig`.

    Raises:
        ParamError: a bad option, named as its flag's field.
    """
    fields: dict[str, Any] = dict(
        model=args.model, host=args.host, port=args.port, api_keys=args.api_keys, no_auth=args.no_auth,
        workers=args.workers, ray=args.ray, allow_local_sizes=args.allow_local_sizes,
        webhook_allow=tuple(args.webhook_allow),
        public_url=args.public_url, url_ttl=args.url_ttl, queue_size=args.queue_size,
        max_queued_per_key=args.max_queued_per_key, max_body=args.max_body, body_timeout_s=args.body_timeout,
        lora_dirs=tuple(args.lora_dir), lora_cache=args.lora_cache, lora_max_bytes=args.lora_max_mb << 20,
        fast_mode_accel=args.fast_mode_accel, device=args.device, dtype=args.dtype,
        drain_timeout_s=args.drain_timeout)
    if args.store is not None:
        fields["store"] = args.store
    if args.webhook_backoff is not None:
        fields["webhook_backoff_s"] = args.webhook_backoff
    return ServerConfig(**fields)


def cmd_serve(args: argparse.Namespace) -> int:
    """``wanlab serve``: run the service until stopped.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: the server's own (:func:`wanlab.server.run.serve`), 2 when a server dependency is
        missing.
    """
    from .run import missing_dependencies, serve

    config = config_from_args(args)
    missing = missing_dependencies()
    if missing:
        print(f"wanlab: error: {missing}", file=sys.stderr)
        return 2
    return serve(config, access_log=not args.no_access_log)
