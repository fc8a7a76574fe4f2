"""Latency histograms (HdrHistogram) and per-window counters, mergeable across processes.

Each load-generating process records into its own :class:`Recorder`; at the end of a step
it ships :meth:`Recorder.encode` (HdrHistogram's compressed encoding, a few hundred bytes a
histogram) and the orchestrator adds them up with :func:`merge`. Percentiles of merged
histograms are exact to the histogram's precision, which averaging per-process
percentiles would not be.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

# Microseconds. An hour is the ceiling: a message slower than that is a failure, not a
# latency, and is counted by the checker instead.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
# Whole-run histograms keep 3 significant digits (0.1 %); per-window ones 2 (1 %), which
# makes them 20 KB instead of 140 KB, so a long run's windows stay small.
DIGITS_TOTAL = 3
DIGITS_WINDOW = 2

# ack: send -> ack on the sender's connection. customer_to_agent, agent_to_customer: send
# -> the message event at the other party (first arrival). bot_reply: a customer's
# message -> the bot's answer or hand-off. send_lag: how late the generator sent a message
# after its planned time (the generator's own health, not the server's).
LATENCIES = ("ack", "customer_to_agent", "agent_to_customer", "bot_reply", "send_lag")

Encoded = dict[str, Any]


def _histogram(digits: int) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def _clamp(seconds: float) -> int:
    return min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6)))


def percentiles(histogram: HdrHistogram, sum_us: int | None = None) -> dict[str, float]:
    """count, p50/p95/p99/max in milliseconds, and the mean when the exact sum is known
    (hdrh's own mean walks every bucket in Python: slow)."""
    count = histogram.get_total_count()
    if not count:
        return {"count": 0}
    ms = 1000.0
    values = histogram.get_percentile_to_value_dict([50, 95, 99])  # one pass
    mean = {} if sum_us is None else {"mean_ms": round(sum_us / count / ms, 2)}
    return {"count": count, **mean,
            **{f"p{p}_ms": round(values[p] / ms, 2) for p in (50, 95, 99)},
            "max_ms": round(histogram.get_max_value() / ms, 2)}


class Latency:
    """One latency metric: the whole step and each time window."""

    def __init__(self) -> None:
        self.total = _histogram(DIGITS_TOTAL)
        self.sum_us = 0
        self.windows: dict[int, HdrHistogram] = {}

    def record(self, seconds: float, window: int) -> None:
        value = _clamp(seconds)
        self.total.record_value(value)
        self.sum_us += value
        histogram = self.windows.get(window)
        if histogram is None:
            histogram = self.windows[window] = _histogram(DIGITS_WINDOW)
        histogram.record_value(value)

    def encode(self) -> Encoded:
        return {"total": self.total.encode(), "sum_us": self.sum_us,
                "windows": {w: h.encode() for w, h in self.windows.items()}}

    def add(self, encoded: Encoded) -> None:
        self.total.decode_and_add(encoded["total"])
        self.sum_us += encoded["sum_us"]
        for window, blob in encoded["windows"].items():
            histogram = self.windows.get(window)
            if histogram is None:
                self.windows[window] = HdrHistogram.decode(blob)
            else:
                histogram.decode_and_add(blob)


class Recorder:
    """Everything one process measures in one step: latencies and counters by window.

    Windows are ``window_s`` long, counted from the step's start (wall clock, shared by
    every process on the machine, so their windows line up when merged)."""

    def __init__(self, started: float, window_s: float) -> None:
        self.started = started
        self.window_s = window_s
        self.latencies = {name: Latency() for name in LATENCIES}
        self.counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def window(self, wall: float) -> int:
        return max(0, int((wall - self.started) / self.window_s))

    def latency(self, name: str, seconds: float, wall: float) -> None:
        """Record a latency, in the window of ``wall`` (when the measured thing began)."""
        self.latencies[name].record(seconds, self.window(wall))

    def count(self, name: str, wall: float, n: int = 1) -> None:
        self.counts[name][self.window(wall)] += n

    def total(self, name: str) -> int:
        return sum(self.counts.get(name, {}).values())

    def encode(self) -> Encoded:
        return {"started": self.started, "window_s": self.window_s,
                "latencies": {name: lat.encode() for name, lat in self.latencies.items()},
                "counts": {name: dict(by_window) for name, by_window in self.counts.items()}}


def merge(encoded: Iterable[Encoded]) -> Recorder | None:
    """One recorder holding the sum of several processes' recordings of a step."""
    merged: Recorder | None = None
    for part in encoded:
        if merged is None:
            merged = Recorder(part["started"], part["window_s"])
        for name, latency in part["latencies"].items():
            merged.latencies[name].add(latency)
        for name, by_window in part["counts"].items():
            for window, n in by_window.items():
                merged.counts[name][int(window)] += n
    return merged


def summary(recorder: Recorder) -> dict[str, dict[str, float]]:
    """Whole-step percentiles of every latency."""
    return {name: percentiles(lat.total, lat.sum_us)
            for name, lat in recorder.latencies.items()}


def series(recorder: Recorder) -> list[dict[str, Any]]:
    """One row per window: its start (s), every counter per second, and p50/p99/max of
    every latency recorded in it."""
    windows: set[int] = set()
    for by_window in recorder.counts.values():
        windows.update(by_window)
    for latency in recorder.latencies.values():
        windows.update(latency.windows)
    rows = []
    for window in sorted(windows):
        row: dict[str, Any] = {"t_s": round(window * recorder.window_s, 3)}
        for name, by_window in sorted(recorder.counts.items()):
            row[f"{name}_per_s"] = round(by_window.get(window, 0) / recorder.window_s, 2)
        for name, latency in recorder.latencies.items():
            histogram = latency.windows.get(window)
            if histogram is not None and histogram.get_total_count():
                row[name] = {key: value for key, value in percentiles(histogram).items()
                             if key != "p95_ms"}
        rows.append(row)
    return rows
