"""One WebSocket connection: handshake, frames in, events out (PROTOCOL.md).

Frames from a connection are handled one at a time, in order, so a client's sends are
stored in the order it sent them. Frames out go through a bounded outbox drained by a
writer task: a client too slow to keep up is closed (1013) and resyncs when it comes
back, it never stalls delivery to anyone else.

Errors become frames or close codes here and only here: a :class:`RaydeskError` is an
``error`` frame (the connection stays open); anything unexpected is logged with the
connection's ids and closes it with 1011, no detail given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from raydesk import logs, metrics, tracing
from raydesk import store as keys
from raydesk.auth import Principal
from raydesk.console_api import add_note
from raydesk.conversation import Conversation
from raydesk.decide import ConversationClosed
from raydesk.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    RaydeskError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from raydesk.ordering import Chains
from raydesk.ratelimit import TokenBucket
from raydesk.schema import (
    PONG,
    Accept,
    Close,
    ConversationSummary,
    Hello,
    NoteFrame,
    Ping,
    PresenceFrame,
    Read,
    Send,
    ShardCommand,
    Sync,
    Synced,
    Transfer,
    Typing,
    Welcome,
    dump,
    frame_ref,
    parse_client_frame,
)

if TYPE_CHECKING:
    from raydesk.gateway import GatewayCore

log = logging.getLogger("raydesk.gateway")

CLOSE_NORMAL = 1000
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTARTING = 1012
CLOSE_TRY_AGAIN = 1013  # extension: outbox overflow (a slow client); reconnect and sync
CLOSE_UNAUTHORIZED = 4401
CLOSE_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429

SYNC_PAGE = 500
# Frames of different conversations one connection may have in flight at once; the next
# frame is read when one of them is done (an agent's connection stays bounded).
PIPELINE_DEPTH = 32
WELCOME_CONVERSATIONS = 50
_connection_ids = itertools.count(1)


class Outbox:
    """A connection's frames waiting to be written: a list and one waiter, where an
    ``asyncio.Queue`` holds three deques and an Event. The idle load test went from 40.2
    to 36.7 KB per connection with this (benchmarks/results/loadtest_idle.json)."""

    __slots__ = ("_items", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._items: list[tuple[str, float] | None] = []
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: tuple[str, float] | None, force: bool = False) -> bool:
        """Queue ``item``; False if ``limit`` items wait already (``force``: queue anyway)."""
        if len(self._items) >= self._limit and not force:
            return False
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    async def take(self) -> list[tuple[str, float] | None]:
        """Everything queued, in order; waits until there is something."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items


class _Closing(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Session:
    def __init__(self, core: GatewayCore, websocket: WebSocket) -> None:
        self.core = core
        self.ws = websocket
        self.id = f"{core.gateway_id}-{next(_connection_ids)}"
        self.principal: Principal | None = None
        self.presence: str = core.config.routing.initial_presence
        limits = core.config.limits
        # (frame, stamp for metrics.frame_written); None: close.
        self._outbox = Outbox(limits.outbox_frames)
        self._bucket = TokenBucket(limits.messages_per_s, limits.burst,
                                   limits.rate_limit_strikes, time.monotonic())
        self._last_heard = time.monotonic()
        self._close_code: int | None = None
        # A customer's open conversation, once known: spares a store round trip per send.
        self._open_conversation: str | None = None
        # Events delivered between subscribing and sending welcome; flushed after it.
        self._early: list[str] | None = []
        # An agent's frames in flight, in order per conversation (see _read_frames).
        self._in_flight = Chains()

    # --- delivery (called by the hub) -----------------------------------------------------

    def deliver(self, payload: str) -> None:
        """Queue an event for this connection (called by the hub)."""
        if self._early is not None:  # welcome not sent yet: it must come first
            self._early.append(payload)
        else:
            self.send(payload, metrics.commit_time(payload))

    def send(self, payload: str, stamp: float = 0.0) -> None:
        """Queue a frame; a client too slow to take it is closed (1013)."""
        if self._close_code is not None:
            return
        if not self._outbox.put((payload, stamp)):
            log.warning("connection %s of %s: outbox full, closing", self.id, self._who())
            self._close_soon(CLOSE_TRY_AGAIN)

    def restart(self) -> None:
        self._close_soon(CLOSE_RESTARTING)

    def _close_soon(self, code: int) -> None:
        if self._close_code is None:
            self._close_code = code
            # Wake the writer: it closes once what is already queued is out.
            self._outbox.put(None, force=True)

    def _who(self) -> str:
        return f"{self.principal.role} {self.principal.id}" if self.principal else "anonymous"

    # --- the connection's life ---------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        logs.CONNECTION_ID.set(self.id)  # this connection's task: on each of its log lines
        writer = asyncio.get_running_loop().create_task(self._write())
        try:
            self.principal = await self._handshake()
            logs.PARTICIPANT_ID.set(self.principal.id)
            log.info("connection %s opened by %s", self.id, self._who())
            await self._read_frames()
        except _Closing as closing:
            self._close_soon(closing.code)
        except WebSocketDisconnect:
            pass
        except Unavailable as exc:  # e.g. the store is down while saying welcome
            self.send(dump_error(exc))
            self._close_soon(CLOSE_RESTARTING)
        except Exception:
            log.exception("connection %s of %s failed", self.id, self._who())
            self._close_soon(CLOSE_SERVER_ERROR)
        finally:
            if self.principal is not None:
                await self.core.detach(self)
            self._close_soon(CLOSE_NORMAL)
            await writer
            log.info("connection %s of %s closed (%s)", self.id, self._who(), self._close_code)
            metrics.CONNECTIONS_CLOSED.labels(str(self._close_code)).inc()

    async def _write(self) -> None:
        try:
            closing = False
            while not closing:
                for item in await self._outbox.take():
                    if item is None:
                        closing = True
                        break
                    await self.ws.send_text(item[0])
                    metrics.frame_written(*item)
        except Exception:  # the peer went away; the reader notices too
            return
        if self.ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(self._close_code or CLOSE_NORMAL)

    async def _receive_text(self) -> str:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        self._last_heard = time.monotonic()
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return "\x00not json"
        # uvicorn enforces this itself (1009) when it serves the socket; behind Serve's
        # proxy it is enforced here.
        limit = self.core.config.limits.max_frame_bytes
        # A character is at most 4 bytes in UTF-8: encode only frames that might be over.
        if len(text) * 4 > limit and len(text.encode()) > limit:
            raise _Closing(CLOSE_TOO_LARGE)
        return str(text)

    async def _handshake(self) -> Principal:
        deadline = time.monotonic() + self.core.config.websocket.hello_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closing(CLOSE_TIMEOUT)
            try:
                text = await asyncio.wait_for(self._receive_text(), remaining)
            except TimeoutError:
                raise _Closing(CLOSE_TIMEOUT) from None
            try:
                frame = parse_client_frame(text)
                if not isinstance(frame, Hello):
                    raise BadRequest("type: the first frame must be hello")
                metrics.FRAMES_RECEIVED.labels("hello").inc()
                principal = self.core.tokens.verify(frame.token)
            except Unauthorized as exc:
                self.send(dump_error(exc))
                raise _Closing(CLOSE_UNAUTHORIZED) from None
            except BadRequest as exc:
                exc.ref = frame_ref(text)
                self.send(dump_error(exc))
                continue
            # Subscribe before reading the state that welcome reports, so nothing that
            # happens in between is missed; it is held back until welcome is out.
            self.principal = principal
            await self.core.attach(self, principal)
            welcome = await self._welcome(principal)
            early, self._early = self._early or [], None
            self.send(dump(welcome))
            for payload in early:
                self.deliver(payload)
            if principal.is_agent:
                await self.core.presence_changed()
            else:
                await self._tell_queue_positions(welcome)
            return principal

    async def _tell_queue_positions(self, welcome: Welcome) -> None:
        """A customer who (re)connects while waiting hears its place at once, not only at
        the next change."""
        waiting = [c.conversation_id for c in welcome.conversations if c.status == "queued"]
        for cid in waiting:
            try:
                frames = await self.core.router_call(
                    "queue_frames", [cid],
                    partition=await self.core.conversation_partition(cid))
            except Unavailable:
                log.warning("connection %s: queue position of %s not available", self.id, cid)
                continue
            if cid in frames:
                self.send(frames[cid])

    async def _welcome(self, principal: Principal) -> Welcome:
        store = self.core.store
        if principal.is_agent:
            cids = sorted(await store.call("SMEMBERS", keys.agent_convs_key(principal.id)))
        else:
            cids = await store.call("ZREVRANGE", keys.visitor_convs_key(principal.id), 0,
                                    WELCOME_CONVERSATIONS - 1)
        summaries = []
        for cid, state in zip(cids, await store.states(cids), strict=True):
            if state:
                summaries.append(ConversationSummary(
                    conversation_id=cid, status=state["status"],  # type: ignore[arg-type]
                    last_seq=int(state.get("last_seq", 0))))
        return Welcome(role=principal.wire_role, id=principal.id, conversations=summaries,
                       heartbeat_s=self.core.config.websocket.heartbeat_s)

    def check_heartbeat(self, now: float, timeout: float) -> None:
        """Close the connection if nothing came from the client for ``timeout`` seconds
        (called by the gateway's sweep, one task for every connection)."""
        if self._close_code is None and now - self._last_heard > timeout:
            log.info("connection %s of %s: heartbeat timeout", self.id, self._who())
            self._close_soon(CLOSE_TIMEOUT)

    async def _read_frames(self) -> None:
        """Read frames and handle them in the order they came. An agent's frames about
        different conversations are handled at the same time, those of one conversation
        one after the other (an agent in 50 chats does not wait for one chat's round trip
        to the store before the next chat's frame is read); a frame without a
        conversation waits for every frame before it. A customer has one conversation
        at a time: their frames are handled one by one, without a task each."""
        try:
            while self._close_code is None:
                text = await self._receive_text()
                received = self._last_heard
                try:
                    # Before parsing: a flood must cost as little as possible.
                    if not self._bucket.take(received):
                        if self._bucket.exhausted:
                            raise _Closing(CLOSE_RATE_LIMITED)
                        raise RateLimited("too many frames, slow down")
                    frame = parse_client_frame(text)
                except RaydeskError as exc:
                    self.send(dump_error(exc, exc.ref or frame_ref(text)))
                    continue
                cid = getattr(frame, "conversation_id", None)
                logs.CONVERSATION_ID.set(cid)
                assert self.principal is not None
                if cid is None or not self.principal.is_agent:
                    await self._in_flight.drain()
                    await self._handle_one(frame, text, received)
                    continue
                while len(self._in_flight) >= PIPELINE_DEPTH:
                    await self._in_flight.wait_any()
                self._in_flight.add(cid, functools.partial(self._handle_one, frame, text,
                                                           received))
        finally:
            await self._in_flight.drain()

    async def _handle_one(self, frame: Any, text: str, received: float) -> None:
        """Handle a frame; a refusal is told to the client, anything else closes the
        connection (as it did when frames were handled in the reading loop)."""
        try:
            with tracing.frame_span(frame, self.id):
                await self._handle(frame, received)
        except RaydeskError as exc:
            self.send(dump_error(exc, exc.ref or frame_ref(text)))
        except Exception:
            log.exception("connection %s of %s: frame %s failed", self.id, self._who(),
                          getattr(frame, "type", "?"))
            self._close_soon(CLOSE_SERVER_ERROR)

    # --- frames ------------------------------------------------------------------------------

    async def _handle(self, frame: Any, received: float) -> None:
        assert self.principal is not None
        metrics.FRAMES_RECEIVED.labels(frame.type).inc()
        if isinstance(frame, Send):
            await self._send(frame, received)
        elif isinstance(frame, Ping):
            self.send(PONG)
        elif isinstance(frame, Sync):
            await self._sync(frame)
        elif isinstance(frame, Typing):
            await self._command("typing", frame.conversation_id, on=frame.on)
        elif isinstance(frame, Read):
            await self._command("read", frame.conversation_id, seq=frame.seq)
        elif isinstance(frame, Close):
            await self._command("close", frame.conversation_id)
        elif isinstance(frame, PresenceFrame):
            self._require_agent("presence")
            self.presence = frame.status
            await self.core.presence_changed(chosen_by=self.principal.id)
        elif isinstance(frame, Accept):
            self._require_agent("accept")
            await self.core.router_call(
                "accept", frame.conversation_id, self.principal.id,
                partition=await self.core.conversation_partition(frame.conversation_id))
        elif isinstance(frame, Transfer):
            self._require_agent("transfer")
            if (frame.to_agent is None) == (frame.to_skill is None):
                raise BadRequest("transfer: give exactly one of to_agent and to_skill")
            await self.core.router_call(
                "transfer", frame.conversation_id, self.principal.id, self.principal.role,
                frame.to_agent, frame.to_skill,
                partition=await self.core.conversation_partition(frame.conversation_id))
        elif isinstance(frame, NoteFrame):
            try:
                resent = await add_note(self.core, self.principal, frame)
            except RaydeskError as exc:
                exc.ref = frame.client_msg_id
                raise
            if resent is not None:  # stored before: this connection hears it again
                self.send(resent)
        elif isinstance(frame, Hello):
            raise BadRequest("type: hello was already received on this connection")

    def _require_agent(self, what: str) -> None:
        assert self.principal is not None
        if not self.principal.is_agent:
            raise Forbidden(f"{what} is for agents only")

    async def _command(self, kind: str, cid: str, **fields: Any) -> dict[str, Any]:
        assert self.principal is not None
        command = ShardCommand(kind=kind, conversation_id=cid,  # type: ignore[arg-type]
                               actor_id=self.principal.id, actor_role=self.principal.role,
                               **fields)
        return await self.core.shards.submit(command)

    async def _send(self, frame: Send, received: float) -> None:
        assert self.principal is not None
        if len(frame.text) > self.core.config.limits.max_text_chars:
            raise TooLarge(f"text: longer than {self.core.config.limits.max_text_chars} "
                           "characters", frame.client_msg_id)
        cid = frame.conversation_id
        if cid is None:
            if self.principal.is_agent:
                raise BadRequest("conversation_id: field required for agents",
                                 frame.client_msg_id)
            cid = self._open_conversation or await self.core.open_conversation_of(
                self.principal.id)
        try:
            ack = await self._command("send", cid, client_msg_id=frame.client_msg_id,
                                      text=frame.text)
        except ConversationClosed:
            # A closed conversation reopens as a new one when the customer writes again.
            cid = await self.core.open_conversation_of(self.principal.id, closed=cid)
            ack = await self._command("send", cid, client_msg_id=frame.client_msg_id,
                                      text=frame.text)
        except RaydeskError as exc:
            exc.ref = frame.client_msg_id
            raise
        if frame.conversation_id is None:
            self._open_conversation = cid
        tracing.annotate(message_id=ack.get("message_id"),
                         conversation_id=cid if frame.conversation_id is None else None)
        metrics.MESSAGES_RECEIVED.labels(self.principal.role).inc()
        self.send(dump_ack(ack), received)

    async def _sync(self, frame: Sync) -> None:
        assert self.principal is not None
        store = self.core.store
        state = await store.conversation_state(frame.conversation_id)
        if not state:
            raise NotFound(f"conversation {frame.conversation_id} not found")
        conv = Conversation.from_state(frame.conversation_id, state)
        conv.check_can_read(self.principal.id, self.principal.is_agent)
        messages = await store.messages(frame.conversation_id, frame.since, SYNC_PAGE)
        for message in messages:
            self.send(message)
        # Seqs have no gaps, so the last one sent is since + count. The log may have grown
        # since the state was read: never report less than what was sent.
        last_sent = frame.since + len(messages)
        last_seq = max(conv.last_seq, last_sent if messages else 0)
        more = len(messages) == SYNC_PAGE and last_sent < last_seq
        self.send(dump(Synced(conversation_id=conv.id, last_seq=last_seq, more=more)))


def dump_error(exc: RaydeskError, ref: str | None = None) -> str:
    metrics.ERRORS.labels(exc.code, "websocket").inc()
    frame = exc.frame()
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame)


def dump_ack(ack: dict[str, Any]) -> str:
    return json.dumps(ack, separators=(",", ":"))


def new_conversation_id() -> str:
    return f"c_{uuid.uuid4().hex[:22]}"
