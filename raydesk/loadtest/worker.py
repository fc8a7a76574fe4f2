"""One load-generating process: its share of the customers and agents, driven by the
orchestrator's commands (connect, open, step, check, teardown, stop).

Open loop: in a step, customer messages leave at planned times (Poisson arrivals at the
process's share of the rate), whoever is still waiting for an ack; a message the process
could not send within ``late_s`` of its plan is counted ``late``, and ``send_lag`` records
by how much, so a generator that cannot keep up shows in its own figures instead of
passing for server latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import random
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

import httpx

from raydesk.loadtest.accounts import REST_TIMEOUT_S, create_visitors
from raydesk.loadtest.metrics import Recorder
from raydesk.loadtest.people import Agent, Customer
from raydesk.loadtest.procs import raise_nofile
from raydesk.loadtest.sim import Connection, Env
from raydesk.loadtest.texts import Mix, Phrasebook

PROGRESS_EVERY_S = 1.0
CONNECT_TRIES = 3
# How quiet (no message frame) the connections must be before a drain may end.
QUIET_S = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    ws_url: str
    http_url: str
    run_id: str
    customers: int
    agent_tokens: tuple[str, ...]
    visitor: dict[str, Any]
    mix: Mix = field(default_factory=Mix)
    questions: tuple[str, ...] = ()
    agent_delay_s: float = 1.0
    late_s: float = 0.05
    echo: bool = False
    agents_expected: bool = True
    # Connections being opened at once: a hello costs the gateway store calls, and its
    # store connection pool refuses calls beyond 100 in flight.
    connect_concurrency: int = 50
    reconnects: int = 3
    seed: int = 0


def main(spec: WorkerSpec, commands: Queue[Any], events: Queue[Any]) -> None:
    """The process's entry point."""
    raise_nofile()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(Worker(spec, commands, events).serve())


class Worker:
    def __init__(self, spec: WorkerSpec, commands: Queue[Any], events: Queue[Any]) -> None:
        self.spec = spec
        self.commands, self.events = commands, events
        self.env = Env(ws_url=spec.ws_url, worker=spec.index, run_id=spec.run_id,
                       agent_delay_s=spec.agent_delay_s, late_s=spec.late_s, echo=spec.echo,
                       reconnects=spec.reconnects, agents_expected=spec.agents_expected,
                       rng=random.Random(spec.seed))
        self.customers: list[Customer] = []
        self.agents: list[Agent] = []
        self.phase = "connect"
        self.rng = random.Random(spec.seed + 1)

    @property
    def connections(self) -> list[Connection]:
        return [*self.agents, *self.customers]

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        background = [loop.create_task(self._heartbeat()), loop.create_task(self._progress())]
        handlers: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "connect": self.connect, "open": self.open, "step": self.step,
            "check": self.check, "teardown": self.teardown}
        try:
            while True:
                name, args = await loop.run_in_executor(None, self.commands.get)
                if name == "stop":
                    break
                self.phase = name
                try:
                    result = await handlers[name](**args)
                except Exception:
                    self.events.put(("failed", self.spec.index, traceback.format_exc()))
                    break
                self.events.put((name, self.spec.index, result))
        finally:
            for task in background:
                task.cancel()
            await self.teardown(close_conversations=False)

    # --- background -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Ping each connection that sent nothing for its ``heartbeat_s``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for connection in self.connections:
                await connection.ping_if_idle(now)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            recorder = self.env.recorder
            window = recorder.latencies["ack"].windows.get(recorder.window(time.time()) - 1)
            self.events.put(("progress", self.spec.index, {
                "phase": self.phase,
                "connected": sum(1 for c in self.connections if c.open_),
                "settled": sum(1 for c in self.customers if c.settled),
                "sent": recorder.total("sent_customer") + recorder.total("sent_agent"),
                "acked": recorder.total("acked"), "late": recorder.total("late"),
                "errors": sum(self.env.errors.values()),
                "ack_p99_ms": window.get_value_at_percentile(99) / 1000 if window else None}))

    # --- commands ---------------------------------------------------------------------------

    async def connect(self, timeout_s: float) -> dict[str, Any]:
        """Agents first (so the router has them), then the customers: visitors created
        over REST, then connected; both bounded in concurrency."""
        spec, env = self.spec, self.env
        started = time.time()
        gate = asyncio.Semaphore(spec.connect_concurrency)
        failures: Counter[str] = Counter()

        async def opened(connection: Connection) -> Connection | None:
            """Connected and welcomed, trying again after a back-off like a real client
            (a refused hello is counted each time)."""
            async with gate:
                for attempt in range(CONNECT_TRIES):
                    try:
                        await connection.open()
                        return connection
                    except Exception as exc:
                        failures[f"{type(exc).__name__}: {exc}"[:120]] += 1
                        await asyncio.sleep(0.5 * 2 ** attempt)
                return None

        async def everything() -> float:
            agents = await asyncio.gather(*(opened(Agent(env, token))
                                            for token in spec.agent_tokens))
            self.agents = [a for a in agents if isinstance(a, Agent)]
            tokens = ["echo"] * spec.customers
            if not spec.echo:
                async with httpx.AsyncClient(base_url=spec.http_url, timeout=REST_TIMEOUT_S,
                                             limits=httpx.Limits(max_connections=32)) as http:
                    tokens, refused = await create_visitors(http, spec.customers,
                                                            spec.visitor, 32)
                for key, n in refused.items():
                    failures[f"visitor_{key}"] += n
            made = time.time()
            phrases = Phrasebook(spec.mix, spec.questions, spec.seed)
            customers = await asyncio.gather(*(opened(Customer(env, token, phrases))
                                               for token in tokens))
            self.customers = [c for c in customers if isinstance(c, Customer)]
            return made

        try:
            visitors_done = await asyncio.wait_for(everything(), timeout_s)
        except TimeoutError:
            visitors_done = time.time()
            failures["connect_timeout"] += 1
        return {"agents": len(self.agents), "customers": len(self.customers),
                "failures": dict(failures), "visitors_s": round(visitors_done - started, 2),
                "connect_s": round(time.time() - visitors_done, 2)}

    async def open(self, rate: float, timeout_s: float) -> dict[str, Any]:
        """Each customer's first message, at ``rate`` a second (not measured); then wait
        until every conversation is settled (acked, the bot done, an agent holding it)."""
        started = time.time()
        deadline = started + timeout_s
        customers = [c for c in self.customers if c.conversation is None]
        for i, customer in enumerate(customers):
            due = started + i / rate
            if due > deadline:
                break
            await asyncio.sleep(max(0.0, due - time.time()))
            await customer.say()
        for _ in range(int(max(0.0, deadline - time.time()) / 0.2) + 1):
            if all(c.settled or c.refused for c in self.customers):
                break
            await asyncio.sleep(0.2)
        return {"settled": sum(1 for c in self.customers if c.settled),
                "refused": sum(1 for c in self.customers if c.refused),
                "customers": len(self.customers), "seconds": round(time.time() - started, 2)}

    async def step(self, rate: float, duration_s: float, max_messages: int,
                   start_wall: float, window_s: float, drain_s: float) -> dict[str, Any]:
        """Offer ``rate`` customer messages a second for ``duration_s`` (or until
        ``max_messages``), then drain: wait for acks, due replies and quiet."""
        env = self.env
        env.recorder = Recorder(start_wall, window_s)
        env.step_from, env.step_until = start_wall, start_wall + duration_s
        errors_before = Counter(env.errors)
        await asyncio.sleep(max(0.0, start_wall - time.time()))
        cpu0 = time.process_time()
        sent = await self._offer(rate, start_wall + duration_s, max_messages)
        env.step_until = time.time()
        offered_s = env.step_until - start_wall
        # Another process's agent may answer the last messages up to 1.5x the delay later.
        settle = min(drain_s, 1.5 * env.agent_delay_s + QUIET_S if env.agents_expected
                     else QUIET_S)
        deadline = time.time() + drain_s
        await asyncio.sleep(settle)
        while time.time() < deadline:
            waiting = sum(len(c.pending) for c in self.connections) + env.replies_due
            if not waiting and time.time() - env.last_delivery > QUIET_S:
                break
            await asyncio.sleep(0.1)
        return {"recorder": env.recorder.encode(), "sent_customer": sent,
                "offered_s": round(offered_s, 3),
                "errors": dict(env.errors - errors_before),
                "unacked": sum(len(c.pending) for c in self.connections),
                "replies_due": env.replies_due,
                "connected": sum(1 for c in self.connections if c.open_),
                "cpu_s": round(time.process_time() - cpu0, 3)}

    async def _offer(self, rate: float, until: float, max_messages: int) -> int:
        env = self.env
        if rate <= 0 or not self.customers:
            await asyncio.sleep(max(0.0, until - time.time()))
            return 0
        order = self.customers[:]
        self.rng.shuffle(order)
        turns = itertools.cycle(order)
        planned, sent = time.time(), 0
        while sent < max_messages:
            planned += self.rng.expovariate(rate)
            if planned >= until:
                break
            delay = planned - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = time.time() - planned
            env.recorder.count("offered", planned)
            env.recorder.latency("send_lag", max(0.0, lag), planned)
            if lag > env.late_s:
                env.recorder.count("late", planned)
            customer = next((c for c in itertools.islice(turns, len(order)) if c.open_), None)
            if customer is None:
                env.recorder.count("skipped", planned)
                continue
            await customer.say()
            sent += 1
        return sent

    async def check(self, timeout_s: float) -> dict[str, Any]:
        """Sync every stream from its last contiguous live seq; hand over what the
        checker needs (every ack, every stream)."""
        env = self.env
        env.final = True
        connections = [c for c in self.connections if c.open_]
        gate = asyncio.Semaphore(self.spec.connect_concurrency)

        async def synced(connection: Connection) -> None:
            # A few connections at a time: all of them syncing at once would be a burst
            # of store reads of the generator's own making.
            async with gate:
                await connection.final_sync()
                await connection.synced.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(synced(c) for c in connections)),
                                   timeout_s)
        streams = [s for c in self.connections for s in c.streams.values()]
        kinds: Counter[str] = Counter()
        for customer in self.customers:
            kinds.update(customer.kinds)
        # Pickled here, in one go: frames still arriving must not change what is sent
        # while the queue's feeder thread pickles it.
        return {"records": pickle.dumps((env.acks, streams)),
                "unsynced": sum(1 for c in connections if not c.synced.is_set()),
                "unacked": sum(len(c.pending) for c in self.connections),
                "errors": dict(env.errors), "frames_in": dict(env.frames_in),
                "error_messages": {code: dict(messages.most_common(5))
                                   for code, messages in env.error_messages.items()},
                "kinds": dict(kinds),
                "foreign": sum(len(a.foreign) for a in self.agents)}

    async def teardown(self, close_conversations: bool = True) -> dict[str, Any]:
        """Close this run's conversations (so reused agents start free), then the
        connections."""
        closed = 0
        if close_conversations:
            for customer in self.customers:
                if customer.conversation is not None and customer.status != "closed":
                    await customer.close_conversation()
                    closed += 1
            await asyncio.sleep(1.0)
        await asyncio.gather(*(c.close() for c in self.connections))
        self.customers, self.agents = [], []
        return {"closed_conversations": closed}
