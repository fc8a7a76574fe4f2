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
import time
from typing import Any

from raydesk import store as keys
from raydesk.errors import Conflict, Forbidden, NotFound, RaydeskError, Unavailable
from raydesk.routing import PRESENCE_RANK, AgentSlot, WaitQueue, choose_agent
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
    def __init__(self, settings: Settings) -> None:
        logging.basicConfig(level=settings.config.log_level)
        self._settings = settings
        self._store = Store(settings.store_url, settings.store_password)
        self._shards = ShardClient(settings.shard_names, settings.namespace)
        self._agents: dict[str, AgentSlot] = {}
        self._queue = WaitQueue()
        self._customers: dict[str, str] = {}
        self._told_positions: dict[str, int] = {}
        # gateway id -> (lease expiry, {agent id: presence})
        self._leases: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None

    async def ready(self) -> bool:
        if self._loop_task is None:
            await self._reconcile()
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        return True

    # --- notifications (tells from shards and gateways) ---------------------------------

    async def enqueued(self, cid: str, skill: str | None, ts: int) -> None:
        state = await self._store.conversation_state(cid)
        if state.get("status") != "queued":
            return
        async with self._lock:
            self._customers[cid] = state["customer"]
            self._queue.push(cid, skill, ts)
            await self._dispatch()

    async def dequeued(self, cid: str) -> None:
        async with self._lock:
            self._forget(cid)
            await self._dispatch()

    async def released(self, agent_id: str, cid: str) -> None:
        async with self._lock:
            slot = self._agents.get(agent_id)
            if slot is not None:
                slot.load = max(0, slot.load - 1)
                slot.idle_since = _now_ms()
            await self._dispatch()

    async def agent_updated(self, agent_id: str) -> None:
        async with self._lock:
            await self._load_agent(agent_id)
            await self._dispatch()

    async def presence(self, gateway_id: str, statuses: dict[str, str]) -> None:
        """A gateway's full snapshot of its agents' presence; renews its lease."""
        lease_s = self._settings.config.routing.presence_lease_s
        async with self._lock:
            self._leases[gateway_id] = (time.monotonic() + 3 * lease_s, statuses)
            for agent_id in statuses:
                if agent_id not in self._agents:
                    await self._load_agent(agent_id)
            self._apply_presence()
            await self._dispatch()

    # --- asks from agents ----------------------------------------------------------------

    async def accept(self, cid: str, agent_id: str) -> dict[str, Any]:
        """An agent takes a queued conversation by hand (online or away, with room)."""
        async with self._lock:
            slot = await self._slot(agent_id)
            if cid not in self._queue:
                state = await self._store.conversation_state(cid)
                if not state:
                    raise NotFound(f"conversation {cid} not found")
                if state.get("status") != "queued":
                    raise Conflict(f"conversation {cid} is {state.get('status')}, not queued")
                self._queue.push(cid, state.get("skill") or None, _now_ms())
                self._customers[cid] = state["customer"]
            if not slot.has_room():
                raise Conflict(f"you are at your limit of {slot.max_chats} chats")
            reply = await self._assign(cid, slot, {"by": "accept"})
            await self._dispatch()
            return reply

    async def transfer(self, cid: str, actor_id: str, actor_role: str,
                       to_agent: str | None, to_skill: str | None) -> dict[str, Any]:
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
            return reply

    async def snapshot(self) -> dict[str, Any]:
        """The router's view, for operators and tests."""
        return {
            "queue": [cid for cid, _ in self._queue.ordered()],
            "agents": {a.agent_id: {"presence": a.presence, "load": a.load,
                                    "max_chats": a.max_chats} for a in self._agents.values()},
        }

    # --- internals -------------------------------------------------------------------------

    async def _slot(self, agent_id: str) -> AgentSlot:
        slot = self._agents.get(agent_id) or await self._load_agent(agent_id)
        if slot is None:
            raise NotFound(f"agent {agent_id} not found")
        return slot

    async def _load_agent(self, agent_id: str) -> AgentSlot | None:
        fields, load = await self._store.pipeline([
            ("HGETALL", keys.agent_key(agent_id)), ("SCARD", keys.agent_convs_key(agent_id))])
        fields = dict(fields)
        if not fields:
            self._agents.pop(agent_id, None)
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
        for slot in self._agents.values():
            slot.presence = best.get(slot.agent_id, "offline")

    def _forget(self, cid: str) -> None:
        self._queue.remove(cid)
        self._customers.pop(cid, None)
        self._told_positions.pop(cid, None)

    async def _assign(self, cid: str, slot: AgentSlot, reason: dict[str, Any]) -> dict[str, Any]:
        command = ShardCommand(kind="assign", conversation_id=cid, actor_id="router",
                               actor_role="router", to_agent=slot.agent_id, reason=reason)
        try:
            reply = await self._shards.submit(command)
        except Conflict:
            self._forget(cid)  # closed or taken meanwhile: not ours to assign any more
            raise
        self._forget(cid)
        slot.load += 1
        slot.idle_since = _now_ms()
        log.info("conversation %s assigned to agent %s (%s)", cid, slot.agent_id, reason)
        return reply

    async def _dispatch(self) -> None:
        """Assign every queued conversation that has an eligible agent, head first, then
        tell waiting customers whose position changed."""
        agents = list(self._agents.values())
        for cid, skill in self._queue.ordered():
            slot = choose_agent(agents, skill)
            if slot is None:
                continue
            reason = {"policy": "least_loaded", "load": slot.load, "max_chats": slot.max_chats}
            try:
                await self._assign(cid, slot, reason)
            except Conflict:
                continue
            except RaydeskError:
                log.warning("assigning %s failed; it stays queued", cid)
                break
        await self._tell_positions()

    async def _tell_positions(self) -> None:
        events = []
        for cid, position in self._queue.positions().items():
            if self._told_positions.get(cid) != position and cid in self._customers:
                self._told_positions[cid] = position
                frame = dump(QueueEvent(conversation_id=cid, position=position))
                events.append((keys.channel(self._customers[cid]), frame))
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
            if state.get("status") == "queued":
                self._customers[cid] = state["customer"]
                self._queue.push(cid, state.get("skill") or None, ts)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            try:
                async with self._lock:
                    await self._reconcile()
                    await self._dispatch()
            except Exception:  # one failed round must not stop the loop
                log.exception("router reconcile failed")
