"""Logging for every raydesk process: one format, and the ids of the work at hand on
every line.

Each process (gateway replica, shard, router, the bot, ``raydesk serve``) calls
:func:`configure` once at start (through :func:`raydesk.tracing.setup`). The ids come from
context variables that the code doing the work sets: a connection's session sets
``connection_id`` and ``participant_id`` for the life of the connection and
``conversation_id`` for each frame; a shard sets ``conversation_id`` and
``participant_id`` (who acts) for each command. An ``extra={"conversation_id": ...}``
on a call wins. When a span is current its ``trace_id`` and ``span_id`` are added, so a
log line leads to its trace.

Lines are per connection (opened, closed) and per failure, never per message: at chat
rates a line per message would cost more than the message.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Literal

from opentelemetry import trace

CONVERSATION_ID: ContextVar[str | None] = ContextVar("raydesk_conversation_id",
                                                     default=None)
PARTICIPANT_ID: ContextVar[str | None] = ContextVar("raydesk_participant_id", default=None)
CONNECTION_ID: ContextVar[str | None] = ContextVar("raydesk_connection_id", default=None)

IDS = (("conversation_id", CONVERSATION_ID), ("participant_id", PARTICIPANT_ID),
       ("connection_id", CONNECTION_ID))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Puts the ids of the work at hand, and the current span's, on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in IDS:
            if getattr(record, name, None) is None:  # extra= wins
                setattr(record, name, var.get())
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, process, then each id
    that is known (conversation_id, participant_id, connection_id, trace_id, span_id),
    then exc (the traceback) if there is one."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z", "level": record.levelname,
            "logger": record.name, "msg": record.getMessage(), "process": self._process,
        }
        for name in ("conversation_id", "participant_id", "connection_id", "trace_id",
                     "span_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def handler(log_format: Literal["text", "json"], process: str) -> logging.Handler:
    """A stderr handler in the chosen format, with the ids filter."""
    out = logging.StreamHandler()
    out.setFormatter(JsonFormatter(process) if log_format == "json"
                     else logging.Formatter(TEXT_FORMAT))
    out.addFilter(ContextFilter())
    return out


def configure(level: str, log_format: Literal["text", "json"], process: str) -> None:
    """Send this process's log records (every logger that propagates to the root) to
    stderr in ``log_format``, replacing the root's handlers: Ray writes a worker's stderr
    to its log file, and a second handler would print each line twice."""
    logging.basicConfig(level=level, handlers=[handler(log_format, process)], force=True)
