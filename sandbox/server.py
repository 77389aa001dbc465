"""Serve the sandbox with uvicorn, on a protocol that can drop a connection without answering."""

from __future__ import annotations

import logging
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandbox.app import ABORT_EXTENSION, ARRIVED_EXTENSION, create_app
from sandbox.config import SandboxConfig

logger = logging.getLogger(__name__)


class DroppingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that lets the app abort the TCP connection.

    Each request's scope carries ``extensions["sandbox.abort"]``, a callable that closes the
    connection at once: the client gets no status line at all, as when a proxy or the network
    fails, instead of the 500 that an app exception would give. It also carries
    ``extensions["sandbox.arrived"]``, the moment the request began to arrive, from which the
    latency switch counts.
    """

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope = cast(dict[str, Any], self.scope)
        extensions = scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = self.transport.abort
        extensions[ARRIVED_EXTENSION] = self.loop.time()


def serve(config: SandboxConfig, host: str, port: int, *, access_log: bool = False) -> None:
    """Run the sandbox in the foreground until interrupted.

    Args:
        config: Applications, fault switches and database path.
        host: Address to listen on.
        port: Port to listen on.
        access_log: Also print uvicorn's access log (slows the server down).
    """
    server_config = uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        http=DroppingHttpToolsProtocol,
        loop="auto",
        lifespan="off",
        access_log=access_log,
        log_level="info",
        # Benchmarks open many keep-alive connections; keep them while clients pause.
        timeout_keep_alive=30,
        backlog=4096,
    )
    uvicorn.Server(server_config).run()
