"""Assignments per second of the routing policy (pure, no Ray): 1,000 agents and 10,000
queued conversations, the issue's sizes.

Measures, each as the median of --repeat runs:
- fill: one dispatch that assigns until every agent is full (5,000 assignments);
- event, no agent free: one dispatch when every agent is full (the common case under load:
  a new conversation arrives and must just wait);
- event, one agent freed: one dispatch after one chat closes (one assignment).

Writes benchmarks/results/routing_policy.json and .png.
Run: .venv/bin/python benchmarks/routing_policy.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from raydesk.routing import AgentSlot, WaitQueue, Weights, matches

RESULTS = Path(__file__).resolve().parent / "results"


def build(agents: int, queued: int, skills: int, seed: int) -> tuple[list[AgentSlot], WaitQueue]:
    rng = random.Random(seed)
    names = [f"skill{i}" for i in range(skills)]
    slots = [AgentSlot(f"a{i}", max_chats=5, skills=frozenset(rng.sample(names, rng.randint(1, 3))),
                       presence="online", idle_since=rng.randint(0, 10**6),
                       response_ms=rng.choice([None, rng.uniform(5_000, 120_000)]))
             for i in range(agents)]
    queue = WaitQueue()
    for i in range(queued):
        queue.push(f"c{i}", rng.choice(names), i * 10, priority=rng.choice([0, 1, 1, 1]))
    return slots, queue


def dispatch(queue: WaitQueue, agents: list[AgentSlot], weights: Weights) -> int:
    """What the router does, minus the shard call: assign, raise the load, dequeue."""
    assigned = []
    for cid, slot in matches(queue, agents, weights):
        slot.load += 1
        assigned.append(cid)
    for cid in assigned:
        queue.remove(cid)
    return len(assigned)


def timed(setup: Callable[[], tuple[list[AgentSlot], WaitQueue]], repeat: int) -> tuple[float, int]:
    samples, count = [], 0
    for _ in range(repeat):
        agents, queue = setup()
        started = time.perf_counter()
        count = dispatch(queue, agents, Weights())
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--skills", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    def fresh() -> tuple[list[AgentSlot], WaitQueue]:
        return build(args.agents, args.queued, args.skills, seed=1)

    def full() -> tuple[list[AgentSlot], WaitQueue]:
        agents, queue = fresh()
        dispatch(queue, agents, Weights())
        for agent in agents:
            agent.load = agent.max_chats  # nobody can take more, whatever the skills
        return agents, queue

    def one_freed() -> tuple[list[AgentSlot], WaitQueue]:
        agents, queue = full()
        agents[0].load -= 1
        return agents, queue

    fill_s, fill_n = timed(fresh, args.repeat)
    blocked_s, blocked_n = timed(full, args.repeat)
    freed_s, freed_n = timed(one_freed, args.repeat)
    results = {
        "fill": {"seconds": round(fill_s, 4), "assignments": fill_n,
                 "assignments_per_s": round(fill_n / fill_s)},
        "event_no_agent_free": {"ms": round(blocked_s * 1000, 3), "assignments": blocked_n},
        "event_one_agent_freed": {"ms": round(freed_s * 1000, 3), "assignments": freed_n},
    }
    report = {"benchmark": "routing_policy", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "sizes": {"agents": args.agents, "queued": args.queued, "skills": args.skills},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "results": results}
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing_policy.json").write_text(json.dumps(report, indent=2))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axis = plt.subplots(figsize=(7, 3.5))
    labels = [f"fill ({fill_n} assignments)", "event: none free", "event: one freed"]
    values = [fill_s * 1000, blocked_s * 1000, freed_s * 1000]
    axis.barh(labels, values, color=["#4a7", "#47a", "#a74"])
    axis.set_xlabel("ms per dispatch (median)")
    axis.set_title(f"routing policy: {args.agents} agents, {args.queued} queued")
    fig.tight_layout()
    fig.savefig(RESULTS / "routing_policy.png", dpi=100)


if __name__ == "__main__":
    main()
