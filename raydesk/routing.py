"""Routing policy and the wait queue. Pure and deterministic: no Ray, no clock reads.

Until the skill/response-time router lands, the policy is: among eligible agents (online,
under ``max_chats``, with the conversation's skill when it names one) choose the least
loaded (open chats / capacity), ties to the one idle longest, then by id.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

PRESENCE_RANK = {"offline": 0, "away": 1, "online": 2}


@dataclass
class AgentSlot:
    agent_id: str
    max_chats: int
    skills: frozenset[str] = frozenset()
    presence: str = "offline"
    load: int = 0
    # When the agent last had a chat assigned or freed (ms); the longest idle wins ties.
    idle_since: int = 0

    def eligible(self, skill: str | None) -> bool:
        return (self.presence == "online" and self.load < self.max_chats
                and (skill is None or skill in self.skills))

    def has_room(self) -> bool:
        return self.load < self.max_chats


def choose_agent(agents: list[AgentSlot], skill: str | None) -> AgentSlot | None:
    """The agent a conversation needing ``skill`` goes to now, or None if nobody fits."""
    eligible = [a for a in agents if a.eligible(skill)]
    if not eligible:
        return None
    return min(eligible, key=lambda a: (a.load / a.max_chats, a.idle_since, a.agent_id))


@dataclass(order=True)
class _Entry:
    priority: int
    enqueued_ts: int
    order: int
    conversation_id: str = field(compare=False)
    skill: str | None = field(compare=False)


class WaitQueue:
    """Conversations waiting for an agent: FIFO within priority (lower number first)."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._entries: dict[str, _Entry] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._entries

    def push(self, conversation_id: str, skill: str | None, enqueued_ts: int,
             priority: int = 0) -> bool:
        """Add a conversation; False (and no change) if it is already queued."""
        if conversation_id in self._entries:
            return False
        entry = _Entry(priority, enqueued_ts, next(self._order), conversation_id, skill)
        self._entries[conversation_id] = entry
        heapq.heappush(self._heap, entry)
        return True

    def remove(self, conversation_id: str) -> bool:
        return self._entries.pop(conversation_id, None) is not None

    def ordered(self) -> list[tuple[str, str | None]]:
        """(conversation id, skill) for every queued conversation, head first."""
        self._heap = [e for e in self._heap if self._entries.get(e.conversation_id) is e]
        heapq.heapify(self._heap)
        return [(e.conversation_id, e.skill) for e in sorted(self._heap)]

    def positions(self) -> dict[str, int]:
        """Each conversation's 1-based position among those needing the same skill."""
        counters: dict[str | None, int] = {}
        result = {}
        for cid, skill in self.ordered():
            counters[skill] = counters.get(skill, 0) + 1
            result[cid] = counters[skill]
        return result
