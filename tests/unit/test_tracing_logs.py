"""Log lines: JSON with the ids of the work at hand and of the current span; text as
before."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from raydesk import logs, tracing
from raydesk.config import TracingConfig


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go, through the JSON handler, into a string."""
    out = io.StringIO()
    handler = logs.handler("json", "shard s0")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logger = logging.getLogger("raydesk.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    tracing.shutdown()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_has_the_ids_in_context(capture: tuple[logging.Logger,
                                                         io.StringIO]) -> None:
    """Ids set by the session or shard appear on every line of that task, and only there."""
    logger, out = capture

    def work() -> None:
        logs.CONNECTION_ID.set("g1-7")
        logs.PARTICIPANT_ID.set("v_1")
        logs.CONVERSATION_ID.set("c_1")
        logger.info("connection %s opened by %s", "g1-7", "customer v_1")

    contextvars.copy_context().run(work)
    logger.warning("outside")
    inside, outside = _lines(out)
    assert inside["msg"] == "connection g1-7 opened by customer v_1"
    assert (inside["level"], inside["logger"], inside["process"]) == (
        "INFO", "raydesk.test_logs", "shard s0")
    assert (inside["connection_id"], inside["participant_id"], inside["conversation_id"]) \
        == ("g1-7", "v_1", "c_1")
    assert str(inside["ts"]).endswith("Z")
    assert "connection_id" not in outside and "trace_id" not in outside


def test_extra_wins_over_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = capture
    token = logs.CONVERSATION_ID.set("c_context")
    try:
        logger.info("x", extra={"conversation_id": "c_extra"})
    finally:
        logs.CONVERSATION_ID.reset(token)
    assert _lines(out)[0]["conversation_id"] == "c_extra"


def test_json_line_has_the_current_span(capture: tuple[logging.Logger,
                                                       io.StringIO]) -> None:
    logger, out = capture
    exporter = InMemorySpanExporter()
    tracing.start(TracingConfig(exporter="file"), "test", Path("."), exporter=exporter)
    with tracing.span("work", root=True):
        logger.info("inside a span")
    [span] = exporter.get_finished_spans()
    [line] = _lines(out)
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")


def test_exceptions_are_one_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = capture
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    assert len(out.getvalue().splitlines()) == 1
    assert "ValueError: boom" in str(_lines(out)[0]["exc"])


def test_text_format() -> None:
    out = io.StringIO()
    handler = logs.handler("text", "gateway")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    record = logging.LogRecord("raydesk.gateway", logging.INFO, __file__, 1,
                               "connection %s opened", ("g1-1",), None)
    handler.handle(record)
    assert out.getvalue().rstrip().endswith("INFO raydesk.gateway: connection g1-1 opened")


async def test_ids_stay_with_their_task() -> None:
    """The shard's commands run concurrently, each in its task: no id leaks to another."""
    seen: dict[str, str | None] = {}

    async def command(cid: str) -> None:
        logs.CONVERSATION_ID.set(cid)
        await asyncio.sleep(0)
        seen[cid] = logs.CONVERSATION_ID.get()

    await asyncio.gather(*(command(f"c_{i}") for i in range(5)))
    assert seen == {f"c_{i}": f"c_{i}" for i in range(5)}
    assert logs.CONVERSATION_ID.get() is None
