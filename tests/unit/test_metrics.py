"""raydesk's metrics: the types, the text format, the hot-path helpers and the gathering of
every process's snapshot (raydesk/prometheus.py, raydesk/metrics.py)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from raydesk import metrics
from raydesk.errors import RateLimited
from raydesk.prometheus import Counter, Gauge, Histogram, Registry, render
from raydesk.schema import (
    Ack,
    ConversationEvent,
    Message,
    QueueEvent,
    Sender,
    Welcome,
    dump,
)
from raydesk.session import dump_ack, dump_error


def _parse(text: str) -> dict[str, list[Any]]:
    """Samples by series name, through prometheus_client's own parser."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for s in _parse(text).get(name, [])
               if all(s.labels.get(k) == v for k, v in labels.items()))


# --- types -------------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    """A value equal to a bound lands in that bound's bucket; buckets are cumulative,
    +Inf equals the count, the sum adds up."""
    registry = Registry()
    hist = Histogram("raydesk_test_seconds", "t", buckets=(0.1, 1.0), registry=registry)
    child = hist.labels()
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        child.observe(value)
    samples = {(name, labels.get("le")): value for name, labels, value in hist.samples()}
    assert samples[("raydesk_test_seconds_bucket", "0.1")] == 2
    assert samples[("raydesk_test_seconds_bucket", "1.0")] == 4
    assert samples[("raydesk_test_seconds_bucket", "+Inf")] == 5
    assert samples[("raydesk_test_seconds_count", None)] == 5
    assert samples[("raydesk_test_seconds_sum", None)] == pytest.approx(8.65)


def test_labelled_metrics_start_empty_and_clear() -> None:
    registry = Registry()
    counter = Counter("raydesk_test_total", "t", ["kind"], registry=registry)
    gauge = Gauge("raydesk_test_level", "t", ["kind"], registry=registry)
    assert counter.samples() == [] and gauge.samples() == []
    counter.labels("a").inc()
    counter.labels("a").inc(2)
    gauge.labels("b").set(5)
    assert counter.samples() == [("raydesk_test_total", {"kind": "a"}, 3.0)]
    gauge.clear()
    assert gauge.samples() == []
    with pytest.raises(ValueError):
        counter.labels("a", "b")


@pytest.mark.parametrize("build", [
    lambda r: Counter("raydesk_no_suffix", "t", registry=r),
    lambda r: Counter("other_total", "t", registry=r),
    lambda r: Gauge("raydesk_Bad", "t", registry=r),
    lambda r: Gauge("raydesk_x", "t", ["process"], registry=r),
    lambda r: Histogram("raydesk_x_seconds", "t", ["le"], buckets=(1.0,), registry=r),
    lambda r: Histogram("raydesk_x_seconds", "t", buckets=(2.0, 1.0), registry=r),
    lambda r: Histogram("raydesk_x_seconds", "t", buckets=(math.inf,), registry=r),
])
def test_bad_definitions_are_refused(build: Any) -> None:
    with pytest.raises(ValueError):
        build(Registry())


def test_a_name_is_registered_once() -> None:
    registry = Registry()
    Gauge("raydesk_twice", "t", registry=registry)
    with pytest.raises(ValueError):
        Gauge("raydesk_twice", "t", registry=registry)


def test_raydesk_metrics_follow_prometheus_naming() -> None:
    """Every metric starts with raydesk_; counters end in _total; histograms name their
    unit; no two components define the same name differently."""
    seen: dict[str, str] = {}
    for registries in metrics.REGISTRIES.values():
        for registry in registries:
            for family in registry.families:
                assert family.name.startswith("raydesk_")
                if family.kind == "counter":
                    assert family.name.endswith("_total")
                if family.kind == "histogram":
                    assert family.name.endswith(("_seconds", "_ratio", "_questions"))
                assert seen.setdefault(family.name, family.kind) == family.kind
    assert "raydesk_ack_latency_seconds_bucket" in metrics.exported_names()
    assert "raydesk_acks_total" in metrics.exported_names()


# --- the text format ---------------------------------------------------------------------


def test_render_merges_processes_under_one_help_and_type() -> None:
    """Two processes' samples of one metric come under one HELP/TYPE, each labelled with
    its process, and prometheus_client's parser reads the whole answer."""
    registry = Registry()
    counter = Counter("raydesk_things_total", 'say "hi"\\ \n twice', ["kind"],
                      registry=registry)
    counter.labels('we"ird\\\nvalue').inc(3)
    families = registry.snapshot()
    text = render([({"component": "gateway", "process": "g1"}, families),
                   ({"component": "gateway", "process": "g2"}, families)])
    assert text.count("# TYPE raydesk_things_total counter") == 1
    samples = _parse(text)["raydesk_things_total"]
    assert {s.labels["process"] for s in samples} == {"g1", "g2"}
    assert {s.labels["kind"] for s in samples} == {'we"ird\\\nvalue'}
    assert sum(s.value for s in samples) == 6


def test_render_skips_a_family_whose_type_differs() -> None:
    """A process of another version calling a name a gauge cannot break the answer."""
    one = [{"name": "raydesk_x", "type": "counter", "help": "", "samples": []}]
    two = [{"name": "raydesk_x", "type": "gauge", "help": "",
            "samples": [["raydesk_x", {}, 1.0]]}]
    text = render([({"process": "a"}, one), ({"process": "b"}, two)])
    assert "raydesk_x 1" not in text and text.count("# TYPE raydesk_x") == 1


def test_special_values_are_written_as_prometheus_reads_them() -> None:
    gauges = [{"name": "raydesk_g", "type": "gauge", "help": "", "samples": [
        ["raydesk_g", {"k": "nan"}, math.nan], ["raydesk_g", {"k": "inf"}, math.inf],
        ["raydesk_g", {"k": "half"}, 0.5], ["raydesk_g", {"k": "big"}, 3.0]]}]
    parsed = {s.labels["k"]: s.value for s in _parse(render([({}, gauges)]))["raydesk_g"]}
    assert math.isnan(parsed["nan"]) and parsed["inf"] == math.inf
    assert parsed["half"] == 0.5 and parsed["big"] == 3


# --- hot path: frames --------------------------------------------------------------------


def _message(text: str, ts: int = 1_700_000_000_123) -> str:
    return Message(conversation_id="c_1", seq=3, message_id="m_1", client_msg_id="k1",
                   sender=Sender(role="customer", id="v_1"), text=text, ts=ts,
                   event={"kind": "x", "ts": 5}).to_json()


def test_frame_type_of_every_kind_of_server_frame() -> None:
    assert metrics.frame_type(_message("hi")) == "message"
    assert metrics.frame_type(dump_ack({"type": "ack", "client_msg_id": "k", "seq": 1})) \
        == "ack"
    assert metrics.frame_type(dump_error(RateLimited("slow down"))) == "error"
    assert metrics.frame_type('{"type":"pong"}') == "pong"
    assert metrics.frame_type(dump(Welcome(role="customer", id="v", conversations=[],
                                           heartbeat_s=25))) == "welcome"
    assert metrics.frame_type(dump(QueueEvent(conversation_id="c", position=1))) == "queue"
    event = ConversationEvent(conversation_id="c", status="queued", last_seq=1, customer="v",
                              created_ts=1, updated_ts=2)
    assert metrics.frame_type(dump(event)) == "conversation"
    assert metrics.frame_type('{"type":"made-up"}') == "other"
    assert metrics.frame_type("[]") == "other"


def test_commit_time_reads_the_message_ts_only() -> None:
    assert metrics.commit_time(_message("hi")) == 1_700_000_000.123
    assert metrics.commit_time(dump(Ack(client_msg_id="k", conversation_id="c", seq=1,
                                        message_id="m", ts=5))) == 0.0
    assert metrics.commit_time('{"type":"pong"}') == 0.0


@given(st.text(max_size=200), st.integers(min_value=0, max_value=2**53))
def test_commit_time_is_not_fooled_by_the_text(text: str, ts: int) -> None:
    """Whatever the customer wrote (quotes, "ts": look-alikes), the message's own ts."""
    assert metrics.commit_time(_message(f'{text}"ts":1,"ts": 2 \\"ts\\":3', ts)) == ts / 1000


def _count(family: Any, **labels: str) -> float:
    return sum(v for n, lab, v in family.samples()
               if n.endswith(("_total", "_count")) and all(lab.get(k) == x
                                                          for k, x in labels.items()))


def test_frame_written_measures_acks_and_live_deliveries() -> None:
    """An ack with its arrival stamp feeds the ack latency; a live message event its
    delivery latency; a message replayed by sync (no stamp) only the frame count."""
    histogram = next(f for f in metrics.GATEWAY.families
                     if f.name == "raydesk_delivery_latency_seconds")
    acks = next(f for f in metrics.GATEWAY.families if f.name == "raydesk_acks_total")
    frames = next(f for f in metrics.GATEWAY.families if f.name == "raydesk_frames_sent_total")
    before = (_count(histogram), _count(acks), _count(frames, type="message"),
              metrics.ACK_LATENCY.sum)
    metrics.frame_written(dump_ack({"type": "ack", "seq": 1}), time.monotonic() - 0.05)
    live = _message("hi", int(time.time() * 1000) - 20)
    metrics.frame_written(live, metrics.commit_time(live))
    metrics.frame_written(live, 0.0)
    assert _count(histogram) == before[0] + 1
    assert _count(acks) == before[1] + 1
    assert _count(frames, type="message") == before[2] + 2
    assert metrics.ACK_LATENCY.sum - before[3] == pytest.approx(0.05, abs=0.04)


def test_bot_turns_are_counted_by_kind_and_reason() -> None:
    answers = next(f for f in metrics.SHARD.families if f.name == "raydesk_bot_answers_total")
    handoffs = next(f for f in metrics.SHARD.families
                    if f.name == "raydesk_bot_handoffs_total")
    confidence = next(f for f in metrics.SHARD.families
                      if f.name == "raydesk_bot_confidence_ratio")
    stored = next(f for f in metrics.SHARD.families if f.name == "raydesk_bot_turns_total")
    before = (_count(answers, kind="faq"), _count(handoffs, reason="requested"),
              _count(confidence), _count(stored, stored="with_question"),
              _count(stored, stored="alone"))
    metrics.bot_turn("answer", None, "reset", 0.9, analysed=True, with_question=True)
    metrics.bot_turn("handoff", "requested", None, 0.0, analysed=False, with_question=False)
    assert _count(answers, kind="faq") == before[0] + 1
    assert _count(handoffs, reason="requested") == before[1] + 1
    assert _count(confidence) == before[2] + 1  # no analysis: no confidence to count
    # Each turn once more, by how it was stored.
    assert _count(stored, stored="with_question") == before[3] + 1
    assert _count(stored, stored="alone") == before[4] + 1


# --- snapshots through the store ---------------------------------------------------------


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.fail = fail

    async def call(self, command: str, *args: Any) -> Any:
        if self.fail:
            raise ConnectionError("store down")
        key, *rest = args
        stored = self.hashes.setdefault(key, {})
        if command == "HSET":
            stored[rest[0]] = rest[1]
            return 1
        if command == "HGETALL":
            return dict(stored)
        if command == "HDEL":
            return sum(stored.pop(field, None) is not None for field in rest)
        raise AssertionError(command)


async def test_exposition_gathers_every_process_once() -> None:
    """The answering gateway reports its just-pushed snapshot and every other fresh one,
    each once; stale and unreadable snapshots are left out and deleted."""
    store = FakeStore()
    me = metrics.Publisher(store, "gateway", "g1")
    other = metrics.Publisher(store, "gateway", "g2")
    shard = metrics.Publisher(store, "shard", "s0",
                              refresh=lambda: metrics.ACTIVE_CONVERSATIONS.set(7))
    for publisher in (me, other, shard):
        await publisher.push()
    old = json.loads(store.hashes[metrics.STORE_KEY]["gateway/g2"])
    old["ts"] -= metrics.STALE_AFTER_S + 1
    store.hashes[metrics.STORE_KEY]["gateway/gone"] = json.dumps(old)
    store.hashes[metrics.STORE_KEY]["shard/broken"] = "{not json"
    text = await metrics.exposition(store, me)
    ages = _parse(text)[metrics.SNAPSHOT_AGE]
    assert sorted(s.labels["process"] for s in ages) == ["g1", "g2", "s0"]
    assert set(store.hashes[metrics.STORE_KEY]) == {"gateway/g1", "gateway/g2", "shard/s0"}
    assert _value(text, "raydesk_active_conversations", process="s0") == 7
    subscribed = _parse(text)["raydesk_subscribed_participants"]
    assert sorted(s.labels["process"] for s in subscribed) == ["g1", "g2"]


async def test_a_counter_never_goes_back_between_replicas_answers() -> None:
    """Scrapes answered by different replicas read the same snapshots: what one reported
    for a process, the next reports at least."""
    store = FakeStore()
    g1, g2 = (metrics.Publisher(store, "gateway", name) for name in ("g1", "g2"))
    await g1.push()
    metrics.PUBSUB_BREAKS.inc()  # this process counts on; its last push said one less
    first = _value(await metrics.exposition(store, g2), "raydesk_pubsub_breaks_total",
                   process="g1")
    second = _value(await metrics.exposition(store, g1), "raydesk_pubsub_breaks_total",
                    process="g1")
    third = _value(await metrics.exposition(store, g2), "raydesk_pubsub_breaks_total",
                   process="g1")
    assert first + 1 == second == third


async def test_exposition_without_the_store_is_this_process_alone() -> None:
    me = metrics.Publisher(FakeStore(fail=True), "gateway", "g1")
    text = await metrics.exposition(FakeStore(fail=True), me)
    assert [s.labels["process"] for s in _parse(text)[metrics.SNAPSHOT_AGE]] == ["g1"]


def test_stored_sources_leaves_out_stale_and_broken() -> None:
    now = time.time()
    fresh = json.dumps({"ts": now - 1, "families": []})
    stale = json.dumps({"ts": now - metrics.STALE_AFTER_S - 1, "families": []})
    sources, gone = metrics.stored_sources(
        {"gateway/me": fresh, "router/default": fresh, "bot/b1": stale, "nofield": fresh},
        now)
    assert [s.field for s in sources] == ["gateway/me", "router/default"]
    assert sources[0].age_s == pytest.approx(1, abs=0.1)
    assert sorted(gone) == ["bot/b1", "nofield"]
