"""Routing policy and the wait queue. Pure and deterministic: no Ray, no clock reads
(the caller passes the time).

Eligible agents are online, under ``max_chats`` and have the conversation's skill (a
conversation without a skill may go to anyone). Among them the lowest score wins::

    score = w_load * open_chats / max_chats  +  w_rt * rt / (rt + rt_scale)

where ``rt`` is the agent's response time (an exponentially weighted mean of the time
from a customer message to that agent's next reply; an agent not yet measured counts as
``rt_scale``, i.e. 0.5). Ties go to the agent idle longest, then to the smaller id, so the
same inputs always give the same choice.

The queue is FIFO within priority (a lower number first), with aging: a conversation of
priority ``p`` queues as if it had arrived ``p * aging_s`` later than it did. So an
ordinary conversation (1) goes before urgent ones (0) that arrive more than ``aging_s``
after it: a stream of urgent conversations cannot starve it, and waiting conversations
never swap places as time passes (a later arrival of higher priority, or a requeued one,
can still go ahead). Conversations taken back from an agent (``FRONT_PRIORITY``) go before
all others.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

PRESENCE_RANK = {"offline": 0, "away": 1, "online": 2}
# Requeued because their agent vanished or missed the first-reply deadline: ahead of all.
FRONT_PRIORITY = -1


@dataclass(frozen=True)
class Weights:
    load: float = 1.0
    response_time: float = 0.5
    response_time_scale_ms: float = 60_000.0
    # Weight of the newest response-time sample in the running mean.
    ewma_alpha: float = 0.2
    aging_s: float = 120.0


@dataclass
class AgentSlot:
    agent_id: str
    max_chats: int
    skills: frozenset[str] = frozenset()
    presence: str = "offline"
    load: int = 0
    # When the agent last had a chat assigned or freed (ms); the longest idle wins ties.
    idle_since: int = 0
    response_ms: float | None = None

    def eligible(self, skill: str | None) -> bool:
        return (self.presence == "online" and self.load < self.max_chats
                and (skill is None or skill in self.skills))

    def has_room(self) -> bool:
        return self.load < self.max_chats


def score(agent: AgentSlot, weights: Weights) -> float:
    """Lower is better; see the module docstring."""
    scale = weights.response_time_scale_ms
    rt = scale if agent.response_ms is None else agent.response_ms
    return (weights.load * agent.load / agent.max_chats
            + weights.response_time * rt / (rt + scale))


def choose_agent(agents: list[AgentSlot], skill: str | None,
                 weights: Weights = Weights()) -> AgentSlot | None:
    """The agent a conversation needing ``skill`` goes to now, or None if nobody fits."""
    eligible = [a for a in agents if a.eligible(skill)]
    if not eligible:
        return None
    # Rounded so that float noise never decides between equal agents.
    return min(eligible, key=lambda a: (round(score(a, weights), 9), a.idle_since,
                                        a.agent_id))


def matches(queue: WaitQueue, agents: list[AgentSlot], weights: Weights = Weights(),
            avoid: Mapping[str, str] | None = None) -> Iterator[tuple[str, AgentSlot]]:
    """Head first, each queued conversation that an agent can take now, with that agent.

    Lazy: the caller assigns (which may fail) and, if it succeeded, raises the agent's
    load before asking for the next match, which sees the new load. Cost per call is one
    pass over the queue plus, per match, one over the agents free for its skill; with no
    agent free it returns at once, however long the queue. ``avoid`` maps a conversation
    to an agent it should not go back to (one who missed its reply deadline) unless no
    other agent can take it.
    """
    free = [a for a in agents if a.presence == "online" and a.has_room()]
    if not free:
        return
    by_skill: dict[str | None, list[AgentSlot]] = {}
    for cid, skill in queue.ordered():
        candidates = by_skill.get(skill)
        if candidates is None:
            candidates = by_skill[skill] = [a for a in free if a.eligible(skill)]
        chosen = choose_agent(candidates, skill, weights)
        if chosen is None:
            continue
        if avoid and avoid.get(cid) == chosen.agent_id:
            others = [a for a in candidates if a is not chosen]
            chosen = choose_agent(others, skill, weights) or chosen
        yield cid, chosen
        if not chosen.has_room():  # it took this one and is full now
            for group in by_skill.values():
                if chosen in group:
                    group.remove(chosen)
            free.remove(chosen)
            if not free:
                return


def explain(agent: AgentSlot, weights: Weights) -> dict[str, Any]:
    """Why an agent was chosen: stored with the assignment, shown to agents."""
    return {"policy": "score", "score": round(score(agent, weights), 4), "load": agent.load,
            "max_chats": agent.max_chats,
            "response_ms": None if agent.response_ms is None else round(agent.response_ms),
            "weights": {"load": weights.load, "response_time": weights.response_time}}


def ewma(mean: float | None, sample: float, alpha: float) -> float:
    return sample if mean is None else alpha * sample + (1 - alpha) * mean


def priority_for(attributes: dict[str, str], inbox: str | None,
                 inbox_priority: dict[str, int], vip_attribute: str | None,
                 default: int) -> int:
    """A new conversation's priority: 0 for a VIP visitor, else its inbox's, else the
    default."""
    if vip_attribute and attributes.get(vip_attribute, "").lower() in ("1", "true", "yes"):
        return 0
    if inbox is not None and inbox in inbox_priority:
        return inbox_priority[inbox]
    return default


@dataclass
class _Entry:
    conversation_id: str
    skill: str | None
    enqueued_ts: int
    priority: int
    order: int

    def key(self, aging_ms: float) -> tuple[int, float, int]:
        front = 0 if self.priority < 0 else 1
        return (front, self.priority * aging_ms + self.enqueued_ts, self.order)


class WaitQueue:
    """Conversations waiting for an agent: FIFO within (aged) priority."""

    def __init__(self, aging_s: float = Weights.aging_s) -> None:
        self._entries: dict[str, _Entry] = {}
        # Kept sorted (an entry's key never changes): the head is read on every event,
        # so no sort per read.
        self._keys: list[tuple[tuple[int, float, int], str]] = []
        self._order = itertools.count()
        self._aging_ms = aging_s * 1000

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._entries

    def push(self, conversation_id: str, skill: str | None, enqueued_ts: int,
             priority: int = 0) -> bool:
        """Add a conversation; False (and no change) if it is already queued."""
        if conversation_id in self._entries:
            return False
        entry = _Entry(conversation_id, skill, enqueued_ts, priority, next(self._order))
        self._entries[conversation_id] = entry
        bisect.insort(self._keys, (entry.key(self._aging_ms), conversation_id))
        return True

    def remove(self, conversation_id: str) -> bool:
        entry = self._entries.pop(conversation_id, None)
        if entry is None:
            return False
        item = (entry.key(self._aging_ms), conversation_id)
        del self._keys[bisect.bisect_left(self._keys, item)]
        return True

    def _sorted(self) -> list[_Entry]:
        return [self._entries[cid] for _, cid in self._keys]

    def ordered(self) -> list[tuple[str, str | None]]:
        """(conversation id, skill) for every queued conversation, head first."""
        return [(e.conversation_id, e.skill) for e in self._sorted()]

    def entries(self, now: int) -> list[dict[str, Any]]:
        """Every queued conversation, head first, with its position and wait."""
        positions = self.positions()
        ordered = self._sorted()
        return [{"conversation_id": e.conversation_id, "skill": e.skill,
                 "priority": e.priority, "position": positions[e.conversation_id],
                 "waiting_ms": max(0, now - e.enqueued_ts)} for e in ordered]

    def positions(self) -> dict[str, int]:
        """Each conversation's 1-based position among those needing the same skill."""
        counters: dict[str | None, int] = {}
        result = {}
        for cid, skill in self.ordered():
            counters[skill] = counters.get(skill, 0) + 1
            result[cid] = counters[skill]
        return result
