"""A conversation as a logical actor's state: status machine, sequencer, participants.

Pure: no Ray, no asyncio, no store. The shard actor owns one :class:`Conversation` per
active conversation, handles its commands one at a time, and persists what the methods
here decide with one store commit each.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raydesk.errors import Conflict, Forbidden, NotFound
from raydesk.routing import FRONT_PRIORITY


class Status(enum.StrEnum):
    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    CLOSED = "closed"


# Legal status changes. ASSIGNED -> ASSIGNED is a transfer to another agent;
# ASSIGNED -> QUEUED a transfer to a skill (or a requeue).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.BOT: frozenset({Status.QUEUED, Status.CLOSED}),
    Status.QUEUED: frozenset({Status.ASSIGNED, Status.CLOSED}),
    Status.ASSIGNED: frozenset({Status.ASSIGNED, Status.QUEUED, Status.CLOSED}),
    Status.CLOSED: frozenset(),
}


class IllegalTransition(Conflict):
    """A status change that the state machine does not allow."""


@dataclass
class Conversation:
    """The state of one conversation. ``last_seq`` is the seq of its newest message."""

    id: str
    customer: str
    status: Status
    last_seq: int = 0
    assignee: str | None = None
    skill: str | None = None
    inbox: str | None = None
    created_ts: int = 0
    updated_ts: int = 0
    priority: int = 0
    # Requeued because its agent vanished: waits ahead of everything until assigned.
    front: bool = False
    # When the oldest customer message that no agent has answered yet arrived (or, if
    # later, when the current agent got the conversation): the response-time clock.
    awaiting_since: int | None = None
    # The bot's unanswered turns in a row, and the seqs of the questions it did not answer
    # that still wait for a human answer to be linked to (training data).
    unanswered: int = 0
    open_questions: tuple[int, ...] = ()
    # The newest customer message the bot owes a turn (0: none); a shard that died
    # before taking the turn leaves it set, and the next one takes it.
    bot_due: int = 0

    @classmethod
    def from_state(cls, cid: str, state: dict[str, str]) -> Conversation:
        """Rebuild from the store's state hash; :class:`NotFound` if there is none."""
        if not state or "customer" not in state:
            raise NotFound(f"conversation {cid} not found")
        return cls(
            id=cid,
            customer=state["customer"],
            status=Status(state["status"]),
            last_seq=int(state.get("last_seq", 0)),
            assignee=state.get("assignee") or None,
            skill=state.get("skill") or None,
            inbox=state.get("inbox") or None,
            created_ts=int(state.get("created_ts", 0)),
            updated_ts=int(state.get("updated_ts", 0)),
            priority=int(state.get("priority") or 0),
            front=state.get("front") == "1",
            awaiting_since=int(state["awaiting_since"]) if state.get("awaiting_since")
            else None,
            unanswered=int(state.get("unanswered") or 0),
            open_questions=tuple(int(q) for q in (state.get("open_questions") or "").split(",")
                                 if q),
            bot_due=int(state.get("bot_due") or 0),
        )

    def to_state(self) -> dict[str, str]:
        """The state hash fields (the inverse of :meth:`from_state`)."""
        return {
            "customer": self.customer,
            "status": self.status.value,
            "last_seq": str(self.last_seq),
            "assignee": self.assignee or "",
            "skill": self.skill or "",
            "inbox": self.inbox or "",
            "created_ts": str(self.created_ts),
            "updated_ts": str(self.updated_ts),
            "priority": str(self.priority),
            "front": "1" if self.front else "",
            "awaiting_since": "" if self.awaiting_since is None else str(self.awaiting_since),
            "unanswered": str(self.unanswered),
            "open_questions": ",".join(map(str, self.open_questions)),
            "bot_due": str(self.bot_due),
        }

    # --- who may do what ---------------------------------------------------------------

    @property
    def participants(self) -> list[str]:
        """Ids whose connections receive this conversation's events."""
        return [self.customer, self.assignee] if self.assignee else [self.customer]

    def is_participant(self, participant_id: str) -> bool:
        return participant_id == self.customer or participant_id == self.assignee

    def check_can_read(self, participant_id: str, is_agent: bool) -> None:
        """Agents read every conversation; a customer only its own (else ``not_found``,
        which does not reveal that the conversation exists)."""
        if not is_agent and participant_id != self.customer:
            raise NotFound(f"conversation {self.id} not found")

    def check_can_write(self, participant_id: str, is_agent: bool) -> None:
        """Only the customer and the assigned agent write into a conversation."""
        if self.is_participant(participant_id):
            return
        if is_agent:
            raise Forbidden(f"conversation {self.id} is not assigned to you")
        raise NotFound(f"conversation {self.id} not found")

    # --- sequencing and status ---------------------------------------------------------

    def next_seqs(self, count: int) -> list[int]:
        """The seqs the next ``count`` messages take (not yet committed)."""
        return list(range(self.last_seq + 1, self.last_seq + 1 + count))

    @property
    def queue_priority(self) -> int:
        """The priority the router queues it with."""
        return FRONT_PRIORITY if self.front else self.priority

    def check_transition(self, to: Status) -> None:
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"conversation {self.id} is {self.status.value}, it cannot become {to.value}")
