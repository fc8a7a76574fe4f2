"""Server CPU per chat message through the real gateway, by ingress mode, against a bare
uvicorn WebSocket echo, all in one run.

For each mode a fresh server is started (``raydesk serve`` in its own Ray, or the echo
server), its whole process tree's idle CPU is sampled, then ``--connections`` customers
each send messages closed-loop (send, wait for the ack) for ``--duration`` seconds. A chat
message is one frame in and two out (the ack and the message event; the echo: one out).
Reported per mode: acknowledged messages/s, ack latency percentiles, and the server's CPU
per message with the idle rate subtracted. Figures go to benchmarks/results/ as JSON and a
PNG; quote them as ratios from one run (this machine is shared and noisy).

Run: .venv/bin/python benchmarks/gateway_ingress.py [--modes reuseport,serve_proxy,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

from raydesk.loadtest.procs import cpu_between, cpu_by_process, tree
from raydesk.loadtest.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

MODES: dict[str, dict[str, Any]] = {
    "uvicorn_echo": {"kind": "echo"},
    "reuseport": {"kind": "raydesk", "ingress": "reuseport", "env": {}},
    "serve_proxy": {"kind": "raydesk", "ingress": "serve_proxy", "env": {}},
    "serve_haproxy": {"kind": "raydesk", "ingress": "serve_proxy",
                      "env": {"RAY_SERVE_ENABLE_HA_PROXY": "1"}},
}


def cpu_by_label(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each live process of the tree, by pid, with its label."""
    return cpu_by_process(tree(pid), root=pid)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its live descendants."""
    return sum(cpu for _, cpu in cpu_by_label(pid).values())


def server_for(mode: dict[str, Any]) -> ServerProcess:
    if mode["kind"] == "echo":
        return ServerProcess()
    return ServerProcess.raydesk(
        bot=False, env=mode.get("env", {}),  # the broker alone: bot_latency.py has the bot
        overrides={"server": {"ingress": mode["ingress"]},
                   "cluster": {"shards": 2, "namespace": "bench"},
                   "limits": {"messages_per_s": 1e6, "burst": 1_000_000}})


async def customer(url: str, token: str | None, echo: bool, stop_at: float,
                   latencies: list[float]) -> int:
    count = 0
    async with websockets.connect(url, max_size=None) as ws:
        if not echo:
            await ws.send(json.dumps({"type": "hello", "token": token}))
            await ws.recv()
        while time.monotonic() < stop_at:
            count += 1
            frame = json.dumps({"type": "send", "client_msg_id": f"b{count}",
                                "text": f"message {count}"})
            started = time.perf_counter()
            await ws.send(frame)
            while True:
                reply = json.loads(await ws.recv())
                if echo or reply.get("type") == "ack":
                    break
                if reply.get("type") == "error":
                    raise RuntimeError(reply)
            latencies.append((time.perf_counter() - started) * 1000)
    return count


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def measure(name: str, mode: dict[str, Any], connections: int, duration: float,
                  idle_s: float) -> dict[str, Any]:
    server = server_for(mode)
    try:
        try:
            server.start(timeout=180)
        except RuntimeError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return {"mode": name, "error": "server did not start", "log_tail": str(exc)}
        return await drive(name, server, mode["kind"] == "echo", connections, duration,
                           idle_s)
    finally:
        server.stop()


async def drive(name: str, server: ServerProcess, echo: bool, connections: int,
                duration: float, idle_s: float) -> dict[str, Any]:
    """The measured part, with the server up."""
    base = server.url
    tokens: list[str | None] = [None] * connections
    if not echo:
        async with httpx.AsyncClient(base_url=base) as http:
            tokens = [(await http.post("/v1/visitors", json={})).json()["token"]
                      for _ in range(connections)]
    await asyncio.sleep(2)  # let start-up work settle
    cpu0, t0 = tree_cpu(server.pid), time.monotonic()
    await asyncio.sleep(idle_s)
    idle_rate = (tree_cpu(server.pid) - cpu0) / (time.monotonic() - t0)
    ws_url = base.replace("http", "ws") + "/v1/ws"
    # Warm-up round, not measured.
    await asyncio.gather(*[customer(ws_url, t, echo, time.monotonic() + 2, [])
                           for t in tokens])
    latencies: list[float] = []
    client = psutil.Process()
    client_cpu0 = sum(client.cpu_times()[:2])
    per0, t1 = cpu_by_label(server.pid), time.monotonic()
    stop_at = t1 + duration
    counts = await asyncio.gather(*[customer(ws_url, t, echo, stop_at, latencies)
                                    for t in tokens])
    elapsed = time.monotonic() - t1
    by_label = cpu_between(per0, cpu_by_label(server.pid))
    busy = sum(by_label.values())
    client_cpu = sum(client.cpu_times()[:2]) - client_cpu0
    messages = sum(counts)
    net = max(busy - idle_rate * elapsed, 0.0)
    result = {
        "mode": name, "connections": connections, "seconds": round(elapsed, 2),
        "messages": messages, "msg_per_s": round(messages / elapsed, 1),
        "ack_ms_p50": round(percentile(latencies, 50), 2),
        "ack_ms_p99": round(percentile(latencies, 99), 2),
        "ack_ms_mean": round(statistics.fmean(latencies), 2) if latencies else 0,
        "server_cpu_s": round(busy, 2), "server_idle_cpu_per_s": round(idle_rate, 3),
        "server_cpu_ms_per_msg": round(net / messages * 1000, 3) if messages else None,
        "client_cpu_ms_per_msg": round(client_cpu / messages * 1000, 3) if messages else None,
        "cpu_ms_per_msg_by_process": {
            label: round(cpu / messages * 1000, 3) for label, cpu in sorted(
                by_label.items(), key=lambda kv: -kv[1]) if cpu > 0.01} if messages else {},
    }
    print(json.dumps(result), flush=True)
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if "error" not in r]
    names = [r["mode"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [r["server_cpu_ms_per_msg"] or 0 for r in results], color="#4a7")
    left.set_ylabel("server CPU ms per message (idle subtracted)")
    left.set_title("CPU per chat message")
    right.bar(names, [r["msg_per_s"] for r in results], color="#47a")
    right.set_ylabel("acknowledged messages / s")
    right.set_title(f"throughput, {results[0]['connections']} closed-loop clients")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--out", default=str(RESULTS / "gateway_ingress"))
    args = parser.parse_args()
    results = []
    for name in args.modes.split(","):
        results.append(asyncio.run(measure(name, MODES[name], args.connections,
                                           args.duration, args.idle)))
    floor = next((r for r in results if r["mode"] == "uvicorn_echo" and "error" not in r),
                 None)
    if floor and floor["server_cpu_ms_per_msg"]:
        for r in results:
            if r.get("server_cpu_ms_per_msg") is not None:
                r["cpu_vs_echo"] = round(r["server_cpu_ms_per_msg"]
                                         / floor["server_cpu_ms_per_msg"], 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "gateway_ingress", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(),
                          "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
              "results": results}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
