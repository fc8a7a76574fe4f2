"""CPU that tracing adds to one chat message, off and on, measured on the helpers alone.

One "message" here is every tracing and logging call a send meets on its way, in the
order it meets them, in one process: the gateway's frame span and the traceparent put in
the command, the shard's command span, commit span and the tag on the published event,
the annotations, and the receiving gateway's untag and deliver span (which parses the
event only when it is traced). The same steps without any of those calls are the
baseline; the differences are what tracing costs per message, whatever else the message
costs. The spans go through the processor raydesk configures (a batch every second) to
the file exporter, so the export's CPU (another thread) is counted: CPU time is the
process's, all threads.

Run: .venv/bin/python benchmarks/tracing_overhead.py [--messages 20000]
Results: benchmarks/results/tracing_overhead.json and .png
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from report import save

from raydesk import logs, tracing
from raydesk.config import TracingConfig
from raydesk.schema import Message, Send, Sender, ShardCommand
from raydesk.store import Commit, channel

CID = "c_0123456789abcdef012345"
FRAME = Send(type="send", conversation_id=CID, client_msg_id="k1", text="hello there")
MESSAGE = Message(conversation_id=CID, seq=2, message_id="m_0123456789abcdef0123",
                  client_msg_id="k1", sender=Sender(role="customer", id="v_1"),
                  text="hello there", ts=1)
EVENT = MESSAGE.to_json()
CHUNK = 200


def _deliver(payload: str) -> None:
    """Stands for Session.deliver (the same in both)."""


def _command() -> ShardCommand:
    return ShardCommand(kind="send", conversation_id=CID, actor_id="v_1",
                        actor_role="customer", client_msg_id="k1", text="hello there")


def bare() -> None:
    """The same steps with no tracing or logging call (the baseline)."""
    _command()
    commit = Commit(cid=CID, expect=1, messages=[EVENT], publish=[(channel("v_1"), EVENT)])
    for _, payload in commit.publish:
        _deliver(payload)


def traced() -> None:
    """Every call a message meets (session, shard client, shard, hub)."""
    logs.CONVERSATION_ID.set(CID)
    with tracing.frame_span(FRAME, "g1-1"):
        command = _command()
        if command.trace is None:
            parent = tracing.traceparent()
            if parent is not None:
                command = dataclasses.replace(command, trace=parent)
        logs.CONVERSATION_ID.set(command.conversation_id)
        logs.PARTICIPANT_ID.set(command.actor_id)
        with tracing.command_span(command):
            commit = Commit(cid=CID, expect=1, messages=[EVENT],
                            publish=[(channel("v_1"), EVENT)])
            with tracing.commit_span(commit, MESSAGE):
                commit.publish = tracing.tag_events(commit.publish)
            if tracing.enabled():
                tracing.annotate(message_id=MESSAGE.message_id, error=None)
        tracing.annotate(message_id=MESSAGE.message_id, conversation_id=None)
    for _, published in commit.publish:
        payload, parent = tracing.untag(published)
        with tracing.deliver_span(payload, parent, "v_1", 1):
            _deliver(payload)


def cpu_per_message(step: Callable[[], None], messages: int, rounds: int) -> float:
    """Median over rounds of process CPU (all threads) per call, in microseconds. Spans
    are flushed every CHUNK messages and the flush is counted: the export's CPU belongs to
    these messages (and a full queue would drop spans, undercounting it)."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(messages // CHUNK):
            for _ in range(CHUNK):
                step()
            if tracing._provider is not None:
                tracing._provider.force_flush()
        samples.append((time.process_time() - start) / messages * 1e6)
    return statistics.median(samples)


def plot(report: dict[str, dict[str, float]], path: Path, messages: int,
         rounds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report)
    values = [row["cpu_us"] for row in report.values()]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.6))
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, [f"{row['cpu_us']:.2f}  (+{row['added_us']:.2f})"
                        for row in report.values()], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(1, max(values) * 6)
    ax.set_xlabel("process CPU per message (µs, log scale); (+n): added to the baseline")
    ax.set_title(f"Tracing's CPU per chat message (median of {rounds} rounds of "
                 f"{messages:,} messages)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["baseline"] = cpu_per_message(bare, args.messages, args.rounds)
        results["off"] = cpu_per_message(traced, args.messages, args.rounds)
        for ratio in (0.0, 0.1, 1.0):
            tracing.start(TracingConfig(exporter="file", sample_ratio=ratio), "bench",
                          Path(folder))
            results[f"on, sample_ratio {ratio}"] = cpu_per_message(traced, args.messages,
                                                                   args.rounds)
            tracing.shutdown()
    base = results["baseline"]
    report = {name: {"cpu_us": round(us, 2), "added_us": round(us - base, 2)}
              for name, us in results.items()}
    for name, row in report.items():
        print(f"{name:24} {row['cpu_us']:8.2f} us/message  (+{row['added_us']:.2f} us)")
    save("tracing_overhead", {"date": time.strftime("%Y-%m-%d"), "arch": platform.machine(),
                              "messages": args.messages, "rounds": args.rounds}, report,
         lambda rows, path: plot(rows, path, args.messages, args.rounds))


if __name__ == "__main__":
    main()
