"""Bot reply latency: customer send -> bot message, through real raydesk at a fixed rate.

Real parts: Ray, the shards, the embedded Valkey, the gateway on its WebSocket port, and
the Assistant Serve deployment with the default MiniLM model and a faiss FAQ index. The
FAQ: one question per BANKING77 intent (77 items, its first training example); the
questions: BANKING77 test utterances, so most are answered and some are handed off.

Open loop: questions leave at --rates per second (Poisson), each from one of --customers
connected customers whose previous question has been answered; a customer handed off to
the queue is replaced by a new one. Per rate: p50/p90/p99 of send -> first bot or
hand-off message and of send -> ack, the share answered, and server CPU per question (by
part: the Assistant replica, the shards, the gateway, the store, the router, Ray itself), the
share of bot turns stored in their question's commit (``turns_with_question``: the model
answered within bot.inline_wait_ms, set with --inline-wait-ms), and apart from it the load
generator's own CPU per question (this process, which also holds the idle Ray driver that
started raydesk).
``--chat-rate``: messages per second beside the questions from customers of an inbox the
bot does not take, and their send -> ack (``chat_ack_*``): what the bot's questions cost
other conversations on the same shards.
Writes benchmarks/results/bot_latency.json and .png. ``--trace``: every message traced
(OpenTelemetry spans to a file, which costs CPU of its own) and, for the questions the
bot took, when each hop started and how long it took (medians, from the gateway's
receipt of the frame); printed and saved as ``trace_breakdown`` in the JSON.
Run: .venv/bin/python benchmarks/bot_latency.py [--rates 25 50 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import websockets
from prometheus_client.parser import text_string_to_metric_families
from report import arrivals, ms_percentiles, own_cpu_s, save

from models.encoders import ENCODERS
from raydesk import metrics, tracing
from raydesk.config import load_config
from raydesk.embedded_store import free_port
from raydesk.loadtest.procs import cpu_between, cpu_by_process
from raydesk.runtime import Runtime

BANKING = Path(os.environ.get("RAYDESK_DATA", "/work/shared/data")) / "banking77"


def banking() -> tuple[list[dict[str, str]], list[str]]:
    with (BANKING / "train.csv").open(encoding="utf-8") as handle:
        train = list(csv.DictReader(handle))
    with (BANKING / "test.csv").open(encoding="utf-8") as handle:
        test = [row["text"] for row in csv.DictReader(handle)]
    faq: dict[str, dict[str, str]] = {}
    for row in train:
        faq.setdefault(row["category"], {"id": row["category"].rstrip("?"), "question": row["text"],
                                         "answer": f"About {row['category']}: see our help page."})
    return list(faq.values()), test


# The inbox the bot takes, and one it does not (--chat-rate: customers who wait for an
# agent, and whose messages share the shards with the bot's questions).
BOT_INBOX, CHAT_INBOX = "bot", "chat"


class Customer:
    def __init__(self, http: httpx.AsyncClient, ws_url: str, inbox: str = BOT_INBOX) -> None:
        self.http, self.ws_url, self.inbox = http, ws_url, inbox
        self.ws: Any = None
        self.cid: str | None = None
        self.sent_at: float | None = None  # one question in flight at most
        self.unacked_at: float | None = None  # when that question was sent, until its ack
        self.handed_off = False

    async def open(self) -> Customer:
        token = (await self.http.post("/v1/visitors", json={"inbox": self.inbox})).json()[
            "token"]
        self.ws = await websockets.connect(self.ws_url, max_size=None)
        await self.ws.send(json.dumps({"type": "hello", "token": token}))
        await self.ws.recv()
        self.cid, self.handed_off = None, False
        return self


def trace_breakdown(path: Path) -> list[dict[str, Any]]:
    """Per hop of the traces that contain a bot turn: medians of its start (from the
    trace's first span, the gateway's receipt of the frame) and of its duration."""
    traces: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            span = json.loads(line)
            traces.setdefault(span["trace_id"], []).append(span)
    hops: dict[str, list[tuple[float, float]]] = {}
    for spans in traces.values():
        if not any(s["name"] == "bot turn" for s in spans):
            continue
        origin = min(s["start_ns"] for s in spans)
        for s in spans:
            hop = f"{s['name']} ({str(s['process']).split()[0]})"
            hops.setdefault(hop, []).append(((s["start_ns"] - origin) / 1e6,
                                             (s["end_ns"] - s["start_ns"]) / 1e6))
    rows = [{"hop": hop, "spans": len(times),
             "start_ms_p50": round(float(np.median([t[0] for t in times])), 2),
             "duration_ms_p50": round(float(np.median([t[1] for t in times])), 2)}
            for hop, times in hops.items()]
    return sorted(rows, key=lambda row: row["start_ms_p50"])


def turns_stored(url: str) -> dict[str, float]:
    """The shards' bot turns so far by how they were stored (``with_question``: in the
    question's commit, ``alone``: in one of their own), from raydesk's /metrics."""
    totals = {"with_question": 0.0, "alone": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "raydesk_bot_turns_total":
                totals[sample.labels["stored"]] += sample.value
    return totals


def server_processes() -> list[psutil.Process]:
    """Everything raydesk runs: Ray's processes, its workers and the store, all started
    from this process."""
    return list(psutil.Process().children(recursive=True))


async def chat(http: httpx.AsyncClient, ws_url: str, rate: float, until: float,
               acks: list[float]) -> None:
    """Customers of the inbox the bot does not take send messages at ``rate`` (Poisson)
    until ``until``; each ack's latency goes into ``acks``."""
    pool = [await Customer(http, ws_url, CHAT_INBOX).open() for _ in range(20)]
    sent: dict[str, float] = {}

    async def read(customer: Customer) -> None:
        async for text in customer.ws:
            frame = json.loads(text)
            if frame["type"] == "ack" and frame["client_msg_id"] in sent:
                customer.cid = frame["conversation_id"]
                acks.append(time.perf_counter() - sent.pop(frame["client_msg_id"]))

    readers = [asyncio.ensure_future(read(c)) for c in pool]
    rng, ids = random.Random(11), itertools.count()
    async for _ in arrivals(rate, until, rng):
        customer = rng.choice(pool)
        frame: dict[str, Any] = {"type": "send", "client_msg_id": f"c{next(ids)}",
                                 "text": "Any news on my order?"}
        if customer.cid:
            frame["conversation_id"] = customer.cid
        sent[frame["client_msg_id"]] = time.perf_counter()
        await customer.ws.send(json.dumps(frame))
    await asyncio.sleep(2)  # the last acks
    for reader in readers:
        reader.cancel()
    for customer in pool:
        await customer.ws.close()


async def run_rate(runtime: Runtime, questions: list[str], rate: float, seconds: float,
                   customers: int, chat_rate: float = 0.0) -> dict[str, Any]:
    ws_url = runtime.url.replace("http", "ws", 1) + "/v1/ws"
    latencies: list[float] = []
    acks: list[float] = []  # send -> ack: the bot can hold an ack up to bot.inline_wait_ms
    outcomes = {"answer": 0, "clarify": 0, "handoff": 0}
    async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as http:
        pool = [await Customer(http, ws_url).open() for _ in range(customers)]
        ids = itertools.count()

        async def read(customer: Customer) -> None:
            async for text in customer.ws:
                frame = json.loads(text)
                if frame["type"] == "ack":
                    customer.cid = frame["conversation_id"]
                    if customer.unacked_at is not None:
                        acks.append(time.perf_counter() - customer.unacked_at)
                        customer.unacked_at = None
                    continue
                if frame["type"] != "message" or frame["sender"]["role"] not in ("bot", "system"):
                    continue
                kind = (frame.get("event") or {}).get("kind")
                if frame["sender"]["role"] == "system" and kind != "handoff":
                    continue
                if customer.sent_at is not None:
                    latencies.append(time.perf_counter() - customer.sent_at)
                    customer.sent_at = None
                if kind == "handoff":
                    outcomes["handoff"] += 1
                    customer.handed_off = True
                else:
                    outcomes["answer" if frame["bot"].get("intent") or frame["bot"].get(
                        "faq_id") else "clarify"] += 1

        readers = {id(c): asyncio.ensure_future(read(c)) for c in pool}
        chat_acks: list[float] = []
        chatting = asyncio.ensure_future(chat(http, ws_url, chat_rate, time.perf_counter()
                                              + seconds, chat_acks)) if chat_rate else None
        processes = server_processes()
        own0 = own_cpu_s()
        cpu0, started = cpu_by_process(processes), time.perf_counter()
        rng = random.Random(7)
        sent = skipped = 0
        async for _ in arrivals(rate, started + seconds, rng):
            free = [c for c in pool if c.sent_at is None]
            if not free:
                skipped += 1
                continue
            customer = rng.choice(free)
            if customer.handed_off:
                readers.pop(id(customer)).cancel()
                await customer.ws.close()
                await customer.open()
                readers[id(customer)] = asyncio.ensure_future(read(customer))
            frame = {"type": "send", "client_msg_id": f"b{next(ids)}",
                     "text": rng.choice(questions)}
            if customer.cid:
                frame["conversation_id"] = customer.cid
            customer.sent_at = customer.unacked_at = time.perf_counter()
            await customer.ws.send(json.dumps(frame))
            sent += 1
        for _ in range(200):
            if all(c.sent_at is None for c in pool):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        # CPU by part (bot, shards, gateway, store, router; the rest is Ray's own).
        by_part = cpu_between(cpu0, cpu_by_process(processes))
        own = own_cpu_s() - own0
        cpu = sum(by_part.values())
        if chatting is not None:
            await chatting
        for reader in readers.values():
            reader.cancel()
        for customer in pool:
            await customer.ws.close()
    return {"rate_target": rate, "questions": sent, "replies": len(latencies),
            "skipped_no_free_customer": skipped, "rate_achieved": round(sent / seconds, 1),
            **ms_percentiles(latencies), **ms_percentiles(acks, "ack_", (50, 99)),
            **({"chat_messages": len(chat_acks),
                **ms_percentiles(chat_acks, "chat_ack_", (50, 99))} if chat_acks else {}),
            "cpu_ms_per_question": round(cpu / max(1, sent) * 1000, 2),
            "cpu_cores_busy": round(cpu / elapsed, 2),
            "cpu_ms_per_question_by_part": {part: round(seconds / max(1, sent) * 1000, 2)
                                            for part, seconds in sorted(by_part.items())},
            # Not in the figures above: this process, the load generator (and the idle
            # Ray driver that started raydesk), on the same two cores.
            "load_generator_cpu_ms_per_question": round(own / max(1, sent) * 1000, 2),
            "outcomes": outcomes}


def plot(results: list[dict[str, Any]], path: Path, encoder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["rate_achieved"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(rates, [r[key] for r in results], style, label=key.replace("_ms", ""))
    ax.set_xlabel("questions per second")
    ax.set_ylabel("send -> bot reply (ms)")
    ax.set_title(f"raydesk bot reply latency ({encoder}, 2 cores)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--encoder", default="minilm", choices=sorted(ENCODERS))
    parser.add_argument("--trace", action="store_true",
                        help="trace every message and print where a question's time goes")
    parser.add_argument("--threads", type=int, help="the encoder's CPU threads "
                        "(default: the library's)")
    parser.add_argument("--shards", type=int, default=2, help="conversation shards")
    parser.add_argument("--chat-rate", type=float, default=0.0, help="messages per second "
                        "from customers of an inbox the bot does not take, beside the "
                        "questions (their send -> ack shows what the bot costs them)")
    parser.add_argument("--inline-wait-ms", type=float, help="bot.inline_wait_ms: how long a "
                        "question waits for the model to be stored with its answer "
                        "(default: raydesk's; 0: every turn in a commit of its own)")
    args = parser.parse_args()
    faq, questions = banking()
    results = []
    with tempfile.TemporaryDirectory() as data:
        config = load_config(None, data_dir=data, log_level="WARNING",
                             server={"port": free_port()}, cluster={"shards": args.shards},
                             limits={"messages_per_s": 1e6, "burst": 1_000_000},
                             tracing=({"exporter": "file", "path": str(Path(data) / "spans")}
                                      if args.trace else {}),
                             bot={"encoder": args.encoder, "options": (
                                 {"threads": args.threads} if args.threads else {}),
                                  "inboxes": [BOT_INBOX],
                                  **({"inline_wait_ms": args.inline_wait_ms}
                                     if args.inline_wait_ms is not None else {})})
        runtime = Runtime(config)
        runtime.start()
        try:
            assert runtime.secrets is not None
            response = httpx.put(f"{runtime.url}/v1/faq", json={"items": faq}, timeout=300,
                                 headers={"Authorization": f"Bearer {runtime.secrets.admin_token}"})
            response.raise_for_status()
            # Warm up: the first questions pay for lazy imports and allocations.
            asyncio.run(run_rate(runtime, questions, 10, 3, 10))
            spans = Path(data) / "spans"
            for rate in args.rates:
                if args.trace:
                    spans.write_bytes(b"")  # this rate's spans only (writers append)
                time.sleep(metrics.PUSH_EVERY_S + 1)  # the shards' counts are pushed
                stored_before = turns_stored(runtime.url)
                result = asyncio.run(run_rate(runtime, questions, rate, args.seconds,
                                              args.customers, args.chat_rate))
                time.sleep(metrics.PUSH_EVERY_S + 1)
                stored = {kind: count - stored_before[kind]
                          for kind, count in turns_stored(runtime.url).items()}
                # The share of turns stored in their question's commit (bot.inline_wait_ms).
                result["turns_with_question"] = round(
                    stored["with_question"] / max(1.0, sum(stored.values())), 3)
                if args.trace:
                    time.sleep(tracing.EXPORT_EVERY_MS / 1000 + 1)  # the last batches
                    result["trace_breakdown"] = trace_breakdown(spans)
                print(json.dumps(result))
                if result["outcomes"]["answer"] == 0:
                    # Every question handed off: the model failed, and these latencies
                    # would be the hand-off path's, not the bot's.
                    raise SystemExit(f"rate {rate}: the bot answered none of "
                                     f"{result['questions']} questions (all handed off); "
                                     "see the shards' log for why")
                results.append(result)
        finally:
            runtime.stop()
    name = "bot_latency" + ("" if args.encoder == "minilm" else f"_{args.encoder}") + (
        f"_t{args.threads}" if args.threads else "") + (
        f"_wait{args.inline_wait_ms:g}" if args.inline_wait_ms is not None else "") + (
        f"_shards{args.shards}" if args.shards != 2 else "") + (
        f"_chat{args.chat_rate:g}" if args.chat_rate else "") + (
        "_traced" if args.trace else "")
    report = save(name, {"encoder": args.encoder, "threads": args.threads,
                         "inline_wait_ms": config.bot.inline_wait_ms, "shards": args.shards,
                         "chat_rate": args.chat_rate,
                         "faq_items": len(faq), "seconds": args.seconds,
                         "customers": args.customers}, results,
                  lambda rows, path: plot(rows, path, args.encoder))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
