"""``wanlab serve``: the hosted Wan 2.1 T2V API over HTTP, on your own machine.

- :mod:`~wanlab.server.config`: :class:`ServerConfig`, what the operator decides, validated;
- :mod:`~wanlab.server.service`: :class:`Service`, accepting tasks and answering for them (no HTTP);
- :mod:`~wanlab.server.app`: the FastAPI routes; :mod:`~wanlab.server.schema`: their OpenAPI schemas;
- :mod:`~wanlab.server.auth` (API keys, the store's secret), :mod:`~wanlab.server.urls` (signed
  file URLs), :mod:`~wanlab.server.webhooks` (deliveries), :mod:`~wanlab.server.errors` (error bodies);
- :mod:`~wanlab.server.run` (uvicorn) and :mod:`~wanlab.server.cli` (the ``serve`` subcommand);
- :mod:`~wanlab.server.testing`: a real server in a subprocess on a free loopback port, for tests.

FastAPI and uvicorn are the optional extra ``wanlab[serve]``; nothing here imports them until a
server is built.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .config import ServerConfig
    from .run import serve
    from .service import Service
    from .testing import ServerProcess, WebhookReceiver, start_server

_LAZY = {"ServerConfig": "config", "Service": "service", "create_app": "app", "serve": "run",
         "ServerProcess": "testing", "start_server": "testing", "WebhookReceiver": "testing"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'wanlab.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
