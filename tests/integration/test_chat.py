"""Customers and agents chatting over real WebSockets through a real raydesk on Ray."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.client import Api, Client

pytestmark = pytest.mark.integration


async def _online_agent(api: Api, connect: Any, skill: str,
                        **body: Any) -> tuple[dict[str, str], Client]:
    agent = await api.agent(skills=[skill], **body)
    client = await connect(agent["token"])
    await client.send_frame({"type": "presence", "status": "online"})
    return agent, client


async def _open(api: Api, connect: Any, skill: str, text: str = "hello") -> tuple[Client, str]:
    visitor = await api.visitor(skill=skill, name="Customer")
    customer = await connect(visitor["token"])
    ack = await customer.send_text(text)
    return customer, ack["conversation_id"]


async def test_two_customers_two_agents_chat(api: Api, connect: Any, skill: str) -> None:
    """Each of two customers is assigned to a different agent (least loaded) and both sides
    see every message of their conversation in seq order, and nothing of the other one."""
    a1, agent1 = await _online_agent(api, connect, skill)
    a2, agent2 = await _online_agent(api, connect, skill)
    c1, cid1 = await _open(api, connect, skill, "I need help with billing")
    c2, cid2 = await _open(api, connect, skill, "my parcel is late")
    assigned1 = await c1.expect_event("assigned", cid1)
    assigned2 = await c2.expect_event("assigned", cid2)
    owners = {assigned1["event"]["agent_id"], assigned2["event"]["agent_id"]}
    assert owners == {a1["agent_id"], a2["agent_id"]}
    agents = {a1["agent_id"]: agent1, a2["agent_id"]: agent2}
    for customer, cid, assigned in ((c1, cid1, assigned1), (c2, cid2, assigned2)):
        agent = agents[assigned["event"]["agent_id"]]
        note = await agent.expect_type("assigned", conversation_id=cid)
        assert note["visitor"]["name"] == "Customer"
        reply = await agent.send_text(f"agent here for {cid}", conversation_id=cid)
        got = await customer.expect(lambda f, r=reply, c=cid: f["type"] == "message"
                                    and f["seq"] == r["seq"] and f["conversation_id"] == c)
        assert got["text"] == f"agent here for {cid}"
        assert got["sender"]["role"] == "agent"
        back = await customer.send_text("thanks", conversation_id=cid)
        seen = await agent.expect(lambda f, b=back, c=cid: f["type"] == "message"
                                  and f["seq"] == b["seq"] and f["conversation_id"] == c)
        assert seen["text"] == "thanks"
    for customer, cid in ((c1, cid1), (c2, cid2)):
        seqs = [m["seq"] for m in customer.messages(cid)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert all(f.get("conversation_id") in (None, cid) for f in customer.frames
                   if f["type"] == "message")


async def test_one_visitor_two_devices(api: Api, connect: Any, skill: str) -> None:
    """Every connection of a visitor gets every event; both devices see one conversation."""
    visitor = await api.visitor(skill=skill)
    phone = await connect(visitor["token"])
    laptop = await connect(visitor["token"])
    ack = await phone.send_text("from my phone")
    cid = ack["conversation_id"]
    seen = await laptop.expect(lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert seen["text"] == "from my phone" and seen["client_msg_id"] == ack["client_msg_id"]
    ack2 = await laptop.send_text("and from my laptop")
    assert ack2["conversation_id"] == cid and ack2["seq"] > ack["seq"]
    await phone.expect(lambda f: f["type"] == "message" and f["seq"] == ack2["seq"])
    assert [m["seq"] for m in phone.messages(cid)] == [m["seq"] for m in laptop.messages(cid)]


async def test_duplicate_client_msg_id_is_stored_once(api: Api, connect: Any,
                                                      skill: str) -> None:
    """The same client_msg_id sent again returns the same ack and stores nothing new, also
    from a new connection."""
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    first = await customer.send_text("pay my bill", client_msg_id="dup-1")
    again = await customer.send_text("pay my bill", client_msg_id="dup-1")
    assert again == first
    await customer.expect(lambda f: f["type"] == "message" and f.get("client_msg_id") == "dup-1")
    other = await connect(visitor["token"])
    third = await other.send_text("pay my bill", conversation_id=first["conversation_id"],
                                  client_msg_id="dup-1")
    assert third == first
    response = await api.http.get(f"/v1/conversations/{first['conversation_id']}/messages",
                                  headers={"Authorization": f"Bearer {visitor['token']}"})
    assert response.status_code == 200, response.text
    texts = [m for m in response.json()["messages"] if m.get("client_msg_id") == "dup-1"]
    assert len(texts) == 1
    await asyncio.sleep(0.3)
    assert sum(1 for f in customer.frames if f["type"] == "message"
               and f.get("client_msg_id") == "dup-1") == 1


async def test_reconnect_and_sync(api: Api, connect: Any, skill: str) -> None:
    """A customer away while an agent writes gets exactly the missed messages by sync."""
    _, agent_ws = await _online_agent(api, connect, skill)
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    ack = await customer.send_text("anyone there?")
    cid = ack["conversation_id"]
    await agent_ws.expect_type("assigned", conversation_id=cid)
    await customer.expect_event("assigned", cid)
    last_seen = max(m["seq"] for m in customer.messages(cid))
    await customer.close()
    sent = [await agent_ws.send_text(f"reply {i}", conversation_id=cid) for i in range(3)]
    back = await connect(visitor["token"])
    summary = next(c for c in back.welcome["conversations"] if c["conversation_id"] == cid)
    assert summary["last_seq"] == sent[-1]["seq"] and summary["status"] == "assigned"
    await back.send_frame({"type": "sync", "conversation_id": cid, "since": last_seen})
    synced = await back.expect_type("synced", conversation_id=cid)
    assert synced == {"type": "synced", "conversation_id": cid, "last_seq": sent[-1]["seq"],
                      "more": False}
    missed = back.messages(cid)
    assert [m["seq"] for m in missed] == list(range(last_seen + 1, sent[-1]["seq"] + 1))
    assert [m["text"] for m in missed] == ["reply 0", "reply 1", "reply 2"]


async def test_typing_and_read_reach_the_other_side(api: Api, connect: Any,
                                                    skill: str) -> None:
    """Typing and read are relayed to the other participant, not to the sender; a read
    cursor is kept and never moves back."""
    _, agent_ws = await _online_agent(api, connect, skill)
    customer, cid = await _open(api, connect, skill)
    await agent_ws.expect_type("assigned", conversation_id=cid)
    await customer.send_frame({"type": "typing", "conversation_id": cid, "on": True})
    typing = await agent_ws.expect_type("typing", conversation_id=cid)
    assert typing["on"] is True and typing["sender"]["role"] == "customer"
    reply = await agent_ws.send_text("here", conversation_id=cid)
    await customer.send_frame({"type": "read", "conversation_id": cid, "seq": reply["seq"]})
    read = await agent_ws.expect_type("read", conversation_id=cid)
    assert read["seq"] == reply["seq"] and read["sender"]["id"] == customer.welcome["id"]
    await customer.send_frame({"type": "read", "conversation_id": cid, "seq": 99_999})
    error = await customer.expect_type("error")
    assert error["code"] == "bad_request" and "seq" in error["message"]
    await asyncio.sleep(0.3)
    assert not [f for f in customer.frames if f["type"] in ("typing", "read")]


async def test_queue_positions_and_release_on_close(api: Api, connect: Any,
                                                    skill: str) -> None:
    """With one agent at max_chats 1, later customers queue and hear their positions count
    down; closing the first conversation assigns the head of the queue."""
    agent, agent_ws = await _online_agent(api, connect, skill, max_chats=1)
    first, cid1 = await _open(api, connect, skill, "first")
    await agent_ws.expect_type("assigned", conversation_id=cid1)
    second, cid2 = await _open(api, connect, skill, "second")
    third, cid3 = await _open(api, connect, skill, "third")
    await second.expect_type("queue", conversation_id=cid2, position=1)
    # Shards tell the router in parallel, so third may briefly hear 1 before 2.
    await third.expect_type("queue", conversation_id=cid3, position=2)
    mark = len(third.frames)
    await agent_ws.send_frame({"type": "close", "conversation_id": cid1})
    closed = await first.expect_event("closed", cid1)
    assert closed["event"]["by"] == agent["agent_id"]
    await agent_ws.expect_type("assigned", conversation_id=cid2)
    moved_up = await third.expect(lambda f: f["type"] == "queue", after=mark)
    assert moved_up == {"type": "queue", "conversation_id": cid3, "position": 1,
                        "agents_online": moved_up["agents_online"]}
    assert moved_up["agents_online"] >= 1
    # A closed conversation takes no more messages from the agent.
    await agent_ws.send_frame({"type": "send", "client_msg_id": "late", "conversation_id":
                               cid1, "text": "one more thing"})
    error = await agent_ws.expect(lambda f: f["type"] == "error" and f["ref"] == "late")
    assert error["code"] == "conflict"
    # A resend of a message stored before the close still gets its original ack ...
    early = next(m for m in first.messages(cid1) if m["sender"]["role"] == "customer")
    resent = await first.send_text("first", client_msg_id=early["client_msg_id"])
    assert (resent["conversation_id"], resent["seq"]) == (cid1, early["seq"])
    # ... while writing anew opens a new conversation.
    again = await first.send_text("me again")
    assert again["conversation_id"] not in (cid1, cid2, cid3)


async def test_away_agent_gets_nothing_new_but_may_accept(api: Api, connect: Any,
                                                           skill: str) -> None:
    """An away agent is not assigned new conversations but can accept one by hand."""
    agent, agent_ws = await _online_agent(api, connect, skill)
    await agent_ws.send_frame({"type": "presence", "status": "away"})
    await asyncio.sleep(0.5)
    customer, cid = await _open(api, connect, skill)
    await customer.expect_type("queue", conversation_id=cid)
    await asyncio.sleep(0.5)
    assert not [f for f in agent_ws.frames if f["type"] == "assigned"]
    await agent_ws.send_frame({"type": "accept", "conversation_id": cid})
    await agent_ws.expect_type("assigned", conversation_id=cid)
    assigned = await customer.expect_event("assigned", cid)
    assert assigned["event"]["agent_id"] == agent["agent_id"]
    assert assigned["event"]["reason"] == {"by": "accept"}
    await agent_ws.send_frame({"type": "accept", "conversation_id": cid})
    error = await agent_ws.expect_type("error")
    assert error["code"] == "conflict"
    # The customer and the agent may pick the same client_msg_id: dedupe is per sender.
    mine = await customer.send_text("same id, customer", cid, client_msg_id="same-1")
    theirs = await agent_ws.send_text("same id, agent", cid, client_msg_id="same-1")
    assert theirs["seq"] == mine["seq"] + 1
    await customer.expect(lambda f: f["type"] == "message" and f["seq"] == theirs["seq"])


async def test_transfer_to_agent(api: Api, connect: Any, skill: str) -> None:
    """A transfer moves the conversation to the other agent, who then talks to the customer;
    the first agent can no longer write, and a full agent is refused with a clear error."""
    a1, ws1 = await _online_agent(api, connect, skill)
    customer, cid = await _open(api, connect, skill)
    await ws1.expect_type("assigned", conversation_id=cid)
    # Only now does the second agent come online, so the first one got the chat.
    a2, ws2 = await _online_agent(api, connect, f"{skill}-other", max_chats=1)
    await ws2.send_frame({"type": "transfer", "conversation_id": cid,
                          "to_agent": a2["agent_id"]})
    assert (await ws2.expect_type("error"))["code"] == "forbidden"
    full, full_ws = await _online_agent(api, connect, f"{skill}-full", max_chats=1)
    _, side_cid = await _open(api, connect, f"{skill}-full")
    await full_ws.expect_type("assigned", conversation_id=side_cid)
    await ws1.send_frame({"type": "transfer", "conversation_id": cid,
                          "to_agent": full["agent_id"]})
    refused = await ws1.expect_type("error")
    assert refused["code"] == "conflict" and "limit" in refused["message"]
    await ws1.send_frame({"type": "transfer", "conversation_id": cid,
                          "to_agent": a2["agent_id"]})
    await ws2.expect_type("assigned", conversation_id=cid)
    moved = await customer.expect_event("transferred", cid)
    assert moved["event"] == {"kind": "transferred", "from_agent": a1["agent_id"],
                              "to_agent": a2["agent_id"]}
    reply = await ws2.send_text("I can take it from here", conversation_id=cid)
    await customer.expect(lambda f: f["type"] == "message" and f["seq"] == reply["seq"])
    await ws1.send_frame({"type": "send", "client_msg_id": "old-agent", "conversation_id":
                          cid, "text": "still here?"})
    error = await ws1.expect(lambda f: f["type"] == "error" and f["ref"] == "old-agent")
    assert error["code"] == "forbidden"


async def test_customer_closes_and_history_over_rest(api: Api, connect: Any,
                                                     skill: str) -> None:
    """A customer closes its conversation; the history and the incremental conversation
    list over REST show it, and a second read of the list with the cursor is empty."""
    agent = await api.agent(skills=[skill])
    headers = {"Authorization": f"Bearer {agent['token']}"}
    start = (await api.http.get("/v1/conversations", headers=headers)).json()["cursor"]
    customer, cid = await _open(api, connect, skill, "question")
    await customer.send_frame({"type": "close", "conversation_id": cid})
    await customer.expect_event("closed", cid)
    page = (await api.http.get(f"/v1/conversations?updated_since={start}",
                               headers=headers)).json()
    mine = [c for c in page["conversations"] if c["conversation_id"] == cid]
    assert len(mine) == 1 and mine[0]["status"] == "closed"
    assert mine[0]["customer"] == customer.welcome["id"]
    closed_only = (await api.http.get(f"/v1/conversations?updated_since={start}&status=queued",
                                      headers=headers)).json()
    assert cid not in [c["conversation_id"] for c in closed_only["conversations"]]
    later = (await api.http.get(f"/v1/conversations?updated_since={page['cursor']}",
                                headers=headers)).json()
    assert cid not in [c["conversation_id"] for c in later["conversations"]]
    history = (await api.http.get(f"/v1/conversations/{cid}/messages?since=1&limit=2",
                                  headers=headers)).json()
    assert [m["seq"] for m in history["messages"]] == [2, 3]
    assert history["last_seq"] == 4
    assert history["messages"][0]["text"] == "question"


async def test_many_connections_on_the_gateways(api: Api, connect: Any, skill: str) -> None:
    """Forty connections of one visitor stay open together (none stalls, as a Serve slot
    limit would make them) and every one of them receives the visitor's message."""
    visitor = await api.visitor(skill=skill)
    clients = [await connect(visitor["token"]) for _ in range(40)]
    ack = await clients[0].send_text("to all my tabs")
    for client in clients:
        seen = await client.expect(lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
        assert seen["message_id"] == ack["message_id"]


async def test_openapi_and_health(api: Api) -> None:
    """/healthz answers, and the OpenAPI document lists the REST API at /docs."""
    assert (await api.http.get("/healthz")).status_code == 200
    spec = (await api.http.get("/openapi.json")).json()
    for path in ("/v1/visitors", "/v1/agents", "/v1/agents/login", "/v1/conversations",
                 "/v1/conversations/{conversation_id}/messages", "/v1/faq"):
        assert path in spec["paths"], path
    assert (await api.http.get("/docs")).status_code == 200
    unknown = await api.http.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_welcome_comes_first(api: Api, connect: Any, skill: str) -> None:
    """An agent connecting while a customer waits gets welcome before the assignment that
    its arrival causes."""
    agent = await api.agent(skills=[skill])
    _, cid = await _open(api, connect, skill)
    agent_ws = await connect(agent["token"])
    assert agent_ws.frames[0]["type"] == "welcome"
    await agent_ws.expect_type("assigned", conversation_id=cid)


async def test_an_agents_frames_keep_their_order_per_conversation(api: Api, connect: Any,
                                                                   skill: str) -> None:
    """An agent in three chats writes 12 messages to each, interleaved, without waiting for
    acks. The gateway handles different conversations' frames at once, but each customer
    gets their conversation's messages in the order written, each acknowledged once,
    with seqs in that order."""
    _, agent_ws = await _online_agent(api, connect, skill, max_chats=3)
    chats = [await _open(api, connect, skill, f"customer {i}") for i in range(3)]
    for customer, cid in chats:
        await customer.expect_event("assigned", cid)
    burst = [(cid, f"{cid} #{n}", f"m-{i}-{n}") for n in range(12)
             for i, (_, cid) in enumerate(chats)]
    for cid, text, client_msg_id in burst:
        await agent_ws.send_frame({"type": "send", "conversation_id": cid, "text": text,
                                   "client_msg_id": client_msg_id})
    acks = {}
    for _, _, client_msg_id in burst:
        ack = await agent_ws.expect(lambda f, c=client_msg_id: f["type"] == "ack"
                                    and f["client_msg_id"] == c)
        acks[client_msg_id] = ack
    assert len([f for f in agent_ws.frames if f["type"] == "ack"
                and f["client_msg_id"].startswith("m-")]) == len(burst)
    for i, (customer, cid) in enumerate(chats):
        wanted = [f"{cid} #{n}" for n in range(12)]
        await customer.expect(lambda f, last=wanted[-1]: f["type"] == "message"
                              and f.get("text") == last)
        got = [f for f in customer.messages(cid) if f["sender"]["role"] == "agent"]
        assert [f["text"] for f in got] == wanted
        seqs = [acks[f"m-{i}-{n}"]["seq"] for n in range(12)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 12
        assert [f["seq"] for f in got] == seqs
