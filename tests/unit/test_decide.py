"""raydesk.decide: the pure decision of every shard command (seqs, commit, fan-out)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from raydesk import decide
from raydesk import store as keys
from raydesk.conversation import Conversation, IllegalTransition, Status
from raydesk.decide import ConversationClosed
from raydesk.errors import BadRequest, Conflict, Forbidden, NotFound
from raydesk.routing import FRONT_PRIORITY
from raydesk.schema import Message, ShardCommand

NOW = 1_700_000_000_000
VISITOR_CARD: dict[str, Any] = {"id": "v1", "name": "Vi", "email": None, "attributes": {}}


def _conv(status: Status = Status.ASSIGNED, last_seq: int = 5,
          assignee: str | None = "a1", skill: str | None = "billing") -> Conversation:
    return Conversation(id="c1", customer="v1", status=status, last_seq=last_seq,
                        assignee=assignee, skill=skill, created_ts=1, updated_ts=2)


def _cmd(kind: str = "send", actor: str = "v1", role: str = "customer",
         **fields: Any) -> ShardCommand:
    if kind == "send":
        fields.setdefault("client_msg_id", "m-1")
        fields.setdefault("text", "hello")
    return ShardCommand(kind=kind, conversation_id="c1", actor_id=actor,  # type: ignore[arg-type]
                        actor_role=role, **fields)  # type: ignore[arg-type]


def _messages(commit: keys.Commit) -> list[dict[str, Any]]:
    return [json.loads(m) for m in commit.messages]


def _channels(publish: list[tuple[str, str]]) -> list[str]:
    return [channel for channel, _ in publish]


# --- open_conversation -----------------------------------------------------------------


def _open(skill: str | None = "billing") -> decide.Decision:
    visitor = {"skill": skill or "", "inbox": "web"}
    return decide.open_conversation(_cmd(), visitor, NOW, ["id-1", "id-2", "id-3"], skill)


def test_open_conversation_stores_opened_message_queued_as_seqs_1_2_3() -> None:
    """Opening stores 'opened' (1), the customer's message (2) and 'queued' (3)."""
    decision = _open()
    assert decision.commit is not None
    msgs = _messages(decision.commit)
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert [m["message_id"] for m in msgs] == ["id-1", "id-2", "id-3"]
    assert msgs[0]["sender"] == {"role": "system", "id": "raydesk"}
    assert msgs[0]["event"]["kind"] == "opened"
    assert msgs[1]["sender"] == {"role": "customer", "id": "v1"}
    assert msgs[1]["text"] == "hello"
    assert msgs[1]["client_msg_id"] == "m-1"
    assert msgs[2]["event"] == {"kind": "queued", "skill": "billing"}
    assert all(m["conversation_id"] == "c1" and m["ts"] == NOW for m in msgs)
    for m in msgs:
        Message.model_validate(m)


def test_open_conversation_acks_seq_2() -> None:
    """The customer's ack names seq 2, the message's id and the time."""
    assert _open().reply == {"type": "ack", "client_msg_id": "m-1", "conversation_id": "c1",
                             "seq": 2, "message_id": "id-2", "ts": NOW}


def test_open_conversation_commit_fence_and_dedupe() -> None:
    """The commit expects an empty log and dedupes the client_msg_id onto seq 2."""
    commit = _open().commit
    assert commit is not None
    assert commit.cid == "c1"
    assert commit.expect == 0
    assert commit.dedupe == "v1|m-1"
    assert commit.dedupe_value == f"2|id-2|{NOW}"
    assert decide.ack_from_dedupe(_cmd(), commit.dedupe_value) == _open().reply


def test_open_conversation_state_is_queued_at_seq_3() -> None:
    """The conversation after opening is queued, with last_seq 3 and its skill."""
    decision = _open()
    conv = decision.conversation
    assert (conv.id, conv.customer, conv.status, conv.last_seq) == (
        "c1", "v1", Status.QUEUED, 3)
    assert conv.assignee is None
    assert (conv.skill, conv.inbox, conv.created_ts, conv.updated_ts) == (
        "billing", "web", NOW, NOW)
    assert decision.commit is not None
    assert decision.commit.state == conv.to_state()


def test_open_conversation_publishes_every_message_to_the_customer() -> None:
    """All three messages go, in order, to the customer's channel."""
    commit = _open().commit
    assert commit is not None
    assert commit.publish == [(keys.channel("v1"), m) for m in commit.messages]


def test_open_conversation_queues_and_tells_the_router() -> None:
    """Opening adds the conversation to the queue and the visitor's list and enqueues it."""
    decision = _open()
    assert decision.commit is not None
    assert ("ZADD", keys.QUEUE, NOW, "c1") in decision.commit.ops
    assert ("ZADD", keys.visitor_convs_key("v1"), NOW, "c1") in decision.commit.ops
    assert decision.router == [("enqueued", ("c1", "billing", NOW))]


def test_open_conversation_without_skill() -> None:
    """A visitor without a skill opens a conversation with skill None."""
    decision = _open(skill=None)
    assert decision.conversation.skill is None
    assert decision.router == [("enqueued", ("c1", None, NOW))]


# --- send_message ----------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "role", "wire_role"), [
    ("v1", "customer", "customer"), ("a1", "agent", "agent")])
def test_send_message_takes_the_next_seq(actor: str, role: str, wire_role: str) -> None:
    """A participant's message takes last_seq+1, fenced on last_seq, deduped per sender,
    and acked."""
    decision = decide.send_message(_conv(), _cmd(actor=actor, role=role), NOW, "mid")
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    (msg,) = _messages(commit)
    assert msg["seq"] == 6
    assert msg["sender"] == {"role": wire_role, "id": actor}
    assert msg["client_msg_id"] == "m-1"
    assert commit.dedupe == f"{actor}|m-1"
    assert commit.dedupe_value == f"6|mid|{NOW}"
    expected_state = {"last_seq": "6", "updated_ts": str(NOW)}
    if role == "customer":  # the response-time clock starts
        expected_state["awaiting_since"] = str(NOW)
    assert commit.state == expected_state
    assert decision.reply == {"type": "ack", "client_msg_id": "m-1", "conversation_id": "c1",
                              "seq": 6, "message_id": "mid", "ts": NOW}
    assert decision.conversation.last_seq == 6
    assert decision.conversation.updated_ts == NOW
    assert decision.router == []


def test_send_message_does_not_mutate_the_input() -> None:
    """The conversation passed in is unchanged (a failed commit changes nothing)."""
    conv = _conv()
    before = conv.to_state()
    decide.send_message(conv, _cmd(), NOW, "mid")
    assert conv.to_state() == before


def test_send_message_publishes_to_every_participant() -> None:
    """The stored frame goes to the customer's and the agent's channel, sender included."""
    commit = decide.send_message(_conv(), _cmd(), NOW, "mid").commit
    assert commit is not None
    assert commit.publish == [(keys.channel("v1"), commit.messages[0]),
                              (keys.channel("a1"), commit.messages[0])]


def test_send_message_in_queue_reaches_only_the_customer() -> None:
    """Without an assignee, a message is published to the customer alone."""
    commit = decide.send_message(_conv(Status.QUEUED, assignee=None), _cmd(), NOW, "m").commit
    assert commit is not None
    assert _channels(commit.publish) == [keys.channel("v1")]


def test_send_into_closed_conversation_customer_gets_conversation_closed() -> None:
    """A customer writing into a closed conversation gets ConversationClosed (a Conflict)."""
    with pytest.raises(ConversationClosed) as info:
        decide.send_message(_conv(Status.CLOSED), _cmd(), NOW, "mid")
    assert isinstance(info.value, Conflict)


def test_send_into_closed_conversation_agent_gets_plain_conflict() -> None:
    """An agent writing into a closed conversation gets a Conflict that is not reopening."""
    with pytest.raises(Conflict) as info:
        decide.send_message(_conv(Status.CLOSED), _cmd(actor="a1", role="agent"), NOW, "m")
    assert not isinstance(info.value, ConversationClosed)


def test_closed_conversation_of_someone_else_is_not_revealed() -> None:
    """Another customer naming a closed conversation gets NotFound, not ConversationClosed
    (which would open a conversation of its own and reveal this one); another agent gets
    Forbidden."""
    with pytest.raises(NotFound):
        decide.send_message(_conv(Status.CLOSED), _cmd(actor="v2"), NOW, "mid")
    with pytest.raises(Forbidden):
        decide.send_message(_conv(Status.CLOSED), _cmd(actor="a2", role="agent"), NOW, "m")


def test_send_by_non_participants_is_refused() -> None:
    """Another agent gets Forbidden; another customer gets NotFound."""
    with pytest.raises(Forbidden):
        decide.send_message(_conv(), _cmd(actor="a2", role="agent"), NOW, "mid")
    with pytest.raises(NotFound):
        decide.send_message(_conv(), _cmd(actor="v2"), NOW, "mid")


# --- ack_from_dedupe -------------------------------------------------------------------


def test_ack_from_dedupe_rebuilds_the_original_ack() -> None:
    """A duplicate send is answered with the first ack, rebuilt from the dedupe value."""
    first = decide.send_message(_conv(), _cmd(), NOW, "mid")
    assert first.commit is not None and first.commit.dedupe_value is not None
    again = decide.ack_from_dedupe(_cmd(), first.commit.dedupe_value)
    assert again == first.reply
    assert isinstance(again["seq"], int) and isinstance(again["ts"], int)


# --- typing ----------------------------------------------------------------------------


def test_typing_is_a_signal_to_the_others_only() -> None:
    """Typing stores nothing and is sent to every participant except the sender."""
    decision = decide.typing(_conv(), _cmd("typing", actor="a1", role="agent", on=True))
    assert decision.commit is None
    assert decision.reply == {"type": "ok"}
    assert _channels(decision.signals) == [keys.channel("v1")]
    frame = json.loads(decision.signals[0][1])
    assert frame == {"type": "typing", "conversation_id": "c1",
                     "sender": {"role": "agent", "id": "a1"}, "on": True}


def test_typing_off_from_customer() -> None:
    """A customer's typing-off reaches the agent with on false."""
    decision = decide.typing(_conv(), _cmd("typing", on=False))
    assert _channels(decision.signals) == [keys.channel("a1")]
    assert json.loads(decision.signals[0][1])["on"] is False


def test_typing_alone_in_queue_goes_nowhere() -> None:
    """A customer typing while nobody is assigned signals no one."""
    decision = decide.typing(_conv(Status.QUEUED, assignee=None), _cmd("typing", on=True))
    assert decision.signals == []


def test_typing_by_non_participant_is_refused() -> None:
    """Typing into somebody else's conversation is refused."""
    with pytest.raises(Forbidden):
        decide.typing(_conv(), _cmd("typing", actor="a2", role="agent", on=True))
    with pytest.raises(NotFound):
        decide.typing(_conv(), _cmd("typing", actor="v2", on=True))


# --- read ------------------------------------------------------------------------------


def test_read_stores_a_monotonic_cursor_and_tells_the_others() -> None:
    """A read stores the cursor with HSETMAX, fenced on last_seq, and tells the others."""
    decision = decide.read(_conv(), _cmd("read", seq=4))
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    assert commit.messages == []
    assert commit.ops == [("HSETMAX", keys.reads_key("c1"), "v1", 4)]
    assert commit.dedupe is None
    assert _channels(commit.publish) == [keys.channel("a1")]
    assert json.loads(commit.publish[0][1]) == {
        "type": "read", "conversation_id": "c1", "sender": {"role": "customer", "id": "v1"},
        "seq": 4}
    assert decision.conversation.last_seq == 5
    assert decision.reply == {"type": "ok"}


def test_read_up_to_last_seq_is_allowed() -> None:
    """Reading exactly up to last_seq is fine."""
    commit = decide.read(_conv(), _cmd("read", actor="a1", role="agent", seq=5)).commit
    assert commit is not None
    assert commit.ops[0][2:] == ("a1", 5)


def test_read_beyond_last_seq_is_bad_request() -> None:
    """A read cursor past the last message is a bad_request naming seq."""
    with pytest.raises(BadRequest, match=r"^seq:"):
        decide.read(_conv(), _cmd("read", seq=6))


def test_read_by_non_participant_is_refused() -> None:
    """A non-participant cannot move a read cursor."""
    with pytest.raises(Forbidden):
        decide.read(_conv(), _cmd("read", actor="a9", role="agent", seq=1))


# --- close -----------------------------------------------------------------------------


def test_close_assigned_by_agent() -> None:
    """Closing stores a 'closed' message, frees the agent and tells the router 'released'."""
    decision = decide.close(_conv(), _cmd("close", actor="a1", role="agent"), NOW, "mid")
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    (msg,) = _messages(commit)
    assert msg["seq"] == 6
    assert msg["event"] == {"kind": "closed", "by": "a1"}
    after = decision.conversation
    assert (after.status, after.last_seq, after.updated_ts) == (Status.CLOSED, 6, NOW)
    assert commit.state == after.to_state()
    assert ("SREM", keys.agent_convs_key("a1"), "c1") in commit.ops
    assert ("ZREM", keys.QUEUE, "c1") in commit.ops
    assert ("HDELIFEQ", keys.visitor_key("v1"), "open", "c1") in commit.ops
    assert _channels(commit.publish) == [keys.channel("v1"), keys.channel("a1")]
    assert decision.router == [("released", ("a1", "c1"))]
    assert decision.reply == {"type": "ok", "last_seq": 6}


def test_close_queued_by_customer_dequeues() -> None:
    """A customer closing a queued conversation takes it off the queue ('dequeued')."""
    decision = decide.close(_conv(Status.QUEUED, assignee=None), _cmd("close"), NOW, "mid")
    assert decision.commit is not None
    assert decision.router == [("dequeued", ("c1",))]
    assert not any(op[0] == "SREM" for op in decision.commit.ops)
    assert _channels(decision.commit.publish) == [keys.channel("v1")]


def test_admin_closes_any_conversation() -> None:
    """An admin closes a conversation it does not take part in."""
    decision = decide.close(_conv(), _cmd("close", actor="boss", role="admin"), NOW, "mid")
    assert decision.conversation.status is Status.CLOSED


def test_close_by_non_participant_is_refused() -> None:
    """An unassigned agent cannot close; another customer gets NotFound."""
    with pytest.raises(Forbidden):
        decide.close(_conv(), _cmd("close", actor="a2", role="agent"), NOW, "mid")
    with pytest.raises(NotFound):
        decide.close(_conv(), _cmd("close", actor="v2"), NOW, "mid")


def test_close_twice_is_illegal() -> None:
    """Closing a closed conversation is an IllegalTransition (a Conflict)."""
    with pytest.raises(IllegalTransition):
        decide.close(_conv(Status.CLOSED), _cmd("close"), NOW, "mid")


# --- assign ----------------------------------------------------------------------------


def _assign(conv: Conversation, agent: str = "a7",
            reason: dict[str, Any] | None = None) -> decide.Decision:
    cmd = _cmd("assign", actor="router", role="router", to_agent=agent, reason=reason)
    return decide.assign(conv, cmd, NOW, "mid", VISITOR_CARD)


def test_assign_queued_conversation() -> None:
    """Assigning stores an 'assigned' message, moves it off the queue onto the agent."""
    decision = _assign(_conv(Status.QUEUED, assignee=None), reason={"score": 0.5})
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    (msg,) = _messages(commit)
    assert msg["seq"] == 6
    assert msg["event"] == {"kind": "assigned", "agent_id": "a7", "reason": {"score": 0.5}}
    after = decision.conversation
    assert (after.status, after.assignee, after.last_seq) == (Status.ASSIGNED, "a7", 6)
    assert commit.state == after.to_state()
    assert commit.ops == [("ZREM", keys.QUEUE, "c1"), ("SADD", keys.agent_convs_key("a7"),
                                                       "c1")]
    assert decision.reply == {"type": "ok", "last_seq": 6}


def test_assign_publishes_message_to_both_and_assigned_to_the_agent() -> None:
    """The customer and new agent get the system message; the agent also gets 'assigned'."""
    commit = _assign(_conv(Status.QUEUED, assignee=None)).commit
    assert commit is not None
    assert commit.publish[:2] == [(keys.channel("v1"), commit.messages[0]),
                                  (keys.channel("a7"), commit.messages[0])]
    channel, frame = commit.publish[2]
    assert channel == keys.channel("a7")
    assert json.loads(frame) == {"type": "assigned", "conversation_id": "c1",
                                 "visitor": VISITOR_CARD, "last_seq": 6}
    assert len(commit.publish) == 3


@pytest.mark.parametrize("status", [Status.BOT, Status.ASSIGNED, Status.CLOSED])
def test_assign_when_not_queued_is_conflict(status: Status) -> None:
    """Only a queued conversation can be assigned."""
    with pytest.raises(Conflict, match="not queued"):
        _assign(_conv(status))


# --- transfer --------------------------------------------------------------------------


def _transfer(conv: Conversation | None = None, actor: str = "a1", role: str = "agent",
              **target: Any) -> decide.Decision:
    return decide.transfer(conv or _conv(), _cmd("transfer", actor=actor, role=role, **target),
                           NOW, "mid", VISITOR_CARD)


def test_transfer_to_agent() -> None:
    """A transfer to an agent moves the conversation between agents' sets and tells all."""
    decision = _transfer(to_agent="a2")
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    (msg,) = _messages(commit)
    assert msg["seq"] == 6
    assert msg["event"] == {"kind": "transferred", "from_agent": "a1", "to_agent": "a2"}
    after = decision.conversation
    assert (after.status, after.assignee, after.last_seq) == (Status.ASSIGNED, "a2", 6)
    assert commit.state == after.to_state()
    assert commit.ops == [("SREM", keys.agent_convs_key("a1"), "c1"),
                          ("SADD", keys.agent_convs_key("a2"), "c1")]
    assert decision.router == [("released", ("a1", "c1"))]
    frame = commit.messages[0]
    assert sorted(ch for ch, f in commit.publish if f == frame) == sorted(
        keys.channel(p) for p in ("v1", "a1", "a2"))
    assigned = [(ch, json.loads(f)) for ch, f in commit.publish if f != frame]
    assert assigned == [(keys.channel("a2"), {"type": "assigned", "conversation_id": "c1",
                                              "visitor": VISITOR_CARD, "last_seq": 6})]


def test_transfer_to_skill_requeues() -> None:
    """A transfer to a skill requeues the conversation for that skill and frees the agent."""
    decision = _transfer(to_skill="tech")
    commit = decision.commit
    assert commit is not None
    (msg,) = _messages(commit)
    assert msg["event"] == {"kind": "transferred", "from_agent": "a1", "to_skill": "tech"}
    after = decision.conversation
    assert (after.status, after.assignee, after.skill, after.last_seq) == (
        Status.QUEUED, None, "tech", 6)
    assert commit.state == after.to_state()
    assert commit.ops == [("SREM", keys.agent_convs_key("a1"), "c1"),
                          ("ZADD", keys.QUEUE, NOW, "c1")]
    assert decision.router == [("released", ("a1", "c1")), ("enqueued", ("c1", "tech", NOW))]
    assert sorted(_channels(commit.publish)) == sorted([keys.channel("v1"),
                                                        keys.channel("a1")])


def test_transfer_by_router_or_admin_is_allowed() -> None:
    """The router and an admin may transfer a conversation they are not assigned."""
    assert _transfer(actor="router", role="router", to_agent="a2").conversation.assignee == "a2"
    assert _transfer(actor="boss", role="admin", to_skill="x").conversation.status is (
        Status.QUEUED)


def test_transfer_without_target_is_bad_request() -> None:
    """A transfer naming neither to_agent nor to_skill is a bad_request."""
    with pytest.raises(BadRequest, match="to_agent or to_skill"):
        _transfer()


def test_transfer_to_the_same_agent_is_conflict() -> None:
    """Transferring to the current assignee is a Conflict."""
    with pytest.raises(Conflict):
        _transfer(to_agent="a1")


def test_transfer_by_another_agent_or_customer_is_forbidden() -> None:
    """Only the assignee (or router/admin) may transfer."""
    with pytest.raises(Forbidden):
        _transfer(actor="a2", to_agent="a3")
    with pytest.raises(Forbidden):
        _transfer(actor="v1", role="customer", to_skill="tech")


@pytest.mark.parametrize("status", [Status.BOT, Status.QUEUED, Status.CLOSED])
def test_transfer_when_not_assigned_is_conflict(status: Status) -> None:
    """Only an assigned conversation can be transferred."""
    with pytest.raises(Conflict, match="not assigned"):
        _transfer(_conv(status, assignee=None), actor="router", role="router", to_agent="a2")


# --- the response-time clock -----------------------------------------------------------


def _waiting(since: int | None, status: Status = Status.ASSIGNED,
             assignee: str | None = "a1") -> Conversation:
    return dataclasses.replace(_conv(status, assignee=assignee), awaiting_since=since)


def test_open_conversation_starts_the_clock_and_stores_the_priority() -> None:
    """The opening customer message starts the response-time clock; the priority given is
    kept and stored."""
    decision = decide.open_conversation(_cmd(), {"inbox": "web"}, NOW, ["i1", "i2", "i3"],
                                        "billing", priority=3)
    assert decision.conversation.awaiting_since == NOW
    assert decision.conversation.priority == 3
    assert decision.commit is not None
    assert decision.commit.state["awaiting_since"] == str(NOW)
    assert decision.commit.state["priority"] == "3"


def test_customer_message_starts_the_clock() -> None:
    """A customer message with no unanswered one before starts the clock, written to state."""
    decision = decide.send_message(_waiting(None), _cmd(), NOW, "mid")
    assert decision.conversation.awaiting_since == NOW
    assert decision.commit is not None
    assert decision.commit.state["awaiting_since"] == str(NOW)
    assert decision.router == []


def test_second_customer_message_keeps_the_first_time() -> None:
    """A further customer message leaves the clock at the first unanswered one (and does
    not rewrite it)."""
    decision = decide.send_message(_waiting(NOW - 5_000), _cmd(), NOW, "mid")
    assert decision.conversation.awaiting_since == NOW - 5_000
    assert decision.commit is not None
    assert "awaiting_since" not in decision.commit.state
    assert decision.router == []


def test_assigned_agent_reply_reports_the_response_time() -> None:
    """The assignee's reply tells the router ('responded', (agent, ms)) and stops the clock."""
    decision = decide.send_message(_waiting(NOW - 7_500), _cmd(actor="a1", role="agent"),
                                   NOW, "mid")
    assert decision.router == [("responded", ("a1", 7_500))]
    assert decision.conversation.awaiting_since is None
    assert decision.commit is not None
    assert decision.commit.state["awaiting_since"] == ""


def test_agent_reply_without_a_pending_customer_message_reports_nothing() -> None:
    """An agent writing again (nothing unanswered) sends no sample and writes no clock."""
    decision = decide.send_message(_waiting(None), _cmd(actor="a1", role="agent"), NOW, "mid")
    assert decision.router == []
    assert decision.conversation.awaiting_since is None
    assert decision.commit is not None
    assert "awaiting_since" not in decision.commit.state


def test_other_agent_cannot_stop_the_clock() -> None:
    """An agent that is not the assignee is refused, and the clock keeps running."""
    conv = _waiting(NOW - 1_000)
    with pytest.raises(Forbidden):
        decide.send_message(conv, _cmd(actor="a2", role="agent"), NOW, "mid")
    assert conv.awaiting_since == NOW - 1_000


def test_clock_over_a_conversation() -> None:
    """Two customer messages then a reply measure from the first; the next customer message
    starts a new measurement."""
    conv = _waiting(None)
    conv = decide.send_message(conv, _cmd(), NOW, "m1").conversation
    conv = decide.send_message(conv, _cmd(client_msg_id="m-2"), NOW + 1_000, "m2").conversation
    reply = decide.send_message(conv, _cmd(actor="a1", role="agent", client_msg_id="m-3"),
                                NOW + 4_000, "m3")
    assert reply.router == [("responded", ("a1", 4_000))]
    again = decide.send_message(reply.conversation, _cmd(client_msg_id="m-4"), NOW + 9_000,
                                "m4")
    assert again.conversation.awaiting_since == NOW + 9_000
    assert again.conversation.last_seq == 9


def test_assign_restarts_a_running_clock() -> None:
    """A new agent's response time counts from the assignment, not the customer's message."""
    decision = _assign(_waiting(NOW - 60_000, Status.QUEUED, assignee=None))
    assert decision.conversation.awaiting_since == NOW
    assert decision.commit is not None
    assert decision.commit.state["awaiting_since"] == str(NOW)
    reply = decide.send_message(decision.conversation,
                                _cmd(actor="a7", role="agent"), NOW + 2_000, "mid")
    assert reply.router == [("responded", ("a7", 2_000))]


def test_assign_without_a_running_clock_leaves_it_stopped() -> None:
    """Assigning a conversation with nothing unanswered does not start the clock."""
    decision = _assign(_waiting(None, Status.QUEUED, assignee=None))
    assert decision.conversation.awaiting_since is None
    assert decision.commit is not None
    assert decision.commit.state["awaiting_since"] == ""


def test_transfer_to_agent_restarts_a_running_clock() -> None:
    """A transfer to another agent restarts a running clock at now; a stopped one stays
    stopped."""
    running = _transfer(_waiting(NOW - 60_000), to_agent="a2")
    assert running.conversation.awaiting_since == NOW
    assert running.commit is not None
    assert running.commit.state["awaiting_since"] == str(NOW)
    stopped = _transfer(_waiting(None), to_agent="a2")
    assert stopped.conversation.awaiting_since is None
    assert stopped.commit is not None
    assert stopped.commit.state["awaiting_since"] == ""


def test_transfer_to_skill_keeps_the_clock() -> None:
    """A transfer back to the queue leaves the clock as it was (the next assignment
    restarts it)."""
    assert _transfer(_waiting(NOW - 60_000), to_skill="tech").conversation.awaiting_since == (
        NOW - 60_000)
    assert _transfer(_waiting(None), to_skill="tech").conversation.awaiting_since is None


# --- requeue ---------------------------------------------------------------------------


def _requeue(conv: Conversation | None = None, **fields: Any) -> decide.Decision:
    fields.setdefault("to_agent", "a1")
    return decide.requeue(conv or _waiting(NOW - 90_000),
                          _cmd("requeue", actor="router", role="router", **fields), NOW, "mid")


def test_requeue_puts_the_conversation_at_the_front() -> None:
    """Requeue: queued, no assignee, at the front (its own priority kept for later), the
    next seq, clock kept, acked."""
    decision = _requeue()
    after = decision.conversation
    assert (after.status, after.assignee, after.front) == (Status.QUEUED, None, True)
    assert after.queue_priority == FRONT_PRIORITY
    assert after.priority == 0
    assert (after.last_seq, after.updated_ts, after.skill) == (6, NOW, "billing")
    assert after.awaiting_since == NOW - 90_000
    commit = decision.commit
    assert commit is not None
    assert commit.expect == 5
    assert commit.state == after.to_state()
    assert commit.state["front"] == "1"
    assert decision.reply == {"type": "ok", "last_seq": 6}


def test_requeue_stores_one_queued_message_from_the_system() -> None:
    """One system message with event kind 'queued', the skill, reason agent_offline and the
    agent it came from."""
    commit = _requeue().commit
    assert commit is not None
    (msg,) = _messages(commit)
    Message.model_validate(msg)
    assert (msg["seq"], msg["message_id"], msg["ts"]) == (6, "mid", NOW)
    assert msg["sender"] == {"role": "system", "id": "raydesk"}
    assert msg["event"] == {"kind": "queued", "skill": "billing", "reason": "agent_offline",
                            "from_agent": "a1"}


def test_requeue_reason_comes_from_the_command() -> None:
    """cmd.reason['why'] is the message's reason."""
    commit = _requeue(reason={"why": "first_reply_timeout"}).commit
    assert commit is not None
    assert _messages(commit)[0]["event"]["reason"] == "first_reply_timeout"


def test_requeue_moves_the_conversation_from_the_agent_to_the_queue() -> None:
    """The ops take it off the agent's set and add it to the queue at now."""
    commit = _requeue().commit
    assert commit is not None
    assert commit.ops == [("SREM", keys.agent_convs_key("a1"), "c1"),
                          ("ZADD", keys.QUEUE, NOW, "c1")]


def test_requeue_tells_the_customer_and_the_old_agent() -> None:
    """The message is published to the customer and to the agent who lost it."""
    commit = _requeue().commit
    assert commit is not None
    assert commit.publish == [(keys.channel("v1"), commit.messages[0]),
                              (keys.channel("a1"), commit.messages[0])]


def test_requeue_without_naming_the_agent() -> None:
    """A requeue that names no agent takes the conversation from whoever has it."""
    decision = _requeue(to_agent=None)
    assert decision.conversation.status is Status.QUEUED
    assert decision.commit is not None
    assert ("SREM", keys.agent_convs_key("a1"), "c1") in decision.commit.ops


def test_requeue_does_not_mutate_the_input() -> None:
    """The conversation passed in is unchanged (a failed commit changes nothing)."""
    conv = _waiting(NOW - 1)
    before = conv.to_state()
    _requeue(conv)
    assert conv.to_state() == before


@pytest.mark.parametrize("status", [Status.BOT, Status.QUEUED, Status.CLOSED])
def test_requeue_when_not_assigned_is_conflict(status: Status) -> None:
    """Only an assigned conversation can be requeued."""
    with pytest.raises(Conflict, match="not assigned"):
        _requeue(_conv(status, assignee=None), to_agent=None)


def test_requeue_for_another_agent_is_conflict() -> None:
    """A requeue naming an agent that no longer has the conversation is a Conflict."""
    with pytest.raises(Conflict, match="no longer assigned to a2"):
        _requeue(to_agent="a2")


# --- visitor_card ----------------------------------------------------------------------


def test_visitor_card() -> None:
    """The card carries the id, name, email and decoded attributes; blanks become None."""
    card = decide.visitor_card("v1", {"name": "Vi", "email": "", "attributes": '{"plan": "pro"}',
                                      "token_hash": "secret"})
    assert card == {"id": "v1", "name": "Vi", "email": None, "attributes": {"plan": "pro"}}


def test_visitor_card_without_attributes() -> None:
    """A visitor without attributes gets an empty attribute map."""
    assert decide.visitor_card("v2", {"skill": "x"})["attributes"] == {}


def test_visitor_card_of_unknown_visitor_is_not_found() -> None:
    """No visitor fields means NotFound."""
    with pytest.raises(NotFound, match="v9"):
        decide.visitor_card("v9", {})


def test_requeue_for_a_missed_deadline_checks_the_deadline_again() -> None:
    """A reply-deadline requeue is refused (Conflict) if the customer is no longer waiting
    or has not waited past the deadline, and goes through when it has."""
    waiting_since = NOW - 90_000
    conv = _conv(Status.ASSIGNED)
    overdue = ShardCommand(kind="requeue", conversation_id="c1", actor_id="router",
                           actor_role="router", to_agent="a1",
                           reason={"why": "reply_deadline", "deadline_ms": 60_000})
    answered = dataclasses.replace(conv, awaiting_since=None)
    with pytest.raises(Conflict):
        decide.requeue(answered, overdue, NOW, "m")
    recent = dataclasses.replace(conv, awaiting_since=NOW - 30_000)
    with pytest.raises(Conflict):
        decide.requeue(recent, overdue, NOW, "m")
    late = dataclasses.replace(conv, awaiting_since=waiting_since)
    decision = decide.requeue(late, overdue, NOW, "m")
    event = json.loads(decision.commit.messages[0])["event"] if decision.commit else {}
    assert event["reason"] == "reply_deadline" and decision.conversation.front


# --- the agents' feed ------------------------------------------------------------------


def _feed(decision: decide.Decision) -> list[dict[str, Any]]:
    assert decision.commit is not None
    return [json.loads(frame) for channel, frame in decision.commit.publish
            if channel == keys.channel(keys.AGENT_FEED)]


def test_agents_hear_a_conversation_open() -> None:
    """Opening publishes one feed event with the new conversation's status and skill."""
    decision = _open()
    decide.tell_agents(None, decision)
    [event] = _feed(decision)
    assert event["type"] == "conversation" and event["conversation_id"] == "c1"
    assert (event["status"], event["skill"], event["last_seq"]) == ("queued", "billing", 3)


def test_agents_hear_status_and_assignee_changes_only() -> None:
    """A close or an assignment is in the feed; a plain message is not."""
    conv = _conv()
    closed = decide.close(conv, _cmd("close", "a1", "agent"), NOW, "id-9")
    decide.tell_agents(conv, closed)
    assert [e["status"] for e in _feed(closed)] == ["closed"]
    message = decide.send_message(conv, _cmd(), NOW, "id-8")
    decide.tell_agents(conv, message)
    assert _feed(message) == []
    queued = _conv(Status.QUEUED, assignee=None)
    assigned = decide.assign(queued, _cmd("assign", "router", "router", to_agent="a2",
                                          reason={}), NOW, "id-7", VISITOR_CARD)
    decide.tell_agents(queued, assigned)
    assert [(e["status"], e["assignee"]) for e in _feed(assigned)] == [("assigned", "a2")]


def test_the_feed_never_carries_message_text() -> None:
    """Feed events describe the conversation, never what anyone wrote."""
    decision = _open()
    decide.tell_agents(None, decision)
    assert "hello" not in json.dumps(_feed(decision))
