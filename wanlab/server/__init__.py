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

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .config import ServerConfig
    from .run import serve
    from .service import Service
    from .testing import ServerProcess, WebhookReceiver, start_server

_LAZY = {"ServerConfig": "config", "Service": "service", "create_app": "app", "serve": "run",
         "ServerProcess": "testing", "start_server": "testing", "WebhookReceiver": "testing"}
__all__ = list(_LAZY)
__getattr__, __dir__ = lazy.attach(__name__, _LAZY)
