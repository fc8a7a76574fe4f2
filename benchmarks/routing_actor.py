"""Assignments per second through the Router actor: real raydesk (Ray, shards, store,
gateway), --queued conversations waiting, then --agents agents come online at once; timed
until the queue is empty. Every assignment is a batched shard call and an atomic store
commit that also tells the customer and the agent.

Timed from the agents' `presence: online` until they have received every `assigned`
frame. Writes benchmarks/results/routing_actor.json.
Run: .venv/bin/python benchmarks/routing_actor.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import ray
import websockets

from raydesk.config import load_config
from raydesk.embedded_store import free_port
from raydesk.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"


async def open_conversation(http: httpx.AsyncClient, ws_url: str, skill: str) -> None:
    token = (await http.post("/v1/visitors", json={"skill": skill})).json()["token"]
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        await ws.recv()
        await ws.send(json.dumps({"type": "send", "client_msg_id": "q1", "text": "help"}))
        while json.loads(await ws.recv())["type"] != "ack":
            pass


async def run(runtime: Runtime, agents: int, queued: int, skill: str) -> dict[str, float]:
    assert runtime.settings is not None and runtime.secrets is not None
    ws_url = runtime.url.replace("http", "ws", 1) + "/v1/ws"
    router = ray.get_actor(runtime.settings.router_name(), namespace=runtime.settings.namespace)
    async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {runtime.secrets.admin_token}"}
        tokens = []
        for i in range(agents):
            email = f"bench{i}@example.test"
            await http.post("/v1/agents", headers=admin, json={
                "email": email, "password": "benchmark pw", "name": f"A{i}",
                "skills": [skill], "max_chats": queued // agents + 1})
            tokens.append((await http.post("/v1/agents/login", json={
                "email": email, "password": "benchmark pw"})).json()["token"])
        gate = asyncio.Semaphore(50)

        async def one() -> None:
            async with gate:
                await open_conversation(http, ws_url, skill)

        await asyncio.gather(*[one() for _ in range(queued)])
    for _ in range(600):  # the shards tell the router as they commit: let it catch up
        if len((await router.snapshot.remote())["queue"]) == queued:
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("the router never saw every queued conversation")
    sockets = [await websockets.connect(ws_url, max_size=None) for _ in tokens]
    for ws, token in zip(sockets, tokens, strict=True):
        await ws.send(json.dumps({"type": "hello", "token": token}))
        await ws.recv()
    received = 0
    done = asyncio.Event()

    async def count_assigned(ws: websockets.ClientConnection) -> None:
        nonlocal received
        async for text in ws:
            if json.loads(text)["type"] == "assigned":
                received += 1
                if received == queued:
                    done.set()

    readers = [asyncio.ensure_future(count_assigned(ws)) for ws in sockets]
    started = time.perf_counter()
    await asyncio.gather(*[ws.send(json.dumps({"type": "presence", "status": "online"}))
                           for ws in sockets])
    # Timed until the last agent has been told of its last conversation.
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    for reader in readers:
        reader.cancel()
    for ws in sockets:
        await ws.close()
    return {"assignments": queued, "seconds": round(elapsed, 3),
            "assignments_per_s": round(queued / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--queued", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        config = load_config(None, data_dir=data, log_level="WARNING",
                             server={"port": free_port()}, cluster={"shards": 2},
                             limits={"messages_per_s": 1e6, "burst": 1_000_000},
                             bot={"enabled": False})
        runtime = Runtime(config)
        runtime.start()
        try:
            result = asyncio.run(run(runtime, args.agents, args.queued, "bench"))
        finally:
            runtime.stop()
    report = {"benchmark": "routing_actor", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "sizes": {"agents": args.agents, "queued": args.queued},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "result": result}
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing_actor.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
