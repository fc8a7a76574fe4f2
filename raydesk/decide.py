"""What each shard command does to a conversation: pure decisions, no I/O.

Each function takes the conversation's current state and a command and returns a
:class:`Decision`: the state after, the one store commit that makes it durable and
delivers its events, the reply for the caller and what the router must hear. The shard
actor loads, calls one of these, commits, and only then replies; so a command whose commit
fails changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from models.policy import Turn
from raydesk import store as keys
from raydesk.conversation import Conversation, Status
from raydesk.errors import BadRequest, Conflict, Forbidden, NotFound
from raydesk.schema import (
    Assigned,
    BotInfo,
    ConversationEvent,
    Message,
    ReadEvent,
    Sender,
    ShardCommand,
    TypingEvent,
    dump,
)


class ConversationClosed(Conflict):
    """A customer wrote into a closed conversation: the gateway opens a new one."""


@dataclass
class Decision:
    conversation: Conversation
    commit: keys.Commit | None
    reply: dict[str, Any]
    # Events that need no durability (typing): published without a commit.
    signals: list[tuple[str, str]] = field(default_factory=list)
    # Router notifications, sent (as tells) after the commit: (method, args).
    router: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    # The customer's or agent's message a send stores (the bot's turn answers it).
    message: Message | None = None


def tell_agents(before: Conversation | None, decision: Decision) -> None:
    """Add the agents' feed event to a commit that opens a conversation or changes its
    status or assignee: every connected agent's lists stay current (an extension)."""
    after = decision.conversation
    if decision.commit is None or (before is not None and before.status is after.status
                                   and before.assignee == after.assignee):
        return
    event = ConversationEvent(
        conversation_id=after.id, status=after.status.value,
        last_seq=after.last_seq, customer=after.customer, assignee=after.assignee,
        skill=after.skill, created_ts=after.created_ts, updated_ts=after.updated_ts)
    decision.commit.publish.append((keys.channel(keys.AGENT_FEED), dump(event)))


def _sender(cmd: ShardCommand) -> Sender:
    return Sender(role="customer" if cmd.actor_role == "customer" else "agent", id=cmd.actor_id)


def _system(conv: Conversation, seq: int, message_id: str, ts: int, kind: str,
            text: str, **details: Any) -> Message:
    return Message(conversation_id=conv.id, seq=seq, message_id=message_id,
                   sender=Sender(role="system", id="raydesk"), text=text, ts=ts,
                   event={"kind": kind, **details})


def _publish(participants: list[str], frames: list[str]) -> list[tuple[str, str]]:
    return [(keys.channel(p), frame) for frame in frames for p in participants]


def dedupe_field(cmd: ShardCommand) -> str:
    """Dedupe is per sender: a customer's and an agent's ``client_msg_id`` may coincide."""
    return f"{cmd.actor_id}|{cmd.client_msg_id}"


def ack_from_dedupe(cmd: ShardCommand, value: str) -> dict[str, Any]:
    seq, message_id, ts = value.split("|")
    return {"type": "ack", "client_msg_id": cmd.client_msg_id, "conversation_id":
            cmd.conversation_id, "seq": int(seq), "message_id": message_id, "ts": int(ts)}


def open_conversation(cmd: ShardCommand, visitor: dict[str, str], now: int,
                      ids: list[str], skill: str | None = None,
                      priority: int = 0, bot: bool = False) -> Decision:
    """A customer's first message: the conversation opens and holds the message.

    Seqs: 1 ``opened``, 2 the customer's message, then (without the bot) 3 ``queued``.
    With the bot the conversation stays in ``bot`` status and the bot's turn follows.
    ``skill`` and ``priority`` are the routing needs the shard worked out from the visitor
    and the config.
    """
    status = Status.BOT if bot else Status.QUEUED
    conv = Conversation(id=cmd.conversation_id, customer=cmd.actor_id, status=status,
                        skill=skill, inbox=visitor.get("inbox") or None,
                        created_ts=now, updated_ts=now, priority=priority)
    opened = _system(conv, 1, ids[0], now, "opened", "Conversation opened",
                     status=status.value)
    decision = send_message(conv, cmd, now, ids[1], base_seq=1)
    assert decision.commit is not None
    commit = decision.commit
    commit.expect = 0
    commit.messages = [opened.to_json(), *commit.messages]
    commit.ops += [("ZADD", keys.visitor_convs_key(conv.customer), now, conv.id)]
    after = dataclasses.replace(decision.conversation, last_seq=2)
    if not bot:
        queued = _system(conv, 3, ids[2], now, "queued", "Waiting for an agent",
                         skill=conv.skill)
        commit.messages.append(queued.to_json())
        commit.ops.append(("ZADD", keys.QUEUE, now, conv.id))
        after = dataclasses.replace(after, last_seq=3)
        decision.router.append(("enqueued", (conv.id, conv.skill, now)))
    commit.publish = _publish(conv.participants, commit.messages)
    commit.state = after.to_state()
    decision.conversation = after
    return decision


def bot_turn(conv: Conversation, turn: Turn, question: Message, now: int, ids: list[str],
             model_version: str | None) -> Decision:
    """The bot's turn on the customer's ``question``: a bot message (an answer or a request
    to rephrase), or a hand-off (``handoff`` then ``queued``) to the agents' queue.

    A question the bot did not answer is kept (with the model's guess) until the first
    human answer that follows is linked to it: the training data of the next model.
    """
    if conv.status is not Status.BOT:
        raise Conflict(f"conversation {conv.id} is {conv.status.value}, not with the bot")
    seq = conv.last_seq + 1
    ops: list[tuple[Any, ...]] = []
    open_questions = conv.open_questions
    if turn.unanswered:
        key = keys.question_key(conv.id, question.seq)
        record = {"conversation_id": conv.id, "seq": question.seq,
                  "message_id": question.message_id, "text": question.text,
                  "ts": question.ts, "inbox": conv.inbox, "action": turn.action,
                  "reason": turn.reason, "intent": turn.intent, "faq_id": turn.faq_id,
                  "confidence": turn.confidence, "model_version": model_version}
        ops += [("ZADD", keys.UNANSWERED, now, key),
                ("HSET", keys.UNANSWERED_QUESTIONS, key, json.dumps(record))]
        open_questions = (*open_questions, question.seq)
    # The turn settles what the bot owed, unless the customer wrote again meanwhile.
    bot_due = conv.bot_due if turn.action != "handoff" and conv.bot_due > question.seq \
        else 0
    if bot_due == 0:
        ops.append(("ZREM", keys.BOT_DUE, conv.id))
    if turn.action != "handoff":
        unanswered = 0 if turn.action == "answer" else conv.unanswered + 1
        frame = Message(conversation_id=conv.id, seq=seq, message_id=ids[0],
                        sender=Sender(role="bot", id="bot"), text=turn.text, ts=now,
                        bot=BotInfo(intent=turn.intent, faq_id=turn.faq_id,
                                    confidence=turn.confidence,
                                    model_version=model_version)).to_json()
        # An answer (to a rephrasing, say) settles the open questions: a later agent
        # message would not be the answer to them.
        if turn.action == "answer":
            open_questions = ()
        after = dataclasses.replace(conv, last_seq=seq, updated_ts=now, unanswered=unanswered,
                                    open_questions=open_questions, bot_due=bot_due)
        commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame],
                             state=after.to_state(), ops=ops,
                             publish=_publish(conv.participants, [frame]))
        return Decision(after, commit, {"type": "ok", "last_seq": seq})
    skill = turn.skill or conv.skill
    details = {k: v for k, v in (("reason", turn.reason), ("intent", turn.intent),
                                 ("confidence", turn.confidence),
                                 ("model_version", model_version)) if v is not None}
    handoff = _system(conv, seq, ids[0], now, "handoff", "Connecting you to an agent",
                      **details).to_json()
    queued = _system(conv, seq + 1, ids[1], now, "queued", "Waiting for an agent",
                     skill=skill).to_json()
    after = dataclasses.replace(conv, status=Status.QUEUED, skill=skill, last_seq=seq + 1,
                                updated_ts=now, unanswered=0, open_questions=open_questions,
                                bot_due=0)
    ops.append(("ZADD", keys.QUEUE, now, conv.id))
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[handoff, queued],
                         state=after.to_state(), ops=ops,
                         publish=_publish(conv.participants, [handoff, queued]))
    return Decision(after, commit, {"type": "ok", "last_seq": seq + 1},
                    router=[("enqueued", (conv.id, skill, now))])


def send_message(conv: Conversation, cmd: ShardCommand, now: int, message_id: str,
                 base_seq: int | None = None) -> Decision:
    """Store a customer's or agent's message and deliver it to every participant."""
    # Who may write first: a closed conversation of someone else's must not be revealed.
    conv.check_can_write(cmd.actor_id, cmd.actor_role != "customer")
    if conv.status is Status.CLOSED:
        if cmd.actor_role == "customer":
            raise ConversationClosed(f"conversation {conv.id} is closed")
        raise Conflict(f"conversation {conv.id} is closed")
    assert cmd.text is not None and cmd.client_msg_id is not None
    seq = (conv.last_seq if base_seq is None else base_seq) + 1
    message = Message(conversation_id=conv.id, seq=seq, message_id=message_id,
                      client_msg_id=cmd.client_msg_id, sender=_sender(cmd), text=cmd.text,
                      ts=now)
    frame = message.to_json()
    # The response-time clock: starts at the first unanswered customer message, stops at
    # the assigned agent's reply, which the router learns as a sample for that agent.
    awaiting, router = conv.awaiting_since, []
    if cmd.actor_role == "customer":
        awaiting = awaiting if awaiting is not None else now
    elif cmd.actor_id == conv.assignee:
        if awaiting is not None:
            router.append(("responded", (cmd.actor_id, now - awaiting)))
        awaiting = None
    after = dataclasses.replace(conv, last_seq=seq, updated_ts=now, awaiting_since=awaiting)
    state = {"last_seq": str(seq), "updated_ts": str(now)}
    if awaiting != conv.awaiting_since:
        state["awaiting_since"] = "" if awaiting is None else str(awaiting)
    ops: list[tuple[Any, ...]] = []
    if cmd.actor_role == "customer" and conv.status is Status.BOT:
        after = dataclasses.replace(after, bot_due=seq)
        state["bot_due"] = str(seq)
        ops.append(("ZADD", keys.BOT_DUE, now, conv.id))
    if cmd.actor_role != "customer" and conv.open_questions:
        # The first human answer after questions the bot could not answer: link them.
        answer = json.dumps({"seq": seq, "message_id": message_id, "text": cmd.text,
                             "agent_id": cmd.actor_id, "ts": now})
        ops = [("HSET", keys.UNANSWERED_ANSWERS, keys.question_key(conv.id, q), answer)
               for q in conv.open_questions]
        after = dataclasses.replace(after, open_questions=())
        state["open_questions"] = ""
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame], state=state,
                         ops=ops,
                         publish=_publish(conv.participants, [frame]),
                         dedupe=dedupe_field(cmd), dedupe_value=f"{seq}|{message_id}|{now}")
    reply = {"type": "ack", "client_msg_id": cmd.client_msg_id, "conversation_id": conv.id,
             "seq": seq, "message_id": message_id, "ts": now}
    return Decision(after, commit, reply, router=router, message=message)


def typing(conv: Conversation, cmd: ShardCommand) -> Decision:
    conv.check_can_write(cmd.actor_id, cmd.actor_role != "customer")
    frame = dump(TypingEvent(conversation_id=conv.id, sender=_sender(cmd), on=bool(cmd.on)))
    others = [p for p in conv.participants if p != cmd.actor_id]
    return Decision(conv, None, {"type": "ok"}, signals=_publish(others, [frame]))


def read(conv: Conversation, cmd: ShardCommand) -> Decision:
    """Store the participant's read cursor and tell the others. Not a message: no seq."""
    conv.check_can_write(cmd.actor_id, cmd.actor_role != "customer")
    assert cmd.seq is not None
    if cmd.seq > conv.last_seq:
        raise BadRequest(f"seq: {cmd.seq} is beyond the conversation's last seq "
                         f"{conv.last_seq}")
    frame = dump(ReadEvent(conversation_id=conv.id, sender=_sender(cmd), seq=cmd.seq))
    others = [p for p in conv.participants if p != cmd.actor_id]
    # A read cursor never moves back: a late frame from another device must not undo it.
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq,
                         ops=[("HSETMAX", keys.reads_key(conv.id), cmd.actor_id, cmd.seq)],
                         publish=_publish(others, [frame]))
    return Decision(conv, commit, {"type": "ok"})


def close(conv: Conversation, cmd: ShardCommand, now: int, message_id: str) -> Decision:
    if cmd.actor_role != "admin":
        conv.check_can_write(cmd.actor_id, cmd.actor_role != "customer")
    conv.check_transition(Status.CLOSED)
    seq = conv.last_seq + 1
    frame = _system(conv, seq, message_id, now, "closed", "Conversation closed",
                    by=cmd.actor_id).to_json()
    after = dataclasses.replace(conv, status=Status.CLOSED, last_seq=seq, updated_ts=now,
                                bot_due=0)
    ops: list[tuple[Any, ...]] = [
        ("ZREM", keys.QUEUE, conv.id),
        ("ZREM", keys.BOT_DUE, conv.id),
        ("HDELIFEQ", keys.visitor_key(conv.customer), "open", conv.id),
    ]
    router: list[tuple[str, tuple[Any, ...]]] = [("dequeued", (conv.id,))]
    if conv.assignee:
        ops.append(("SREM", keys.agent_convs_key(conv.assignee), conv.id))
        router = [("released", (conv.assignee, conv.id))]
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame],
                         state=after.to_state(), ops=ops,
                         publish=_publish(conv.participants, [frame]))
    return Decision(after, commit, {"type": "ok", "last_seq": seq}, router=router)


def assign(conv: Conversation, cmd: ShardCommand, now: int, message_id: str,
           visitor: dict[str, Any]) -> Decision:
    """The router (or an agent's ``accept``, checked by the router) assigns an agent."""
    agent = cmd.to_agent
    assert agent is not None
    if conv.status is not Status.QUEUED:
        raise Conflict(f"conversation {conv.id} is {conv.status.value}, not queued")
    seq = conv.last_seq + 1
    after = dataclasses.replace(conv, status=Status.ASSIGNED, assignee=agent, last_seq=seq,
                                updated_ts=now, awaiting_since=_restart(conv, now),
                                front=False)
    frame = _system(conv, seq, message_id, now, "assigned", "An agent joined",
                    agent_id=agent, reason=cmd.reason or {}).to_json()
    assigned = dump(Assigned(conversation_id=conv.id, visitor=visitor, last_seq=seq))
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame],
                         state=after.to_state(),
                         ops=[("ZREM", keys.QUEUE, conv.id),
                              ("SADD", keys.agent_convs_key(agent), conv.id)],
                         publish=[*_publish(after.participants, [frame]),
                                  (keys.channel(agent), assigned)])
    return Decision(after, commit, {"type": "ok", "last_seq": seq})


def transfer(conv: Conversation, cmd: ShardCommand, now: int, message_id: str,
             visitor: dict[str, Any]) -> Decision:
    """Hand an assigned conversation to another agent (checked for room by the router) or
    back to the queue for a skill."""
    if conv.status is not Status.ASSIGNED:
        raise Conflict(f"conversation {conv.id} is {conv.status.value}, not assigned")
    if cmd.actor_role not in ("router", "admin") and cmd.actor_id != conv.assignee:
        raise Forbidden(f"conversation {conv.id} is not assigned to you")
    old = conv.assignee
    assert old is not None
    seq = conv.last_seq + 1
    ops: list[tuple[Any, ...]] = [("SREM", keys.agent_convs_key(old), conv.id)]
    if cmd.to_agent:
        if cmd.to_agent == old:
            raise Conflict(f"conversation {conv.id} is already assigned to {old}")
        after = dataclasses.replace(conv, assignee=cmd.to_agent, last_seq=seq, updated_ts=now,
                                    awaiting_since=_restart(conv, now))
        ops.append(("SADD", keys.agent_convs_key(cmd.to_agent), conv.id))
        details: dict[str, Any] = {"from_agent": old, "to_agent": cmd.to_agent}
        router: list[tuple[str, tuple[Any, ...]]] = [("released", (old, conv.id))]
    elif cmd.to_skill:
        after = dataclasses.replace(conv, status=Status.QUEUED, assignee=None,
                                    skill=cmd.to_skill, last_seq=seq, updated_ts=now)
        ops.append(("ZADD", keys.QUEUE, now, conv.id))
        details = {"from_agent": old, "to_skill": cmd.to_skill}
        router = [("released", (old, conv.id)), ("enqueued", (conv.id, cmd.to_skill, now))]
    else:
        raise BadRequest("transfer: to_agent or to_skill required")
    frame = _system(conv, seq, message_id, now, "transferred", "Conversation transferred",
                    **details).to_json()
    publish = _publish(sorted({*conv.participants, *after.participants}), [frame])
    if cmd.to_agent:
        publish.append((keys.channel(cmd.to_agent), dump(
            Assigned(conversation_id=conv.id, visitor=visitor, last_seq=seq))))
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame],
                         state=after.to_state(), ops=ops, publish=publish)
    return Decision(after, commit, {"type": "ok", "last_seq": seq}, router=router)


def _restart(conv: Conversation, now: int) -> int | None:
    """A new agent's response time counts from when they got the conversation."""
    return None if conv.awaiting_since is None else now


def requeue(conv: Conversation, cmd: ShardCommand, now: int, message_id: str) -> Decision:
    """The router takes an assigned conversation back (its agent vanished, or left the
    customer waiting past the reply deadline): it waits at the front of the queue, and the
    customer is told."""
    if conv.status is not Status.ASSIGNED or conv.assignee is None:
        raise Conflict(f"conversation {conv.id} is {conv.status.value}, not assigned")
    if cmd.to_agent is not None and cmd.to_agent != conv.assignee:
        raise Conflict(f"conversation {conv.id} is no longer assigned to {cmd.to_agent}")
    deadline_ms = (cmd.reason or {}).get("deadline_ms")
    if deadline_ms is not None and (conv.awaiting_since is None
                                    or now - conv.awaiting_since <= deadline_ms):
        raise Conflict(f"conversation {conv.id} was answered in time")
    seq = conv.last_seq + 1
    after = dataclasses.replace(conv, status=Status.QUEUED, assignee=None, last_seq=seq,
                                updated_ts=now, front=True)
    reason = (cmd.reason or {}).get("why", "agent_offline")
    text = ("No reply in time; you are first in line for the next agent"
            if reason == "reply_deadline"
            else "Your agent is unavailable; you are first in line for the next one")
    frame = _system(conv, seq, message_id, now, "queued", text,
                    skill=conv.skill, reason=reason, from_agent=conv.assignee).to_json()
    commit = keys.Commit(cid=conv.id, expect=conv.last_seq, messages=[frame],
                         state=after.to_state(),
                         ops=[("SREM", keys.agent_convs_key(conv.assignee), conv.id),
                              ("ZADD", keys.QUEUE, now, conv.id)],
                         publish=_publish(conv.participants, [frame]))
    return Decision(after, commit, {"type": "ok", "last_seq": seq})


def visitor_card(visitor_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """What an agent is told of a visitor in ``assigned`` frames."""
    if not fields:
        raise NotFound(f"visitor {visitor_id} not found")
    return {"id": visitor_id, "name": fields.get("name") or None,
            "email": fields.get("email") or None,
            "attributes": json.loads(fields.get("attributes") or "{}")}
