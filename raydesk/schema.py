"""The one schema module: every frame and body that crosses the wire (PROTOCOL.md v1).

Client frames are parsed with :func:`parse_client_frame` (one pydantic model per ``type``,
unknown fields refused, no type coercion). Server frames are built with the models below
and serialised once, where they are made: the shard serialises a ``message`` frame before
it is stored, and the stored text is what every client receives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from raydesk.errors import BadRequest

_CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
ClientMsgId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Skill = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Role = Literal["customer", "agent", "bot", "system"]
Status = Literal["bot", "queued", "assigned", "closed"]
Presence = Literal["online", "away", "offline"]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- client frames -------------------------------------------------------------------


class Hello(_Frame):
    type: Literal["hello"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Send(_Frame):
    type: Literal["send"]
    client_msg_id: ClientMsgId
    conversation_id: Id | None = None
    text: Annotated[str, StringConstraints(min_length=1)]


class Sync(_Frame):
    type: Literal["sync"]
    conversation_id: Id
    since: Annotated[int, Field(ge=0)]


class Typing(_Frame):
    type: Literal["typing"]
    conversation_id: Id
    on: bool


class Read(_Frame):
    type: Literal["read"]
    conversation_id: Id
    seq: Annotated[int, Field(ge=0)]


class Ping(_Frame):
    type: Literal["ping"]


class PresenceFrame(_Frame):
    type: Literal["presence"]
    status: Presence


class Accept(_Frame):
    type: Literal["accept"]
    conversation_id: Id


class Transfer(_Frame):
    type: Literal["transfer"]
    conversation_id: Id
    to_agent: Id | None = None
    to_skill: Skill | None = None


class Close(_Frame):
    type: Literal["close"]
    conversation_id: Id


class NoteFrame(_Frame):
    """Extension: a private note, seen by agents only (never the customer)."""

    type: Literal["note"]
    conversation_id: Id
    client_msg_id: ClientMsgId
    text: Annotated[str, StringConstraints(min_length=1)]


ClientFrame = Annotated[
    Hello | Send | Sync | Typing | Read | Ping | PresenceFrame | Accept | Transfer | Close
    | NoteFrame,
    Field(discriminator="type"),
]
_client_frame = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES = frozenset(
    {"hello", "send", "sync", "typing", "read", "ping", "presence", "accept", "transfer", "close",
     "note"}
)


def _describe(error: ValidationError) -> str:
    """One line naming the first wrong field, for a ``bad_request`` message."""
    first = error.errors()[0]
    loc = first["loc"]
    # A discriminated union puts the frame's type first: ("send", "text").
    if loc and loc[0] in CLIENT_FRAME_TYPES:
        loc = loc[1:]
    where = ".".join(str(part) for part in loc)
    return f"{where or 'frame'}: {first['msg']}"


def parse_client_frame(text: str | bytes) -> ClientFrame:
    """Parse one client frame; raise :class:`BadRequest` naming what is wrong."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("frame is not valid JSON") from None
    if not isinstance(raw, dict):
        raise BadRequest("frame must be a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadRequest("type: field required (a string)")
    if kind not in CLIENT_FRAME_TYPES:
        raise BadRequest(f"type: unknown frame type {kind[:40]!r}")
    try:
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from None


def frame_ref(text: str | bytes) -> str | None:
    """The ``client_msg_id`` of a frame, if it has a valid one, for error frames."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    ref = raw.get("client_msg_id") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) and _CLIENT_MSG_ID.fullmatch(ref) else None


# --- server frames -------------------------------------------------------------------


class Sender(_Frame):
    role: Role
    id: str


class BotInfo(_Frame):
    intent: str | None = None
    faq_id: str | None = None
    confidence: float
    model_version: str | None = None


class Message(_Frame):
    """A stored message, exactly as every participant receives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["message"] = "message"
    conversation_id: str
    seq: int
    message_id: str
    client_msg_id: str | None = None
    sender: Sender
    text: str
    ts: int
    bot: BotInfo | None = None
    event: dict[str, Any] | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class ConversationSummary(_Frame):
    conversation_id: str
    status: Status
    last_seq: int


class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    role: Literal["customer", "agent"]
    id: str
    conversations: list[ConversationSummary]
    heartbeat_s: int


class Ack(_Frame):
    type: Literal["ack"] = "ack"
    client_msg_id: str
    conversation_id: str
    seq: int
    message_id: str
    ts: int


class Synced(_Frame):
    type: Literal["synced"] = "synced"
    conversation_id: str
    last_seq: int
    more: bool


class TypingEvent(_Frame):
    type: Literal["typing"] = "typing"
    conversation_id: str
    sender: Sender
    on: bool


class ReadEvent(_Frame):
    type: Literal["read"] = "read"
    conversation_id: str
    sender: Sender
    seq: int


class QueueEvent(_Frame):
    type: Literal["queue"] = "queue"
    conversation_id: str
    position: int
    # Extension: the online agents of the conversation's routing partition (0: the widget
    # says no one is available right now).
    agents_online: int | None = None


class Note(_Frame):
    """Extension: a private note as agents receive it (no seq, not in the log)."""

    type: Literal["note"] = "note"
    conversation_id: str
    note_id: str
    client_msg_id: str
    sender: Sender
    text: str
    ts: int


class Assigned(_Frame):
    type: Literal["assigned"] = "assigned"
    conversation_id: str
    visitor: dict[str, Any]
    last_seq: int


PONG = '{"type":"pong"}'


def dump(frame: BaseModel) -> str:
    """Serialise a server frame (None fields left out, as PROTOCOL.md marks them optional)."""
    return frame.model_dump_json(exclude_none=True)


# --- REST bodies ---------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class VisitorCreate(_Body):
    inbox: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    skill: Skill | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    attributes: Annotated[dict[str, Annotated[str, StringConstraints(max_length=1000)]],
                          Field(max_length=50)] | None = None
    # Extension: the page the visitor is on (the widget sends location.href).
    page: Annotated[str, StringConstraints(max_length=2000)] | None = None


class VisitorCreated(_Body):
    visitor_id: str
    token: str


class AgentCreate(_Body):
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,200}@[^@\s]{1,200}$")]
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    skills: Annotated[list[Skill], Field(max_length=100)] = []
    max_chats: Annotated[int, Field(ge=1, le=1000)] | None = None
    role: Literal["agent", "admin"] = "agent"
    partition: Annotated[str, StringConstraints(max_length=32)] = "default"


class AgentCreated(_Body):
    agent_id: str


class AgentUpdate(_Body):
    """``PATCH /v1/agents/{id}``: every field optional; effective immediately."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    skills: Annotated[list[Skill], Field(max_length=100)] | None = None
    max_chats: Annotated[int, Field(ge=1, le=1000)] | None = None
    presence: Presence | None = None
    partition: Annotated[str, StringConstraints(max_length=32)] | None = None


class AgentInfo(_Body):
    agent_id: str
    email: str
    name: str
    role: str
    skills: list[str]
    max_chats: int
    partition: str


class AgentListed(AgentInfo):
    presence: Presence
    load: int


class AgentList(_Body):
    agents: list[AgentListed]


class VisitorConversation(_Body):
    conversation_id: str
    status: Status
    last_seq: int
    created_ts: int
    updated_ts: int


class VisitorInfo(_Body):
    visitor_id: str
    name: str | None
    email: str | None
    attributes: dict[str, str]
    inbox: str | None
    skill: str | None
    page: str | None
    browser: str | None
    ip: str | None
    created_ts: int
    # Newest first.
    conversations: list[VisitorConversation]


class NoteList(_Body):
    notes: list[dict[str, Any]]


Shortcut = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class CannedCreate(_Body):
    shortcut: Shortcut
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class CannedReply(_Body):
    id: str
    shortcut: str
    text: str


class CannedList(_Body):
    items: list[CannedReply]


class QueueEntry(_Body):
    conversation_id: str
    skill: str | None
    priority: int
    position: int
    waiting_ms: int


class QueuePage(_Body):
    queue: list[QueueEntry]


class Login(_Body):
    email: Annotated[str, StringConstraints(max_length=420)]
    password: Annotated[str, StringConstraints(max_length=1024)]


class LoginResult(_Body):
    agent_id: str
    token: str


class MessagePage(_Body):
    messages: list[dict[str, Any]]
    last_seq: int


class ConversationInfo(_Body):
    conversation_id: str
    status: Status
    last_seq: int
    customer: str
    assignee: str | None = None
    skill: str | None = None
    created_ts: int
    updated_ts: int
    # Extensions: the calling agent's read cursor in it, and the visitor's name.
    read_seq: int = 0
    visitor_name: str | None = None


class ConversationEvent(ConversationInfo):
    """Extension: a conversation opened or changed status or assignee; to every agent."""

    type: Literal["conversation"] = "conversation"


class ConversationPage(_Body):
    conversations: list[ConversationInfo]
    cursor: int


def validate_body(model: type[_Body], raw: bytes) -> Any:
    """Parse a REST body into ``model``; raise :class:`BadRequest` naming the field."""
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None


# --- frames between raydesk's own processes ------------------------------------------

ShardCommandKind = Literal["send", "typing", "read", "close", "assign", "transfer",
                           "requeue"]


@dataclass(frozen=True, slots=True)
class ShardCommand:
    """One command for a conversation, carried to its shard in a batch.

    ``actor_id``/``actor_role`` say who acts: a customer or agent (from a verified token),
    or the router (``actor_role="router"``) for assignments. ``trace`` is the W3C
    traceparent of the span that sent it, when tracing is on (:mod:`raydesk.tracing`).
    """

    kind: ShardCommandKind
    conversation_id: str
    actor_id: str
    actor_role: Literal["customer", "agent", "admin", "router"]
    client_msg_id: str | None = None
    text: str | None = None
    seq: int | None = None
    on: bool | None = None
    to_agent: str | None = None
    to_skill: str | None = None
    reason: dict[str, Any] | None = None
    trace: str | None = None


class FaqItem(_Body):
    id: Id
    question: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    answer: Annotated[str, StringConstraints(min_length=1, max_length=20000)]
    alternates: Annotated[list[Annotated[str, StringConstraints(min_length=1,
                                                                max_length=2000)]],
                          Field(max_length=100)] = []


class FaqReplace(_Body):
    items: Annotated[list[FaqItem], Field(max_length=10000)]


class FaqImport(_Body):
    """``POST /v1/faq/import``: a CSV or YAML file's text, parsed by the server."""

    format: Literal["csv", "yaml"]
    content: Annotated[str, StringConstraints(min_length=1, max_length=20_000_000)]


class FaqList(_Body):
    items: list[FaqItem]


class BotTest(_Body):
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class BotTestResult(_Body):
    """What the bot would do with a question (``POST /v1/bot/test``)."""

    action: Literal["answer", "clarify", "handoff"]
    text: str
    intent: str | None
    faq_id: str | None
    confidence: float
    reason: str | None
    model_version: str | None


class FaqReplaced(_Body):
    count: int
    # False: stored, but the bot could not re-index yet (it will on its next question).
    indexed: bool = True


class ModelChoice(_Body):
    """Which bot model runs: the Assistant deployment's ``user_config``, and the body of
    ``PUT /v1/bot/model``. ``model`` is a builder's import path ("module:function") or a
    model directory holding a ``model.yaml``."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:+-]{1,64}$")]
    options: dict[str, Any] = {}


class BotStatus(_Body):
    enabled: bool
    model: ModelChoice | None = None
    faq_items: int | None = None


class HumanAnswer(_Body):
    seq: int
    message_id: str
    text: str
    agent_id: str
    ts: int


class UnansweredQuestion(_Body):
    """A question the bot did not answer, with its guess and the human answer after it."""

    conversation_id: str
    seq: int
    message_id: str
    text: str
    ts: int
    inbox: str | None = None
    action: str
    reason: str | None = None
    intent: str | None = None
    faq_id: str | None = None
    confidence: float
    model_version: str | None = None
    answer: HumanAnswer | None = None


class UnansweredPage(_Body):
    questions: list[UnansweredQuestion]
    # Pass as ``offset`` for the next page; equal to the total when this was the last.
    next_offset: int
    total: int
