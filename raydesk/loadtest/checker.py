"""Exactly-once, in-order delivery bookkeeping of a load test: pure logic, no I/O.

Each simulated connection keeps a :class:`Stream` per conversation it receives: the seqs
that arrived live, in arrival order, and after the run the ones only its final ``sync``
returned. Each sender keeps an :class:`Ack` per acknowledged message. :func:`check` joins
the two, possibly gathered from several load-generating processes, and counts:

- **delivered**: the acknowledged message reached an entitled receiver live, once;
- **late**: it did not arrive live before the run ended, but the final ``sync`` returned
  it: stored, only delivered late (the live path dropped or delayed it);
- **lost**: not even the final ``sync`` has it, or another message holds its seq: the
  ``ack`` promised what the store does not have;
- **unverified**: not live, and the receiver's final ``sync`` never completed (the server
  kept refusing it), so whether it is stored is not known;
- **duplicated**: a seq that arrived live twice, or one sender's ``client_msg_id`` stored
  at two seqs;
- **reordered**: a seq that arrived live after a higher one.

Who is entitled to which seqs (PROTOCOL.md): the conversation's customer to all of them;
its agent from the seq of the system message that assigned it (``assigned.last_seq``) until
a requeue or transfer takes it away. While a sync of a stream is in flight, the protocol
lets live events and sync replies overlap, so a repeat then is not a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal, NamedTuple

Role = Literal["customer", "agent"]


class Ack(NamedTuple):
    """An acknowledged message; ``origin`` is ``"<sender id>/<client_msg_id>"``."""

    conversation_id: str
    seq: int
    origin: str


@dataclass
class Stream:
    """What one receiver got of one conversation."""

    receiver: str
    role: Role
    conversation_id: str
    # The first seq the receiver is entitled to receive live, and the last (None: open).
    start: int = 1
    end: int | None = None
    live: set[int] = field(default_factory=set)
    late: set[int] = field(default_factory=set)
    # seq -> origin of the customer and agent messages seen (live, history or final sync).
    origins: dict[int, str] = field(default_factory=dict)
    highest: int = 0
    duplicated: int = 0
    reordered: int = 0
    # Syncs of this stream in flight: live and sync replies may then overlap.
    syncs_in_flight: int = 0
    # The final sync reached the end of the log: what it did not return is not stored.
    final_synced: bool = False

    def entitled(self, seq: int) -> bool:
        return seq >= self.start and (self.end is None or seq <= self.end)

    def _origin(self, seq: int, origin: str | None) -> None:
        if origin is not None:
            # The first origin seen at a seq stays: another one there fails the ack check.
            self.origins.setdefault(seq, origin)

    def on_live(self, seq: int, origin: str | None = None) -> bool:
        """A ``message`` frame during the run; True when this seq is new to the receiver
        (its first arrival: the one whose latency counts)."""
        self._origin(seq, origin)
        if seq < self.start:  # history, e.g. an agent's sync of what came before it
            return False
        if seq in self.live:
            if not self.syncs_in_flight:
                self.duplicated += 1
            return False
        if seq < self.highest and not self.syncs_in_flight:
            self.reordered += 1
        self.live.add(seq)
        self.highest = max(self.highest, seq)
        return True

    def on_final(self, seq: int, origin: str | None = None) -> None:
        """A ``message`` frame after the run, from the final sync (or arriving that late)."""
        self._origin(seq, origin)
        if seq not in self.live and seq >= self.start:
            self.late.add(seq)

    def contiguous(self) -> int:
        """The highest seq up to which every entitled seq arrived live (start - 1 if none):
        where a sync must start to fill every gap."""
        seq = self.start
        while seq in self.live:
            seq += 1
        return seq - 1

    def stored_twice(self) -> int:
        """Origins this receiver saw at more than one seq."""
        seen: dict[str, int] = defaultdict(int)
        for origin in self.origins.values():
            seen[origin] += 1
        return sum(count - 1 for count in seen.values() if count > 1)


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check`; ``expected`` counts (message, entitled receiver)."""

    acked: int = 0
    expected: int = 0
    delivered: int = 0
    late: int = 0
    unverified: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0

    @property
    def exactly_once(self) -> bool:
        return self.lost == self.duplicated == self.reordered == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "exactly_once": self.exactly_once}


def check(acks: Iterable[Ack], streams: Iterable[Stream]) -> Verdict:
    """Every acknowledged message against every stream entitled to it."""
    by_conversation: dict[str, list[Stream]] = defaultdict(list)
    duplicated = reordered = 0
    for stream in streams:
        by_conversation[stream.conversation_id].append(stream)
        duplicated += stream.duplicated
        reordered += stream.reordered
        if stream.role == "customer":  # the customer holds the whole log: count once
            duplicated += stream.stored_twice()
    acked = expected = delivered = late = unverified = lost = 0
    for ack in set(acks):  # a resend's repeated ack is the same promise, checked once
        acked += 1
        receivers = [s for s in by_conversation.get(ack.conversation_id, ())
                     if s.role == "customer" or s.entitled(ack.seq)]
        if not any(s.role == "customer" for s in receivers):
            expected += 1  # the customer is always entitled and got nothing at all
            lost += 1
        for stream in receivers:
            expected += 1
            if stream.origins.get(ack.seq, ack.origin) != ack.origin:
                lost += 1
            elif ack.seq in stream.live:
                delivered += 1
            elif ack.seq in stream.late:
                late += 1
            elif not stream.final_synced:
                unverified += 1
            else:
                lost += 1
    return Verdict(acked=acked, expected=expected, delivered=delivered, late=late,
                   unverified=unverified, lost=lost, duplicated=duplicated,
                   reordered=reordered)
