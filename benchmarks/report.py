"""Saving a benchmark's figures: benchmarks/results/NAME.json, and NAME.png from its plot."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import resource
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, fields: dict[str, Any], results: Any,
         plot: Callable[[Any, Path], None]) -> dict[str, Any]:
    """Write the report (``fields`` plus when, machine and ``results``) and its plot."""
    report = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **fields,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    plot(results, RESULTS / f"{name}.png")
    return report


def finish_plot(fig: Any, ax: Any, path: Path, legend_outside: bool = False) -> None:
    """A grid, a small legend (right of the plot if ``legend_outside``), a tight layout,
    and the figure written to ``path``."""
    ax.grid(alpha=0.3)
    if legend_outside:
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    else:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def own_cpu_s() -> float:
    """CPU seconds (user and system) this process has used so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def arrivals(rate: float, until: float, rng: random.Random) -> AsyncIterator[None]:
    """Open loop: Poisson arrivals at ``rate`` a second from now until ``until`` (a
    ``time.perf_counter()`` time); yields at each arrival's planned time, whatever the
    caller's work before it took."""
    next_at = time.perf_counter()
    while next_at < until:
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        yield


def ms_percentiles(seconds: Sequence[float], prefix: str = "",
                   qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """``{prefix}p{q}_ms`` for each q: the percentiles of ``seconds`` in milliseconds,
    rounded to 0.1 (NaN for no values)."""
    ms = np.asarray(seconds or [float("nan")], dtype=float) * 1000
    return {f"{prefix}p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in qs}
