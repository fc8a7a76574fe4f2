"""What a load test shows: a progress bar while it runs, a summary table at the end, the
result as JSON and its plots as one PNG (latency percentiles over time, throughput, the
memory and CPU of every process).

matplotlib is only needed for the PNG, and only imported then (``pip install
'raydesk[bench]'``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

LATENCY_NAMES = {"ack": "ack", "customer_to_agent": "customer→agent",
                 "agent_to_customer": "agent→customer", "bot_reply": "bot reply"}


class Display:
    """The progress bar: one line per phase, with the running counts."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<22}"),
                                 BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
                                 console=self.console, disable=not enabled)
        self.task: Any = None
        self.kind = ""
        self.total = 0.0
        self.started = 0.0

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, phase: str, totals: dict[str, Any]) -> None:
        if phase == "begin":
            if self.task is not None:
                self.progress.update(self.task, completed=self.total or 1,
                                     total=self.total or 1)
            self.kind, self.total = totals["kind"], float(totals.get("total") or 0)
            self.started = time.monotonic()
            self.task = self.progress.add_task(totals["label"], total=self.total or None,
                                               stats="")
            return
        if self.task is None:
            return
        done = {"connect": totals.get("connected", 0), "open": totals.get("settled", 0),
                "step": time.monotonic() - self.started}.get(self.kind)
        p99 = totals.get("ack_p99_ms")
        stats = " ".join(part for part in (
            f"conn {totals.get('connected', 0):,}",
            f"sent {totals.get('sent', 0):,}" if self.kind == "step" else "",
            f"acked {totals.get('acked', 0):,}" if self.kind == "step" else "",
            f"ack p99 {p99:.0f} ms" if p99 is not None and self.kind == "step" else "",
            f"late {totals['late']:,}" if totals.get("late") else "",
            f"errors {totals['errors']:,}" if totals.get("errors") else "") if part)
        self.progress.update(self.task, completed=min(done or 0, self.total or 0),
                             stats=stats)


def _ms(latency: dict[str, float], key: str) -> str:
    value = latency.get(key)
    return "-" if value is None else f"{value:,.1f}"


def _percentiles(latency: dict[str, float]) -> str:
    if not latency.get("count"):
        return "-"
    return " / ".join(_ms(latency, k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


STEP_ROWS: tuple[tuple[str, Any], ...] = (
    ("customer msg/s offered", lambda s: f"{s['offered_per_s']:,.0f} (asked {s['rate']:g})"),
    ("agent replies/s", lambda s: f"{s['sent_agent_per_s']:,.0f}"),
    ("acknowledged msg/s", lambda s: f"{s['acked_per_s']:,.0f}"),
    *((f"{title} ms p50/p95/p99/max", lambda s, n=name: _percentiles(s["latency"][n]))
      for name, title in LATENCY_NAMES.items()),
    ("sent late (generator)", lambda s: f"{s['late']:,} ({s['late_share']:.1%}), lag p99 "
     f"{_ms(s['latency']['send_lag'], 'p99_ms')} ms"),
    ("errors, unacked", lambda s: f"{json.dumps(s['errors']) if s['errors'] else 0}, "
     f"{s['unacked']:,}"),
    ("server CPU (cores)", lambda s: f"{sum(s['server_cpu_cores'].values()):.2f}"),
    ("server CPU ms/msg (net)", lambda s: f"{s['server_cpu_ms_per_message'] or 0:.3f}"),
    ("gateway CPU µs/frame (net)", lambda s: f"{s['gateway_cpu_us_per_frame'] or 0:.1f}"),
    ("generator CPU (cores)", lambda s: f"{s['generator_cpu_cores']:.2f}"),
    ("server PSS peak (MB)", lambda s: f"{s.get('server_pss_peak_mb') or 0:,.0f}"),
)


def steps_table(result: dict[str, Any]) -> Table:
    """One column per step, one row per figure."""
    table = Table(title=f"raydesk load test: {result['scenario']}", title_justify="left")
    table.add_column("")
    steps = result.get("steps", [])
    for number, step in enumerate(steps, 1):
        table.add_column(f"step {number}: {step['seconds']:g} s" if len(steps) > 1
                         else f"{step['seconds']:g} s", justify="right")
    for title, cell in STEP_ROWS:
        table.add_row(title, *(cell(step) for step in steps))
    return table


def run_table(result: dict[str, Any]) -> Table:
    table = Table(show_header=False, title_justify="left", title="run")
    table.add_column("what")
    table.add_column("value")
    setup = result.get("setup", {})
    table.add_row("connections held",
                  f"{setup.get('customers', 0):,} customers + {setup.get('agents', 0):,} "
                  f"agents (visitors {setup.get('visitors_s', 0)} s, connect "
                  f"{setup.get('connect_s', 0)} s)")
    if setup.get("failures"):
        table.add_row("setup failures", json.dumps(setup["failures"]))
    if "open" in result:
        opened = result["open"]
        table.add_row("conversations opened",
                      f"{opened['settled']:,} of {opened['customers']:,} settled in "
                      f"{opened['seconds']} s" + (f", {opened['refused']:,} refused"
                                                  if opened.get("refused") else ""))
    memory = result.get("memory", {})
    for phase in ("idle", "connected", "opened", "after_steps"):
        if phase in memory:
            table.add_row(f"server PSS, {phase}",
                          f"{memory[phase].get('server_total', 0):,.0f} MB (USS "
                          f"{memory[phase].get('server_uss_total', 0):,.0f} MB)")
    for key, unit in (("per_connection_kb", "KB per connection above idle"),
                      ("per_connection_kb_uss", "KB per connection above idle (USS)"),
                      ("per_conversation_kb", "KB per open conversation"),
                      ("peak_server_total_mb", "MB peak server PSS")):
        if key in memory:
            table.add_row(unit, f"{memory[key]:,}")
    if "check" in result:
        c = result["check"]
        table.add_row("delivery check",
                      f"{c['acked']:,} acked: {c['delivered']:,} delivered, {c['late']:,} "
                      f"late, {c.get('unverified', 0):,} unverified, {c['lost']:,} lost, "
                      f"{c['duplicated']:,} duplicated, {c['reordered']:,} reordered"
                      + ("" if c["exactly_once"] else "  [bold red]FAILED[/]"))
    for code, count in sorted((result.get("errors") or {}).items()):
        messages = (result.get("error_messages") or {}).get(code, {})
        table.add_row(f"errors: {code}", f"{count:,}" + "".join(
            f"\n  {n:,}x {message}" for message, n in list(messages.items())[:3]))
    limits = result.get("server_limits") or {}
    if limits and not limits.get("enough_for_connections", True):
        table.add_row("server fd limit", f"[bold red]{limits['gateway_nofile']}[/] < "
                      f"{limits['connections']:,} connections")
    return table


def targets_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="targets (2 cores)", title_justify="left")
    for column in ("target", "measured", "ratio", "met"):
        table.add_column(column)
    for row in rows:
        ratio = row.get("ratio")
        table.add_row(row["target"], row["measured"], "-" if ratio is None else f"{ratio:.2f}x",
                      "[green]yes[/]" if row["met"] else "[red]no[/]")
    return table


def print_summary(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    for part in result.get("runs", [result]):
        if part.get("steps"):
            console.print(steps_table(part))
        console.print(run_table(part))
    if result.get("targets"):
        console.print(targets_table(result["targets"]))


def write(result: dict[str, Any], out: Path, name: str) -> tuple[Path, Path | None]:
    """``out/NAME.json`` and, if matplotlib is there, ``out/NAME.png``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    png_path = out / f"{name}.png"
    try:
        plot(result, png_path)
    except ImportError:
        return json_path, None
    return json_path, png_path


def _timeline(result: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """Every step's windows on one time axis (each step after the previous one)."""
    points, offset = [], 0.0
    for step in result.get("steps", []):
        for row in step["series"]:
            points.append((offset + row["t_s"], row))
        offset += step["seconds"] + 1
    return points


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency percentiles over time (or by rate, for a ramp), throughput, memory and CPU
    by process. Raises ImportError without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the plots need matplotlib: pip install 'raydesk[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result.get("runs", [result])
    fig, axes = plt.subplots(len(runs), 4, figsize=(20, 4.2 * len(runs)), squeeze=False)
    for row, part in zip(axes, runs, strict=True):
        _latency(row[0], part)
        _throughput(row[1], part)
        _by_process(row[2], part, "pss_mb", "server PSS by process (MB)")
        _by_process(row[3], part, "cpu_cores", "CPU by process (cores)")
    fig.suptitle(f"raydesk load test: {result['scenario']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _latency(ax: Any, result: dict[str, Any]) -> None:
    steps = result.get("steps", [])
    if len(steps) > 1:  # a ramp: percentiles by achieved rate
        rates = [s["acked_per_s"] + 0.0 for s in steps]
        for name, style in (("ack", "o-"), ("customer_to_agent", "s--")):
            for key, alpha in (("p50_ms", 0.5), ("p99_ms", 1.0)):
                values = [s["latency"][name].get(key) for s in steps]
                if any(v is not None for v in values):
                    ax.plot(rates, [v or float("nan") for v in values], style, alpha=alpha,
                            label=f"{LATENCY_NAMES[name]} {key[:-3]}")
        ax.set_xlabel("acknowledged messages / s")
        ax.set_title("latency by rate")
    else:
        points = _timeline(result)
        for name in LATENCY_NAMES:
            for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
                xs = [t for t, r in points if name in r]
                if xs:
                    ax.plot(xs, [r[name][key] for t, r in points if name in r], style,
                            label=f"{LATENCY_NAMES[name]} {key[:-3]}")
        ax.set_xlabel("s into the measured step")
        ax.set_title("latency percentiles over time")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _throughput(ax: Any, result: dict[str, Any]) -> None:
    points = _timeline(result)
    for key, name in (("offered_per_s", "offered (customers)"),
                      ("acked_per_s", "acknowledged"),
                      ("sent_agent_per_s", "agent replies"), ("late_per_s", "sent late")):
        xs = [t for t, r in points if key in r]
        if xs:
            ax.plot(xs, [r[key] for t, r in points if key in r], label=name)
    ax.set_title("throughput (messages / s)")
    ax.set_xlabel("s into the measured steps")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _by_process(ax: Any, result: dict[str, Any], key: str, title: str) -> None:
    samples = [s for s in result.get("samples", []) if s[key]]
    names = sorted({n for s in samples for n in s[key] if not n.startswith("server_")},
                   key=lambda n: -max(s[key].get(n, 0.0) for s in samples))
    for name in names[:9]:
        ax.plot([s["t_s"] for s in samples], [s[key].get(name, 0.0) for s in samples],
                label=name, linestyle="--" if name == "loadgen" else "-")
    if key == "pss_mb" and samples:
        ax.plot([s["t_s"] for s in samples], [s[key].get("server_total", 0.0)
                                              for s in samples], "k-", lw=2, label="server total")
    ax.set_title(title)
    ax.set_xlabel("s into the run")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
