"""Tracing across the real processes: a message's spans, written by the gateway replicas
and the shard actors to the shared runtime's trace file (exporter: file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from raydesk.runtime import Runtime
from tests.integration.client import WAIT_S, Api
from tests.integration.conftest import BOT_INBOX

pytestmark = pytest.mark.integration

Span = dict[str, Any]


def _trace_file(runtime: Runtime) -> Path:
    path = runtime.config.tracing.path
    assert runtime.config.tracing.exporter == "file" and path is not None
    return Path(path)


def _read_spans(runtime: Runtime) -> list[Span]:
    path = _trace_file(runtime)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _spans_of(runtime: Runtime, message_id: str, wanted: set[str],
                    delivered_to: set[str]) -> list[Span]:
    """The spans naming ``message_id``, once every name in ``wanted`` is among them and
    it was delivered to each of ``delivered_to`` (each process exports a batch every
    second, on its own schedule)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        spans = [s for s in _read_spans(runtime)
                 if s["attributes"].get("raydesk.message_id") == message_id]
        recipients = {s["attributes"]["raydesk.participant_id"] for s in spans
                      if s["name"] == "deliver"}
        if wanted <= {s["name"] for s in spans} and delivered_to <= recipients:
            return spans
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"spans of {message_id}: {[s['name'] for s in spans]}, "
                                 f"delivered to {recipients}; wanted {sorted(wanted)}, "
                                 f"delivered to {delivered_to}")
        await asyncio.sleep(0.5)


async def test_one_trace_per_message_across_gateway_and_shard(
        runtime: Runtime, api: Api, connect: Any, skill: str) -> None:
    """A message's gateway receive, shard append, store commit and each gateway's deliver
    share one trace, each the child of the one before, with the message and conversation
    ids and the frame type; another message is another trace; clients see no tag."""
    agent = await api.agent(skills=[skill])
    agent_client = await connect(agent["token"])
    await agent_client.send_frame({"type": "presence", "status": "online"})
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    first = await customer.send_text("hello, tracing")
    cid = first["conversation_id"]
    await customer.expect_event("assigned", cid)
    second = await customer.send_text("second message", conversation_id=cid)
    seen = await agent_client.expect(lambda f: f["type"] == "message"
                                     and f.get("message_id") == second["message_id"])
    assert seen["text"] == "second message"  # the client got the frame, not the tag

    wanted = {"gateway receive", "shard append", "store commit", "deliver"}
    traces = []
    # The first message opened the conversation (the agent was not in it yet); by the
    # second the agent is a participant: delivered to both.
    for ack, readers in ((first, {visitor["visitor_id"]}),
                         (second, {visitor["visitor_id"], agent["agent_id"]})):
        spans = await _spans_of(runtime, ack["message_id"], wanted, readers)
        by_name: dict[str, list[Span]] = {}
        for span in spans:
            by_name.setdefault(span["name"], []).append(span)
        assert len({s["trace_id"] for s in spans}) == 1, spans
        [receive] = by_name["gateway receive"]
        [append] = by_name["shard append"]
        [commit] = by_name["store commit"]
        assert receive["parent_span_id"] is None
        assert append["parent_span_id"] == receive["span_id"]
        assert commit["parent_span_id"] == append["span_id"]
        assert all(d["parent_span_id"] == commit["span_id"] for d in by_name["deliver"])
        assert receive["process"] == "gateway" and append["process"].startswith("shard ")
        assert receive["attributes"]["raydesk.frame_type"] == "send"
        for span in spans:
            assert span["attributes"]["raydesk.conversation_id"] == cid
        assert all(d["attributes"]["raydesk.frame_type"] == "message"
                   for d in by_name["deliver"])
        traces.append(receive["trace_id"])
    assert traces[0] != traces[1]


def _ancestors(spans: dict[str, Span], span: Span, depth: int) -> list[Span]:
    """Up to `depth` ancestors of `span` found in `spans`, nearest first."""
    chain: list[Span] = []
    while len(chain) < depth and span["parent_span_id"] in spans:
        span = spans[span["parent_span_id"]]
        chain.append(span)
    return chain


async def test_the_bots_answer_is_in_the_trace_of_the_question(
        runtime: Runtime, api: Api, connect: Any, skill: str) -> None:
    """In a bot conversation, the bot's turn (a child of the question's shard append), its
    commit and the delivery of its answer to the customer are in the question's trace."""
    # A skill of its own: if the bot hands off, no later test's agent is given it.
    visitor = await api.visitor(inbox=BOT_INBOX, skill=skill)
    customer = await connect(visitor["token"])
    question = await customer.send_text("hello")
    cid = question["conversation_id"]
    answer = await customer.expect(lambda f: f["type"] == "message"
                                   and f["conversation_id"] == cid
                                   and f["seq"] > question["seq"]
                                   and f["sender"]["role"] in ("bot", "system"))
    asked = await _spans_of(runtime, question["message_id"], {"shard append"}, set())
    trace_id = asked[0]["trace_id"]
    # Each process exports its spans in its own batches: wait for the whole chain, the
    # gateway's deliver span can be on disk before the shard's commit and bot turn.
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        spans = {s["span_id"]: s for s in _read_spans(runtime) if s["trace_id"] == trace_id}
        delivered = [s for s in spans.values() if s["name"] == "deliver"
                     and s["attributes"].get("raydesk.message_id") == answer["message_id"]]
        chain = _ancestors(spans, delivered[0], 3) if delivered else []
        if len(chain) == 3 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert delivered, f"no deliver span of the answer in {sorted(spans)}"
    assert len(chain) == 3, f"the deliver span's ancestors are not all exported: {chain}"
    commit, bot_turn, append = chain
    assert (commit["name"], bot_turn["name"], append["name"]) == (
        "store commit", "bot turn", "shard append")
    assert append["attributes"]["raydesk.message_id"] == question["message_id"]
    assert bot_turn["attributes"]["raydesk.conversation_id"] == cid
