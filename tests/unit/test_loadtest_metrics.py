"""Load-test measurements merged across processes (raydesk/loadtest/metrics.py)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raydesk.loadtest.metrics import HIGHEST_US, Recorder, merge, percentiles, series, summary

STARTED = 1_000_000.0

samples = st.lists(st.tuples(st.floats(1e-6, 5.0), st.floats(0.0, 9.99)), max_size=200)


def recorded(values: list[tuple[float, float]]) -> Recorder:
    recorder = Recorder(STARTED, 1.0)
    for seconds, offset in values:
        recorder.latency("ack", seconds, STARTED + offset)
        recorder.count("acked", STARTED + offset)
    return recorder


@settings(max_examples=25, deadline=None)
@given(samples, samples)
def test_merging_two_processes_equals_recording_in_one(
        first: list[tuple[float, float]], second: list[tuple[float, float]]) -> None:
    """Percentiles and counts of merged encodings equal those of one recorder that saw
    everything, whole-step and per window."""
    together = recorded(first + second)
    # What crosses a process boundary: the pickled encoding.
    merged = merge(pickle.loads(pickle.dumps(r.encode())) for r in (recorded(first),
                                                                     recorded(second)))
    assert merged is not None
    assert summary(merged) == summary(together)
    assert merged.total("acked") == len(first) + len(second)
    assert series(merged) == series(together)


def test_a_window_holds_what_began_in_it() -> None:
    """A latency is filed under the window its message was sent in."""
    recorder = Recorder(STARTED, 2.0)
    recorder.latency("ack", 0.010, STARTED + 0.5)
    recorder.latency("ack", 0.030, STARTED + 2.5)
    recorder.count("offered", STARTED + 2.5, 4)
    rows = series(recorder)
    assert [row["t_s"] for row in rows] == [0.0, 2.0]
    # Per-window histograms keep 2 significant digits: within 1 %.
    assert rows[0]["ack"]["p50_ms"] == pytest.approx(10.0, rel=0.01)
    assert rows[1]["ack"]["p99_ms"] == pytest.approx(30.0, rel=0.01)
    assert rows[1]["offered_per_s"] == 2.0


def test_out_of_range_values_are_clamped_not_lost() -> None:
    """Zero and absurd latencies still count (at the histogram's bounds)."""
    recorder = Recorder(STARTED, 1.0)
    recorder.latency("ack", 0.0, STARTED)
    recorder.latency("ack", 10 * HIGHEST_US / 1e6, STARTED)
    assert recorder.latencies["ack"].total.get_total_count() == 2


def test_nothing_recorded_reads_as_a_zero_count() -> None:
    assert percentiles(Recorder(STARTED, 1.0).latencies["bot_reply"].total) == {"count": 0}
    assert merge([]) is None
