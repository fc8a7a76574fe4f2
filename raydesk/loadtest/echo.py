"""Bare uvicorn + Starlette WebSocket echo: the per-frame cost floor raydesk's gateway is
compared with (same uvicorn options as the gateway: sans-I/O websockets, no protocol
pings, no compression).

Run: python -m raydesk.loadtest.echo PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


async def healthz(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[WebSocketRoute("/v1/ws", echo), Route("/healthz", healthz)])


def main(port: int) -> None:
    uvicorn.run(app, host="127.0.0.1", port=port, ws="websockets-sansio",
                ws_ping_interval=None, ws_per_message_deflate=False, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]))
