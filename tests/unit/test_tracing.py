"""Tracing without Ray: a message's spans across the helpers each process uses, the off
path, sampling, the pub/sub tag and the file exporter."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from raydesk import tracing
from raydesk.config import Config, TracingConfig, load_config
from raydesk.errors import ConfigError, NotFound
from raydesk.schema import Message, Send, Sender, ShardCommand
from raydesk.store import Commit, channel

CID = "c_0123456789abcdef012345"


@pytest.fixture(autouse=True)
def _tracing_off_after() -> Iterator[None]:
    yield
    tracing.shutdown()


def _start(ratio: float = 1.0) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    tracing.start(TracingConfig(exporter="file", sample_ratio=ratio), "test", Path("."),
                  exporter=exporter)
    return exporter


def _send() -> Send:
    return Send(type="send", conversation_id=CID, client_msg_id="k1", text="hello")


def _message() -> Message:
    return Message(conversation_id=CID, seq=2, message_id="m_1", client_msg_id="k1",
                   sender=Sender(role="customer", id="v_1"), text="hello", ts=1)


def _one_message_path() -> list[tuple[str, str]]:
    """The helpers in the order a message meets them; the events as gateways get them."""
    frame = _send()
    with tracing.frame_span(frame, "g1-1"):
        command = ShardCommand(kind="send", conversation_id=CID, actor_id="v_1",
                               actor_role="customer", client_msg_id="k1", text="hello",
                               trace=tracing.traceparent())
        # The shard's span takes its parent from the command alone (another process).
        with tracing.command_span(command):
            message = _message()
            commit = Commit(cid=CID, expect=1, messages=[message.to_json()],
                            publish=[(channel("v_1"), message.to_json())])
            with tracing.commit_span(commit, message):
                commit.publish = tracing.tag_events(commit.publish)
            tracing.annotate(message_id=message.message_id)
        tracing.annotate(message_id=message.message_id)
    return commit.publish


def test_off_makes_no_span_and_changes_nothing() -> None:
    """Tracing off: every helper returns at once, the same shared object, no traceparent."""
    assert not tracing.enabled()
    assert tracing.frame_span(_send(), "g1-1") is tracing.frame_span(_send(), "g1-2")
    assert tracing.span("x") is tracing.frame_span(_send(), "g1-1")
    events = [(channel("v_1"), "{}")]
    assert tracing.tag_events(events) is events
    assert tracing.traceparent() is None
    with tracing.span("x") as current:
        assert current is None
        tracing.annotate(message_id="m_1")


def test_one_trace_per_message_across_the_helpers() -> None:
    """gateway receive -> shard append -> store commit -> deliver: one trace, each the
    child of the one before, with the ids as attributes."""
    exporter = _start()
    published = _one_message_path()
    [(_, payload)] = published
    event, parent = tracing.untag(payload)
    assert event == _message().to_json() and parent is not None
    with tracing.deliver_span(event, parent, "v_1", 2):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"gateway receive", "shard append", "store commit", "deliver"}
    assert len({s.context.trace_id for s in spans.values()}) == 1
    chain = ["gateway receive", "shard append", "store commit", "deliver"]
    for upper, lower in itertools.pairwise(chain):
        assert spans[lower].parent is not None
        assert spans[lower].parent.span_id == spans[upper].context.span_id
    for s in spans.values():
        assert s.attributes is not None
        assert s.attributes["raydesk.conversation_id"] == CID
        assert s.attributes["raydesk.message_id"] == "m_1"
    assert spans["gateway receive"].attributes["raydesk.frame_type"] == "send"
    assert spans["gateway receive"].kind is SpanKind.SERVER
    assert spans["shard append"].attributes["raydesk.participant_id"] == "v_1"
    assert spans["deliver"].attributes["raydesk.frame_type"] == "message"
    assert spans["deliver"].attributes["raydesk.recipients"] == 2
    assert spans["deliver"].kind is SpanKind.CONSUMER


def test_a_command_without_a_trace_makes_no_span() -> None:
    """The router's commands (no sampled span sent them) are not traced, nor is work
    outside a trace."""
    exporter = _start()
    command = ShardCommand(kind="assign", conversation_id=CID, actor_id="router",
                           actor_role="router", to_agent="a_1")
    with tracing.command_span(command) as shard, tracing.span("bot turn") as bot:
        assert shard is None and bot is None
        assert tracing.traceparent() is None
    assert exporter.get_finished_spans() == ()


async def test_a_task_started_in_a_span_stays_in_its_trace() -> None:
    """The bot's turn runs in a task started inside the command's span, after that span
    ended: its spans are still children in the same trace."""
    exporter = _start()

    async def bot_turn() -> None:
        await asyncio.sleep(0)
        with tracing.span("bot turn"):
            assert tracing.traceparent() is not None

    with tracing.span("shard append", root=True):
        task = asyncio.ensure_future(bot_turn())
    await task
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["bot turn"].parent is not None
    assert spans["bot turn"].parent.span_id == spans["shard append"].context.span_id


def test_sampled_out_frames_carry_the_decision() -> None:
    """Ratio 0: the gateway makes no span, so neither does any later hop, and the
    published events are not tagged; ratio 0.5 traces about half the frames, whole."""
    exporter = _start(ratio=0.0)
    published = _one_message_path()
    assert exporter.get_finished_spans() == ()
    assert not published[0][1].startswith(tracing.TAG)
    exporter = _start(ratio=0.5)
    for _ in range(400):
        _one_message_path()
    spans = exporter.get_finished_spans()
    receives = sum(s.name == "gateway receive" for s in spans)
    assert 120 < receives < 280
    assert len(spans) == 3 * receives


def test_untag() -> None:
    """A client never sees the tag; untagged and malformed events pass unchanged."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracing.untag(f"{tracing.TAG}{parent}{tracing.TAG}{{}}") == ("{}", parent)
    assert tracing.untag("{}") == ("{}", None)
    assert tracing.untag(f"{tracing.TAG}nothing") == (f"{tracing.TAG}nothing", None)


def test_an_untagged_event_makes_no_deliver_span() -> None:
    exporter = _start()
    with tracing.deliver_span("{}", None, "v_1", 1) as current:
        assert current is None
    assert exporter.get_finished_spans() == ()


def test_client_errors_are_noted_and_faults_fail_the_span() -> None:
    exporter = _start()
    with pytest.raises(NotFound), tracing.span("answered", root=True):
        raise NotFound("no such conversation")
    with pytest.raises(RuntimeError), tracing.span("broken", root=True):
        raise RuntimeError("boom")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["answered"].attributes == {"raydesk.error": "not_found"}
    assert spans["answered"].status.status_code is StatusCode.UNSET
    assert spans["broken"].status.status_code is StatusCode.ERROR
    assert [e.name for e in spans["broken"].events] == ["exception"]


def test_pings_are_not_traced() -> None:
    exporter = _start()
    ping = type("Ping", (), {"type": "ping"})()
    with tracing.frame_span(ping, "g1-1") as current:
        assert current is None
    assert exporter.get_finished_spans() == ()


def test_file_exporter_writes_json_lines(tmp_path: Path) -> None:
    """exporter: file appends one JSON line per span, ids in hex as in traceparents."""
    path = tmp_path / "spans" / "traces.jsonl"
    tracing.start(TracingConfig(exporter="file", path=str(path)), "test", tmp_path)
    with tracing.span("outer", root=True, message_id="m_1"):
        parent = tracing.traceparent()
        with tracing.span("inner"):
            pass
    tracing.shutdown()  # flushes
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["inner", "outer"]
    inner, outer = lines
    assert parent is not None
    assert parent.startswith(f"00-{outer['trace_id']}-{outer['span_id']}-")
    assert inner["parent_span_id"] == outer["span_id"] and outer["parent_span_id"] is None
    assert outer["attributes"] == {"raydesk.message_id": "m_1"}
    assert outer["service"] == "raydesk" and outer["process"] == "test"
    assert outer["pid"] == os.getpid()


def test_file_exporter_default_path_is_in_the_data_dir(tmp_path: Path) -> None:
    tracing.start(TracingConfig(exporter="file"), "test", tmp_path)
    with tracing.span("one", root=True):
        pass
    tracing.shutdown()
    assert (tmp_path / tracing.TRACES_FILE).read_text().count("\n") == 1


def test_tracing_config(tmp_path: Path) -> None:
    """Off by default, also when YAML reads `off` as false; a wrong exporter or ratio
    names its key."""
    path = tmp_path / "config.yaml"
    path.write_text("tracing:\n  exporter: off\n")
    assert load_config(path).tracing.exporter == "off"
    assert Config().tracing == TracingConfig(exporter="off", endpoint=None, path=None,
                                             sample_ratio=1.0, service_name="raydesk")
    assert Config().log_format == "text"
    for overrides, key in (({"exporter": "jaeger"}, "tracing.exporter"),
                           ({"sample_ratio": 1.5}, "tracing.sample_ratio")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, tracing=overrides)
    with pytest.raises(ConfigError, match="log_format"):
        load_config(None, log_format="xml")


def test_otlp_exporter_posts_protobuf_to_the_endpoint(tmp_path: Path) -> None:
    """exporter: otlp sends the spans to the configured OTLP/HTTP endpoint."""
    received: list[tuple[str, str | None, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        tracing.start(TracingConfig(exporter="otlp", endpoint=url), "test", tmp_path)
        with tracing.span("sent", root=True, message_id="m_1"):
            pass
        tracing.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    [(path, content_type, body)] = received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert b"sent" in body and b"m_1" in body


def test_console_exporter_prints_one_line_per_span(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tracing.start(TracingConfig(exporter="console"), "test", tmp_path)
    with tracing.span("printed", root=True), tracing.span("child"):
        pass
    tracing.shutdown()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["child", "printed"]
