"""The chaos run's verdict, Jepsen-style: what the clients were promised (every ``ack``,
with when its message was first sent and when the ack came) against what the store has at
the end (every conversation read back over REST). Pure functions, no I/O, except
:func:`read_back`.

For each acknowledged message:

- **lost**: the conversation's log has no message at the acknowledged seq, or another one
  (another sender or ``client_msg_id``) holds that seq;
- **duplicated**: its sender's ``client_msg_id`` is stored more than once;
- **reordered**: a message of the same sender in the same conversation that was
  acknowledged *before this one was first sent* has a higher seq (the order the sender
  was promised; two sends in flight at once have no order between them);
- **false ack**: acknowledged while the store was down, yet not in the final log.

For each conversation: **gaps**, seqs missing from 1..last_seq; and, from its system
events, **double assignments** (``assigned`` while already assigned, with no ``queued``
or ``transferred`` between) and whether it ended still waiting in the queue.

Every count is attributed to the fault window in which the message was first sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from raydesk.loadtest.checker import Ack
from raydesk.loadtest.sim import stamp_of

PAGE = 1000


@dataclass(frozen=True)
class Window:
    """A span of the run (wall clock): a fault from its injection until the next one."""

    name: str
    start: float
    end: float


async def read_back(url: str, readers: dict[str, str], concurrency: int = 8,
                    ) -> dict[str, dict[str, Any]]:
    """Every conversation's whole log and last seq, over REST (``GET
    /v1/conversations/{id}/messages``, paged), read with a token that may read it."""
    gate = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, cid: str, token: str) -> tuple[str, dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        last_seq = 0
        async with gate:
            while True:
                since = messages[-1]["seq"] if messages else 0
                response = await http.get(f"/v1/conversations/{cid}/messages",
                                          params={"since": since, "limit": PAGE},
                                          headers={"Authorization": f"Bearer {token}"})
                response.raise_for_status()
                page = response.json()
                messages.extend(page["messages"])
                last_seq = int(page["last_seq"])
                if len(page["messages"]) < PAGE:
                    break
        return cid, {"messages": messages, "last_seq": last_seq}

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        pairs = await asyncio.gather(*(one(http, cid, token) for cid, token in readers.items()))
    return dict(pairs)


def origin_of(message: dict[str, Any]) -> str | None:
    cmid = message.get("client_msg_id")
    return f"{message['sender']['id']}/{cmid}" if cmid else None


def first_sent(origin: str) -> float:
    """When a message was first sent: its load-test client_msg_id carries it."""
    return stamp_of(origin.split("/", 1)[1]) or 0.0


def window_of(when: float, windows: Sequence[Window]) -> str:
    for window in windows:
        if window.start <= when < window.end:
            return window.name
    return "other"


def gaps_in(log: dict[str, Any]) -> list[float]:
    """Seqs missing from 1..N (N the highest of the log and the conversation's last_seq):
    for each, when the message before it was stored (wall s; 0 if none), to place it."""
    by_seq = {m["seq"]: m for m in log["messages"]}
    top = max([log["last_seq"], *by_seq])
    missing, before = [], 0.0
    for seq in range(1, top + 1):
        if seq in by_seq:
            before = by_seq[seq]["ts"] / 1000
        else:
            missing.append(before)
    return missing


def assignments(log: dict[str, Any]) -> tuple[int, int, str | None]:
    """(assigned events, double assignments, the status the events leave it in)."""
    status: str | None = None
    assigned = doubles = 0
    for message in log["messages"]:
        event = message.get("event") or {}
        kind = event.get("kind")
        if kind == "opened":
            status = event.get("status")
        elif kind == "assigned":
            assigned += 1
            if status == "assigned":
                doubles += 1
            status = "assigned"
        elif kind in ("queued", "closed"):
            status = kind
        elif kind == "transferred":
            status = "assigned" if event.get("to_agent") else "queued"
    return assigned, doubles, status


def reordered(promises: Iterable[tuple[float, float, int]]) -> int:
    """Of one sender's messages in one conversation, ``(first sent, acked, seq)``: how
    many have a lower seq than a message acknowledged before they were first sent."""
    by_send = sorted(promises)
    by_ack = sorted(by_send, key=lambda p: p[1])
    count, i, highest = 0, 0, 0
    for sent, _, seq in by_send:
        while i < len(by_ack) and by_ack[i][1] < sent:
            highest = max(highest, by_ack[i][2])
            i += 1
        if highest > seq:
            count += 1
    return count


def examine(acks: Iterable[Ack], acked_at: dict[str, float], logs: dict[str, dict[str, Any]],
            windows: Sequence[Window], store_down: Sequence[tuple[float, float]] = (),
            ) -> dict[str, Any]:
    """The verdict: totals and, by window, acked / lost / duplicated / reordered /
    false acks."""
    by_window: dict[str, Counter[str]] = defaultdict(Counter)
    index: dict[str, dict[int, dict[str, Any]]] = {
        cid: {m["seq"]: m for m in log["messages"]} for cid, log in logs.items()}
    stored: Counter[str] = Counter()
    for log in logs.values():
        for message in log["messages"]:
            origin = origin_of(message)
            if origin is not None:
                stored[origin] += 1
    promises: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    acked_origins = set()
    for ack in set(acks):
        acked_origins.add(ack.origin)
        sent = first_sent(ack.origin)
        counts = by_window[window_of(sent, windows)]
        counts["acked"] += 1
        message = index.get(ack.conversation_id, {}).get(ack.seq)
        present = message is not None and origin_of(message) == ack.origin
        if not present:
            counts["lost"] += 1
        when = acked_at.get(ack.origin, 0.0)
        # Sent once the store was dead and acked before it was started again: nothing can
        # have made it durable. (An ack still on its way when the store died is not one:
        # that message was committed before.)
        if any(start <= sent <= when <= end for start, end in store_down):
            counts["acked_while_store_down"] += 1
            if not present:
                counts["false_acks"] += 1
        sender = ack.origin.split("/", 1)[0]
        promises[(sender, ack.conversation_id)].append((sent, when, ack.seq))
    for origin, count in stored.items():
        if count > 1:
            by_window[window_of(first_sent(origin), windows)]["duplicated"] += count - 1
    for items in promises.values():
        late = reordered(items)
        if late:
            by_window[window_of(min(p[0] for p in items), windows)]["reordered"] += late
    gaps = {cid: gaps_in(log) for cid, log in logs.items()}
    for missing in gaps.values():
        for when in missing:
            by_window[window_of(when, windows)]["gaps"] += 1
    assigned = {cid: assignments(log) for cid, log in logs.items()}
    totals: Counter[str] = Counter()
    for counts in by_window.values():
        totals.update(counts)
    return {
        "conversations": len(logs),
        "messages": sum(len(log["messages"]) for log in logs.values()),
        "acked": totals["acked"], "lost": totals["lost"],
        "duplicated": totals["duplicated"], "reordered": totals["reordered"],
        "false_acks": totals["false_acks"],
        "gaps": totals["gaps"],
        "conversations_with_gaps": sorted(cid for cid, missing in gaps.items() if missing),
        "stored_unacked": sum(1 for origin in stored if origin not in acked_origins),
        "double_assignments": sum(d for _, d, _ in assigned.values()),
        "still_queued": sorted(cid for cid, (_, _, s) in assigned.items() if s == "queued"),
        "by_window": {name: {key: counts.get(key, 0) for key in (
            "acked", "lost", "duplicated", "reordered", "gaps", "acked_while_store_down",
            "false_acks")} for name, counts in by_window.items()},
        "assignments": {cid: {"assigned_events": a, "double": d, "status": s}
                        for cid, (a, d, s) in assigned.items()},
    }
