"""The named load tests of issue 6, each bounded in connections, time and messages, and the
targets each one reports against (2 cores).

- ``quick``: 30 customers, 3 agents, ~10 s: the CI smoke test (correctness, not timings).
- ``idle``: 10,000 customers + 100 agents connected, nothing said: memory per connection
  above the idle node (bot and model loaded).
- ``steady``: 10,000 customers, 500 customer messages/s for 60 s, each answered by an
  agent: 1,000 durable messages/s.
- ``saturation``: 2,000 customers; the rate ramps until ack p99 > 200 ms, errors, or a
  generator that falls behind; the highest rate held.
- ``seed``: the seed's test, 100,000 messages (50,000 customer messages and their 50,000
  agent replies) from 3,000 customers: mean and p99.
- ``baseline``: the same client against a bare uvicorn WebSocket echo and against raydesk
  (1,000 customers, 1,000 messages/s): the gateway's CPU per frame as a ratio.
- ``custom``: whatever the options say (the default).

Every option given on the command line overrides the scenario's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raydesk.loadtest.plan import Plan, Step, StopRule
from raydesk.loadtest.texts import Mix

SATURATION_RATES = (250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 1750.0, 2000.0)


@dataclass
class Options:
    """What the command line may override; None keeps the scenario's value."""

    customers: int | None = None
    agents: int | None = None
    rate: float | None = None
    duration_s: float | None = None
    messages: int | None = None
    workers: int | None = None
    agent_delay_s: float | None = None
    mix: Mix | None = None
    bot: bool | None = None
    inbox: str | None = None
    partition: str | None = None
    open_conversations: bool | None = None
    open_rate: float | None = None
    drain_s: float | None = None
    window_s: float | None = None
    max_chats: int | None = None
    late_ms: float | None = None
    ramp: tuple[float, ...] | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    plan: Plan
    # With --start: whether the server runs the bot (its model's memory is part of idle).
    bot: bool
    targets: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None


def _one(rate: float, duration: float, messages: int | None = None) -> tuple[Step, ...]:
    return (Step(rate, duration) if messages is None else Step(rate, duration, messages),)


PRESETS: dict[str, tuple[Plan, bool]] = {
    "custom": (Plan("custom", customers=100, agents=5, steps=_one(10, 30)), True),
    "quick": (Plan("quick", customers=30, agents=3, steps=_one(6, 8), agent_delay_s=0.3,
                   open_rate=50, open_timeout_s=30, drain_s=5, settle_s=1, pss_every_s=2),
              True),
    "idle": (Plan("idle", customers=10_000, agents=100, steps=_one(0, 30),
                  open_conversations=False, settle_s=20), True),
    # Opening is paced: each conversation's status changes (opened, assigned) go to every
    # agent's conversation feed, so 100 opens/s with 100 agents is 20,000 frames/s.
    "steady": (Plan("steady", customers=10_000, agents=100, steps=_one(500, 60),
                    open_rate=100, open_timeout_s=600, workers=2), False),
    "saturation": (Plan("saturation", customers=2_000, agents=100,
                        steps=tuple(Step(r, 20) for r in SATURATION_RATES), workers=2,
                        open_rate=100, stop=StopRule()), False),
    "seed": (Plan("seed", customers=3_000, agents=60, steps=_one(500, 200, 50_000),
                  open_rate=100), False),
    "baseline": (Plan("baseline", customers=1_000, agents=0, steps=_one(1000, 30),
                      open_rate=250), False),
}


def build(name: str, options: Options) -> Scenario:
    """The scenario's plan with the options applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown scenario {name!r}: one of {', '.join(PRESETS)}")
    plan, bot = PRESETS[name]
    changes: dict[str, Any] = {key: value for key, value in {
        "customers": options.customers, "agents": options.agents,
        "workers": options.workers, "agent_delay_s": options.agent_delay_s,
        "mix": options.mix, "inbox": options.inbox, "partition": options.partition,
        "open_conversations": options.open_conversations, "open_rate": options.open_rate,
        "drain_s": options.drain_s, "window_s": options.window_s,
        "max_chats": options.max_chats, "late_ms": options.late_ms}.items()
        if value is not None}
    steps = list(plan.steps)
    if options.ramp:
        steps = [Step(rate, steps[0].duration_s) for rate in options.ramp]
    steps = [Step(options.rate if options.rate is not None and not options.ramp else s.rate,
                  options.duration_s if options.duration_s is not None else s.duration_s,
                  options.messages if options.messages is not None else s.max_messages)
             for s in steps]
    changes["steps"] = tuple(steps)
    if options.p99_ms is not None:
        changes["stop"] = StopRule(p99_ms=options.p99_ms)
    elif options.ramp and plan.stop is None:
        changes["stop"] = StopRule()
    changes.update(options.extra)
    return Scenario(name, dataclasses.replace(plan, **changes).validate(),
                    bot if options.bot is None else options.bot, TARGETS.get(name))


# --- targets ---------------------------------------------------------------------------------


def _row(target: str, measured: float | None, limit: float, unit: str,
         higher_is_better: bool = False) -> dict[str, Any]:
    if measured is None:
        return {"target": target, "measured": "not measured", "ratio": None, "met": False}
    ratio = round(measured / limit, 3) if limit else None
    met = measured >= limit if higher_is_better else measured <= limit
    shown = f"{measured:,.0f}" if float(measured).is_integer() else f"{measured:,.1f}"
    return {"target": target, "measured": f"{shown} {unit}", "ratio": ratio, "met": met}


def _step(result: dict[str, Any]) -> dict[str, Any]:
    steps = result.get("steps") or [{}]
    return dict(steps[0])


def idle_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    memory, setup = result["memory"], result.get("setup", {})
    return [
        _row("10,000 connections held", setup.get("customers", 0) + setup.get("agents", 0),
             10_000, "connections", higher_is_better=True),
        _row("<= 40 KB per connection above idle (PSS)", memory.get("per_connection_kb"),
             40, "KB"),
        _row("<= 40 KB per connection above idle (USS)",
             memory.get("per_connection_kb_uss"), 40, "KB"),
        _row("idle node with the model <= 1.5 GB PSS",
             memory["idle"].get("server_total"), 1536, "MB")]


def steady_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    step = _step(result)
    c2a = step.get("latency", {}).get("customer_to_agent", {})
    return [
        _row(">= 1,000 durable msg/s offered and acked", step.get("acked_per_s"), 1000,
             "msg/s", higher_is_better=True),
        _row("customer->agent p50 <= 15 ms", c2a.get("p50_ms"), 15, "ms"),
        _row("customer->agent p99 <= 100 ms", c2a.get("p99_ms"), 100, "ms")]


def held(result: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest step of a ramp that held (p99 within bound, no errors, on time)."""
    stop = result["plan"].get("stop")
    rule = StopRule(**stop) if stop else StopRule()
    good = [s for s in result.get("steps", []) if rule.holds(s)]
    return max(good, key=lambda s: s["acked_per_s"]) if good else None


def saturation_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    best = held(result)
    result["held"] = best and {k: best[k] for k in ("rate", "acked_per_s", "latency")}
    return [_row(">= 3,000 durable msg/s before ack p99 > 200 ms",
                 best["acked_per_s"] if best else 0.0, 3000, "msg/s", higher_is_better=True)]


def seed_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    step = _step(result)
    latency = step.get("latency", {})
    rows = []
    for name, what in (("ack", "ack"), ("customer_to_agent", "customer->agent"),
                       ("agent_to_customer", "agent->customer")):
        rows.append(_row(f"seed: {what} mean 87 ms", latency.get(name, {}).get("mean_ms"),
                         87, "ms"))
        rows.append(_row(f"seed: {what} p99 < 200 ms", latency.get(name, {}).get("p99_ms"),
                         200, "ms"))
    rows.append(_row("seed: 3,000+ connections under 1 GB",
                     result["memory"].get("peak_server_total_mb"), 1024, "MB"))
    return rows


def baseline_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    echo, raydesk = (_step(run) for run in result["runs"])
    floor, ours = echo.get("gateway_cpu_us_per_frame"), raydesk.get("gateway_cpu_us_per_frame")
    ratio = ours / floor if ours and floor else None
    result["gateway_vs_echo_per_frame"] = ratio and round(ratio, 2)
    return [_row("gateway CPU per frame <= 2x bare uvicorn", ratio, 2, "x")]


TARGETS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "idle": idle_targets, "steady": steady_targets, "saturation": saturation_targets,
    "seed": seed_targets, "baseline": baseline_targets}
