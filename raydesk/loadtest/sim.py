"""A simulated participant's connection: a real WebSocket speaking PROTOCOL.md.

A :class:`Connection` says ``hello``, sends durable messages with a fresh
``client_msg_id``, pings every ``heartbeat_s``, records latencies into the shared
:class:`Env`'s recorder, keeps a :class:`~raydesk.loadtest.checker.Stream` per
conversation for the exactly-once check, and behaves as PROTOCOL.md asks of clients:
reconnect, sync and resend with the same ``client_msg_id`` when the server closes it,
resend a send and re-ask a sync refused with ``unavailable``, counting every refusal and
close code. The customer and the agent are in :mod:`raydesk.loadtest.people`.

Latencies across processes: a ``client_msg_id`` carries its send time (wall clock, µs), so
whichever process receives the message computes send -> delivery without shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from raydesk.loadtest.checker import Ack, Role, Stream
from raydesk.loadtest.metrics import Recorder

log = logging.getLogger("raydesk.loadtest")

Frame = dict[str, Any]
# Long enough for a loaded server to answer hello; a stuck handshake is an error.
HANDSHAKE_TIMEOUT_S = 30.0
# Reconnect and resend back-off (PROTOCOL.md section 9): 0.5 s doubling, +-20 %.
BACKOFF_S = 0.5
# Resends of a message refused with "unavailable" before it counts as refused.
RESENDS = 3
# Distinct error codes whose messages are kept (each with its count).
MAX_ERROR_MESSAGES = 20


def stamp_of(client_msg_id: str) -> float | None:
    """The send time (wall clock, s) a load-test ``client_msg_id`` carries, else None."""
    head, _, micros = client_msg_id.rpartition(".")
    if not head.startswith("lt") or not micros.isdigit():
        return None
    return int(micros) / 1e6


@dataclass
class Env:
    """What every connection of one load-generating process shares."""

    ws_url: str
    worker: int
    run_id: str
    agent_delay_s: float = 1.0
    late_s: float = 0.05
    echo: bool = False
    reconnects: int = 3
    # Whether queued conversations will get an agent (settling waits for it).
    agents_expected: bool = True
    recorder: Recorder = field(default_factory=lambda: Recorder(time.time(), 1.0))
    # The wall-clock span whose sends the current step measures.
    step_from: float = float("inf")
    step_until: float = float("inf")
    # After the run: message frames are the final sync's, not live deliveries.
    final: bool = False
    errors: Counter[str] = field(default_factory=Counter)
    error_messages: dict[str, Counter[str]] = field(default_factory=dict)
    frames_in: Counter[str] = field(default_factory=Counter)
    acks: list[Ack] = field(default_factory=list)
    replies_due: int = 0
    last_delivery: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def client_msg_id(self, wall: float) -> str:
        return f"lt{self.worker}.{next(self._ids)}.{int(wall * 1e6)}"

    def in_step(self, wall: float) -> bool:
        return self.step_from <= wall < self.step_until


class Connection:
    """One WebSocket of a simulated participant."""

    role: Role = "customer"

    def __init__(self, env: Env, token: str) -> None:
        self.env = env
        self.token = token
        self.id = ""
        self.ws: ClientConnection | None = None
        self.heartbeat_s = 30.0
        self.last_sent = 0.0
        self.streams: dict[str, Stream] = {}
        # client_msg_id -> (perf_counter at send, wall at send, frame): until acked.
        self.pending: dict[str, tuple[float, float, Frame]] = {}
        self.syncs = 0
        self.synced = asyncio.Event()
        self._closing = False
        self._reconnects = 0
        self._resends: dict[str, int] = {}
        self._syncs_sent: deque[tuple[str, int, int]] = deque()
        self._reader: asyncio.Task[None] | None = None

    # --- connecting -----------------------------------------------------------------------

    async def open(self) -> None:
        self.ws = await websockets.connect(self.env.ws_url, max_size=None, ping_interval=None,
                                           compression=None, open_timeout=HANDSHAKE_TIMEOUT_S,
                                           close_timeout=2)
        await self._send({"type": "hello", "token": self.token})
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), HANDSHAKE_TIMEOUT_S))
        if self.env.echo:  # the echo server returns the hello: that is its welcome
            welcome = {"type": "welcome", "id": f"echo{id(self)}", "conversations": [],
                       "heartbeat_s": 30}
        if welcome.get("type") != "welcome":
            await self.ws.close()
            raise ConnectionError(f"hello refused: {welcome}")
        self.id = welcome["id"]
        self.heartbeat_s = float(welcome["heartbeat_s"])
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.on_welcome(welcome)

    async def on_welcome(self, welcome: Frame) -> None:
        """After a reconnect: sync every known stream from its last contiguous seq, then
        resend what was not acknowledged (PROTOCOL.md section 9)."""
        for stream in list(self.streams.values()):
            if stream.end is None:
                self.sync(stream.conversation_id, stream.contiguous())
        for cmid, (perf, wall, frame) in list(self.pending.items()):
            if "conversation_id" not in frame and self.conversation_of(cmid):
                frame["conversation_id"] = self.conversation_of(cmid)
            self.pending[cmid] = (perf, wall, frame)
            await self._send(frame)

    def conversation_of(self, client_msg_id: str) -> str | None:
        return None

    async def _read(self) -> None:
        assert self.ws is not None
        env = self.env
        try:
            async for text in self.ws:
                frame = json.loads(text)
                kind = frame.get("type", "?")
                env.frames_in[kind] += 1
                env.recorder.count("frames_in", time.time())
                handler = _HANDLERS.get(kind)
                if handler is not None:
                    handler(self, frame)
        except websockets.ConnectionClosed:
            pass
        except Exception:
            log.exception("load test: %s %s: reading failed", self.role, self.id)
            env.errors["client_error"] += 1
        code = self.ws.close_code
        if self._closing:
            return
        env.errors[f"close_{code}"] += 1
        if self._reconnects < env.reconnects:
            self._reconnects += 1
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closing:
            delay = BACKOFF_S * 2 ** (self._reconnects - 1)
            await asyncio.sleep(delay * self.env.rng.uniform(0.8, 1.2))
            try:
                await self.open()
                return
            except (OSError, websockets.WebSocketException, ConnectionError, TimeoutError):
                self.env.errors["reconnect_failed"] += 1
            if self._reconnects >= self.env.reconnects:
                return
            self._reconnects += 1

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            with contextlib.suppress(websockets.WebSocketException, OSError):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    @property
    def open_(self) -> bool:
        return self.ws is not None and self.ws.close_code is None and not self._closing

    # --- sending ----------------------------------------------------------------------------

    async def _send(self, frame: Frame) -> bool:
        if self.ws is None:
            return False
        try:
            await self.ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            self.env.errors["send_on_closed"] += 1
            return False
        now = time.time()
        self.last_sent = now
        self.env.recorder.count("frames_out", now)
        return True

    async def send_message(self, text: str, conversation_id: str | None) -> None:
        """A durable message with a fresh ``client_msg_id`` carrying its send time."""
        now = time.time()
        cmid = self.env.client_msg_id(now)
        frame: Frame = {"type": "send", "client_msg_id": cmid, "text": text}
        if conversation_id is not None:
            frame["conversation_id"] = conversation_id
        self.pending[cmid] = (time.perf_counter(), now, frame)
        if self.env.in_step(now):
            self.env.recorder.count(f"sent_{self.role}", now)
        await self._send(frame)

    async def ping_if_idle(self, now: float) -> None:
        if self.open_ and not self.syncs and now - self.last_sent >= self.heartbeat_s:
            await self._send({"type": "ping"})

    def sync(self, conversation_id: str, since: int) -> None:
        """Ask for a stream's seqs after ``since``; counted in flight from now until its
        ``synced`` (so nobody waiting on :attr:`synced` misses a next page)."""
        stream = self.streams.get(conversation_id)
        if stream is not None:
            stream.syncs_in_flight += 1
        self.syncs += 1
        self.synced.clear()
        asyncio.get_running_loop().create_task(self._send_sync(conversation_id, since, 0))

    async def _send_sync(self, conversation_id: str, since: int, tries: int) -> None:
        # A connection's frames are answered in order: the oldest sync in flight is the
        # one a ref-less error (or its synced) answers.
        self._syncs_sent.append((conversation_id, since, tries))
        if not await self._send({"type": "sync", "conversation_id": conversation_id,
                                 "since": since}):
            self._syncs_sent.remove((conversation_id, since, tries))
            self._sync_done(self.streams.get(conversation_id))

    def _sync_refused(self) -> None:
        """A ref-less error answers the oldest sync in flight: ask again after a back-off
        (it stays in flight meanwhile), up to ``RESENDS`` times."""
        if not self._syncs_sent:
            return
        cid, since, tries = self._syncs_sent.popleft()
        if tries >= RESENDS:
            self.env.errors["sync_gave_up"] += 1
            self._sync_done(self.streams.get(cid))
            return
        delay = BACKOFF_S * 2 ** tries * self.env.rng.uniform(0.8, 1.2)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(self._send_sync(cid, since, tries + 1)))

    def _sync_done(self, stream: Stream | None) -> None:
        if stream is not None and stream.syncs_in_flight:
            stream.syncs_in_flight -= 1
        self.syncs = max(0, self.syncs - 1)
        if not self.syncs:
            self.synced.set()

    async def final_sync(self) -> None:
        """After the run: fetch every stream's seqs past its last contiguous live one."""
        conversation = self.conversation_of("")
        if conversation is not None:  # acked there, even if no event of it arrived
            self.stream(conversation, 1)
        for stream in list(self.streams.values()):
            self.sync(stream.conversation_id, stream.contiguous())
        if not self.syncs:
            self.synced.set()

    # --- receiving --------------------------------------------------------------------------

    def on_ack(self, frame: Frame) -> None:
        sent = self.pending.pop(frame["client_msg_id"], None)
        if sent is None:
            return
        perf, wall, _ = sent
        env = self.env
        if not env.echo:
            env.acks.append(Ack(frame["conversation_id"], frame["seq"],
                                f"{self.id}/{frame['client_msg_id']}"))
        if env.in_step(wall):
            env.recorder.latency("ack", time.perf_counter() - perf, wall)
            env.recorder.count("acked", wall)

    def on_error(self, frame: Frame) -> None:
        """Count it (by code, and its first messages); a send refused with
        ``unavailable`` is resent with the same client_msg_id after a back-off, as
        PROTOCOL.md asks of clients, up to ``RESENDS`` times; other refusals are final."""
        env = self.env
        code = str(frame.get("code"))
        env.errors[code] += 1
        if len(env.error_messages) < MAX_ERROR_MESSAGES or code in env.error_messages:
            env.error_messages.setdefault(code, Counter())[str(frame.get("message"))] += 1
        ref = frame.get("ref")
        if ref is None:
            # A refused sync (not one rate-limited: that frame was dropped unread, and
            # may have been a ping).
            if code != "rate_limited":
                self._sync_refused()
            return
        if ref not in self.pending:
            return
        tries = self._resends.get(ref, 0)
        if code == "unavailable" and tries < RESENDS:
            self._resends[ref] = tries + 1
            delay = BACKOFF_S * 2 ** tries * env.rng.uniform(0.8, 1.2)
            loop = asyncio.get_running_loop()
            loop.call_later(delay, lambda: loop.create_task(self._resend(ref)))
            return
        self._resends.pop(ref, None)
        _, wall, _ = self.pending.pop(ref)
        env.recorder.count("refused", wall)

    async def _resend(self, client_msg_id: str) -> None:
        sent = self.pending.get(client_msg_id)
        if sent is not None and self.open_:
            await self._send(sent[2])

    def on_synced(self, frame: Frame) -> None:
        cid = frame["conversation_id"]
        answered = next((entry for entry in self._syncs_sent if entry[0] == cid), None)
        if answered is not None:
            self._syncs_sent.remove(answered)
        stream = self.streams.get(cid)
        if self.env.final and stream is not None and not frame.get("more"):
            stream.final_synced = True
        if frame.get("more") and stream is not None:
            seen = max([stream.highest, *stream.late, *stream.origins, 0])
            self.sync(stream.conversation_id, seen)
        self._sync_done(stream)

    def on_message(self, frame: Frame) -> None:
        raise NotImplementedError

    def on_assigned(self, frame: Frame) -> None:
        """An ``assigned`` frame (agents only)."""

    def stream(self, conversation_id: str, start: int) -> Stream:
        stream = self.streams.get(conversation_id)
        if stream is None:
            stream = self.streams[conversation_id] = Stream(self.id, self.role,
                                                            conversation_id, start=start)
        return stream

    def deliver(self, stream: Stream, frame: Frame) -> tuple[bool, float | None]:
        """Note a message frame in its stream: (first live arrival?, the send time its
        client_msg_id carries)."""
        cmid = frame.get("client_msg_id")
        origin = f"{frame['sender']['id']}/{cmid}" if cmid else None
        self.env.last_delivery = time.time()
        if self.env.final:
            stream.on_final(frame["seq"], origin)
            return False, None
        first = stream.on_live(frame["seq"], origin)
        return first, stamp_of(cmid) if cmid else None

    def latency_since(self, name: str, sent: float | None) -> None:
        if sent is not None and self.env.in_step(sent):
            self.env.recorder.latency(name, time.time() - sent, sent)


# By frame type; anything else (queue, typing, read, pong, the agents' conversation feed)
# is only counted.
_HANDLERS: dict[str, Callable[[Connection, Frame], None]] = {
    "ack": lambda connection, frame: connection.on_ack(frame),
    "message": lambda connection, frame: connection.on_message(frame),
    "error": lambda connection, frame: connection.on_error(frame),
    "synced": lambda connection, frame: connection.on_synced(frame),
    "assigned": lambda connection, frame: connection.on_assigned(frame),
    # The echo server returns each send frame: the echo's ack.
    "send": lambda connection, frame: connection.on_ack(frame) if connection.env.echo
    else None,
}
