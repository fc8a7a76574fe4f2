"""raydesk.schema: client frame parsing, error refs, server frames and REST bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from raydesk import schema
from raydesk.errors import BadRequest
from raydesk.schema import (
    AgentCreate,
    BotInfo,
    FaqReplace,
    Login,
    Message,
    Sender,
    VisitorCreate,
    frame_ref,
    parse_client_frame,
    validate_body,
)

VALID_FRAMES: list[tuple[dict[str, Any], type[Any]]] = [
    ({"type": "hello", "token": "abc.def.ghi"}, schema.Hello),
    ({"type": "send", "client_msg_id": "m-1", "text": "hi"}, schema.Send),
    ({"type": "send", "client_msg_id": "A_b.c:d-9", "conversation_id": "c1", "text": "hi"},
     schema.Send),
    ({"type": "sync", "conversation_id": "c1", "since": 0}, schema.Sync),
    ({"type": "sync", "conversation_id": "c1", "since": 41}, schema.Sync),
    ({"type": "typing", "conversation_id": "c1", "on": True}, schema.Typing),
    ({"type": "typing", "conversation_id": "c1", "on": False}, schema.Typing),
    ({"type": "read", "conversation_id": "c1", "seq": 7}, schema.Read),
    ({"type": "ping"}, schema.Ping),
    ({"type": "presence", "status": "online"}, schema.PresenceFrame),
    ({"type": "presence", "status": "away"}, schema.PresenceFrame),
    ({"type": "presence", "status": "offline"}, schema.PresenceFrame),
    ({"type": "accept", "conversation_id": "c1"}, schema.Accept),
    ({"type": "transfer", "conversation_id": "c1", "to_agent": "a2"}, schema.Transfer),
    ({"type": "transfer", "conversation_id": "c1", "to_skill": "billing"}, schema.Transfer),
    ({"type": "close", "conversation_id": "c1"}, schema.Close),
    ({"type": "note", "conversation_id": "c1", "client_msg_id": "n1", "text": "VIP"},
     schema.NoteFrame),
]


def _bad(text: str | bytes) -> str:
    with pytest.raises(BadRequest) as info:
        parse_client_frame(text)
    assert info.value.code == "bad_request"
    return info.value.message


# --- valid frames ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "model"), VALID_FRAMES,
                         ids=[f"{raw['type']}-{i}" for i, (raw, _) in enumerate(VALID_FRAMES)])
def test_every_client_frame_type_parses(raw: dict[str, Any], model: type[Any]) -> None:
    """Each valid client frame parses into its own model with every field kept."""
    frame = parse_client_frame(json.dumps(raw))
    assert type(frame) is model
    assert frame.model_dump(exclude_none=True) == raw


def test_valid_frames_cover_every_client_type() -> None:
    """The table above exercises every client frame type the schema declares."""
    assert {raw["type"] for raw, _ in VALID_FRAMES} == schema.CLIENT_FRAME_TYPES


def test_bytes_frames_parse_like_text() -> None:
    """A frame given as UTF-8 bytes parses the same as the text."""
    frame = parse_client_frame(b'{"type": "send", "client_msg_id": "x", "text": "\xc3\xa9"}')
    assert isinstance(frame, schema.Send)
    assert frame.text == "é"


def test_send_without_conversation_id_is_allowed() -> None:
    """A customer's send may leave out conversation_id (it is then None)."""
    frame = parse_client_frame('{"type": "send", "client_msg_id": "x", "text": "hi"}')
    assert isinstance(frame, schema.Send)
    assert frame.conversation_id is None


def test_client_msg_id_of_64_chars_is_accepted() -> None:
    """A client_msg_id of exactly 64 allowed characters is valid."""
    cmid = "a" * 64
    frame = parse_client_frame(json.dumps({"type": "send", "client_msg_id": cmid, "text": "x"}))
    assert isinstance(frame, schema.Send)
    assert frame.client_msg_id == cmid


def test_parsed_frames_are_frozen() -> None:
    """Parsed frames cannot be changed after validation."""
    frame = parse_client_frame('{"type": "ping"}')
    with pytest.raises(ValidationError):
        frame.type = "ping"  # type: ignore[misc,assignment,unused-ignore]


# --- malformed frames ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "not json", "{", "{'type': 'ping'}", b"\xff\xfe\x00"])
def test_non_json_is_bad_request(text: str | bytes) -> None:
    """Text that is not JSON is a bad_request saying so."""
    assert "json" in _bad(text).lower()


@pytest.mark.parametrize("text", ["[]", '["ping"]', "42", '"ping"', "null", "true"])
def test_non_object_is_bad_request(text: str) -> None:
    """A JSON value that is not an object is a bad_request saying it must be an object."""
    assert "object" in _bad(text)


@pytest.mark.parametrize("text", ["{}", '{"token": "t"}', '{"type": 5}', '{"type": null}',
                                  '{"type": ["ping"]}'])
def test_missing_or_non_string_type_is_bad_request(text: str) -> None:
    """A frame without a string type is a bad_request naming the type field."""
    assert _bad(text).startswith("type")


@pytest.mark.parametrize("kind", ["pong", "welcome", "message", "HELLO", ""])
def test_unknown_type_is_bad_request(kind: str) -> None:
    """An unknown frame type (server-only types included) is a bad_request naming type."""
    message = _bad(json.dumps({"type": kind}))
    assert message.startswith("type")
    assert "unknown" in message


def test_unknown_type_echo_is_truncated() -> None:
    """A huge unknown type is not echoed back whole in the error message."""
    message = _bad(json.dumps({"type": "x" * 10_000}))
    assert len(message) < 200


@pytest.mark.parametrize(("raw", "field"), [
    ({"type": "hello"}, "token"),
    ({"type": "send", "text": "hi"}, "client_msg_id"),
    ({"type": "send", "client_msg_id": "m"}, "text"),
    ({"type": "sync", "since": 0}, "conversation_id"),
    ({"type": "sync", "conversation_id": "c"}, "since"),
    ({"type": "typing", "conversation_id": "c"}, "on"),
    ({"type": "read", "conversation_id": "c"}, "seq"),
    ({"type": "presence"}, "status"),
    ({"type": "accept"}, "conversation_id"),
    ({"type": "transfer"}, "conversation_id"),
    ({"type": "close"}, "conversation_id"),
])
def test_missing_field_is_bad_request_naming_it(raw: dict[str, Any], field: str) -> None:
    """A missing required field is a bad_request whose message names that field."""
    message = _bad(json.dumps(raw))
    assert message.startswith(f"{field}:")
    assert "required" in message.lower()


@pytest.mark.parametrize(("raw", "field"), [
    ({"type": "send", "client_msg_id": "m", "text": 5}, "text"),
    ({"type": "send", "client_msg_id": "m", "text": None}, "text"),
    ({"type": "send", "client_msg_id": "m", "text": ""}, "text"),
    ({"type": "send", "client_msg_id": 7, "text": "x"}, "client_msg_id"),
    ({"type": "send", "client_msg_id": "m", "text": "x", "conversation_id": 3},
     "conversation_id"),
    ({"type": "typing", "conversation_id": "c", "on": "yes"}, "on"),
    ({"type": "typing", "conversation_id": "c", "on": 1}, "on"),
    ({"type": "sync", "conversation_id": "c", "since": -1}, "since"),
    ({"type": "sync", "conversation_id": "c", "since": "3"}, "since"),
    ({"type": "sync", "conversation_id": "c", "since": 1.5}, "since"),
    ({"type": "sync", "conversation_id": "c", "since": True}, "since"),
    ({"type": "read", "conversation_id": "c", "seq": -1}, "seq"),
    ({"type": "read", "conversation_id": "c", "seq": "1"}, "seq"),
    ({"type": "presence", "status": "busy"}, "status"),
    ({"type": "hello", "token": ""}, "token"),
    ({"type": "hello", "token": "t" * 4097}, "token"),
    ({"type": "accept", "conversation_id": "has space"}, "conversation_id"),
    ({"type": "accept", "conversation_id": ""}, "conversation_id"),
    ({"type": "transfer", "conversation_id": "c", "to_skill": "a:b"}, "to_skill"),
    ({"type": "transfer", "conversation_id": "c", "to_agent": "a/b"}, "to_agent"),
])
def test_mistyped_field_is_bad_request_naming_it(raw: dict[str, Any], field: str) -> None:
    """A field of the wrong type or out of range is a bad_request naming that field."""
    assert _bad(json.dumps(raw)).startswith(f"{field}:")


@pytest.mark.parametrize("raw", [
    {"type": "ping", "extra": 1},
    {"type": "send", "client_msg_id": "m", "text": "x", "priority": "high"},
    {"type": "hello", "token": "t", "role": "admin"},
])
def test_unknown_extra_field_is_bad_request_naming_it(raw: dict[str, Any]) -> None:
    """An unknown field is refused with a bad_request naming the unknown field."""
    extra = (set(raw) - {"type", "client_msg_id", "text", "token"}).pop()
    assert _bad(json.dumps(raw)).startswith(f"{extra}:")


def test_unknown_field_named_like_a_frame_type_is_named() -> None:
    """An unknown field whose name is also a frame type name is still named in the error."""
    assert _bad('{"type": "ping", "close": true}').startswith("close:")


@pytest.mark.parametrize("cmid", [
    "",
    "a" * 65,
    "has space",
    "slash/",
    "emoji\U0001f600",
    "newline\n",
    "é",
    "semi;colon",
])
def test_bad_client_msg_id_is_bad_request_naming_it(cmid: str) -> None:
    """A client_msg_id that is empty, over 64 chars or has other chars is refused."""
    raw = {"type": "send", "client_msg_id": cmid, "text": "x"}
    assert _bad(json.dumps(raw)).startswith("client_msg_id:")


# --- frame_ref -------------------------------------------------------------------------


def test_frame_ref_returns_client_msg_id() -> None:
    """frame_ref returns the client_msg_id of a frame, even one that is otherwise invalid."""
    assert frame_ref('{"type": "send", "client_msg_id": "m-1", "text": 5}') == "m-1"
    assert frame_ref(b'{"type": "bogus", "client_msg_id": "m-2"}') == "m-2"


@pytest.mark.parametrize("text", [
    "not json",
    b"\xff",
    "[]",
    '"m-1"',
    '{"type": "ping"}',
    '{"client_msg_id": 5}',
    '{"client_msg_id": null}',
    '{"client_msg_id": ""}',
    json.dumps({"client_msg_id": "a" * 65}),
])
def test_frame_ref_is_none_without_a_usable_id(text: str | bytes) -> None:
    """frame_ref is None for non-JSON, non-objects, and absent, non-string or bad-length ids."""
    assert frame_ref(text) is None


def test_frame_ref_is_none_for_an_id_with_forbidden_characters() -> None:
    """frame_ref returns None for a client_msg_id with characters outside [A-Za-z0-9_.:-]."""
    assert frame_ref('{"client_msg_id": "<script>"}') is None


# --- server frames ---------------------------------------------------------------------


def _message(**fields: Any) -> Message:
    base: dict[str, Any] = {"conversation_id": "c1", "seq": 3, "message_id": "m3",
                            "sender": Sender(role="customer", id="v1"), "text": "hi",
                            "ts": 1_700_000_000_000}
    return Message(**{**base, **fields})


def test_message_to_json_leaves_out_none_fields() -> None:
    """Message.to_json omits client_msg_id, bot and event when they are None."""
    out = json.loads(_message().to_json())
    assert out == {"type": "message", "conversation_id": "c1", "seq": 3, "message_id": "m3",
                   "sender": {"role": "customer", "id": "v1"}, "text": "hi",
                   "ts": 1_700_000_000_000}
    assert "null" not in _message().to_json()


def test_message_to_json_keeps_set_fields_and_drops_nested_none() -> None:
    """Set optional fields are kept; None fields of the nested bot info are dropped too."""
    msg = _message(client_msg_id="x-1", sender=Sender(role="bot", id="bot"),
                   bot=BotInfo(faq_id="faq-2", confidence=0.93))
    out = json.loads(msg.to_json())
    assert out["client_msg_id"] == "x-1"
    assert out["sender"] == {"role": "bot", "id": "bot"}
    assert out["bot"] == {"faq_id": "faq-2", "confidence": 0.93}


def test_message_round_trips_through_json() -> None:
    """A message serialised with to_json validates back into an equal message."""
    msg = _message(event={"kind": "opened", "status": "queued"},
                   sender=Sender(role="system", id="raydesk"))
    assert Message.model_validate_json(msg.to_json()) == msg


def test_message_refuses_unknown_fields_and_roles() -> None:
    """A server message refuses an unknown field or sender role."""
    with pytest.raises(ValidationError):
        _message(extra="x")
    with pytest.raises(ValidationError):
        Sender(role="robot", id="x")  # type: ignore[arg-type]


def test_dump_leaves_out_none_fields() -> None:
    """schema.dump serialises a server frame without its None fields."""
    out = json.loads(schema.dump(schema.Ack(client_msg_id="m", conversation_id="c", seq=2,
                                            message_id="id", ts=5)))
    assert out == {"type": "ack", "client_msg_id": "m", "conversation_id": "c", "seq": 2,
                   "message_id": "id", "ts": 5}


# --- REST bodies -----------------------------------------------------------------------


def _bad_body(model: type[Any], raw: bytes) -> str:
    with pytest.raises(BadRequest) as info:
        validate_body(model, raw)
    return info.value.message


def test_validate_body_parses_a_valid_body() -> None:
    """A valid body parses into its model with defaults filled in."""
    body = validate_body(AgentCreate, json.dumps(
        {"email": "a@example.com", "password": "s3cret-pass", "name": "Ann",
         "skills": ["billing"]}).encode())
    assert isinstance(body, AgentCreate)
    assert body.skills == ["billing"]
    assert body.role == "agent"
    assert body.max_chats is None


def test_validate_body_accepts_an_empty_object() -> None:
    """A visitor body of {} is valid: every field is optional."""
    body = validate_body(VisitorCreate, b"{}")
    assert isinstance(body, VisitorCreate)
    assert body.skill is None


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff", b"{"])
def test_validate_body_refuses_empty_and_non_json(raw: bytes) -> None:
    """An empty or non-JSON body is a bad_request."""
    message = _bad_body(Login, raw)
    assert "JSON" in message


@pytest.mark.parametrize("raw", [b"[]", b"null", b"3", b'"x"'])
def test_validate_body_refuses_non_objects(raw: bytes) -> None:
    """A JSON body that is not an object is a bad_request saying so."""
    assert "object" in _bad_body(Login, raw)


@pytest.mark.parametrize(("model", "body", "field"), [
    (Login, {"password": "x"}, "email"),
    (Login, {"email": "a@b", "password": "x", "remember": True}, "remember"),
    (AgentCreate, {"email": "not-an-email", "password": "longenough", "name": "A"}, "email"),
    (AgentCreate, {"email": "a@b", "password": "short", "name": "A"}, "password"),
    (AgentCreate, {"email": "a@b", "password": "longenough", "name": "A", "max_chats": "5"},
     "max_chats"),
    (AgentCreate, {"email": "a@b", "password": "longenough", "name": "A", "max_chats": 0},
     "max_chats"),
    (AgentCreate, {"email": "a@b", "password": "longenough", "name": "A", "role": "root"},
     "role"),
    (AgentCreate, {"email": "a@b", "password": "longenough", "name": "A",
                   "skills": ["ok", "bad skill"]}, "skills.1"),
    (VisitorCreate, {"skill": "bad skill"}, "skill"),
    (VisitorCreate, {"attributes": {"plan": 3}}, "attributes.plan"),
    (FaqReplace, {"items": [{"id": "f1", "question": "q", "answer": ""}]}, "items.0.answer"),
])
def test_validate_body_names_the_wrong_field(model: type[Any], body: dict[str, Any],
                                             field: str) -> None:
    """A missing, extra or invalid field is a bad_request whose message names its path."""
    assert _bad_body(model, json.dumps(body).encode()).startswith(f"{field}:")
