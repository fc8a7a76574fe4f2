"""What the agent console needs beyond PROTOCOL.md v1 (extensions, in protocol.md):

- ``GET /v1/me`` and ``GET /v1/agents``: who is logged in; every agent with presence and
  load (transfer targets, the admin pages, the live overview).
- ``GET /v1/visitors/{id}``: the visitor panel (what the widget told, the browser and
  address it came from, its earlier conversations).
- ``GET/POST/DELETE /v1/canned``: canned replies, shared by a team (routing partition).
- private notes: the ``note`` frame (:func:`add_note`) and ``GET
  /v1/conversations/{id}/notes``; agents only, never delivered to a customer.

Every route takes an agent token (any role) and answers customers ``403``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Response

from raydesk import store as keys
from raydesk.auth import Bearer, Principal
from raydesk.config import DEFAULT_PARTITION
from raydesk.conversation import Conversation
from raydesk.errors import Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable
from raydesk.schema import (
    AgentInfo,
    AgentList,
    AgentListed,
    CannedCreate,
    CannedList,
    CannedReply,
    Note,
    NoteFrame,
    NoteList,
    Sender,
    VisitorConversation,
    VisitorInfo,
    dump,
)

VISITOR_CONVERSATIONS = 20
NOTES_PAGE = 1000

# Stores a note once per (author, client_msg_id): a resend gets the note first stored.
# KEYS: 1 dedupe hash, 2 notes list. ARGV: 1 dedupe field, 2 the note frame.
_ADD_NOTE = """
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then return {0, prev} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""

# A shortcut is unique in its team, whatever its case. KEYS: 1 replies hash, 2 shortcut index.
# ARGV: 1 id, 2 shortcut, 3 the reply (JSON).
_ADD_CANNED = """
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def agent_info(agent_id: str, fields: dict[str, str]) -> AgentInfo:
    return AgentInfo(agent_id=agent_id, email=fields["email"], name=fields["name"],
                     role=fields.get("role", "agent"),
                     skills=json.loads(fields.get("skills") or "[]"),
                     max_chats=int(fields["max_chats"]),
                     partition=fields.get("partition") or DEFAULT_PARTITION)


async def conversation_of(core: Any, cid: str) -> Conversation:
    state = await core.store.conversation_state(cid)
    if not state:
        raise NotFound(f"conversation {cid} not found")
    return Conversation.from_state(cid, state)


async def add_note(core: Any, who: Principal, frame: NoteFrame) -> str | None:
    """Store a private note and deliver it to the connections of its author and of the
    conversation's assignee. Returns the note frame when it was stored before (a resend),
    for the sender's connection alone; None when it was delivered."""
    if not who.is_agent:
        raise Forbidden("notes are for agents only")
    limit = core.config.limits.max_text_chars
    if len(frame.text) > limit:
        raise TooLarge(f"text: longer than {limit} characters", frame.client_msg_id)
    conv = await conversation_of(core, frame.conversation_id)
    note = Note(conversation_id=conv.id, note_id=f"n_{uuid.uuid4().hex[:20]}",
                client_msg_id=frame.client_msg_id, sender=Sender(role="agent", id=who.id),
                text=frame.text, ts=int(time.time() * 1000))
    new, stored = await core.store.call(
        "EVAL", _ADD_NOTE, 2, keys.note_dedupe_key(conv.id), keys.notes_key(conv.id),
        f"{who.id}|{frame.client_msg_id}", dump(note))
    if not int(new):
        return str(stored)
    readers = {who.id, *([conv.assignee] if conv.assignee else [])}
    await core.store.publish([(keys.channel(reader), str(stored)) for reader in sorted(readers)])
    return None


def add_console_routes(app: FastAPI, core: Any) -> None:
    """Mount the routes on the gateway's app (``core``: its GatewayCore)."""

    def agent(token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token")
        who: Principal = core.tokens.verify(token)
        if not who.is_agent:
            raise Forbidden("this call is for agents")
        return who

    async def team_of(who: Principal) -> str:
        return str(await core.agent_partition(who.id))

    @app.get("/v1/me", response_model=AgentInfo)
    async def me(token: Bearer) -> AgentInfo:
        who = agent(token)
        fields = dict(await core.store.call("HGETALL", keys.agent_key(who.id)))
        if not fields:
            raise NotFound(f"agent {who.id} not found")
        return agent_info(who.id, fields)

    @app.get("/v1/agents", response_model=AgentList)
    async def agents(token: Bearer) -> AgentList:
        agent(token)
        ids = sorted(await core.store.call("SMEMBERS", keys.AGENTS))
        rows = await core.store.pipeline([("HGETALL", keys.agent_key(a)) for a in ids]) \
            if ids else []
        seen: dict[str, dict[str, Any]] = {}
        for partition in core.settings.partitions:
            try:
                snapshot = await core.router_call("snapshot", partition=partition)
            except Unavailable:
                continue  # that partition's agents show as offline meanwhile
            seen.update(snapshot["agents"])
        loads = await core.store.pipeline([("SCARD", keys.agent_convs_key(a)) for a in ids]) \
            if ids else []
        listed = []
        for agent_id, fields, load in zip(ids, rows, loads, strict=True):
            fields = dict(fields)
            if not fields:
                continue
            live = seen.get(agent_id, {})
            listed.append(AgentListed(**agent_info(agent_id, fields).model_dump(),
                                      presence=live.get("presence", "offline"),
                                      load=int(live.get("load", load))))
        listed.sort(key=lambda a: (a.name.lower(), a.agent_id))
        return AgentList(agents=listed)

    @app.get("/v1/visitors/{visitor_id}", response_model=VisitorInfo)
    async def visitor(visitor_id: str, token: Bearer) -> VisitorInfo:
        agent(token)
        fields, cids = await core.store.pipeline([
            ("HGETALL", keys.visitor_key(visitor_id)),
            ("ZREVRANGE", keys.visitor_convs_key(visitor_id), 0, VISITOR_CONVERSATIONS - 1)])
        fields = dict(fields)
        if not fields:
            raise NotFound(f"visitor {visitor_id} not found")
        conversations = []
        for cid, state in zip(cids, await core.store.states(cids), strict=True):
            if state:
                conv = Conversation.from_state(cid, state)
                conversations.append(VisitorConversation(
                    conversation_id=cid, status=conv.status.value,
                    last_seq=conv.last_seq, created_ts=conv.created_ts,
                    updated_ts=conv.updated_ts))
        return VisitorInfo(
            visitor_id=visitor_id, name=fields.get("name") or None,
            email=fields.get("email") or None,
            attributes=json.loads(fields.get("attributes") or "{}"),
            inbox=fields.get("inbox") or None, skill=fields.get("skill") or None,
            page=fields.get("page") or None, browser=fields.get("browser") or None,
            ip=fields.get("ip") or None, created_ts=int(fields.get("created_ts") or 0),
            conversations=conversations)

    @app.get("/v1/conversations/{conversation_id}/notes", response_model=NoteList)
    async def notes(conversation_id: str, token: Bearer) -> NoteList:
        agent(token)
        await conversation_of(core, conversation_id)
        stored = await core.store.call("LRANGE", keys.notes_key(conversation_id), 0,
                                       NOTES_PAGE - 1)
        return NoteList(notes=[json.loads(n) for n in stored])

    @app.get("/v1/canned", response_model=CannedList)
    async def canned(token: Bearer) -> CannedList:
        team = await team_of(agent(token))
        stored = await core.store.call("HGETALL", keys.canned_key(team))
        items = [CannedReply(id=i, **json.loads(v)) for i, v in dict(stored).items()]
        items.sort(key=lambda c: (c.shortcut.lower(), c.id))
        return CannedList(items=items)

    @app.post("/v1/canned", status_code=201, response_model=CannedReply)
    async def add_canned(body: CannedCreate, token: Bearer) -> CannedReply:
        team = await team_of(agent(token))
        reply = CannedReply(id=f"r_{uuid.uuid4().hex[:20]}", shortcut=body.shortcut,
                            text=body.text)
        added = await core.store.call(
            "EVAL", _ADD_CANNED, 2, keys.canned_key(team), keys.canned_shortcuts_key(team),
            reply.id, reply.shortcut.lower(), json.dumps({"shortcut": reply.shortcut,
                                                           "text": reply.text}))
        if not int(added):
            raise Conflict(f"a canned reply /{body.shortcut} exists in your team")
        return reply

    @app.delete("/v1/canned/{reply_id}", status_code=204)
    async def delete_canned(reply_id: str, token: Bearer) -> Response:
        team = await team_of(agent(token))
        stored = await core.store.call("HGET", keys.canned_key(team), reply_id)
        if not stored:
            raise NotFound(f"canned reply {reply_id} not found")
        shortcut = json.loads(stored)["shortcut"]
        await core.store.pipeline([("HDEL", keys.canned_key(team), reply_id),
                                   ("HDEL", keys.canned_shortcuts_key(team), shortcut.lower())],
                                  atomic=True)
        return Response(status_code=204)
