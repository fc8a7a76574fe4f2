"""raydesk's metrics: cheap counters in every process, one ``/metrics`` for all of them.

Every process (gateway replica, conversation shard, router, bot replica) keeps its metrics
here, in plain objects updated in place, and a :class:`Publisher` writes a snapshot of
them to the store (hash ``rd:metrics``, one field per process) every ``PUSH_EVERY_S``.
The gateway replica that answers ``GET /metrics`` pushes its own snapshot, reads them all
and renders them in the Prometheus text format, each series labelled with the
``component`` and ``process`` it came from, so replicas are neither double counted nor
missed, whichever replica the kernel hands the scrape to.
``docs/explanation/observability.md`` lists every metric and explains the choice.

The metric types are raydesk/prometheus.py's (several times cheaper per update than
``prometheus_client``'s; updated from the event-loop thread only). A process that dies
loses its counters; they start from zero when it comes back, which Prometheus' ``rate``
treats as a counter reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raydesk import prometheus
from raydesk.prometheus import Counter, Family, Gauge, Histogram, Registry

log = logging.getLogger("raydesk.metrics")

# The store hash holding every process's latest snapshot ("<component>/<process>" -> JSON).
STORE_KEY = "rd:metrics"
# A third of Prometheus' default 15 s scrape interval: a scrape sees other processes'
# values at most this old, for one small store write per process every period.
PUSH_EVERY_S = 5.0
# A snapshot not renewed for three periods is a process that is gone (or stuck): left
# out of /metrics and deleted from the store.
STALE_AFTER_S = 3 * PUSH_EVERY_S

# Chat latencies: a few ms when idle, tens under load; beyond 10 s it is an outage.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     5.0, 10.0)
# A store round trip is ~0.1-1 ms on loopback; a group commit carries many changes.
STORE_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   1.0, 2.5)
# The bot's model: tens of ms per batch on CPU, seconds when overloaded (timeout_s: 2).
BOT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Waiting for an agent: seconds to an hour.
WAIT_BUCKETS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


# --- the metrics ------------------------------------------------------------------------

STORE = Registry()
GATEWAY = Registry()
SHARD = Registry()
ROUTER = Registry()
BOT = Registry()
REGISTRIES: dict[str, tuple[Registry, ...]] = {
    "gateway": (GATEWAY, STORE), "shard": (SHARD, STORE), "router": (ROUTER, STORE),
    "bot": (BOT, STORE)}

# Store (every process).
STORE_SECONDS = Histogram(
    "raydesk_store_seconds", "Store round trips: op=call (one command), pipeline (several "
    "in one round trip), commit (one group commit of many conversation changes).", ["op"],
    buckets=STORE_BUCKETS_S, registry=STORE)
STORE_COMMITS = Counter(
    "raydesk_store_commits_total", "Conversation changes committed, by outcome (ok, dup: a "
    "resend answered from the dedupe map, stale: the seq fence refused, error).",
    ["outcome"], registry=STORE)
STORE_ERRORS = Counter(
    "raydesk_store_errors_total", "Store commands that failed (unreachable or refused).",
    ["op"], registry=STORE)
STORE_CALL = STORE_SECONDS.labels("call")
STORE_PIPELINE = STORE_SECONDS.labels("pipeline")
STORE_COMMIT = STORE_SECONDS.labels("commit")

# Gateway.
CONNECTIONS = Gauge(
    "raydesk_connections", "Open, authenticated WebSocket connections, by role.", ["role"],
    registry=GATEWAY)
CONNECTIONS_CLOSED = Counter(
    "raydesk_connections_closed_total", "WebSocket connections closed, by close code.",
    ["code"], registry=GATEWAY)
SUBSCRIBED = Gauge(
    "raydesk_subscribed_participants", "Participants whose pub/sub channel this gateway "
    "is subscribed to (one or more of their connections are here).", registry=GATEWAY)
FRAMES_RECEIVED = Counter(
    "raydesk_frames_received_total", "Client frames accepted (valid), by type.", ["type"],
    registry=GATEWAY)
FRAMES_SENT = Counter(
    "raydesk_frames_sent_total", "Frames written to WebSockets, by type (sync replays "
    "included).", ["type"], registry=GATEWAY)
MESSAGES_RECEIVED = Counter(
    "raydesk_messages_received_total", "Chat messages (send frames) stored and "
    "acknowledged, by the sender's role.", ["role"], registry=GATEWAY)
MESSAGES_DELIVERED = Counter(
    "raydesk_messages_delivered_total", "Live message events written to a recipient's "
    "WebSocket (one per connection; sync replays not counted).", registry=GATEWAY).labels()
ACKS = Counter("raydesk_acks_total", "Acks written to WebSockets.", registry=GATEWAY).labels()
ACK_LATENCY = Histogram(
    "raydesk_ack_latency_seconds", "From a send frame's arrival to its ack written to the "
    "socket.", buckets=LATENCY_BUCKETS_S, registry=GATEWAY).labels()
DELIVERY_LATENCY = Histogram(
    "raydesk_delivery_latency_seconds", "From a message's commit (its ts) to the event "
    "written to a recipient's socket.", buckets=LATENCY_BUCKETS_S,
    registry=GATEWAY).labels()
ERRORS = Counter(
    "raydesk_errors_total", "Errors answered to clients, by protocol error code and "
    "transport (websocket: error frames; http: REST error bodies).", ["code", "transport"],
    registry=GATEWAY)
PUBSUB_BREAKS = Counter(
    "raydesk_pubsub_breaks_total", "Times the gateway's pub/sub connection broke (its "
    "connections were closed with 1012).", registry=GATEWAY).labels()

# Shard.
SHARD_COMMANDS = Counter(
    "raydesk_shard_commands_total", "Commands run by conversation shards, by kind and "
    "outcome (ok or the error code).", ["kind", "outcome"], registry=SHARD)
ACTIVE_CONVERSATIONS = Gauge(
    "raydesk_active_conversations", "Conversations held in the shard's memory.",
    registry=SHARD).labels()
BOT_ANSWERS = Counter(
    "raydesk_bot_answers_total", "Bot turns that answered the customer: kind=faq, intent "
    "(a canned reply) or clarify (asked to rephrase).", ["kind"], registry=SHARD)
BOT_HANDOFFS = Counter(
    "raydesk_bot_handoffs_total", "Bot turns that handed the conversation to the agents' "
    "queue, by reason (requested, bot_unavailable, low_confidence, unanswered, intent).",
    ["reason"], registry=SHARD)
BOT_TURNS = Counter(
    "raydesk_bot_turns_total", "Bot turns committed, by how they were stored: "
    "with_question (the model answered within bot.inline_wait_ms: one commit for the "
    "question and the turn) or alone (a commit of its own, after the question's).",
    ["stored"], registry=SHARD)
BOT_CONFIDENCE = Histogram(
    "raydesk_bot_confidence_ratio", "The model's confidence at each bot turn that had an "
    "analysis, by action (answer, clarify, handoff).", ["action"],
    buckets=CONFIDENCE_BUCKETS, registry=SHARD)
BOT_REQUEST = Histogram(
    "raydesk_bot_request_seconds", "A shard's call to the bot's model (a batch of "
    "questions through Serve), failures and timeouts included.", buckets=BOT_BUCKETS_S,
    registry=SHARD).labels()

# Router.
QUEUE_LENGTH = Gauge(
    "raydesk_queue_length", "Conversations waiting for an agent, by routing partition and "
    "skill (none: any agent; other: a skill no agent has).", ["partition", "skill"],
    registry=ROUTER)
QUEUE_WAIT = Histogram(
    "raydesk_queue_wait_seconds", "Time a conversation waited in the queue before its "
    "assignment.", ["partition", "skill"], buckets=WAIT_BUCKETS_S, registry=ROUTER)
ASSIGNMENTS = Counter(
    "raydesk_assignments_total", "Conversations assigned to agents, by partition and how "
    "(router: chosen by the routing policy; accept: taken by the agent).",
    ["partition", "how"], registry=ROUTER)
TRANSFERS = Counter(
    "raydesk_transfers_total", "Conversations transferred, by partition and target (agent "
    "or skill).", ["partition", "to"], registry=ROUTER)
REQUEUES = Counter(
    "raydesk_requeues_total", "Assigned conversations put back in the queue, by reason "
    "(agent_offline, reply_deadline).", ["partition", "reason"], registry=ROUTER)
AGENTS = Gauge(
    "raydesk_agents", "Agents of the partition, by presence (online, away, offline).",
    ["partition", "presence"], registry=ROUTER)
AGENT_CHATS = Gauge(
    "raydesk_agent_open_chats", "Conversations assigned to the partition's agents (their "
    "load), by the agents' presence.", ["partition", "presence"], registry=ROUTER)
AGENT_CAPACITY = Gauge(
    "raydesk_agent_max_chats", "Sum of the partition's agents' chat limits, by presence.",
    ["partition", "presence"], registry=ROUTER)

# Bot (the Assistant's replicas).
BOT_MODEL = Gauge(
    "raydesk_bot_model_info", "1 for the model this bot replica serves.",
    ["model", "version"], registry=BOT)
BOT_INFERENCE = Histogram(
    "raydesk_bot_inference_seconds", "One batched pass of the model over questions.",
    buckets=BOT_BUCKETS_S, registry=BOT).labels()
BOT_BATCH = Histogram(
    "raydesk_bot_batch_questions", "Questions per batched model pass.",
    buckets=BATCH_BUCKETS, registry=BOT).labels()

# Rendered by the gateway that answers the scrape, from the snapshots it gathered.
SNAPSHOT_AGE = "raydesk_metrics_snapshot_age_seconds"
_SNAPSHOT_AGE_HELP = ("Age of each process's snapshot in this answer (0: the answering "
                      "gateway's own, live).")


def exported_names() -> set[str]:
    """Every series name ``/metrics`` can carry (for dashboards and their test)."""
    names = {SNAPSHOT_AGE}
    for registries in REGISTRIES.values():
        for registry in registries:
            for family in registry.families:
                if isinstance(family, Histogram):
                    names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
                else:
                    names.add(family.name)
    return names


# --- the hot path: helpers for the gateway's session -----------------------------------

# Server frame types (raydesk/schema.py); anything else is counted as "other", so a
# frame can never add a label value.
SERVER_FRAME_TYPES = ("welcome", "ack", "message", "synced", "typing", "read", "queue",
                      "note", "assigned", "conversation", "error", "pong", "other")
_FRAMES_SENT = {kind: FRAMES_SENT.labels(kind) for kind in SERVER_FRAME_TYPES}
_MESSAGE_PREFIX = '{"type":"message"'
# In a JSON object the key "ts" followed by its colon cannot occur inside a string value
# (every quote there is escaped), so the first one after the prefix is the message's ts
# (a message's fields before ts have no "ts" of their own).
_TS = re.compile(r'"ts":(\d+)')


def frame_type(payload: str) -> str:
    """A server frame's ``type``, without parsing it: its first field in nearly every
    frame; a frame with ``type`` last (the agents' conversation events) or unknown types
    count as what they are or "other"."""
    if payload.startswith('{"type":"'):
        start = 9
    elif payload.startswith('{"type": "'):  # json.dumps' default separators
        start = 10
    else:
        found = payload.rfind('"type":"')
        if found < 0:
            return "other"
        start = found + 8
    kind = payload[start:payload.find('"', start)]
    return kind if kind in _FRAMES_SENT else "other"


def commit_time(payload: str) -> float:
    """A message event's commit time (its ``ts``, epoch seconds); 0 for other frames."""
    if not payload.startswith(_MESSAGE_PREFIX):
        return 0.0
    found = _TS.search(payload, len(_MESSAGE_PREFIX))
    return int(found.group(1)) / 1000 if found else 0.0


def frame_written(payload: str, stamp: float) -> None:
    """Count a frame just written to a socket. ``stamp``: for an ack, when (monotonic s)
    its send frame arrived; for a live message event, its commit time (epoch s); else 0."""
    kind = frame_type(payload)
    _FRAMES_SENT[kind].inc()
    if kind == "ack":
        ACKS.inc()
        if stamp:
            ACK_LATENCY.observe(time.monotonic() - stamp)
    elif stamp and kind == "message":
        MESSAGES_DELIVERED.inc()
        # Commit and write may be on different hosts: clock skew shows up here.
        DELIVERY_LATENCY.observe(max(0.0, time.time() - stamp))


def bot_turn(action: str, reason: str | None, faq_id: str | None, confidence: float,
             analysed: bool, with_question: bool) -> None:
    """Count a committed bot turn (models/policy.py's Turn); ``analysed``: the model
    answered (else the confidence means nothing); ``with_question``: stored in the
    question's commit."""
    BOT_TURNS.labels("with_question" if with_question else "alone").inc()
    if action == "handoff":
        BOT_HANDOFFS.labels(reason or "unknown").inc()
    else:
        BOT_ANSWERS.labels("clarify" if action == "clarify" else
                           "faq" if faq_id else "intent").inc()
    if analysed:
        BOT_CONFIDENCE.labels(action).observe(confidence)


# --- snapshots, the store, and the exposition ------------------------------------------


@dataclass(frozen=True)
class Source:
    """One process's metrics: its families (snapshots) and how old they are."""

    component: str
    process: str
    families: list[Family]
    age_s: float = 0.0

    @property
    def field(self) -> str:
        return f"{self.component}/{self.process}"


class _Store(Protocol):
    async def call(self, command: str, *args: Any) -> Any: ...


class Publisher:
    """This process's metrics: its live :class:`Source` and the periodic push of it to the
    store. ``refresh`` sets the gauges that are computed, not counted, just before each
    snapshot (connections, queue lengths)."""

    def __init__(self, store: _Store, component: str, process: str,
                 refresh: Callable[[], None] | None = None) -> None:
        self._store = store
        self.component = component
        self.process = process
        self._registries = REGISTRIES[component]
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None
        # Pushes land in the order they were taken: a scrape must never read an older
        # snapshot after a newer one (a counter going down reads as a reset).
        self._pushing = asyncio.Lock()

    @property
    def field(self) -> str:
        return f"{self.component}/{self.process}"

    def source(self) -> Source:
        if self._refresh is not None:
            try:
                self._refresh()
            except Exception:  # stale gauges are better than no metrics at all
                log.exception("refreshing %s's gauges failed", self.field)
        families = [f for registry in self._registries for f in registry.snapshot()]
        return Source(self.component, self.process, families)

    def encode(self) -> str:
        return json.dumps({"ts": time.time(), "families": self.source().families},
                          separators=(",", ":"))

    async def push(self) -> None:
        async with self._pushing:
            await self._store.call("HSET", STORE_KEY, self.field, self.encode())

    def start(self) -> None:
        """Push now and every ``PUSH_EVERY_S`` (once per process; needs a running loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._push_forever())

    async def _push_forever(self) -> None:
        while True:
            try:
                await self.push()
            except Exception as exc:  # one failed push must not stop the loop
                log.warning("pushing %s's metrics failed: %s", self.field, exc)
            await asyncio.sleep(PUSH_EVERY_S)


def decode(field: str, payload: str, now: float) -> Source:
    """A stored snapshot (ValueError if it is not one)."""
    component, _, process = field.partition("/")
    body = json.loads(payload)
    if not process or not isinstance(body, dict) or not isinstance(body.get("families"),
                                                                   list):
        raise ValueError(f"not a metrics snapshot: {field}")
    return Source(component, process, body["families"], max(0.0, now - float(body["ts"])))


def stored_sources(stored: Mapping[str, str],
                   now: float) -> tuple[list[Source], list[str]]:
    """The fresh snapshots, and the fields to delete (stale or unreadable)."""
    sources, gone = [], []
    for field, payload in sorted(stored.items()):
        try:
            source = decode(field, payload, now)
        except (ValueError, TypeError, KeyError):
            log.warning("metrics snapshot %s is unreadable; dropping it", field)
            gone.append(field)
            continue
        if source.age_s > STALE_AFTER_S:
            gone.append(field)
        else:
            sources.append(source)
    return sources, gone


async def exposition(store: _Store, own: Publisher) -> str:
    """The ``/metrics`` answer: every process's snapshot from the store, this process's
    pushed first so that it is current.

    Every replica answers from the same store, so consecutive scrapes answered by
    different replicas see each process's counters only grow (a replica answering with
    its live values and another with an older snapshot of them would not). With the store
    down: this process's own metrics alone (the scrape still succeeds).
    """
    try:
        await own.push()
        stored = dict(await store.call("HGETALL", STORE_KEY))
    except Exception as exc:
        log.warning("other processes' metrics unavailable: %s", exc)
        return render([own.source()])
    sources, gone = stored_sources(stored, time.time())
    if gone:
        try:
            await store.call("HDEL", STORE_KEY, *gone)
        except Exception as exc:
            log.warning("dropping stale metrics snapshots failed: %s", exc)
    return render(sources)


def render(sources: Sequence[Source]) -> str:
    """The exposition of every source's families, each sample labelled with its source's
    ``component`` and ``process``, and each source's age."""
    ages: Family = {"name": SNAPSHOT_AGE, "type": "gauge", "help": _SNAPSHOT_AGE_HELP,
                    "samples": [(SNAPSHOT_AGE, {"component": s.component,
                                                "process": s.process}, s.age_s)
                                for s in sources]}
    return prometheus.render([*(({"component": s.component, "process": s.process},
                                 s.families) for s in sources), ({}, [ages])])
