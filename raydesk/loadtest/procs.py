"""The processes a load test watches: raydesk's (Ray's raylet, GCS and workers, the Serve
replicas, Valkey) and the load generator's own; their CPU and memory (PSS) over time.

PSS (proportional set size) counts a page shared by n processes as 1/n in each, so the
sum over processes is what the node really holds; RSS would count Ray's shared object
store and libraries once per worker.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

# Labels by what a process's command line holds, first match wins. Ray names its workers
# after their actor (``ray::ServeReplica:raydesk:Gateway``, ``ray::ConversationShard``).
LABELS = (
    ("Gateway", "gateway"), ("ConversationShard", "shards"), ("ray::Router", "router"),
    ("Assistant", "bot"), ("ServeController", "serve"), ("ProxyActor", "proxy"),
    ("haproxy", "proxy"), ("valkey", "store"), ("gcs_server", "gcs"), ("raylet", "raylet"),
    ("raydesk.loadtest.echo", "echo"), ("echo_server", "echo"), ("ray", "ray_other"),
)


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file limit to its hard limit (one fd per connection);
    the (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def nofile_of(pid: int) -> int | None:
    """Another process's soft open-file limit (Linux), None if unreadable."""
    try:
        soft, _ = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
        return int(soft)
    except (psutil.Error, AttributeError):
        return None


def label(process: psutil.Process, root: int | None = None) -> str:
    """What a process is, for the reports: gateway, shards, store, raylet, ..."""
    try:
        title = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "gone"
    name = next((name for key, name in LABELS if key in title), "other")
    # The process that started Ray (raydesk serve, or a test's driver) is its own part.
    return "driver" if process.pid == root and name in ("ray_other", "other") else name


def tree(root: int) -> list[psutil.Process]:
    """A process and all its live descendants."""
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_by_process(processes: Iterable[psutil.Process], root: int | None = None,
                   ) -> dict[int, tuple[str, float]]:
    """CPU seconds so far (user + system, with reaped children's) of each process, by pid,
    with its label."""
    out = {}
    for process in processes:
        try:
            times = process.cpu_times()
            out[process.pid] = (label(process, root), times.user + times.system
                                + times.children_user + times.children_system)
        except psutil.Error:
            pass
    return out


def cpu_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                ) -> dict[str, float]:
    """CPU seconds spent between two :func:`cpu_by_process` readings, by label, of the
    processes in both (one missing from a reading, born or gone in between, would
    otherwise bring its whole lifetime's CPU into one interval)."""
    spent: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in before:
            spent[name] = spent.get(name, 0.0) + max(0.0, cpu - before[pid][1])
    return spent


def find_server_root(port: int) -> int | None:
    """The process that started the raydesk listening on ``port`` on this machine: the
    raylet's parent (``raydesk serve``, or whatever called ``ray.init``), else the
    listener itself (a plain server such as the echo). None if nothing listens here."""
    try:
        listeners = sorted({c.pid for c in psutil.net_connections("tcp")
                            if c.status == psutil.CONN_LISTEN and c.laddr
                            and c.laddr.port == port and c.pid})
    except (psutil.Error, OSError):
        return None
    if not listeners:
        return None
    try:
        listener = psutil.Process(listeners[0])
        chain = [listener, *listener.parents()]
        for i, process in enumerate(chain):
            if process.name() == "raylet":
                parent = chain[i + 1] if i + 1 < len(chain) else None
                top = parent if parent is not None and parent.pid != 1 else process
                return int(top.pid)
    except psutil.Error:
        return None
    return int(listener.pid)


def pss_uss_mb(process: psutil.Process) -> tuple[float, float] | None:
    """PSS and USS (memory only this process maps), MB. A page shared with a process
    outside the server (another Ray on the machine mapping the same libraries) lowers
    PSS but not USS, so growth per connection is read from USS too."""
    try:
        info = process.memory_full_info()
        return float(info.pss) / 2**20, float(info.uss) / 2**20
    except (psutil.Error, AttributeError):
        return None


@dataclass
class Sample:
    """One reading: seconds since the sampler started, CPU cores busy since the previous
    reading and PSS (MB, when read this time) by label, for the server and generator."""

    t_s: float
    cpu: dict[str, float] = field(default_factory=dict)
    pss_mb: dict[str, float] = field(default_factory=dict)


class Sampler:
    """Reads CPU every ``every_s`` and PSS every ``pss_every_s`` in a background thread.

    ``server`` and ``generator`` return the processes to watch; they are asked again at
    each reading, so Ray workers started mid-run are seen. Labels of the generator's
    processes are prefixed ``loadgen``."""

    def __init__(self, server: Callable[[], list[psutil.Process]], root: int | None,
                 generator: Callable[[], list[psutil.Process]], every_s: float = 1.0,
                 pss_every_s: float = 5.0) -> None:
        self._server, self._root, self._generator = server, root, generator
        self.every_s, self.pss_every_s = every_s, pss_every_s
        self.samples: list[Sample] = []
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadtest-sampler",
                                        daemon=True)
        self._last: dict[int, tuple[str, float]] = {}
        self._last_at = time.monotonic()
        self._last_pss = 0.0
        self._lock = threading.Lock()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def processes(self) -> list[tuple[psutil.Process, str]]:
        server = [(p, label(p, self._root)) for p in self._server()]
        own = {p.pid for p in self._generator()}
        return [(p, name) for p, name in server if p.pid not in own] + [
            (p, "loadgen") for p in self._generator()]

    def cpu_now(self) -> dict[int, tuple[str, float]]:
        """Cumulative CPU seconds by pid now, labelled (generator: ``loadgen``)."""
        readings: dict[int, tuple[str, float]] = {}
        for process, name in self.processes():
            for pid, (_, cpu) in cpu_by_process([process]).items():
                readings[pid] = (name, cpu)
        return readings

    def memory(self) -> dict[str, float]:
        """PSS now, MB, by label; ``server_total`` sums everything but the generator, and
        ``server_uss_total`` is the same sum of USS."""
        by_label: dict[str, float] = {}
        uss = 0.0
        for process, name in self.processes():
            mb = pss_uss_mb(process)
            if mb is not None:
                by_label[name] = by_label.get(name, 0.0) + mb[0]
                uss += mb[1] if name != "loadgen" else 0.0
        by_label["server_total"] = sum(v for k, v in by_label.items() if k != "loadgen")
        by_label["server_uss_total"] = uss
        return {k: round(v, 1) for k, v in by_label.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._read()
            except Exception:  # a reading never stops the run
                continue

    def _read(self) -> None:
        now, readings = time.monotonic(), self.cpu_now()
        if self._last:  # the first reading is only the reference for the next
            sample = Sample(round(time.time() - self.started, 2))
            elapsed = max(1e-6, now - self._last_at)
            for name, seconds in cpu_between(self._last, readings).items():
                sample.cpu[name] = round(seconds / elapsed, 3)
            if now - self._last_pss >= self.pss_every_s:
                sample.pss_mb = self.memory()
                self._last_pss = now
            with self._lock:
                self.samples.append(sample)
        self._last, self._last_at = readings, now

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"t_s": s.t_s, "cpu_cores": s.cpu, "pss_mb": s.pss_mb}
                    for s in self.samples]


def machine() -> dict[str, Any]:
    """This machine, for the results: cores, memory, CPU model, Python, Ray, raydesk."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from raydesk import __version__

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), "")
    return {"cores": os.cpu_count(), "cpu_model": model,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "ray": installed("ray"), "raydesk": __version__,
            "websockets": installed("websockets"), "uvicorn": installed("uvicorn"),
            "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
