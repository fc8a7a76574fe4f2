"""Tracing: an OpenTelemetry trace per client frame, across the processes it crosses.

A message's trace (docs/explanation/tracing.md has the picture and the reasons)::

    gateway receive   (gateway, SERVER)    the frame, from parsed to answered
    └ shard append    (shard, SERVER)      its command in the conversation's mailbox
      └ store commit  (shard, CLIENT)      its commit: waiting for the group, the round trip
        └ deliver     (each gateway, CONSUMER)  the stored event to the local connections

Across the Ray call the W3C ``traceparent`` rides in the :class:`ShardCommand` (commands
travel in batches, so each carries its own). Across pub/sub it rides in front of the
published event, only when the span is sampled; the gateway strips it before anything
reaches a client, and the stored message is never changed.

Sampling is decided once, by the gateway, before any span exists: a frame left out costs
a random number, and no later hop makes a span without a sampled parent (so a trace is
never partial). With ``tracing.exporter: off`` (the default) no tracer exists: every
helper here returns at once and no span object is made. Each process calls :func:`setup`
first thing.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import socket
import sys
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from raydesk import logs
from raydesk.errors import RaydeskError

if TYPE_CHECKING:
    from raydesk.config import Config, TracingConfig
    from raydesk.schema import Message, ShardCommand
    from raydesk.store import Commit

# Spans leave a process in batches this often: they show up within a second or two, and
# a process that is killed outright loses at most that much.
EXPORT_EVERY_MS = 1000
# In front of a published event that carries a traceparent: never the first character of
# a JSON frame (always "{"), so an untagged event is recognised by one comparison.
TAG = "\x1e"
TRACES_FILE = "traces.jsonl"

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_sample_ratio = 1.0
_PROPAGATOR = TraceContextTextMapPropagator()
# Returned by every helper when tracing is off: one shared object, nothing allocated.
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()
_at_exit = False


def setup(config: Config, process_name: str) -> None:
    """Set this process up from the config: its logs (:mod:`raydesk.logs`) and, unless
    ``tracing.exporter`` is off, a tracer. Called first thing in every actor and replica;
    called again, it replaces the earlier set-up (flushing its spans)."""
    logs.configure(config.log_level, config.log_format, process_name)
    start(config.tracing, process_name, config.data_path)


def start(tracing: TracingConfig, process_name: str, data_path: Path,
          exporter: SpanExporter | None = None) -> None:
    """Start tracing as configured; ``exporter`` (tests) replaces the configured one and
    exports each span as it ends."""
    global _tracer, _provider, _at_exit, _sample_ratio
    shutdown()
    if exporter is not None:
        processor: Any = SimpleSpanProcessor(exporter)
    else:
        configured = _exporter(tracing, data_path)
        if configured is None:
            return
        processor = BatchSpanProcessor(configured, schedule_delay_millis=EXPORT_EVERY_MS)
    resource = Resource.create({
        "service.name": tracing.service_name, "raydesk.process": process_name,
        "process.pid": os.getpid(), "host.name": socket.gethostname()})
    # Sampled before a root span is made (_sampled); every span made is recorded.
    _sample_ratio = tracing.sample_ratio
    _provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("raydesk")
    if not _at_exit:
        atexit.register(shutdown)
        _at_exit = True


def shutdown() -> None:
    """Stop tracing in this process, exporting the spans not sent yet."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def _in_trace() -> bool:
    """Whether a sampled span is current. It may have ended: a task started inside a span
    (the bot's turn) outlives it, and its work still belongs to the trace."""
    return bool(trace.get_current_span().get_span_context().trace_flags.sampled)


def _sampled() -> bool:
    """Whether a new trace is recorded. Decided before any span exists: a span the SDK
    makes and then drops still costs about a third of a recorded one, so a trace left out
    makes none."""
    return _sample_ratio >= 1.0 or random.random() < _sample_ratio


def _exporter(tracing: TracingConfig, data_path: Path) -> SpanExporter | None:
    if tracing.exporter == "console":
        return ConsoleSpanExporter(out=sys.stdout,  # the SDK's default is bound at import
                                   formatter=lambda span: span.to_json(indent=None) + "\n")
    if tracing.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=tracing.endpoint)
    if tracing.exporter == "file":
        return JsonLinesExporter(Path(tracing.path) if tracing.path
                                 else data_path / TRACES_FILE)
    return None


# --- spans -------------------------------------------------------------------------------

def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    return {f"raydesk.{key}": value for key, value in values.items() if value is not None}


class _Scope:
    """A started span, current while the block runs and ended after it (what the SDK's
    ``start_as_current_span`` does, without its two generator layers: a few us a span)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: object) -> None:
        otel_context.detach(self._token)
        if isinstance(exc, RaydeskError):  # the client's error, answered: not our fault
            self._span.set_attribute("raydesk.error", exc.code)
        elif exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.end()


def _span(tracer: trace.Tracer, name: str, kind: SpanKind, parent: Context | None,
          attributes: dict[str, Any]) -> _Scope:
    return _Scope(tracer.start_span(name, context=parent, kind=kind,
                                    attributes=_attributes(attributes)))


def span(name: str, kind: SpanKind = SpanKind.INTERNAL, root: bool = False,
         **attributes: Any) -> AbstractContextManager[Span | None]:
    """A span around a block, current inside it, with ``raydesk.<key>`` attributes (None
    values left out): a child of the current span, and none if no span is current (that
    work's trace was not sampled); ``root``: a new trace, if sampled. A
    :class:`RaydeskError` (answered to the client) is noted as ``raydesk.error``, anything
    else marks the span failed."""
    if _tracer is None:
        return _NO_SPAN
    if root:
        if not _sampled():
            return _NO_SPAN
        return _span(_tracer, name, kind, Context(), attributes)
    if not _in_trace():
        return _NO_SPAN
    return _span(_tracer, name, kind, None, attributes)


def annotate(**attributes: Any) -> None:
    """Add ``raydesk.<key>`` attributes to the current span (those learnt late, such as
    the message id a send got)."""
    if _tracer is None:
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attributes(attributes))


def frame_span(frame: Any, connection_id: str) -> AbstractContextManager[Span | None]:
    """``gateway receive``: a client frame being handled. Pings are left out: a span per
    heartbeat of every idle connection would bury the traces of the work."""
    if _tracer is None or frame.type == "ping" or not _sampled():
        return _NO_SPAN
    return _span(_tracer, "gateway receive", SpanKind.SERVER, Context(), {
        "frame_type": frame.type, "connection_id": connection_id,
        "conversation_id": getattr(frame, "conversation_id", None)})


def command_span(command: ShardCommand) -> AbstractContextManager[Span | None]:
    """``shard append`` (``shard <kind>`` for commands other than send): a command in its
    conversation's mailbox, the child of the span that sent it; none if no sampled span
    did (the router's assignments and REST calls are not traced)."""
    if _tracer is None or command.trace is None:
        return _NO_SPAN
    name = "shard append" if command.kind == "send" else f"shard {command.kind}"
    return _span(_tracer, name, SpanKind.SERVER, _remote_parent(command.trace), {
        "conversation_id": command.conversation_id, "participant_id": command.actor_id})


def commit_span(commit: Commit, message: Message | None) -> AbstractContextManager[Span | None]:
    """``store commit``: one command's commit, from submitting it to the group commit
    until the store answered (so it includes the wait for the group's round trip)."""
    if _tracer is None:
        return _NO_SPAN
    return span("store commit", SpanKind.CLIENT, conversation_id=commit.cid,
                message_id=message.message_id if message else None)


def deliver_span(payload: str, traceparent: str | None, participant_id: str,
                 recipients: int) -> AbstractContextManager[Span | None]:
    """``deliver``: a published event handed to this gateway's connections of one
    participant; the child of the commit that published it, when that was traced."""
    if _tracer is None or traceparent is None:
        return _NO_SPAN
    try:  # only for traced events: the untraced path never parses the frame
        frame = json.loads(payload)
    except ValueError:
        frame = {}
    return _span(_tracer, "deliver", SpanKind.CONSUMER, _remote_parent(traceparent), {
        "frame_type": frame.get("type"), "conversation_id": frame.get("conversation_id"),
        "message_id": frame.get("message_id"), "participant_id": participant_id,
        "recipients": recipients})


# --- propagation -------------------------------------------------------------------------

def traceparent() -> str | None:
    """The W3C traceparent of the current span, to carry to another process; None if
    tracing is off or no span is current (then the next process makes none either)."""
    if _tracer is None or not _in_trace():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def _remote_parent(traceparent: str) -> Context:
    """The context a traceparent names (an empty one, so a new trace, if malformed)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=Context())


def tag_events(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Events to publish with the current span's traceparent in front, if a span is
    current (so each gateway's ``deliver`` joins the trace); unchanged otherwise."""
    parent = traceparent()
    if parent is None:
        return events
    prefix = f"{TAG}{parent}{TAG}"
    return [(name, prefix + payload) for name, payload in events]


def untag(payload: str) -> tuple[str, str | None]:
    """A published event as clients receive it, and the traceparent it carried if any.
    Done whether or not this process traces: a client never sees the tag."""
    if not payload.startswith(TAG):
        return payload, None
    end = payload.find(TAG, 1)
    if end < 0:
        return payload, None
    return payload[end + 1:], payload[1:end]


# --- the file exporter ---------------------------------------------------------------------

class JsonLinesExporter(SpanExporter):
    """Appends spans as JSON lines to one file that every process of the node shares.

    Each batch is one ``write`` to a file opened with ``O_APPEND``, so lines of different
    processes never interleave. A line: name, trace_id, span_id, parent_span_id (hex, as
    in logs and traceparents), kind, start_ns, end_ns, status, attributes, links,
    events, service, process, pid.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_record(s), separators=(",", ":"), default=str) + "\n"
                       for s in spans).encode()
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as the file exporter writes it."""
    context = span.get_span_context()
    assert context is not None
    resource = span.resource.attributes
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "start_ns": span.start_time, "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [{"trace_id": format(link.context.trace_id, "032x"),
                   "span_id": format(link.context.span_id, "016x"),
                   "attributes": dict(link.attributes or {})} for link in span.links],
        "events": [{"name": event.name, "ts_ns": event.timestamp,
                    "attributes": dict(event.attributes or {})} for event in span.events],
        "service": resource.get("service.name"),
        "process": resource.get("raydesk.process"),
        "pid": resource.get("process.pid"),
    }
