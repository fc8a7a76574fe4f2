"""Prometheus' data model and text format, as much as raydesk needs (raydesk/metrics.py).

Counters, gauges and histograms with labels, updated in place at ~0.06-0.1 µs (counter)
and ~0.2-0.4 µs (histogram) per call, against ~0.5-0.7 and ~1.2-1.6 µs for
``prometheus_client``'s, which take a lock per update (benchmarks/metrics_overhead.py;
docs/explanation/observability.md).
No locks here: every update comes from the process's event-loop thread.

A registry's snapshot is plain JSON (it travels through the store); :func:`render` turns
snapshots of many processes into one exposition in the text format 0.0.4.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

_NAME = re.compile(r"^raydesk_[a-z][a-z0-9_]*$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
# Added by the gateway that renders the exposition: which process a sample came from.
RESERVED_LABELS = ("component", "process")

# A sample: (name, labels, value); a family: {"name", "type", "help", "samples"} (JSON).
Sample = tuple[str, dict[str, str], float]
Family = dict[str, Any]


class CounterValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramValue:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family:
    kind: ClassVar[str]

    def __init__(self, name: str, help_text: str, labels: Sequence[str],
                 registry: Registry) -> None:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: raydesk_ and snake_case")
        for label in labels:
            if not _LABEL.match(label) or label in RESERVED_LABELS or label == "le":
                raise ValueError(f"metric {name}: label {label!r} not allowed")
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._children: dict[tuple[str, ...], Any] = {}
        if not self.label_names:
            self._children[()] = self._new()
        registry.add(self)

    def _new(self) -> Any:
        raise NotImplementedError

    def _get(self, values: tuple[str, ...]) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.label_names):
                raise ValueError(f"{self.name}: labels {self.label_names}, got {values}")
            child = self._children[values] = self._new()
        return child

    def clear(self) -> None:
        """Forget every labelled series (a gauge recomputed from scratch)."""
        if self.label_names:
            self._children.clear()

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for values, child in self._children.items():
            out.extend(self._samples(dict(zip(self.label_names, values, strict=True)), child))
        return out

    def _samples(self, labels: dict[str, str], child: Any) -> Iterable[Sample]:
        """One series with the child's value (counters, gauges); histograms have more."""
        yield self.name, labels, child.value

    def snapshot(self) -> Family:
        return {"name": self.name, "type": self.kind, "help": self.help,
                "samples": self.samples()}


class Counter(_Family):
    """Only goes up. The name ends in ``_total`` (Prometheus naming)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (), *,
                 registry: Registry) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name}: the name must end in _total")
        super().__init__(name, help_text, labels, registry)

    def _new(self) -> CounterValue:
        return CounterValue()

    def labels(self, *values: str) -> CounterValue:
        child: CounterValue = self._get(values)
        return child


class Gauge(_Family):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (), *,
                 registry: Registry) -> None:
        super().__init__(name, help_text, labels, registry)

    def _new(self) -> GaugeValue:
        return GaugeValue()

    def labels(self, *values: str) -> GaugeValue:
        child: GaugeValue = self._get(values)
        return child


class Histogram(_Family):
    """Explicit bucket bounds (ascending); ``_bucket``, ``_sum`` and ``_count`` series."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: Registry) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"histogram {name}: finite, ascending, distinct buckets")
        self.bounds = bounds
        super().__init__(name, help_text, labels, registry)

    def _new(self) -> HistogramValue:
        return HistogramValue(self.bounds)

    def labels(self, *values: str) -> HistogramValue:
        child: HistogramValue = self._get(values)
        return child

    def _samples(self, labels: dict[str, str], child: Any) -> Iterable[Sample]:
        running = 0
        for bound, count in zip((*self.bounds, math.inf), child.counts, strict=True):
            running += count
            le = "+Inf" if math.isinf(bound) else repr(bound)  # "0.001", "1.0", as Go does
            yield f"{self.name}_bucket", {**labels, "le": le}, float(running)
        yield f"{self.name}_sum", labels, child.sum
        yield f"{self.name}_count", labels, float(running)


class Registry:
    """The metrics of one component (a process holds its component's and the store's)."""

    def __init__(self) -> None:
        self.families: list[_Family] = []

    def add(self, family: _Family) -> None:
        if any(f.name == family.name for f in self.families):
            raise ValueError(f"metric {family.name} registered twice")
        self.families.append(family)

    def snapshot(self) -> list[Family]:
        return [family.snapshot() for family in self.families]


def render(groups: Iterable[tuple[Mapping[str, str], Sequence[Family]]]) -> str:
    """The text format (0.0.4) of families from many processes, merged by name (each name
    has one HELP and TYPE); each group's labels are added to its samples."""
    merged: dict[str, tuple[str, str, list[str]]] = {}
    for base, families in groups:
        for family in families:
            name, kind = family["name"], family["type"]
            entry = merged.setdefault(name, (kind, family.get("help", ""), []))
            if entry[0] != kind:
                continue  # another version's idea of this metric: skip it, keep the format
            entry[2].extend(_line(sample_name, {**base, **labels}, value)
                            for sample_name, labels, value in family["samples"])
    out = []
    for name, (kind, help_text, lines) in merged.items():
        out.append(f"# HELP {name} {_escape_help(help_text)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in labels.items())
    return f"{name}{{{pairs}}} {_number(value)}"


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
