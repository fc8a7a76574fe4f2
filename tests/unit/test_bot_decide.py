"""raydesk.decide with the bot: opening to the bot, the bot's turns, and linking the
questions it could not answer to the first human answer; plus the bot's config section and
the conversation state it adds."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.policy import Turn
from raydesk import decide
from raydesk import store as keys
from raydesk.config import BotConfig, load_config
from raydesk.conversation import Conversation, Status
from raydesk.errors import ConfigError, Conflict
from raydesk.schema import Message, Sender
from tests.unit.test_decide import NOW, _cmd, _messages

LATER = NOW + 5_000


def _open_bot(bot: bool = True, skill: str | None = "billing") -> decide.Decision:
    visitor = {"skill": skill or "", "inbox": "web"}
    return decide.open_conversation(_cmd(), visitor, NOW, ["id-1", "id-2", "id-3"], skill,
                                    bot=bot)


def _bot_conv(last_seq: int = 2, unanswered: int = 0, open_questions: tuple[int, ...] = (),
              skill: str | None = "billing", status: Status = Status.BOT) -> Conversation:
    return Conversation(id="c1", customer="v1", status=status, last_seq=last_seq,
                        skill=skill, inbox="web", created_ts=NOW, updated_ts=NOW,
                        unanswered=unanswered, open_questions=open_questions)


def _question(seq: int = 2, text: str = "where is my parcel") -> Message:
    return Message(conversation_id="c1", seq=seq, message_id=f"q-{seq}",
                   client_msg_id="m-1", sender=Sender(role="customer", id="v1"), text=text,
                   ts=NOW)


def _turn(conv: Conversation, turn: Turn, question: Message | None = None,
          version: str | None = "minilm-1") -> decide.Decision:
    return decide.bot_turn(conv, turn, question or _question(conv.last_seq), LATER,
                           ["b-1", "b-2"], version)


ANSWER = Turn("answer", "We ship in 2 days.", faq_id="ship", confidence=0.8)
CLARIFY = Turn("clarify", "Could you say it another way?", intent="billing", confidence=0.45)


# --- open_conversation with the bot ----------------------------------------------------


def test_open_with_the_bot_stores_opened_and_the_message_only() -> None:
    """Opening to the bot stores 'opened' (1, status bot) and the customer's message (2);
    no 'queued' message."""
    decision = _open_bot()
    assert decision.commit is not None
    msgs = _messages(decision.commit)
    assert [m["seq"] for m in msgs] == [1, 2]
    assert [m["message_id"] for m in msgs] == ["id-1", "id-2"]
    assert msgs[0]["event"] == {"kind": "opened", "status": "bot"}
    assert msgs[1]["sender"] == {"role": "customer", "id": "v1"}
    for m in msgs:
        Message.model_validate(m)


def test_open_with_the_bot_stays_with_the_bot_at_seq_2() -> None:
    """The conversation is in bot status at last_seq 2, and the commit stores that state."""
    decision = _open_bot()
    conv = decision.conversation
    assert (conv.status, conv.last_seq, conv.skill, conv.inbox) == (
        Status.BOT, 2, "billing", "web")
    assert (conv.unanswered, conv.open_questions, conv.assignee) == (0, (), None)
    assert decision.commit is not None
    assert decision.commit.state == conv.to_state()
    assert decision.commit.expect == 0


def conv_due(decision: decide.Decision) -> int:
    return decision.conversation.bot_due


def test_open_with_the_bot_does_not_queue() -> None:
    """No QUEUE op and no router notification; the visitor's list still gets it."""
    decision = _open_bot()
    assert decision.commit is not None
    # The bot owes a turn on the first message; the visitor's list gets the conversation.
    assert decision.commit.ops == [("ZADD", keys.BOT_DUE, NOW, "c1"),
                                   ("ZADD", keys.visitor_convs_key("v1"), NOW, "c1")]
    assert conv_due(decision) == 2
    assert not any(op[1] == keys.QUEUE for op in decision.commit.ops)
    assert decision.router == []
    assert decision.commit.publish == [(keys.channel("v1"), m)
                                       for m in decision.commit.messages]


def test_open_with_the_bot_acks_seq_2() -> None:
    """The customer's ack is the same as without the bot."""
    assert _open_bot().reply == _open_bot(bot=False).reply == {
        "type": "ack", "client_msg_id": "m-1", "conversation_id": "c1", "seq": 2,
        "message_id": "id-2", "ts": NOW}


def test_open_without_the_bot_keeps_queueing() -> None:
    """bot=False: opened (status queued), message, queued at 1-3, QUEUE op, router told."""
    decision = _open_bot(bot=False)
    assert decision.commit is not None
    msgs = _messages(decision.commit)
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert msgs[0]["event"] == {"kind": "opened", "status": "queued"}
    assert msgs[2]["event"] == {"kind": "queued", "skill": "billing"}
    assert (decision.conversation.status, decision.conversation.last_seq) == (
        Status.QUEUED, 3)
    assert ("ZADD", keys.QUEUE, NOW, "c1") in decision.commit.ops
    assert decision.router == [("enqueued", ("c1", "billing", NOW))]


# --- bot_turn: answer ------------------------------------------------------------------


def test_bot_answer_is_a_bot_message_with_the_model_info() -> None:
    """An answer is one bot message at last_seq+1 carrying intent, FAQ id, confidence and
    the model version."""
    decision = _turn(_bot_conv(), ANSWER)
    assert decision.commit is not None
    (msg,) = _messages(decision.commit)
    assert msg["seq"] == 3
    assert msg["message_id"] == "b-1"
    assert msg["sender"] == {"role": "bot", "id": "bot"}
    assert msg["text"] == "We ship in 2 days."
    assert msg["ts"] == LATER
    assert msg["bot"] == {"faq_id": "ship", "confidence": 0.8, "model_version": "minilm-1"}
    assert "event" not in msg
    Message.model_validate(msg)
    assert decision.reply == {"type": "ok", "last_seq": 3}
    assert decision.router == []


def test_bot_answer_resets_unanswered_and_stays_with_the_bot() -> None:
    """An answer resets the unanswered count, records nothing and keeps the bot status."""
    conv = _bot_conv(unanswered=1, open_questions=(2,), last_seq=4)
    decision = _turn(conv, Turn("answer", "Hello!", intent="greeting", confidence=0.9))
    after = decision.conversation
    assert (after.status, after.last_seq, after.updated_ts) == (Status.BOT, 5, LATER)
    assert after.unanswered == 0
    # The answer settles the earlier open question: a later agent message is not its answer.
    assert after.open_questions == ()
    assert decision.commit is not None
    assert decision.commit.ops == [("ZREM", keys.BOT_DUE, "c1")]
    assert decision.commit.expect == 4
    assert decision.commit.state == after.to_state()
    assert decision.commit.publish == [(keys.channel("v1"), decision.commit.messages[0])]


def test_bot_turn_does_not_mutate_the_input() -> None:
    """The conversation passed in is unchanged."""
    conv = _bot_conv()
    before = dataclasses.replace(conv)
    _turn(conv, CLARIFY)
    _turn(conv, Turn("handoff", reason="bot_unavailable"))
    assert conv == before


# --- bot_turn: clarify -----------------------------------------------------------------


def test_bot_clarify_counts_and_records_the_question() -> None:
    """Asking to rephrase adds one to unanswered, adds the question's seq to the open
    questions, and stores the question (ZADD rd:unanswered, HSET rd:unanswered:q)."""
    conv = _bot_conv(last_seq=4, unanswered=0, open_questions=(2,))
    decision = _turn(conv, CLARIFY, _question(4, "the thing with the stuff"))
    after = decision.conversation
    assert (after.status, after.last_seq, after.unanswered) == (Status.BOT, 5, 1)
    assert after.open_questions == (2, 4)
    assert decision.commit is not None
    assert decision.commit.state["open_questions"] == "2,4"
    assert decision.commit.state["unanswered"] == "1"
    key = keys.question_key("c1", 4)
    assert key == "c1:4"
    (zadd, hset, zrem) = decision.commit.ops
    assert zrem == ("ZREM", keys.BOT_DUE, "c1")
    assert zadd == ("ZADD", keys.UNANSWERED, LATER, key)
    assert hset[:3] == ("HSET", keys.UNANSWERED_QUESTIONS, key)
    assert json.loads(hset[3]) == {
        "conversation_id": "c1", "seq": 4, "message_id": "q-4",
        "text": "the thing with the stuff", "ts": NOW, "inbox": "web", "action": "clarify",
        "reason": None, "intent": "billing", "faq_id": None, "confidence": 0.45,
        "model_version": "minilm-1"}
    (msg,) = _messages(decision.commit)
    assert msg["text"] == "Could you say it another way?"
    assert msg["bot"] == {"intent": "billing", "confidence": 0.45, "model_version": "minilm-1"}


def test_bot_clarify_twice_counts_two() -> None:
    """Two clarify turns in a row leave unanswered at 2 and both questions open."""
    first = _turn(_bot_conv(), CLARIFY).conversation
    first = dataclasses.replace(first, last_seq=first.last_seq + 1)  # the customer's reply
    second = _turn(first, CLARIFY, _question(first.last_seq)).conversation
    assert (second.unanswered, second.open_questions) == (2, (2, 4))


# --- bot_turn: handoff -----------------------------------------------------------------


def test_bot_handoff_stores_handoff_then_queued() -> None:
    """A hand-off stores a 'handoff' system message (reason, intent, confidence, model
    version) and a 'queued' one, at last_seq+1 and +2."""
    turn = Turn("handoff", intent="refund", confidence=0.9, reason="intent", skill="payments")
    decision = _turn(_bot_conv(last_seq=6), turn, _question(6))
    assert decision.commit is not None
    handoff, queued = _messages(decision.commit)
    assert (handoff["seq"], handoff["message_id"]) == (7, "b-1")
    assert (queued["seq"], queued["message_id"]) == (8, "b-2")
    assert handoff["sender"] == queued["sender"] == {"role": "system", "id": "raydesk"}
    assert handoff["event"] == {"kind": "handoff", "reason": "intent", "intent": "refund",
                                "confidence": 0.9, "model_version": "minilm-1"}
    assert queued["event"] == {"kind": "queued", "skill": "payments"}
    assert handoff["ts"] == queued["ts"] == LATER
    for m in (handoff, queued):
        Message.model_validate(m)
    assert decision.reply == {"type": "ok", "last_seq": 8}
    assert decision.commit.expect == 6


@pytest.mark.parametrize(("turn_skill", "conv_skill", "skill"), [
    ("payments", "billing", "payments"), (None, "billing", "billing"), (None, None, None)])
def test_bot_handoff_queues_for_the_turns_skill_else_the_conversations(
        turn_skill: str | None, conv_skill: str | None, skill: str | None) -> None:
    """The conversation is queued (QUEUE op, router told) for the turn's skill, else its
    own."""
    turn = Turn("handoff", intent="x", confidence=0.7, reason="intent", skill=turn_skill)
    decision = _turn(_bot_conv(skill=conv_skill), turn)
    after = decision.conversation
    assert (after.status, after.skill, after.last_seq, after.unanswered) == (
        Status.QUEUED, skill, 4, 0)
    assert decision.commit is not None
    assert decision.commit.ops[-1] == ("ZADD", keys.QUEUE, LATER, "c1")
    assert decision.commit.state == after.to_state()
    assert decision.router == [("enqueued", ("c1", skill, LATER))]


def test_requested_handoff_records_no_question() -> None:
    """A customer who asked for a person is not training data: only the QUEUE op."""
    decision = _turn(_bot_conv(unanswered=1), Turn("handoff", reason="requested"))
    assert decision.commit is not None
    assert decision.commit.ops == [("ZREM", keys.BOT_DUE, "c1"),
                                   ("ZADD", keys.QUEUE, LATER, "c1")]
    assert decision.conversation.open_questions == ()
    assert decision.conversation.unanswered == 0
    (handoff, _) = _messages(decision.commit)
    assert handoff["event"] == {"kind": "handoff", "reason": "requested", "confidence": 0.0,
                                "model_version": "minilm-1"}


def test_unanswered_handoff_records_the_question_and_keeps_it_open() -> None:
    """A hand-off the bot could not avoid records the question and keeps it open for the
    agent's answer; without a model version none is stored."""
    conv = _bot_conv(last_seq=4, unanswered=1, open_questions=(2,))
    decision = _turn(conv, Turn("handoff", reason="bot_unavailable"), _question(4),
                     version=None)
    after = decision.conversation
    assert after.open_questions == (2, 4)
    assert decision.commit is not None
    ops = decision.commit.ops
    assert [op[:2] for op in ops] == [("ZADD", keys.UNANSWERED),
                                      ("HSET", keys.UNANSWERED_QUESTIONS),
                                      ("ZREM", keys.BOT_DUE),
                                      ("ZADD", keys.QUEUE)]
    record = json.loads(ops[1][3])
    assert (record["action"], record["reason"], record["model_version"]) == (
        "handoff", "bot_unavailable", None)
    (handoff, _) = _messages(decision.commit)
    assert "model_version" not in handoff["event"]


@pytest.mark.parametrize("status", [Status.QUEUED, Status.ASSIGNED, Status.CLOSED])
@pytest.mark.parametrize("turn", [ANSWER, CLARIFY, Turn("handoff", reason="requested")])
def test_bot_turn_when_not_with_the_bot_is_conflict(status: Status, turn: Turn) -> None:
    """The bot may only speak in a conversation in bot status."""
    with pytest.raises(Conflict, match="not with the bot"):
        _turn(_bot_conv(status=status), turn)


# --- send_message links the open questions ---------------------------------------------


def _assigned(open_questions: tuple[int, ...]) -> Conversation:
    return dataclasses.replace(_bot_conv(last_seq=9, open_questions=open_questions),
                               status=Status.ASSIGNED, assignee="a1")


def test_agent_reply_links_every_open_question() -> None:
    """The assigned agent's first message is stored as the answer (HSET rd:unanswered:a)
    of every open question, which are then cleared."""
    decision = decide.send_message(_assigned((2, 4)), _cmd(actor="a1", role="agent",
                                                           text="Refunded."), LATER, "ans")
    assert decision.commit is not None
    answer = {"seq": 10, "message_id": "ans", "text": "Refunded.", "agent_id": "a1",
              "ts": LATER}
    ops = decision.commit.ops
    assert [op[:3] for op in ops] == [("HSET", keys.UNANSWERED_ANSWERS, "c1:2"),
                                      ("HSET", keys.UNANSWERED_ANSWERS, "c1:4")]
    assert [json.loads(op[3]) for op in ops] == [answer, answer]
    assert decision.conversation.open_questions == ()
    assert decision.commit.state["open_questions"] == ""
    after_state = {**_assigned((2, 4)).to_state(), **decision.commit.state}
    assert Conversation.from_state("c1", after_state).open_questions == ()


def test_agent_reply_without_open_questions_links_nothing() -> None:
    """With no open question the agent's message has no ops and leaves the state key."""
    decision = decide.send_message(_assigned(()), _cmd(actor="a1", role="agent"), LATER, "m")
    assert decision.commit is not None
    assert decision.commit.ops == []
    assert "open_questions" not in decision.commit.state


@pytest.mark.parametrize("status", [Status.BOT, Status.QUEUED, Status.ASSIGNED])
def test_customer_message_does_not_link(status: Status) -> None:
    """A customer's message is not an answer: the questions stay open."""
    conv = dataclasses.replace(_assigned((2,)), status=status,
                               assignee="a1" if status is Status.ASSIGNED else None)
    decision = decide.send_message(conv, _cmd(text="hello?"), LATER, "m")
    assert decision.commit is not None
    # With the bot, the message is a turn the bot owes (and nothing is linked).
    assert decision.commit.ops == ([("ZADD", keys.BOT_DUE, LATER, conv.id)]
                                   if status is Status.BOT else [])
    assert decision.conversation.open_questions == (2,)
    assert "open_questions" not in decision.commit.state


# --- Conversation state ----------------------------------------------------------------


@given(status=st.sampled_from(list(Status)),
       unanswered=st.integers(min_value=0, max_value=10**6),
       open_questions=st.lists(st.integers(min_value=1, max_value=2**53), max_size=20),
       last_seq=st.integers(min_value=0, max_value=2**53))
def test_state_round_trip_with_bot_fields(status: Status, unanswered: int,
                                          open_questions: list[int], last_seq: int) -> None:
    """unanswered and open_questions survive to_state/from_state, as strings."""
    conv = Conversation(id="c", customer="v", status=status, last_seq=last_seq,
                        unanswered=unanswered, open_questions=tuple(open_questions))
    state = conv.to_state()
    assert all(isinstance(v, str) for v in state.values())
    assert state["open_questions"] == ",".join(str(q) for q in open_questions)
    assert Conversation.from_state("c", state) == conv


def test_state_without_bot_fields_reads_as_defaults() -> None:
    """A state hash stored before the bot existed reads as 0 unanswered, no questions."""
    state = Conversation(id="c", customer="v", status=Status.QUEUED).to_state()
    del state["unanswered"], state["open_questions"]
    back = Conversation.from_state("c", state)
    assert (back.unanswered, back.open_questions) == (0, ())


# --- BotConfig -------------------------------------------------------------------------


def _config_error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**overrides)
    return str(info.value)


def test_bot_defaults() -> None:
    """The bot is on for every inbox, with the default model and thresholds in order."""
    bot = load_config().bot
    assert bot == BotConfig()
    assert (bot.enabled, bot.inboxes, bot.model, bot.version) == (
        True, None, "models.default:build", "minilm-1")
    assert (bot.threshold, bot.handoff_below, bot.max_unanswered) == (0.6, 0.3, 2)


def test_handoff_below_above_threshold_is_refused() -> None:
    """handoff_below over threshold is a ConfigError under 'bot' naming handoff_below."""
    message = _config_error(bot={"threshold": 0.5, "handoff_below": 0.6})
    assert message.startswith("invalid configuration")
    assert "\n  bot: " in message
    assert "handoff_below must not exceed threshold" in message


def test_handoff_below_equal_to_threshold_is_allowed() -> None:
    """Equal thresholds are allowed (the bot never asks to rephrase)."""
    bot = load_config(bot={"threshold": 0.5, "handoff_below": 0.5}).bot
    assert bot.threshold == bot.handoff_below == 0.5


@pytest.mark.parametrize(("key", "value"), [
    ("threshold", 1.5), ("handoff_below", -0.1), ("max_unanswered", 0),
    ("version", "bad version"), ("encoder", "bert"), ("timeout_s", 0), ("model", ""),
    ("intent_skills", {"billing": "bad skill"})])
def test_wrong_bot_value_names_the_key(key: str, value: Any) -> None:
    """An out-of-range bot value is a ConfigError naming bot.<key>."""
    assert f"\n  bot.{key}" in _config_error(bot={key: value})


def test_unknown_bot_key_is_refused() -> None:
    """An unknown key under bot is refused by name."""
    assert "bot.treshold: unknown key" in _config_error(bot={"treshold": 0.5})


@pytest.mark.parametrize(("bot", "inbox", "takes"), [
    ({}, "web", True), ({}, None, True),
    ({"inboxes": ["web", "sales"]}, "web", True),
    ({"inboxes": ["web", "sales"]}, "support", False),
    ({"inboxes": ["web"]}, None, False),
    ({"inboxes": []}, "web", False),
    ({"enabled": False}, "web", False),
    ({"enabled": False, "inboxes": ["web"]}, "web", False),
])
def test_bot_takes_inboxes(bot: dict[str, Any], inbox: str | None, takes: bool) -> None:
    """The bot takes every inbox with inboxes None, only the listed ones otherwise, and
    none when disabled."""
    assert load_config(bot=bot).bot.takes(inbox) is takes


def test_user_config_carries_model_version_and_options() -> None:
    """user_config holds the model, the version and the options with the encoder."""
    bot = load_config(bot={"model": "/srv/model", "version": "v2", "encoder": "usem3",
                           "options": {"intents_file": "i.csv"}}).bot
    assert bot.user_config() == {"model": "/srv/model", "version": "v2",
                                 "options": {"encoder": "usem3", "intents_file": "i.csv"}}
    assert load_config().bot.user_config() == {
        "model": "models.default:build", "version": "minilm-1",
        "options": {"encoder": "minilm"}}


def test_turn_on_an_older_question_leaves_the_newer_one_due() -> None:
    """The customer wrote again before the bot's turn on their first question: the bot
    still owes a turn on the newer one (bot_due stays, nothing leaves the due set)."""
    conv = dataclasses.replace(_bot_conv(last_seq=3), bot_due=3)
    decision = _turn(conv, ANSWER, _question(2))
    assert decision.conversation.bot_due == 3
    assert decision.commit is not None
    assert ("ZREM", keys.BOT_DUE, "c1") not in decision.commit.ops
    settled = _turn(decision.conversation, ANSWER, _question(3))
    assert settled.conversation.bot_due == 0
    assert settled.commit is not None and ("ZREM", keys.BOT_DUE, "c1") in settled.commit.ops


def test_handoff_settles_every_due_turn() -> None:
    """After a hand-off the bot is silent, so it owes nothing, even on a newer message."""
    conv = dataclasses.replace(_bot_conv(last_seq=3), bot_due=3)
    decision = _turn(conv, Turn("handoff", reason="requested"), _question(2))
    assert decision.conversation.bot_due == 0
    assert decision.commit is not None and ("ZREM", keys.BOT_DUE, "c1") in decision.commit.ops


def test_close_leaves_the_due_set() -> None:
    conv = dataclasses.replace(_bot_conv(), bot_due=2)
    decision = decide.close(conv, _cmd(kind="close"), LATER, "m")
    assert decision.conversation.bot_due == 0
    assert decision.commit is not None and ("ZREM", keys.BOT_DUE, "c1") in decision.commit.ops


# --- the question and the bot's turn in one commit (the shard's inline turn) -----------


def _question_then_turn(turn: Turn) -> tuple[decide.Decision, decide.Decision, keys.Commit]:
    """A customer's message to the bot, and the bot's turn on it, as the shard commits them
    when the model answered in time."""
    sent = decide.send_message(_bot_conv(), _cmd(text="where is my parcel"), NOW, "q-3")
    assert sent.commit is not None and sent.message is not None
    answered = _turn(sent.conversation, turn, sent.message)
    assert answered.commit is not None
    return sent, answered, sent.commit.then(answered.commit)


def test_question_and_answer_in_one_commit() -> None:
    """One commit stores the question (seq 3) and the answer (seq 4) in order, delivers both
    in order, keeps the question's dedupe key, and ends with nothing owed: the state is the
    turn's, and the due set gets the question and loses it again in the same call."""
    sent, answered, both = _question_then_turn(ANSWER)
    assert both.expect == 2
    assert [json.loads(m)["seq"] for m in both.messages] == [3, 4]
    assert [json.loads(m)["sender"]["role"] for m in both.messages] == ["customer", "bot"]
    assert [json.loads(frame)["seq"] for _, frame in both.publish] == [3, 4]
    assert sent.commit is not None
    assert (both.dedupe, both.dedupe_value) == (sent.commit.dedupe, sent.commit.dedupe_value)
    assert both.state["last_seq"] == "4" and both.state["bot_due"] == "0"
    assert Conversation.from_state("c1", both.state) == answered.conversation
    due = [op for op in both.ops if op[1] == keys.BOT_DUE]
    assert [op[0] for op in due] == ["ZADD", "ZREM"]


def test_question_and_handoff_in_one_commit() -> None:
    """A request for a person: the question, ``handoff`` and ``queued`` (3, 4, 5) in one
    commit, which also queues the conversation."""
    _, answered, both = _question_then_turn(Turn("handoff", reason="requested"))
    assert [json.loads(m)["seq"] for m in both.messages] == [3, 4, 5]
    assert [json.loads(m).get("event", {}).get("kind") for m in both.messages] == [
        None, "handoff", "queued"]
    assert both.state["status"] == Status.QUEUED.value
    assert ("ZADD", keys.QUEUE, LATER, "c1") in both.ops
    assert answered.router == [("enqueued", ("c1", "billing", LATER))]


def test_then_refuses_a_change_that_does_not_follow() -> None:
    """Only the same conversation's very next change, without a dedupe key of its own, can
    follow in one commit; the message says which rule was broken."""
    first = keys.Commit(cid="c1", expect=2, messages=["a"], dedupe="v1|m", dedupe_value="3")
    for following, words in (
            (keys.Commit(cid="c2", expect=3, messages=["b"]), "c2 cannot follow c1"),
            (keys.Commit(cid="c1", expect=2, messages=["b"]), "expects seq 2, not 3"),
            (keys.Commit(cid="c1", expect=3, messages=["b"], dedupe="v1|n"), "dedupe")):
        with pytest.raises(ValueError, match=words):
            first.then(following)
    assert first.messages == ["a"]  # unchanged
