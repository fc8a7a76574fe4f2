"""A protocol-speaking test client: a real WebSocket on loopback, PROTOCOL.md frames."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Callable
from typing import Any

# ruff: noqa: ASYNC109 - explicit timeouts keep test failures quick and readable
import httpx
import websockets
from websockets.asyncio.client import ClientConnection

# Stretch every wait on a slow machine: RAYDESK_TEST_TIMEOUT_SCALE=3 pytest ...
SCALE = float(os.environ.get("RAYDESK_TEST_TIMEOUT_SCALE", "1"))
WAIT_S = 10.0 * SCALE
_ids = itertools.count(1)

Frame = dict[str, Any]


class Client:
    """One connection of a customer or agent. Keeps every frame it received."""

    def __init__(self, ws_url: str, token: str, ping_every: float | None = 1.0) -> None:
        self.ws_url = ws_url
        self.token = token
        self.ping_every = ping_every
        self.ws: ClientConnection | None = None
        self.frames: list[Frame] = []
        self.welcome: Frame = {}
        self.close_code: int | None = None
        self._taken: set[int] = set()
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> Client:
        self.ws = await websockets.connect(self.ws_url, max_size=None)
        await self.ws.send(json.dumps({"type": "hello", "token": self.token}))
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        self.welcome = await self.expect(lambda f: f["type"] == "welcome")
        if self.ping_every:
            self._tasks.append(asyncio.get_running_loop().create_task(self._ping()))
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for text in self.ws:
                self.frames.append(json.loads(text))
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._arrived.set()

    async def _ping(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self.ping_every or 1.0)
                await self.ws.send('{"type":"ping"}')

    async def send_frame(self, frame: Frame | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def expect(self, match: Callable[[Frame], bool], timeout: float = WAIT_S,
                     after: int = 0) -> Frame:
        """The first frame not yet taken that matches (and arrived as number ``after`` or
        later); waits for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, frame in enumerate(self.frames):
                if i >= after and i not in self._taken and match(frame):
                    self._taken.add(i)
                    return frame
            if self.close_code is not None:
                raise AssertionError(f"connection closed ({self.close_code}) before a match; "
                                     f"frames: {self.frames[-5:]}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {timeout} s; last: "
                                     f"{self.frames[-5:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def expect_type(self, kind: str, **fields: Any) -> Frame:
        return await self.expect(lambda f: f["type"] == kind and all(
            f.get(k) == v for k, v in fields.items()))

    async def expect_event(self, kind: str, conversation_id: str | None = None) -> Frame:
        return await self.expect(lambda f: f["type"] == "message" and (f.get("event") or {})
                                 .get("kind") == kind and conversation_id in (
                                     None, f["conversation_id"]))

    async def send_text(self, text: str, conversation_id: str | None = None,
                        client_msg_id: str | None = None) -> Frame:
        """Send a message and wait for its ack (or raise on an error frame for it)."""
        cmid = client_msg_id or f"t{next(_ids)}"
        frame: Frame = {"type": "send", "client_msg_id": cmid, "text": text}
        if conversation_id:
            frame["conversation_id"] = conversation_id
        await self.send_frame(frame)
        reply = await self.expect(lambda f: f["type"] in ("ack", "error")
                                  and (f.get("client_msg_id") == cmid or f.get("ref") == cmid))
        if reply["type"] == "error":
            raise AssertionError(f"send failed: {reply}")
        return reply

    async def wait_closed(self, timeout: float = WAIT_S) -> int | None:
        assert self.ws is not None
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        await asyncio.sleep(0)
        return self.ws.close_code

    def messages(self, conversation_id: str) -> list[Frame]:
        """Every message frame received for a conversation, deduplicated by seq."""
        by_seq = {f["seq"]: f for f in self.frames
                  if f["type"] == "message" and f["conversation_id"] == conversation_id}
        return [by_seq[s] for s in sorted(by_seq)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.ws is not None:
            await self.ws.close()


class Api:
    """REST calls against a running raydesk."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        self.base_url = base_url
        self.admin_token = admin_token
        self.http = httpx.AsyncClient(base_url=base_url, timeout=WAIT_S)

    async def visitor(self, **body: Any) -> dict[str, str]:
        response = await self.http.post("/v1/visitors", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def agent(self, email: str | None = None, password: str = "correct horse 1",
                    **body: Any) -> dict[str, str]:
        """Create an agent and log it in: ``{agent_id, token, email}``."""
        email = email or f"agent{next(_ids)}-{os.getpid()}@example.test"
        response = await self.http.post(
            "/v1/agents", json={"email": email, "password": password,
                                "name": body.pop("name", "Agent"), **body},
            headers={"Authorization": f"Bearer {self.admin_token}"})
        assert response.status_code == 201, response.text
        login = await self.http.post("/v1/agents/login",
                                     json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        return {**login.json(), "email": email}

    async def close(self) -> None:
        await self.http.aclose()
