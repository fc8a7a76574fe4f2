"""The chaos run's table (stdout) and plot (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = (("fault", "fault"), ("acked", "acked"), ("lost", "lost"),
           ("duplicated", "dup"), ("reordered", "reord"), ("gaps", "gaps"),
           ("false_acks", "false acks"), ("recovered_s", "system back s"),
           ("resync_s", "all clients in sync s"))


def print_table(result: dict[str, Any]) -> None:
    rows = [[str(row.get(key)) if row.get(key) is not None else "TIMEOUT"
             for key, _ in COLUMNS] for row in result["faults"]]
    totals = result["totals"]
    rows.append(["all (incl. set-up)", *(str(totals.get(k, "")) for k, _ in COLUMNS[1:-2]),
                 "", ""])
    heads = [head for _, head in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    final, router = result["final"], result["router_check"]
    print(f"conversations {totals['conversations']}, messages {totals['messages']}, "
          f"double assignments {totals['double_assignments']}, still queued "
          f"{len(totals['still_queued'])}, stored but never acked {totals['stored_unacked']}")
    print(f"router: {router['assigned_once']}/{router['conversations']} queued conversations "
          f"assigned exactly once; at the end {final['resynced']}/{final['clients']} clients "
          f"hold every message (last seq = the store's)")
    print(f"live delivery: {result['delivery']}")
    print("PASSED" if result.get("passed") else "FAILED")


def plot(result: dict[str, Any], path: Path) -> None:
    """The PNG; skipped, with a note, without matplotlib (``pip install 'raydesk[bench]'``),
    so that the JSON and the verdict never depend on it."""
    try:
        import matplotlib
    except ImportError:
        print(f"no plot ({path.name}): matplotlib is not installed (raydesk[bench])")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (timeline, bars) = plt.subplots(1, 2, figsize=(15, 4.5),
                                         gridspec_kw={"width_ratios": [2.2, 1]})
    acks = result["timeline"]["acks_per_s"]
    timeline.plot(range(len(acks)), acks, color="tab:blue", lw=1)
    for row in result["faults"]:
        start = row["at_s"]
        end = start + (row["resync_s"] or 0)
        timeline.axvspan(start, max(end, start + 0.3), color="tab:red", alpha=0.2)
        timeline.annotate(row["fault"], (start, max(acks, default=1) * 0.95), rotation=90,
                          fontsize=8, va="top")
    timeline.set_xlabel("seconds since traffic started")
    timeline.set_ylabel("acknowledged messages / s")
    timeline.set_title("acks over time; red: from each fault until every client was in sync")
    names = [row["fault"] for row in result["faults"]]
    values = [row["resync_s"] or 0 for row in result["faults"]]
    colors = ["tab:green" if row["lost"] == row["duplicated"] == row["gaps"] == 0
              and row["resynced"] else "tab:red" for row in result["faults"]]
    bars.bar(names, values, color=colors)
    for i, row in enumerate(result["faults"]):
        bars.annotate(f"{row['acked']} acked\n{row['lost']} lost", (i, values[i]),
                      ha="center", va="bottom", fontsize=7)
    bars.set_ylabel("seconds until all clients in sync")
    bars.set_title("time to resync (green: nothing lost or duplicated)")
    setup = result.get("setup", {})
    fig.suptitle(f"raydesk chaos run: {setup.get('nodes', '?')} Ray nodes, "
                 f"{setup.get('shards', '?')} shards, {setup.get('gateway_replicas', '?')} "
                 f"gateways, {result['plan']['customers']} customers, "
                 f"{result['plan']['agents']} agents, {result['plan']['rate']} msg/s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
