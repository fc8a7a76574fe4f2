"""The Serve application: gateway replicas that terminate WebSockets themselves.

Serve manages the replicas (count, restarts, redeploys); each replica runs its own uvicorn
server on the one public port, opened with SO_REUSEPORT so the kernel spreads connections
over the replicas of a node. Frames never cross Serve's HTTP proxy, which measured here at
~2 ms of CPU per WebSocket frame against ~0.05 ms for bare uvicorn
(docs/explanation/architecture.md has the figures and the choice).

``raydesk serve`` builds the application with :func:`gateway_app`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn
from ray import serve
from ray.serve import Application

from raydesk.gateway import create_app
from raydesk.settings import Settings

log = logging.getLogger("raydesk.gateway")


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ws="websockets-sansio",
        ws_max_size=settings.config.limits.max_frame_bytes,
        # raydesk's own ping/pong and heartbeat timeout (4408) replace protocol pings.
        ws_ping_interval=None,
        # Chat frames are small: compressing them cost more CPU than it saved bytes.
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


@serve.deployment(
    # An open WebSocket holds a Serve request slot only if it goes through Serve; ours do
    # not, but keep the limit high so handle calls (readiness) are never starved.
    max_ongoing_requests=10_000,
    health_check_period_s=5,
    graceful_shutdown_timeout_s=5,
)
class Gateway:
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        logging.basicConfig(level=settings.config.log_level)
        self._settings = settings
        self._app, self._core = create_app(settings)
        server_config = settings.config.server
        self._socket = reuseport_socket(server_config.host, server_config.port)
        self._server = uvicorn.Server(uvicorn_config(self._app, settings))
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped the server
            await asyncio.sleep(0.02)
        log.info("gateway %s listening on %s:%d", self._core.gateway_id, server_config.host,
                 self._socket.getsockname()[1])

    async def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError("the gateway's HTTP server stopped")

    async def info(self) -> dict[str, Any]:
        return {"gateway_id": self._core.gateway_id, "connections": len(self._core.sessions)}

    async def __del__(self) -> None:
        # Serve calls this on a graceful shutdown (redeploy, scale down, stop): tell
        # clients to reconnect (1012) and sync, then stop accepting.
        await self._core.restart_all()
        self._server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self._task), 5)
        await self._core.hub.close()


@serve.deployment(max_ongoing_requests=10_000, health_check_period_s=5,
                  graceful_shutdown_timeout_s=5)
@serve.ingress()
class ProxiedGateway:
    """The same gateway app behind Serve's HTTP proxy (``server.ingress: serve_proxy``).

    Every frame then crosses the proxy; kept to measure against and for clusters where a
    replica may not bind the public port.
    """

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        logging.basicConfig(level=settings.config.log_level)
        self._app, self._core = create_app(settings)

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    async def __del__(self) -> None:
        await self._core.restart_all()
        await self._core.hub.close()


def gateway_app(settings: Settings) -> Application:
    deployment: Any = Gateway if settings.config.server.ingress == "reuseport" \
        else ProxiedGateway
    app: Application = deployment.options(
        num_replicas=settings.config.server.gateway_replicas).bind(settings)
    return app
