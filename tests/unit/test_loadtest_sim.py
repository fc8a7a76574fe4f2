"""What simulated customers and agents make of the frames they receive (no sockets)."""

from __future__ import annotations

import time
from typing import Any

from raydesk.loadtest.people import Agent, Customer
from raydesk.loadtest.sim import Env
from raydesk.loadtest.texts import Mix, Phrasebook

RUN = "r1"


def env() -> Env:
    e = Env(ws_url="ws://127.0.0.1:1/v1/ws", worker=0, run_id=RUN, agent_delay_s=0.01)
    e.step_from, e.step_until = 0.0, float("inf")
    return e


def message(seq: int, role: str, sender: str = "x", cid: str = "c1", **extra: Any) -> dict[
        str, Any]:
    return {"type": "message", "conversation_id": cid, "seq": seq,
            "sender": {"role": role, "id": sender}, "text": "t", "ts": 0, **extra}


async def test_a_bot_answer_times_the_question_it_answers() -> None:
    """The customer's message to the bot -> the bot's message: one bot_reply latency;
    a hand-off ends the bot's turns."""
    e = env()
    customer = Customer(e, "token", Phrasebook(Mix(faq=1, offtopic=0, human=0), (), 1))
    customer.id = "v1"
    await customer.say()  # no socket: recorded as sent, not delivered
    cmid = next(iter(customer.pending))
    customer.on_ack({"type": "ack", "client_msg_id": cmid, "conversation_id": "c1", "seq": 2,
                     "message_id": "m", "ts": 0})
    customer.on_message(message(1, "system", event={"kind": "opened", "status": "bot"}))
    customer.on_message(message(2, "customer", "v1", client_msg_id=cmid))
    assert not customer.settled  # the bot still owes its turn
    customer.on_message(message(3, "bot", "bot", bot={"confidence": 0.9}))
    assert e.recorder.latencies["bot_reply"].total.get_total_count() == 1
    assert customer.settled and customer.status == "bot"
    customer.on_message(message(4, "system", event={"kind": "handoff"}))
    assert customer.status == "queued" and not customer.settled


async def test_an_agent_answers_its_own_conversations_and_ignores_others() -> None:
    """A conversation of this run: greeted, its customer's messages timed and answered
    after the delay. Another run's: left alone, not even tracked."""
    e = env()
    agent = Agent(e, "token")
    agent.id = "a1"
    agent.on_message(message(4, "system", cid="mine", event={"kind": "assigned"}))
    agent.on_assigned({"type": "assigned", "conversation_id": "mine", "last_seq": 4,
                       "visitor": {"id": "v1", "attributes": {"loadtest": RUN}}})
    assert e.replies_due == 1  # its greeting
    sent = time.time() - 0.02
    agent.on_message(message(5, "customer", "v1", cid="mine",
                             client_msg_id=f"lt0.1.{int(sent * 1e6)}"))
    assert e.replies_due == 2
    assert e.recorder.latencies["customer_to_agent"].total.get_total_count() == 1
    assert agent.streams["mine"].start == 4 and agent.streams["mine"].live == {4, 5}

    agent.on_assigned({"type": "assigned", "conversation_id": "theirs", "last_seq": 4,
                       "visitor": {"id": "v9", "attributes": {}}})
    agent.on_message(message(5, "customer", "v9", cid="theirs", client_msg_id="web-1"))
    assert "theirs" not in agent.streams and agent.foreign == {"theirs"}
    assert e.replies_due == 2


async def test_a_refused_send_is_retried_then_counted() -> None:
    """unavailable: resent later with the same client_msg_id; anything else is final."""
    e = env()
    customer = Customer(e, "token", Phrasebook(Mix(), (), 1))
    await customer.say()
    cmid = next(iter(customer.pending))
    customer.on_error({"type": "error", "code": "unavailable", "message": "m", "ref": cmid})
    assert cmid in customer.pending
    customer.on_error({"type": "error", "code": "too_large", "message": "m", "ref": cmid})
    assert cmid not in customer.pending and customer.refused
    assert e.errors == {"unavailable": 1, "too_large": 1}
