"""The simulated participants: a customer and an agent (their connection, reconnects,
syncs and bookkeeping are :class:`raydesk.loadtest.sim.Connection`'s).

A :class:`Customer` writes when the open-loop schedule tells it to (never waiting for the
previous ack), one conversation at a time, and times the bot's answers. An
:class:`Agent` goes online, greets each conversation the router assigns it and answers
each customer message after a delay, timing what reached it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from raydesk.loadtest.checker import Role
from raydesk.loadtest.sim import Connection, Env, Frame
from raydesk.loadtest.texts import Phrasebook


class Customer(Connection):
    """A visitor: one conversation at a time, messages from the phrasebook."""

    role: Role = "customer"

    def __init__(self, env: Env, token: str, phrases: Phrasebook) -> None:
        super().__init__(env, token)
        self.phrases = phrases
        self.conversation: str | None = None
        self.status: str | None = None
        self.kinds: Counter[str] = Counter()
        # Send times of messages the bot owes a turn, oldest first.
        self.bot_owes: deque[float] = deque()

    @property
    def settled(self) -> bool:
        """Its conversation is open and waits for nobody: acked, the bot answered, and an
        agent holds it (when agents are expected)."""
        if self.conversation is None or self.pending or self.bot_owes:
            return False
        return self.env.echo or self.status != "queued" or not self.env.agents_expected

    @property
    def refused(self) -> bool:
        """It wrote, and the server refused every attempt: no conversation."""
        return self.conversation is None and not self.pending and bool(self.kinds)

    def conversation_of(self, client_msg_id: str) -> str | None:
        return self.conversation

    async def say(self) -> None:
        kind, text = self.phrases.pick()
        self.kinds[kind] += 1
        if self.status in (None, "bot") and not self.env.echo:
            self.bot_owes.append(time.time())
        await self.send_message(text, self.conversation)

    async def close_conversation(self) -> None:
        if self.conversation is not None and self.status != "closed" and self.open_:
            await self._send({"type": "close", "conversation_id": self.conversation})

    def on_ack(self, frame: Frame) -> None:
        if self.env.echo:  # the echo server returns the send frame itself
            frame = {**frame, "conversation_id": "echo", "seq": 0}
        if frame["client_msg_id"] in self.pending:
            self.conversation = frame["conversation_id"]
        super().on_ack(frame)

    def on_message(self, frame: Frame) -> None:
        stream = self.stream(frame["conversation_id"], 1)
        first, sent = self.deliver(stream, frame)
        if self.env.final:
            return
        role = frame["sender"]["role"]
        if role == "agent":
            if first:
                self.latency_since("agent_to_customer", sent)
        elif role == "bot":
            if first and self.bot_owes:
                self.latency_since("bot_reply", self.bot_owes.popleft())
        elif role == "system" and first:
            self._on_event(frame.get("event") or {})

    def _on_event(self, event: Frame) -> None:
        kind = event.get("kind")
        if kind == "opened":
            self.status = event.get("status")
            if self.status != "bot":
                self.bot_owes.clear()
        elif kind == "handoff":
            if self.bot_owes:
                self.latency_since("bot_reply", self.bot_owes.popleft())
            self.bot_owes.clear()
            self.status = "queued"
        elif kind in ("queued", "assigned", "closed"):
            self.status = kind


class Agent(Connection):
    """An agent: online, greets each conversation it is assigned and answers every
    customer message of it, each after ``env.agent_delay_s`` (uniformly 0.5x to 1.5x).

    It does not fetch a conversation's history when assigned: a console that did so for
    every assignment at once would itself hit the per-connection frame limit, and the
    greeting stands for the answer to what came before."""

    role: Role = "agent"

    def __init__(self, env: Env, token: str) -> None:
        super().__init__(env, token)
        self.mine: set[str] = set()
        self.foreign: set[str] = set()

    async def on_welcome(self, welcome: Frame) -> None:
        await self._send({"type": "presence", "status": "online"})
        if self._reconnects:
            # Back after a close: conversations assigned meanwhile (their assigned frame
            # went to the closed connection) are taken up from the welcome.
            for conversation in welcome.get("conversations", []):
                cid = conversation["conversation_id"]
                if cid not in self.streams and cid not in self.foreign:
                    self.mine.add(cid)
                    self.stream(cid, conversation["last_seq"] + 1)
                    self._answer_later(cid)
        await super().on_welcome(welcome)

    def on_assigned(self, frame: Frame) -> None:
        cid = frame["conversation_id"]
        attributes = (frame.get("visitor") or {}).get("attributes") or {}
        if attributes.get("loadtest") != self.env.run_id:
            # Not this run's: left alone (the router requeues it once we are gone).
            self.foreign.add(cid)
            self.streams.pop(cid, None)
            self.env.recorder.count("foreign_assigned", time.time())
            return
        self.mine.add(cid)
        stream = self.stream(cid, frame["last_seq"])
        stream.start, stream.end = frame["last_seq"], None
        self._answer_later(cid)

    def on_message(self, frame: Frame) -> None:
        cid = frame["conversation_id"]
        if cid in self.foreign:
            return
        stream = self.stream(cid, frame["seq"])
        first, sent = self.deliver(stream, frame)
        if self.env.final:
            return
        role = frame["sender"]["role"]
        if role == "customer":
            if first and frame["seq"] >= stream.start:
                self.latency_since("customer_to_agent", sent)
                self._answer_later(cid)
        elif role == "system":
            event = frame.get("event") or {}
            if event.get("from_agent") == self.id and event.get("kind") in (
                    "queued", "transferred"):
                stream.end = frame["seq"]  # no longer ours from here on
                self.mine.discard(cid)

    def _answer_later(self, cid: str) -> None:
        env = self.env
        delay = env.agent_delay_s * env.rng.uniform(0.5, 1.5)
        env.replies_due += 1
        loop = asyncio.get_running_loop()
        planned = time.time() + delay
        loop.call_later(delay, lambda: loop.create_task(self._answer(cid, planned)))

    async def _answer(self, cid: str, planned: float) -> None:
        env = self.env
        try:
            now = time.time()
            if env.in_step(planned):
                env.recorder.latency("send_lag", max(0.0, now - planned), planned)
                if now - planned > env.late_s:
                    env.recorder.count("late", planned)
            if cid in self.mine and self.open_ and not env.final:
                await self.send_message("Thanks for waiting: let me check that for you.", cid)
        finally:
            env.replies_due -= 1
