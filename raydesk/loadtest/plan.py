"""What a load test does, and the bounds every run stays within.

A :class:`Plan` is a set of connections held for one or more :class:`Step`\\ s: each step
offers customer messages at a rate for a time (or up to a count); agents' replies come on
top, about one per customer message that reaches an agent. Every run is bounded in
connections, duration and messages, and aimed at loopback unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from raydesk.loadtest.texts import Mix

# One fd per connection in the generator, and in the server's gateway for each of its
# connections: keep well under the usual hard limit (20,000 here) and Linux's ~28,000
# ephemeral ports from one client address to one server port.
MAX_CONNECTIONS = 25_000
MAX_RATE = 20_000.0  # customer messages per second
MAX_DURATION_S = 3_600.0  # one step, and the whole run below
MAX_RUN_S = 4 * 3_600.0
MAX_MESSAGES = 10_000_000
MAX_WORKERS = 16
# A load-test agent may hold more chats than a person (raydesk's own cap).
MAX_CHATS = 1000


class PlanError(ValueError):
    """A plan out of bounds; the message says which value and the bound."""


@dataclass(frozen=True)
class Step:
    """Offer ``rate`` customer messages a second for ``duration_s`` seconds, stopping
    early after ``max_messages``. A rate of 0 only holds the connections."""

    rate: float
    duration_s: float
    max_messages: int = MAX_MESSAGES


@dataclass(frozen=True)
class StopRule:
    """When a ramp stops: a step whose ack p99 exceeds ``p99_ms``, or with errors, lost
    messages, or a generator that sent more than ``late_share`` of messages late."""

    p99_ms: float = 200.0
    late_share: float = 0.01

    def holds(self, step: dict[str, Any]) -> bool:
        """Whether a measured step (as :func:`raydesk.loadtest.run.run_step` reports it)
        held: ack p99 within bound, no errors, every message acked, the generator on
        time."""
        p99 = step["latency"]["ack"].get("p99_ms")
        return (p99 is not None and p99 <= self.p99_ms and not step["errors"]
                and not step["unacked"] and step["late_share"] <= self.late_share)


@dataclass(frozen=True)
class Plan:
    name: str
    customers: int
    agents: int
    steps: tuple[Step, ...]
    mix: Mix = field(default_factory=Mix)
    # Before the steps, each customer opens its conversation (not measured) at this rate.
    open_conversations: bool = True
    open_rate: float = 200.0
    open_timeout_s: float = 300.0
    agent_delay_s: float = 1.0
    # Chats per agent; None: enough for every customer's conversation.
    max_chats: int | None = None
    workers: int = 1
    window_s: float = 1.0
    drain_s: float = 10.0
    late_ms: float = 50.0
    # Seconds to wait after connecting before the "connected" memory reading.
    settle_s: float = 5.0
    pss_every_s: float = 5.0
    echo: bool = False
    inbox: str | None = None
    partition: str | None = None
    stop: StopRule | None = None
    reconnects: int = 3
    seed: int = 7

    @property
    def connections(self) -> int:
        return self.customers + self.agents

    @property
    def chats_per_agent(self) -> int:
        if self.max_chats is not None:
            return self.max_chats
        return min(MAX_CHATS, max(5, math.ceil(self.customers / max(1, self.agents) * 1.1)))

    @property
    def agent_rate(self) -> float:
        """The replies a second one agent sends at the highest step."""
        top = max((s.rate for s in self.steps), default=0.0)
        return top / self.agents if self.agents else 0.0

    def validate(self) -> Plan:
        def bound(name: str, value: float, low: float, high: float) -> None:
            if not low <= value <= high:
                raise PlanError(f"{name} is {value:g}: it must be from {low:g} to {high:g}")

        bound("--customers", self.customers, 0, MAX_CONNECTIONS)
        bound("--agents", self.agents, 0, MAX_CONNECTIONS)
        bound("customers + agents", self.connections, 1, MAX_CONNECTIONS)
        bound("--workers", self.workers, 1, MAX_WORKERS)
        bound("--agent-delay", self.agent_delay_s, 0, 600)
        bound("--drain", self.drain_s, 0, 600)
        bound("--open-rate", self.open_rate, 1, MAX_RATE)
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        total = 0.0
        for step in self.steps:
            bound("--rate", step.rate, 0, MAX_RATE)
            bound("--duration", step.duration_s, 0.1, MAX_DURATION_S)
            bound("--messages", step.max_messages, 1, MAX_MESSAGES)
            total += step.duration_s + self.drain_s
        bound("the whole run (steps and drains, s)", total, 0, MAX_RUN_S)
        if self.max_chats is not None:
            bound("--max-chats", self.max_chats, 1, MAX_CHATS)
        return self


def check_target(url: str, allow_remote: bool) -> None:
    """Refuse a URL that is not on this machine unless ``allow_remote``: a load test is a
    denial of service for whoever did not ask for it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanError(f"--url {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    if allow_remote:
        return
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, None)}
    except OSError as exc:
        raise PlanError(f"--url {url!r}: cannot resolve {parts.hostname}: {exc}") from None
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote:
        raise PlanError(f"--url {url!r} is not on this machine ({', '.join(sorted(remote))})"
                        ": pass --allow-remote to load-test another host")
