"""The chaos run's clients: the load test's simulated customers and agents
(raydesk/loadtest/people.py, on sim.py's connections), made to ride out faults as
PROTOCOL.md section 9 asks.

Those clients are built for load tests, where the server stays up: a few reconnects with
an uncapped back-off that never resets, and a send given up after three ``unavailable``
answers. A chaos run has a dozen outages in a row, and its point is that every client gets
back every message it was acknowledged. So these subclasses (the load test's modules are
reused, not edited):

- reconnect for as long as the run lasts, back-off 0.5 s doubling to a cap of 5 s, reset
  by a successful ``welcome`` (the protocol's "reset the delay" advice, shortened);
- resend a send refused with ``unavailable``, or unanswered for ``STALLED_S``, with the same
  ``client_msg_id`` until it is acknowledged (the exactly-once path; every such resend is
  counted, so a hang shows in the results instead of hiding in the retries);
- sync from the last contiguous seq when a live ``message`` skips a seq (section 8);
- remember when each message was first sent and acknowledged, for the order check.

A :class:`Crowd` is the whole population: agents and customers of one run, the traffic,
and the "everyone is in sync" measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from raydesk import store as keys
from raydesk.loadtest.accounts import REST_TIMEOUT_S, create_visitors, ensure_agents
from raydesk.loadtest.checker import Stream
from raydesk.loadtest.people import Agent, Customer
from raydesk.loadtest.sim import BACKOFF_S, Connection, Env, Frame
from raydesk.loadtest.texts import Mix, Phrasebook

# A person's client would back off to 30 s; 5 s keeps a run short and still spreads a
# reconnect storm's retries.
RECONNECT_CAP_S = 5.0
# A send with no answer for this long on an open connection is sent again (a healthy ack
# takes milliseconds; Ray fails a call to a dead actor within seconds).
STALLED_S = 10.0
# "In sync" allows a send this young to still wait for its ack, unless it was refused.
PENDING_OK_S = 1.0
POLL_S = 0.25


@dataclass
class ChaosEnv(Env):
    """sim.Env plus what the chaos checks need."""

    running: bool = True
    # origin ("<sender>/<client_msg_id>") -> wall time its ack arrived.
    acked_at: dict[str, float] = field(default_factory=dict)
    # (wall time, what): every unavailable, close and reconnect, for the fault windows.
    marks: list[tuple[float, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def mark(self, what: str) -> None:
        self.marks.append((time.time(), what))
        self.counts[what] += 1


class Resilient(Connection):
    """Mixed into sim's Customer and Agent (see the module docstring)."""

    env: ChaosEnv

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 0
        self.last_try: dict[str, float] = {}
        self.tries: dict[str, int] = {}

    async def open(self) -> None:
        await super().open()
        self.failures = 0

    async def _reconnect(self) -> None:
        # Replaces sim's: no limit while the run lasts, a capped delay, reset on success.
        while not self._closing:
            delay = min(RECONNECT_CAP_S, BACKOFF_S * 2 ** self.failures)
            await asyncio.sleep(delay * self.env.rng.uniform(0.8, 1.2))
            if self._closing:
                return
            try:
                await self.open()
                self.env.mark("reconnected")
                return
            except Exception:  # refused, reset, timed out: all mean "try again later"
                self.env.mark("reconnect_failed")
                self.failures += 1

    async def _read(self) -> None:
        await super()._read()
        if not self._closing and self.ws is not None:
            self.env.mark(f"close_{self.ws.close_code}")

    async def _send(self, frame: Frame) -> bool:
        sent = await super()._send(frame)
        if frame.get("type") == "send":
            self.last_try[frame["client_msg_id"]] = time.time()
        return sent

    def on_ack(self, frame: Frame) -> None:
        cmid = frame["client_msg_id"]
        if cmid in self.pending:
            self.env.acked_at[f"{self.id}/{cmid}"] = time.time()
            self.last_try.pop(cmid, None)
            self.tries.pop(cmid, None)
        super().on_ack(frame)

    def on_error(self, frame: Frame) -> None:
        ref = frame.get("ref")
        if frame.get("code") == "unavailable" and ref in self.pending:
            self.env.errors["unavailable"] += 1
            self.env.mark("unavailable")
            tries = self.tries[ref] = self.tries.get(ref, 0) + 1
            delay = min(RECONNECT_CAP_S, BACKOFF_S * 2 ** (tries - 1))
            loop = asyncio.get_running_loop()
            loop.call_later(delay * self.env.rng.uniform(0.8, 1.2),
                            lambda: loop.create_task(self.resend(ref)))
            return
        if frame.get("code") == "unavailable":
            self.env.mark("unavailable")
        super().on_error(frame)

    async def resend(self, client_msg_id: str) -> None:
        """The same frame again, if still unacknowledged and the connection is up (else
        the reconnect's ``welcome`` resends it)."""
        sent = self.pending.get(client_msg_id)
        if sent is not None and self.open_ and self.env.running:
            await self._send(sent[2])

    async def resend_stalled(self, now: float) -> None:
        for cmid in list(self.pending):
            if self.open_ and now - self.last_try.get(cmid, now) > STALLED_S:
                self.env.mark("stalled_resend")
                await self.resend(cmid)

    def on_message(self, frame: Frame) -> None:
        cid, seq = frame["conversation_id"], frame["seq"]
        before = self.streams.get(cid)
        expected = before.contiguous() + 1 if before is not None else None
        quiet = before is None or not before.syncs_in_flight
        super().on_message(frame)
        stream = self.streams.get(cid)
        if (stream is not None and expected is not None and quiet and not self.env.final
                and stream.end is None and seq > expected and seq >= stream.start):
            self.env.mark("gap_sync")
            self.sync(cid, stream.contiguous())

    def behind(self, last_seq: dict[str, int]) -> list[str]:
        """The conversations of ``last_seq`` this client holds and has not fully received
        (every seq up to that value, from the first it is entitled to)."""
        return [s.conversation_id for s in self.streams.values()
                if s.end is None and s.conversation_id in last_seq
                and s.contiguous() < last_seq[s.conversation_id]]


class ChaosCustomer(Resilient, Customer):
    pass


class ChaosAgent(Resilient, Agent):
    pass


@dataclass
class Population:
    customers: int
    agents: int
    rate: float  # customer messages a second, all customers together
    agent_delay_s: float = 1.0


@dataclass
class Crowd:
    """Every client of the run, against one raydesk."""

    url: str
    admin_token: str
    store_url: str
    population: Population
    run_id: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:8]}")
    seed: int = 7
    env: ChaosEnv = field(init=False)
    customers: list[ChaosCustomer] = field(default_factory=list)
    agents: list[ChaosAgent] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _traffic: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        ws_url = self.url.replace("http", "ws", 1).rstrip("/") + "/v1/ws"
        self.env = ChaosEnv(ws_url=ws_url, worker=0, run_id=self.run_id,
                            agent_delay_s=self.population.agent_delay_s,
                            reconnects=10**9, rng=random.Random(self.seed))
        self.store = aioredis.Redis.from_url(self.store_url, decode_responses=True,
                                             socket_timeout=2, socket_connect_timeout=2)
        self.phrases = Phrasebook(Mix(), (), self.seed)
        self.skill = f"{self.run_id}-main"

    @property
    def connections(self) -> list[Resilient]:
        return [*self.agents, *self.customers]

    # --- set-up ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Agents online, customers connected, each with an open conversation that an agent
        holds; then the background loops."""
        pop = self.population
        max_chats = -(-pop.customers // pop.agents) + 5
        accounts = await ensure_agents(self.url, self.admin_token, pop.agents, self.skill,
                                       max_chats)
        self.agents = [ChaosAgent(self.env, token) for _, token in accounts]
        await asyncio.gather(*(a.open() for a in self.agents))
        await self.add_customers(pop.customers, self.skill)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._heartbeat()), loop.create_task(self._talk())]
        await self.until(lambda: all(c.settled for c in self.customers), 120,
                         "the customers' conversations were not all assigned")

    async def add_customers(self, count: int, skill: str) -> list[ChaosCustomer]:
        """``count`` new visitors with ``skill``, connected, each having written once."""
        body = {"name": "chaos", "skill": skill, "attributes": {"loadtest": self.run_id}}
        async with httpx.AsyncClient(base_url=self.url, timeout=REST_TIMEOUT_S) as http:
            tokens, failures = await create_visitors(http, count, body, 8)
        if failures:
            raise RuntimeError(f"creating visitors failed: {failures}")
        customers = [ChaosCustomer(self.env, token, self.phrases) for token in tokens]
        await asyncio.gather(*(c.open() for c in customers))
        self.customers.extend(customers)
        for customer in customers:
            await customer.say()
        return customers

    async def add_agent(self, skill: str, max_chats: int) -> ChaosAgent:
        """A new agent (not one of the load test's reused ones) with ``skill``, online."""
        email = f"{self.run_id}-{skill}@chaos.invalid"
        password = uuid.uuid4().hex
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=REST_TIMEOUT_S) as http:
            created = await http.post("/v1/agents", headers=admin, json={
                "email": email, "password": password, "name": "chaos late agent",
                "skills": [skill], "max_chats": max_chats})
            created.raise_for_status()
            login = await http.post("/v1/agents/login",
                                    json={"email": email, "password": password})
            login.raise_for_status()
        agent = ChaosAgent(self.env, login.json()["token"])
        await agent.open()
        self.agents.append(agent)
        return agent

    # --- background --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for connection in self.connections:
                with contextlib.suppress(Exception):
                    await connection.ping_if_idle(now)
                    await connection.resend_stalled(now)

    async def _talk(self) -> None:
        """Customer messages at ``rate`` a second (Poisson), each from a random connected
        customer with a conversation, while the traffic is on."""
        rng = random.Random(self.seed + 1)
        while True:
            await self._traffic.wait()
            await asyncio.sleep(rng.expovariate(self.population.rate))
            ready = [c for c in self.customers if c.open_ and c.conversation is not None]
            if ready and self._traffic.is_set():
                await rng.choice(ready).say()

    def traffic(self, on: bool) -> None:
        if on:
            self._traffic.set()
        else:
            self._traffic.clear()

    # --- measuring -----------------------------------------------------------------------------

    async def last_seqs(self) -> dict[str, int]:
        """Every conversation the clients hold: its last seq in the store now."""
        cids = sorted({s.conversation_id for c in self.connections for s in c.streams.values()})
        async with self.store.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hget(keys.state_key(cid), "last_seq")
            values = await pipe.execute()
        return {cid: int(v or 0) for cid, v in zip(cids, values, strict=True)}

    def lagging(self, last_seq: dict[str, int], now: float) -> dict[str, int]:
        """What keeps the clients from being in sync: connections down, sends waiting
        longer than ``PENDING_OK_S``, conversations not fully received."""
        down = sum(1 for c in self.connections if not c.open_)
        waiting = sum(1 for c in self.connections for cmid, (_, wall, _) in c.pending.items()
                      if now - wall > PENDING_OK_S or c.tries.get(cmid))
        behind = sum(len(c.behind(last_seq)) for c in self.connections)
        return {"down": down, "waiting": waiting, "behind": behind}

    async def in_sync(self, since: float, limit_s: float, predicate: Any = None,
                      ) -> tuple[float | None, dict[str, Any]]:
        """Seconds from ``since`` (wall) until every client is connected, has its sends
        acknowledged and holds every message the store had a poll earlier (so messages in
        flight do not count as missing); ``predicate`` must hold as well. None on timeout.
        Also, what lagged: for each reason, how many at the timeout, or how long after
        ``since`` it last held anyone back."""
        previous: dict[str, int] | None = None
        lag: dict[str, int] = {}
        last: dict[str, float] = {}
        deadline = time.time() + limit_s
        while time.time() < deadline:
            try:
                current = await self.last_seqs()
            except Exception:  # the store is down: nobody can be in sync
                current, previous = {}, None
                lag = {"store_down": 1}
                last["store_down"] = time.time()
                await asyncio.sleep(POLL_S)
                continue
            now = time.time()
            if previous is not None:
                lag = self.lagging(previous, now)
                for reason, count in lag.items():
                    if count:
                        last[reason] = now
                # In a thread: it may ask Ray, whose calls block.
                done = predicate is None or await asyncio.to_thread(predicate)
                if not done:
                    last["predicate"] = now
                if not any(lag.values()) and done:
                    return round(now - since, 2), {
                        f"{reason}_until_s": round(t - since, 2) for reason, t in last.items()}
            previous = current
            await asyncio.sleep(POLL_S)
        return None, lag

    async def until(self, ready: Any, limit_s: float, failure: str) -> None:
        deadline = time.monotonic() + limit_s
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(failure)
            await asyncio.sleep(0.2)

    # --- the reconnect storm -------------------------------------------------------------------

    def drop_all(self) -> int:
        """Every open connection dropped at once, without a close frame (as a network
        failure would); each reconnects by itself after its back-off."""
        dropped = 0
        for connection in self.connections:
            if connection.open_ and connection.ws is not None:
                connection.ws.transport.abort()
                dropped += 1
        return dropped

    # --- the end --------------------------------------------------------------------------------

    async def finish(self, drain_s: float) -> dict[str, Any]:
        """Stop writing, let acks and the agents' replies land, then the final sync of
        every stream (the checker's late deliveries); the exact last-seq comparison."""
        self.traffic(False)
        deadline = time.time() + drain_s
        while time.time() < deadline:
            if not any(c.pending for c in self.connections) and not self.env.replies_due:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        last_seq = await self.last_seqs()
        exact = {"clients": len(self.connections),
                 "resynced": sum(1 for c in self.connections
                                 if c.open_ and not c.behind(last_seq)),
                 "unacked": sum(len(c.pending) for c in self.connections)}
        self.env.running = False
        self.env.final = True
        open_ = [c for c in self.connections if c.open_]
        for connection in open_:
            await connection.final_sync()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in open_)), 60)
        return exact

    def streams(self) -> list[Stream]:
        return [s for c in self.connections for s in c.streams.values()]

    def readers(self) -> dict[str, str]:
        """Conversation id -> a token that may read it (its customer's)."""
        out = {}
        for customer in self.customers:
            for cid in customer.streams:
                out[cid] = customer.token
        return out

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)
        await self.store.aclose()
