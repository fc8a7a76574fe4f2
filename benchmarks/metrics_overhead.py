"""CPU cost of raydesk's metrics on the hot path, against the alternatives (no Ray needed,
except for --ray).

Measures, per call, the best of --repeat runs of --number calls each:
- raydesk's own types (raydesk/prometheus.py): a counter ``inc``, a histogram observation;
- the gateway's per-frame helpers as the session calls them: a frame received, an ack
  written (frame type, counters, ack latency), a live message event written (its commit
  time read from the frame, delivery latency);
- a chat message's whole share on the gateway: the send frame received and counted as a
  message, its ack written, its event delivered to two connections;
- prometheus_client's Counter and Histogram doing the same;
- with --ray: ray.util.metrics' Counter and Histogram (starts a local Ray for the call).

Writes benchmarks/results/metrics_overhead.json and .png.
Run: .venv/bin/python benchmarks/metrics_overhead.py [--ray]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from report import save

from raydesk import metrics
from raydesk.prometheus import Counter, Histogram, Registry
from raydesk.schema import Message, Sender
from raydesk.session import dump_ack

ACK = dump_ack({"type": "ack", "client_msg_id": "k1", "conversation_id": "c_" + "a" * 22,
                "seq": 12, "message_id": "m_" + "b" * 20, "ts": 1_700_000_000_000})
EVENT = Message(conversation_id="c_" + "a" * 22, seq=12, message_id="m_" + "b" * 20,
                client_msg_id="k1", sender=Sender(role="customer", id="v_" + "c" * 22),
                text="Hello, my parcel has not arrived yet, can you check it?",
                ts=int(time.time() * 1000)).to_json()


def per_call_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def gateway_share_of_a_message() -> None:
    """What the session adds for one chat message delivered to two connections."""
    metrics.FRAMES_RECEIVED.labels("send").inc()
    metrics.MESSAGES_RECEIVED.labels("customer").inc()
    metrics.frame_written(ACK, time.monotonic())
    for _ in range(2):
        metrics.frame_written(EVENT, metrics.commit_time(EVENT))


def plot(results: dict[str, dict[str, float]], path: Path, load: float, number: int,
         repeat: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_call = results["per_call_us"]
    names, values = list(per_call), list(per_call.values())
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(names) + 1.6))
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, [f"{v:.3f}" for v in values], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, max(values) * 1.12)
    ax.set_xlabel(f"CPU per call (µs), best of {repeat} runs of {number:,} calls")
    ax.set_title(f"Metrics on the hot path, per call (load average {load:.2f}, "
                 f"{os.cpu_count()} cores)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ray", action="store_true", help="also measure ray.util.metrics")
    args = parser.parse_args()
    n, r = args.number, args.repeat

    own = Registry()
    counter = Counter("raydesk_bench_total", "b", ["type"], registry=own).labels("send")
    histogram = Histogram("raydesk_bench_seconds", "b", buckets=metrics.LATENCY_BUCKETS_S,
                          registry=own).labels()
    stamp = time.monotonic()
    committed = metrics.commit_time(EVENT)
    results: dict[str, float] = {
        "raydesk counter inc": per_call_us(counter.inc, n, r),
        "raydesk histogram observe": per_call_us(lambda: histogram.observe(0.03), n, r),
        "frame received (labelled counter)": per_call_us(
            lambda: metrics.FRAMES_RECEIVED.labels("send").inc(), n, r),
        "ack written (type, counters, ack latency)": per_call_us(
            lambda: metrics.frame_written(ACK, stamp), n, r),
        "message event written (commit time, delivery latency)": per_call_us(
            lambda: metrics.frame_written(EVENT, metrics.commit_time(EVENT)), n, r),
        "message event written, commit time known": per_call_us(
            lambda: metrics.frame_written(EVENT, committed), n, r),
        "a chat message's gateway share (in, ack, 2 deliveries)": per_call_us(
            gateway_share_of_a_message, n // 4, r),
    }

    import prometheus_client as pc

    registry = pc.CollectorRegistry()
    pc_counter = pc.Counter("bench", "b", ["type"], registry=registry).labels("send")
    pc_histogram = pc.Histogram("bench_seconds", "b", buckets=metrics.LATENCY_BUCKETS_S,
                                registry=registry)
    results["prometheus_client counter inc"] = per_call_us(pc_counter.inc, n, r)
    results["prometheus_client histogram observe"] = per_call_us(
        lambda: pc_histogram.observe(0.03), n, r)

    if args.ray:
        import ray
        from ray.util import metrics as ray_metrics

        ray.init(include_dashboard=False, num_cpus=1, logging_level=logging.ERROR)
        try:
            ray_counter = ray_metrics.Counter("bench_frames", "b", tag_keys=("type",))
            ray_counter.set_default_tags({"type": "send"})
            ray_histogram = ray_metrics.Histogram(
                "bench_latency_seconds", "b", boundaries=list(metrics.LATENCY_BUCKETS_S))
            results["ray.util.metrics counter inc"] = per_call_us(ray_counter.inc, n // 10, r)
            results["ray.util.metrics histogram observe"] = per_call_us(
                lambda: ray_histogram.observe(0.03), n // 10, r)
        finally:
            ray.shutdown()

    width = max(len(k) for k in results)
    for name, us in results.items():
        print(f"{name:{width}}  {us:6.3f} µs")
    load = round(os.getloadavg()[0], 2)
    save("metrics_overhead", {"number": n, "repeat": r, "load_avg_1m": load},
         {"per_call_us": {k: round(v, 3) for k, v in results.items()}},
         lambda figures, path: plot(figures, path, load, n, r))


if __name__ == "__main__":
    main()
