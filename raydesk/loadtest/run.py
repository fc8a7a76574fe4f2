"""Running a plan: start the generator processes, take them through the phases, watch the
server's processes, merge what the generators measured and check delivery.

Phases: agents (REST) -> connect (visitors over REST, then WebSockets) -> open (each
customer's first message, not measured) -> steps (measured, each followed by a drain) ->
check (every stream synced, every ack checked) -> teardown (conversations closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import queue
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil

from raydesk.loadtest import metrics, worker
from raydesk.loadtest.accounts import LoadTestError, ensure_agents, install_faq
from raydesk.loadtest.checker import check
from raydesk.loadtest.plan import Plan, Step
from raydesk.loadtest.procs import (
    Sampler,
    cpu_between,
    find_server_root,
    label,
    nofile_of,
    raise_nofile,
    tree,
)
from raydesk.loadtest.texts import FAQ

# Generous bounds on each phase beyond what the plan itself takes.
SPAWN_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 60.0
# After the set-up calls (argon2 hashes, FAQ indexing) before reading the idle node.
IDLE_SETTLE_S = 3.0

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class Target:
    """Where the load goes: a raydesk (admin token for its agents) or the echo server."""

    url: str
    admin_token: str | None = None
    # The process whose tree is the server (found from the port when None).
    server_root: int | None = None
    # The load test started this server: it may install its FAQ.
    install_faq: bool = False
    questions: tuple[str, ...] = ()

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1).rstrip("/") + "/v1/ws"


@dataclass
class Crew:
    """The generator processes and their command and event queues."""

    specs: list[worker.WorkerSpec]
    on_progress: Progress
    context: Any = field(default_factory=lambda: multiprocessing.get_context("spawn"))
    processes: list[Any] = field(default_factory=list)
    progress: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = self.context.Queue()
        self.commands = [self.context.Queue() for _ in self.specs]
        for spec, commands in zip(self.specs, self.commands, strict=True):
            process = self.context.Process(target=worker.main, name=f"loadgen-{spec.index}",
                                           args=(spec, commands, self.events), daemon=True)
            process.start()
            self.processes.append(process)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def command(self, name: str, args: list[dict[str, Any]], timeout_s: float,
                ) -> list[dict[str, Any]]:
        """Send a command to every generator; their answers, in order."""
        for commands, kwargs in zip(self.commands, args, strict=True):
            commands.put((name, kwargs))
        answers: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(self.processes):
            try:
                kind, index, payload = self.events.get(timeout=0.25)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise LoadTestError(f"the generators did not finish '{name}' in "
                                        f"{timeout_s:.0f} s") from None
                dead = [p.name for p in self.processes if not p.is_alive()]
                if dead:
                    raise LoadTestError(
                        f"generator process {dead[0]} died during '{name}'") from None
                continue
            if kind == "progress":
                self.progress[index] = payload
                self.on_progress(name, self.totals())
            elif kind == "failed":
                raise LoadTestError(f"generator {index} failed during '{name}':\n{payload}")
            elif kind == name:
                answers[index] = payload
        return [answers[i] for i in range(len(self.processes))]

    def totals(self) -> dict[str, Any]:
        snapshots = list(self.progress.values())
        totals: dict[str, Any] = {key: sum(s.get(key) or 0 for s in snapshots) for key in
                                  ("connected", "settled", "sent", "acked", "late", "errors")}
        p99s = [s["ack_p99_ms"] for s in snapshots if s.get("ack_p99_ms") is not None]
        totals["ack_p99_ms"] = max(p99s) if p99s else None
        return totals

    def close(self) -> None:
        for commands in self.commands:
            with contextlib.suppress(Exception):
                commands.put(("stop", {}))
        for process in self.processes:
            process.join(15)
            if process.is_alive():
                process.terminate()
                process.join(5)


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _sum_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def run(plan: Plan, target: Target, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run ``plan`` against ``target``; the result (see docs/how-to/load-test.md)."""
    plan.validate()
    report = on_progress or (lambda phase, totals: None)
    nofile = raise_nofile()
    run_id = uuid.uuid4().hex[:8]
    port = urlsplit(target.url).port or 80
    root = target.server_root or find_server_root(port)
    me = psutil.Process()
    crew: Crew | None = None

    def generator() -> list[psutil.Process]:
        own = [me]
        for pid in crew.pids() if crew else []:
            with contextlib.suppress(psutil.Error):
                own.append(psutil.Process(pid))
        return own

    sampler = Sampler(lambda: tree(root) if root else [], root, generator,
                      pss_every_s=plan.pss_every_s).start()
    result: dict[str, Any] = {"scenario": plan.name, "run_id": run_id,
                              "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "plan": asdict(plan), "target": target.url,
                              "server_root_pid": root, "generator_nofile": nofile[0],
                              # Others' load on a shared machine shows here.
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    memory: dict[str, Any] = {}
    result["memory"] = memory
    try:
        report("begin", {"kind": "agents", "label": "agents", "total": plan.agents})
        started = time.time()
        tokens: list[tuple[str, str]] = []
        if plan.agents and not plan.echo:
            if not target.admin_token:
                raise LoadTestError("agents need the admin token: --admin-token, "
                                    "RAYDESK_ADMIN_TOKEN, or the data folder's secrets.json")
            tokens = asyncio.run(ensure_agents(target.url, target.admin_token, plan.agents,
                                               f"lt-{run_id}", plan.chats_per_agent,
                                               plan.partition))
        if target.install_faq and target.admin_token:
            asyncio.run(install_faq(target.url, target.admin_token, FAQ))
        result["setup"] = {"agents_s": round(time.time() - started, 2)}
        # The node idle: set up (agents created, FAQ indexed), nobody connected yet.
        time.sleep(IDLE_SETTLE_S)
        memory["idle"] = sampler.memory()
        visitor: dict[str, Any] = {"skill": f"lt-{run_id}", "name": "Load test",
                                   "attributes": {"loadtest": run_id}}
        if plan.inbox:
            visitor["inbox"] = plan.inbox
        agent_tokens = [token for _, token in tokens]
        specs = [worker.WorkerSpec(
            index=i, ws_url=target.ws_url, http_url=target.url, run_id=run_id,
            customers=share, agent_tokens=tuple(agent_tokens[i::plan.workers]),
            visitor=visitor, mix=plan.mix, questions=target.questions,
            agent_delay_s=plan.agent_delay_s, late_s=plan.late_ms / 1000, echo=plan.echo,
            agents_expected=plan.agents > 0, reconnects=plan.reconnects,
            seed=plan.seed * 1000 + i)
            for i, share in enumerate(_shares(plan.customers, plan.workers))]
        crew = Crew(specs, report)
        report("begin", {"kind": "connect", "label": "connecting",
                         "total": plan.connections})
        connect_timeout = SPAWN_TIMEOUT_S + plan.connections / 20
        connected = crew.command("connect", [{"timeout_s": connect_timeout}] * plan.workers,
                                 connect_timeout + SPAWN_TIMEOUT_S)
        result["setup"].update({
            "customers": sum(c["customers"] for c in connected),
            "agents": sum(c["agents"] for c in connected),
            "visitors_s": max(c["visitors_s"] for c in connected),
            "connect_s": max(c["connect_s"] for c in connected),
            "failures": _sum_counts([c["failures"] for c in connected])})
        result["server_limits"] = server_limits(root, plan.connections)
        # The server's CPU with the connections held and nothing said: subtracted from
        # each step's, so CPU per message is the messages' cost alone.
        before = sampler.cpu_now()
        time.sleep(plan.settle_s)
        idle = {name: spent / plan.settle_s for name, spent in
                cpu_between(before, sampler.cpu_now()).items() if name != "loadgen"}
        result["idle_cpu_cores"] = {k: round(v, 3) for k, v in sorted(idle.items())}
        memory["connected"] = sampler.memory()
        if plan.open_conversations and plan.customers and not plan.echo:
            report("begin", {"kind": "open", "label": "opening conversations",
                             "total": plan.customers})
            timeout = plan.open_timeout_s + plan.customers / plan.open_rate
            opened = crew.command("open", [{"rate": plan.open_rate / plan.workers,
                                            "timeout_s": timeout}] * plan.workers,
                                  timeout + 60)
            result["open"] = {"settled": sum(o["settled"] for o in opened),
                              "refused": sum(o["refused"] for o in opened),
                              "customers": sum(o["customers"] for o in opened),
                              "seconds": max(o["seconds"] for o in opened)}
            memory["opened"] = sampler.memory()
        result["steps"] = []
        for number, step in enumerate(plan.steps, 1):
            report("begin", {"kind": "step", "total": step.duration_s,
                             "label": f"step {number}/{len(plan.steps)}: {step.rate:g}/s"})
            outcome = run_step(crew, plan, step, sampler, idle)
            result["steps"].append(outcome)
            if plan.stop is not None and not plan.stop.holds(outcome):
                break
        memory["after_steps"] = sampler.memory()
        report("begin", {"kind": "check", "label": "checking delivery"})
        checked = crew.command("check", [{"timeout_s": CHECK_TIMEOUT_S}] * plan.workers,
                               CHECK_TIMEOUT_S + 60)
        records = [pickle.loads(c["records"]) for c in checked]
        verdict = check([a for acks, _ in records for a in acks],
                        [s for _, streams in records for s in streams])
        result["check"] = {**verdict.as_dict(),
                           "unsynced": sum(c["unsynced"] for c in checked),
                           "unacked": sum(c["unacked"] for c in checked),
                           "foreign_assigned": sum(c["foreign"] for c in checked)}
        result["errors"] = _sum_counts([c["errors"] for c in checked])
        result["error_messages"] = {code: _sum_counts([c["error_messages"].get(code, {})
                                                       for c in checked])
                                    for c0 in checked for code in c0["error_messages"]}
        result["frames_in"] = _sum_counts([c["frames_in"] for c in checked])
        result["message_kinds"] = _sum_counts([c["kinds"] for c in checked])
        report("begin", {"kind": "teardown", "label": "closing"})
        torn = crew.command("teardown", [{}] * plan.workers, 120)
        result["closed_conversations"] = sum(t["closed_conversations"] for t in torn)
    finally:
        if crew is not None:
            crew.close()
        sampler.stop()
    result["samples"] = sampler.rows()
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summarise_memory(result)
    return result


def run_step(crew: Crew, plan: Plan, step: Step, sampler: Sampler,
             idle: dict[str, float]) -> dict[str, Any]:
    """One measured step on every generator; its merged figures. CPU per message and per
    frame are net of the server's ``idle`` CPU (cores by label)."""
    start_wall = time.time() + 1.0
    args = {"rate": step.rate / plan.workers, "duration_s": step.duration_s,
            "max_messages": -(-step.max_messages // plan.workers), "start_wall": start_wall,
            "window_s": plan.window_s, "drain_s": plan.drain_s}
    time.sleep(max(0.0, start_wall - time.time() - 0.5))
    before, t0, s0 = sampler.cpu_now(), time.monotonic(), time.time() - sampler.started
    answers = crew.command("step", [args] * plan.workers,
                           step.duration_s + plan.drain_s + 120)
    after, elapsed = sampler.cpu_now(), time.monotonic() - t0
    pss = [s["pss_mb"].get("server_total", 0.0) for s in sampler.rows()
           if s["pss_mb"] and s["t_s"] >= s0]
    merged = metrics.merge(a["recorder"] for a in answers)
    assert merged is not None
    seconds = max(a["offered_s"] for a in answers) or step.duration_s
    spent = cpu_between(before, after)
    server = {k: v for k, v in spent.items() if k != "loadgen"}
    net = {k: max(0.0, v - idle.get(k, 0.0) * elapsed) for k, v in server.items()}
    acked = merged.total("acked")
    frames = merged.total("frames_in") + merged.total("frames_out")
    offered = merged.total("offered")
    outcome: dict[str, Any] = {
        "rate": step.rate, "seconds": round(seconds, 2),
        "offered_per_s": round(offered / seconds, 1),
        "sent_customer_per_s": round(merged.total("sent_customer") / seconds, 1),
        "sent_agent_per_s": round(merged.total("sent_agent") / seconds, 1),
        "acked_per_s": round(acked / seconds, 1),
        "acked": acked, "late": merged.total("late"),
        # Late customer messages and late agent replies, of all sent.
        "late_share": round(merged.total("late") / max(1, merged.total("sent_customer")
                                                      + merged.total("sent_agent")), 4),
        "refused": merged.total("refused"), "skipped": merged.total("skipped"),
        "unacked": sum(a["unacked"] for a in answers),
        "connected": sum(a["connected"] for a in answers),
        "errors": _sum_counts([a["errors"] for a in answers]),
        "latency": metrics.summary(merged),
        "frames_per_s": round(frames / elapsed, 1),
        "server_cpu_cores": {k: round(v / elapsed, 3) for k, v in sorted(server.items())},
        "server_cpu_ms_per_message": round(sum(net.values()) / acked * 1000, 3)
        if acked else None,
        "server_cpu_ms_per_message_by_process": {
            k: round(v / acked * 1000, 3) for k, v in sorted(net.items()) if v > 0.005}
        if acked else {},
        "gateway_cpu_us_per_frame": round(
            (net.get("gateway", 0.0) + net.get("echo", 0.0)) / frames * 1e6, 2)
        if frames else None,
        "server_pss_peak_mb": round(max(pss), 1) if pss else None,
        "generator_cpu_cores": round(spent.get("loadgen", 0.0) / elapsed, 3),
        "series": metrics.series(merged)}
    return outcome


def server_limits(root: int | None, connections: int) -> dict[str, Any]:
    """The open-file limit of each process holding the public port (the gateways): each
    connection takes one fd there."""
    if root is None:
        return {}
    gateways = [p for p in tree(root) if label(p, root) in ("gateway", "echo")]
    limits = {str(p.pid): nofile_of(p.pid) for p in gateways}
    short = [pid for pid, limit in limits.items() if limit is not None and limit < connections]
    return {"gateway_nofile": limits, "enough_for_connections": not short,
            "connections": connections}


def summarise_memory(result: dict[str, Any]) -> None:
    """Per-connection memory above idle, and the peak seen."""
    memory = result["memory"]
    idle = memory.get("idle", {}).get("server_total", 0.0)
    setup = result.get("setup", {})
    held = setup.get("customers", 0) + setup.get("agents", 0)
    if "connected" in memory and held:
        above = memory["connected"].get("server_total", 0.0) - idle
        memory["per_connection_kb"] = round(above * 1024 / held, 1)
        private = memory["connected"].get("server_uss_total", 0.0) - memory.get(
            "idle", {}).get("server_uss_total", 0.0)
        memory["per_connection_kb_uss"] = round(private * 1024 / held, 1)
    peaks = [s["pss_mb"].get("server_total", 0.0) for s in result.get("samples", [])
             if s["pss_mb"]]
    memory["peak_server_total_mb"] = round(max([idle, *peaks]), 1)
    if "opened" in memory and result.get("open", {}).get("settled"):
        above = memory["opened"].get("server_total", 0.0) - memory["connected"].get(
            "server_total", 0.0)
        memory["per_conversation_kb"] = round(above * 1024 / result["open"]["settled"], 1)
