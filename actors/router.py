"""Router: the one place that assigns conversations to agents.

Owns the agents' logical state (presence, skills, capacity, load) and the wait queue. The
durable truth is the store (``rd:queue``, each agent's ``convs`` set, agent hashes); this
actor's memory is a cache of it plus presence, which gateways renew as leases. On restart,
or every ``RECONCILE_S``, it rebuilds from the store, so a lost notification delays an
assignment but never loses a queued conversation, and an assignment is only counted once
its shard has committed it (the shard refuses a second assignment of the same
conversation), so nothing is assigned twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from raydesk import metrics, tracing
from raydesk import store as keys
from raydesk.config import DEFAULT_PARTITION
from raydesk.conversation import Conversation
from raydesk.errors import Conflict, Forbidden, NotFound, RaydeskError, Unavailable
from raydesk.routing import (
    PRESENCE_RANK,
    AgentSlot,
    WaitQueue,
    ewma,
    explain,
    matches,
)
from raydesk.schema import QueueEvent, ShardCommand, dump
from raydesk.settings import Settings
from raydesk.shard_client import ShardClient
from raydesk.store import Store

log = logging.getLogger("raydesk.router")

# Catches what a lost tell (shard restarting, router restarting) left behind.
RECONCILE_S = 5.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class Router:
    def __init__(self, settings: Settings, partition: str = DEFAULT_PARTITION) -> None:
        tracing.setup(settings.config, f"router {partition}")
        self._settings = settings
        self._store = Store(settings.store_url, settings.store_password)
        self._shards = ShardClient(settings.shard_names, settings.namespace)
        self._routing = settings.config.routing
        # This router's share: conversations from its inboxes, agents of its partition.
        self._partition = partition
        # Agents known to belong to other partitions (not loaded again on every lease).
        self._foreign: set[str] = set()
        # Conversation -> the agent who missed its reply deadline: someone else next.
        self._avoid: dict[str, str] = {}
        self._weights = self._routing.weights()
        self._agents: dict[str, AgentSlot] = {}
        self._queue = WaitQueue(self._weights.aging_s)
        # Agents whose presence went offline with chats open: when (monotonic s).
        self._offline_since: dict[str, float] = {}
        # Presence set by an admin over REST, until the agent sets its own.
        self._overrides: dict[str, str] = {}
        # Presence is unknown until the gateways report: offline timers of a restarted
        # router count from a lease period after the first gateway's lease, not from the
        # router's start (a whole-server restart may take a while to bring gateways up).
        self._presence_known_at = math.inf
        self._customers: dict[str, str] = {}
        self._told_positions: dict[str, tuple[int, bool]] = {}
        # gateway id -> (lease expiry, {agent id: presence})
        self._leases: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        # Queued conversation -> (when it was queued, its skill): its wait, for metrics.
        self._queued_at: dict[str, tuple[int, str | None]] = {}
        self._metrics = metrics.Publisher(self._store, "router", partition,
                                          refresh=self._refresh_metrics)

    async def ready(self) -> bool:
        await self._ensure_started()
        return True

    async def _ensure_started(self) -> None:
        """Rebuild from the store and start the timer loop, once per actor instance.

        Called by every entry point: after Ray restarts this actor nobody calls
        :meth:`ready`, and the first tell or ask must find the state rebuilt.
        """
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
            self._metrics.start()
            async with self._lock:
                await self._reconcile()

    # --- notifications (tells from shards and gateways) ---------------------------------

    async def enqueued(self, cid: str, skill: str | None, ts: int) -> None:
        await self._ensure_started()
        state = await self._store.conversation_state(cid)
        if state.get("status") != "queued" or not self._mine(state):
            return
        async with self._lock:
            self._enqueue(cid, state, ts)
            await self._dispatch()

    async def responded(self, samples: list[tuple[str, int]]) -> None:
        """Samples of agents' response times (customer message to the agent's reply),
        ``(agent id, ms)`` in the order they were measured; stored in one round trip."""
        await self._ensure_started()
        async with self._lock:
            measured: dict[str, float] = {}
            for agent_id, response_ms in samples:
                slot = self._agents.get(agent_id) or await self._load_agent(agent_id)
                if slot is None:
                    continue
                slot.response_ms = ewma(slot.response_ms, response_ms,
                                        self._weights.ewma_alpha)
                measured[agent_id] = slot.response_ms
            if measured:
                await self._store.pipeline([
                    ("HSET", keys.agent_key(agent_id), "rt_ms", str(round(ms)))
                    for agent_id, ms in measured.items()])

    async def dequeued(self, cid: str) -> None:
        await self._ensure_started()
        async with self._lock:
            self._forget(cid)
            await self._dispatch()

    async def released(self, agent_id: str, cid: str) -> None:
        await self._ensure_started()
        async with self._lock:
            slot = self._agents.get(agent_id)
            if slot is not None:
                slot.load = max(0, slot.load - 1)
                slot.idle_since = _now_ms()
            await self._dispatch()

    async def agent_updated(self, agent_id: str) -> None:
        await self._ensure_started()
        async with self._lock:
            await self._load_agent(agent_id)
            await self._dispatch()

    async def presence(self, gateway_id: str, statuses: dict[str, str],
                       chosen_by: str | None = None) -> None:
        """A gateway's full snapshot of its agents' presence; renews its lease.
        ``chosen_by``: an agent who just set its own presence (ends an admin's override)."""
        await self._ensure_started()
        lease_s = self._settings.config.routing.presence_lease_s
        async with self._lock:
            if chosen_by is not None:
                self._overrides.pop(chosen_by, None)
            self._leases[gateway_id] = (time.monotonic() + 3 * lease_s, statuses)
            if self._presence_known_at == math.inf:
                self._presence_known_at = time.monotonic() + 2 * lease_s
            for agent_id in statuses:
                if agent_id not in self._agents and agent_id not in self._foreign:
                    await self._load_agent(agent_id)
            self._apply_presence()
            await self._dispatch()

    # --- asks from agents ----------------------------------------------------------------

    async def accept(self, cid: str, agent_id: str) -> dict[str, Any]:
        """An agent takes a queued conversation by hand (online or away, with room)."""
        await self._ensure_started()
        async with self._lock:
            slot = await self._slot(agent_id)
            if cid not in self._queue:
                state = await self._store.conversation_state(cid)
                if not state:
                    raise NotFound(f"conversation {cid} not found")
                if state.get("status") != "queued":
                    raise Conflict(f"conversation {cid} is {state.get('status')}, not queued")
                self._enqueue(cid, state, _now_ms())
            if not slot.has_room():
                raise Conflict(f"you are at your limit of {slot.max_chats} chats")
            reply = await self._assign(cid, slot, {"by": "accept"})
            await self._dispatch()
            return reply

    async def transfer(self, cid: str, actor_id: str, actor_role: str,
                       to_agent: str | None, to_skill: str | None) -> dict[str, Any]:
        await self._ensure_started()
        async with self._lock:
            state = await self._store.conversation_state(cid)
            if not state:
                raise NotFound(f"conversation {cid} not found")
            if actor_role != "admin" and state.get("assignee") != actor_id:
                raise Forbidden(f"conversation {cid} is not assigned to you")
            if to_agent:
                target = await self._slot(to_agent)
                if target.presence == "offline":
                    raise Conflict(f"agent {to_agent} is offline")
                if not target.has_room():
                    raise Conflict(f"agent {to_agent} is at their limit of "
                                   f"{target.max_chats} chats")
            command = ShardCommand(kind="transfer", conversation_id=cid, actor_id=actor_id,
                                   actor_role=actor_role,  # type: ignore[arg-type]
                                   to_agent=to_agent, to_skill=to_skill)
            reply = await self._shards.submit(command)
            if to_agent:
                self._agents[to_agent].load += 1
            metrics.TRANSFERS.labels(self._partition, "agent" if to_agent else "skill").inc()
            return reply

    async def set_presence(self, agent_id: str, status: str) -> None:
        """An admin sets an agent's presence; it holds until the agent sets its own."""
        await self._ensure_started()
        async with self._lock:
            await self._slot(agent_id)
            self._overrides[agent_id] = status
            self._apply_presence()
            await self._dispatch()

    async def queue_frames(self, cids: list[str]) -> dict[str, str]:
        """The ``queue`` frames (position, agents online) of those of ``cids`` waiting."""
        await self._ensure_started()
        positions = self._queue.positions()
        online = self._online_count()
        return {cid: self._queue_frame(cid, positions[cid], online)
                for cid in cids if cid in positions}

    async def snapshot(self) -> dict[str, Any]:
        """The router's view, for operators and tests."""
        await self._ensure_started()
        return {
            "queue": self._queue.entries(_now_ms()),
            "agents": {a.agent_id: {"presence": a.presence, "load": a.load,
                                    "max_chats": a.max_chats, "response_ms": a.response_ms}
                       for a in self._agents.values()},
        }

    # --- internals -------------------------------------------------------------------------

    def _mine(self, state: dict[str, str]) -> bool:
        """Whether a conversation (its state hash) belongs to this router's partition."""
        return self._routing.partition_of(state.get("inbox") or None) == self._partition

    async def _slot(self, agent_id: str) -> AgentSlot:
        slot = self._agents.get(agent_id) or await self._load_agent(agent_id)
        if slot is None:
            if agent_id in self._foreign:
                raise Conflict(f"agent {agent_id} works in another routing partition")
            raise NotFound(f"agent {agent_id} not found")
        return slot

    async def _load_agent(self, agent_id: str) -> AgentSlot | None:
        """(Re)load an agent of this partition; None for an unknown or foreign one."""
        fields, load = await self._store.pipeline([
            ("HGETALL", keys.agent_key(agent_id)), ("SCARD", keys.agent_convs_key(agent_id))])
        fields = dict(fields)
        self._foreign.discard(agent_id)
        if not fields or fields.get("partition", DEFAULT_PARTITION) != self._partition:
            self._agents.pop(agent_id, None)
            if fields:
                self._foreign.add(agent_id)
            return None
        old = self._agents.get(agent_id)
        slot = AgentSlot(
            agent_id=agent_id,
            max_chats=int(fields.get("max_chats") or self._settings.config.routing
                          .default_max_chats),
            skills=frozenset(json.loads(fields.get("skills") or "[]")),
            presence=old.presence if old else "offline",
            load=int(load),
            idle_since=old.idle_since if old else 0,
            response_ms=float(fields["rt_ms"]) if fields.get("rt_ms") else None,
        )
        self._agents[agent_id] = slot
        return slot

    def _apply_presence(self) -> None:
        now = time.monotonic()
        for gateway_id in [g for g, (expiry, _) in self._leases.items() if expiry < now]:
            log.warning("gateway %s lease expired; its agents are offline", gateway_id)
            del self._leases[gateway_id]
        best: dict[str, str] = {}
        for _, statuses in self._leases.values():
            for agent_id, status in statuses.items():
                if PRESENCE_RANK[status] > PRESENCE_RANK[best.get(agent_id, "offline")]:
                    best[agent_id] = status
        now = time.monotonic()
        for slot in self._agents.values():
            presence = best.get(slot.agent_id, "offline")
            # An admin's setting holds while the agent is connected somewhere; with no
            # connection the agent is offline whatever it was set to.
            if presence != "offline" and slot.agent_id in self._overrides:
                presence = self._overrides[slot.agent_id]
            if presence != "offline":
                self._offline_since.pop(slot.agent_id, None)
            elif slot.load > 0:
                # Also after a router restart: a gone agent's chats are not left waiting.
                self._offline_since.setdefault(slot.agent_id, now)
            slot.presence = presence

    def _enqueue(self, cid: str, state: dict[str, str], ts: int) -> None:
        """Queue a conversation from its stored state (skill, priority, front flag)."""
        conv = Conversation.from_state(cid, state)
        self._customers[cid] = conv.customer
        if self._queue.push(cid, conv.skill, ts, conv.queue_priority):
            self._queued_at[cid] = (ts, conv.skill)

    def _forget(self, cid: str) -> None:
        self._queue.remove(cid)
        self._queued_at.pop(cid, None)
        self._avoid.pop(cid, None)
        self._customers.pop(cid, None)
        self._told_positions.pop(cid, None)

    async def _assign(self, cid: str, slot: AgentSlot, reason: dict[str, Any],
                      reserved: bool = False) -> dict[str, Any]:
        """Have the conversation's shard commit the assignment. The agent's load counts it
        from the start (``reserved``: the caller already did), and gives it back if the
        shard refuses."""
        if not reserved:
            slot.load += 1
        command = ShardCommand(kind="assign", conversation_id=cid, actor_id="router",
                               actor_role="router", to_agent=slot.agent_id, reason=reason)
        try:
            reply = await self._shards.submit(command)
        except Conflict:
            slot.load -= 1
            self._forget(cid)  # closed or taken meanwhile: not ours to assign any more
            raise
        except BaseException:
            slot.load -= 1  # it stays queued
            raise
        queued = self._queued_at.get(cid)
        self._forget(cid)
        slot.idle_since = _now_ms()
        log.info("conversation %s assigned to agent %s (%s)", cid, slot.agent_id, reason)
        metrics.ASSIGNMENTS.labels(
            self._partition, "accept" if reason.get("by") == "accept" else "router").inc()
        if queued is not None:
            metrics.QUEUE_WAIT.labels(self._partition, self._skill_label(
                queued[1], self._known_skills())).observe(max(0, _now_ms() - queued[0]) / 1000)
        return reply

    def _known_skills(self) -> set[str]:
        return set(self._routing.inbox_skills.values()).union(
            *(slot.skills for slot in self._agents.values()))

    @staticmethod
    def _skill_label(skill: str | None, known: set[str]) -> str:
        """A skill as a metric label. A visitor may name any skill: only those agents or the
        config have become label values, so the series stay few."""
        if not skill:
            return "none"
        return skill if skill in known else "other"

    def _refresh_metrics(self) -> None:
        """The gauges: the queue by skill; agents, their load and limits by presence."""
        partition, known = self._partition, self._known_skills()
        for gauge in (metrics.QUEUE_LENGTH, metrics.AGENTS, metrics.AGENT_CHATS,
                      metrics.AGENT_CAPACITY):
            gauge.clear()
        for skill in (None, *known):  # zeros too: a panel shows 0, not "no data"
            metrics.QUEUE_LENGTH.labels(partition, self._skill_label(skill, known))
        for _, skill in self._queue.ordered():
            metrics.QUEUE_LENGTH.labels(partition, self._skill_label(skill, known)).inc()
        for presence in PRESENCE_RANK:
            for gauge in (metrics.AGENTS, metrics.AGENT_CHATS, metrics.AGENT_CAPACITY):
                gauge.labels(partition, presence)
        for slot in self._agents.values():
            metrics.AGENTS.labels(partition, slot.presence).inc()
            metrics.AGENT_CHATS.labels(partition, slot.presence).inc(slot.load)
            metrics.AGENT_CAPACITY.labels(partition, slot.presence).inc(slot.max_chats)

    async def _dispatch(self) -> None:
        """Assign every queued conversation that has an eligible agent, head first, then
        tell waiting customers whose position changed.

        The choices are made first (each reserving a place in its agent's load, so the
        next choice sees it), then committed together: concurrent commits ride in a few
        batched shard calls instead of one round trip each.
        """
        planned = []
        for cid, slot in matches(self._queue, list(self._agents.values()), self._weights,
                                 self._avoid):
            planned.append((cid, slot, explain(slot, self._weights)))
            slot.load += 1
        results = await asyncio.gather(
            *[self._assign(cid, slot, reason, reserved=True) for cid, slot, reason in planned],
            return_exceptions=True)
        for (cid, _, _), result in zip(planned, results, strict=True):
            if isinstance(result, RaydeskError) and not isinstance(result, Conflict):
                log.warning("assigning %s failed (%s); it stays queued", cid, result)
            elif isinstance(result, BaseException) and not isinstance(result, RaydeskError):
                log.error("assigning %s failed", cid, exc_info=result)
        await self._tell_positions()

    def _online_count(self) -> int:
        return sum(1 for slot in self._agents.values() if slot.presence == "online")

    @staticmethod
    def _queue_frame(cid: str, position: int, online: int) -> str:
        return dump(QueueEvent(conversation_id=cid, position=position, agents_online=online))

    async def _tell_positions(self) -> None:
        events = []
        online = self._online_count()
        for cid, position in self._queue.positions().items():
            # Told again when the place moves, or when agents appear or all go away (the
            # widget's "no one is available" notice); not at every presence change.
            told = (position, online > 0)
            if self._told_positions.get(cid) != told and cid in self._customers:
                self._told_positions[cid] = told
                events.append((keys.channel(self._customers[cid]),
                               self._queue_frame(cid, position, online)))
        try:
            await self._store.publish(events)
        except Unavailable:
            log.warning("queue positions not delivered: store unavailable")

    async def _reconcile(self) -> None:
        """Rebuild agents and the queue from the store."""
        agent_ids = await self._store.call("SMEMBERS", keys.AGENTS)
        for agent_id in agent_ids:
            await self._load_agent(agent_id)
        for gone in set(self._agents) - set(agent_ids):
            del self._agents[gone]
        self._apply_presence()
        queued = await self._store.call("ZRANGE", keys.QUEUE, 0, -1, "WITHSCORES")
        pairs = list(zip(queued[::2], queued[1::2], strict=True)) if queued and not isinstance(
            queued[0], list | tuple) else [tuple(p) for p in queued]
        present = {cid for cid, _ in pairs}
        for cid, _ in self._queue.ordered():
            if cid not in present:
                self._forget(cid)
        missing = [(cid, int(float(ts))) for cid, ts in pairs if cid not in self._queue]
        states = await self._store.states([cid for cid, _ in missing])
        for (cid, ts), state in zip(missing, states, strict=True):
            if state.get("status") == "queued" and self._mine(state):
                self._enqueue(cid, state, ts)

    async def _requeue_vanished(self) -> None:
        """Requeue, at the front, the chats of agents offline for longer than the grace."""
        grace = self._routing.offline_grace_s
        now = time.monotonic()
        for agent_id, since in list(self._offline_since.items()):
            since = max(since, self._presence_known_at)
            if now - since < grace:
                continue
            del self._offline_since[agent_id]
            cids = sorted(await self._store.call("SMEMBERS", keys.agent_convs_key(agent_id)))
            log.warning("agent %s offline for %.0f s: requeueing %d conversations", agent_id,
                        now - since, len(cids))
            await self._requeue(agent_id, cids, "agent_offline")

    async def _requeue_overdue(self) -> None:
        """Requeue, at the front, conversations whose customer waited for a reply from the
        assigned agent longer than the reply deadline (if one is set)."""
        deadline_s = self._routing.reply_deadline_s
        if deadline_s is None:
            return
        now = _now_ms()
        for slot in list(self._agents.values()):
            if slot.load == 0:
                continue
            cids = sorted(await self._store.call("SMEMBERS",
                                                 keys.agent_convs_key(slot.agent_id)))
            waited = {cid: now - int(state["awaiting_since"])
                      for cid, state in zip(cids, await self._store.states(cids), strict=True)
                      if state.get("awaiting_since")}
            overdue = [cid for cid, ms in waited.items() if ms > deadline_s * 1000]
            if overdue:
                log.warning("agent %s missed the reply deadline in %d conversations",
                            slot.agent_id, len(overdue))
                # A miss counts against the agent's response time as the time waited,
                # and the conversation goes to someone else if anyone can take it.
                for cid in overdue:
                    slot.response_ms = ewma(slot.response_ms, waited[cid],
                                            self._weights.ewma_alpha)
                    self._avoid[cid] = slot.agent_id
                await self._store.call("HSET", keys.agent_key(slot.agent_id), "rt_ms",
                                       str(round(slot.response_ms or 0)))
                # The shard checks the deadline again: the agent may have replied since.
                await self._requeue(slot.agent_id, overdue, "reply_deadline",
                                    deadline_ms=int(deadline_s * 1000))

    async def _requeue(self, agent_id: str, cids: list[str], why: str,
                       **details: Any) -> None:
        for cid in cids:
            command = ShardCommand(kind="requeue", conversation_id=cid, actor_id="router",
                                   actor_role="router", to_agent=agent_id,
                                   reason={"why": why, **details})
            try:
                await self._shards.submit(command)
            except RaydeskError as exc:  # replied or closed meanwhile, or shard down
                log.warning("requeue of %s failed: %s", cid, exc)
                self._avoid.pop(cid, None)
                continue
            metrics.REQUEUES.labels(self._partition, why).inc()
            # Stored state says it is at the front now (front flag).
            self._enqueue(cid, await self._store.conversation_state(cid), _now_ms())
        await self._load_agent(agent_id)

    async def _loop(self) -> None:
        # Often enough to requeue close to the grace period, and to renew nothing late.
        deadlines = [self._routing.offline_grace_s, self._routing.reply_deadline_s]
        period = min([RECONCILE_S, *[d / 4 for d in deadlines if d is not None]])
        while True:
            await asyncio.sleep(period)
            try:
                async with self._lock:
                    await self._reconcile()
                    await self._requeue_vanished()
                    await self._requeue_overdue()
                    await self._dispatch()
            except Exception:  # one failed round must not stop the loop
                log.exception("router reconcile failed")
