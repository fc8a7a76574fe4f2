"""Routing over real WebSockets: load, skills, capacity, response time, the queue, requeue
of a vanished agent, admin changes, and a router restart."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Any

import pytest
import ray

from raydesk.runtime import Runtime
from tests.integration.client import Api, Client

pytestmark = pytest.mark.integration


async def online_agent(api: Api, connect: Any, skills: list[str],
                       **body: Any) -> tuple[dict[str, str], Client]:
    agent = await api.agent(skills=skills, **body)
    client = await connect(agent["token"])
    await client.send_frame({"type": "presence", "status": "online"})
    return agent, client


async def open_chat(api: Api, connect: Any, skill: str, text: str = "help",
                    **visitor: Any) -> tuple[Client, str]:
    customer = await connect((await api.visitor(skill=skill, **visitor))["token"])
    return customer, (await customer.send_text(text))["conversation_id"]


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin_token}"}


async def router_view(runtime: Runtime) -> dict[str, Any]:
    assert runtime.settings is not None
    router = ray.get_actor(runtime.settings.router_name(), namespace=runtime.settings.namespace)
    view: dict[str, Any] = await router.snapshot.remote()
    return view


async def test_equal_agents_share_the_load(api: Api, connect: Any, skill: str) -> None:
    """Six conversations over three equal agents: two each, and every assignment says why
    (the scores)."""
    agents = [await online_agent(api, connect, [skill]) for _ in range(3)]
    chats = [await open_chat(api, connect, skill) for _ in range(6)]
    owners = collections.Counter()
    for customer, cid in chats:
        event = (await customer.expect_event("assigned", cid))["event"]
        owners[event["agent_id"]] += 1
        assert event["reason"]["policy"] == "score"
        assert {"score", "load", "max_chats", "response_ms"} <= set(event["reason"])
    assert sorted(owners.values()) == [2, 2, 2]
    assert set(owners) == {a["agent_id"] for a, _ in agents}


async def test_skills_and_capacity(api: Api, connect: Any, skill: str) -> None:
    """A conversation goes only to an agent with its skill and room; the rest wait."""
    billing, tech = f"{skill}-billing", f"{skill}-tech"
    b_agent, b_ws = await online_agent(api, connect, [billing], max_chats=1)
    _, t_ws = await online_agent(api, connect, [tech], max_chats=5)
    _, cid1 = await open_chat(api, connect, billing)
    await b_ws.expect_type("assigned", conversation_id=cid1)
    waiting, cid2 = await open_chat(api, connect, billing)
    await waiting.expect_type("queue", conversation_id=cid2, position=1)
    await asyncio.sleep(0.5)
    assert not [f for f in t_ws.frames if f["type"] == "assigned"]
    response = await api.http.get("/v1/queue",
                                  headers={"Authorization": f"Bearer {b_agent['token']}"})
    entry = next(e for e in response.json()["queue"] if e["conversation_id"] == cid2)
    assert entry["skill"] == billing and entry["position"] == 1 and entry["waiting_ms"] >= 0


async def test_response_time_is_measured_and_preferred(api: Api, connect: Any, skill: str,
                                                       runtime: Runtime) -> None:
    """An agent's reply time is measured from the customer's message; between agents of
    equal load, the faster one gets the next conversation."""
    slow, slow_ws = await online_agent(api, connect, [skill], max_chats=5)
    customer, cid = await open_chat(api, connect, skill, "are you there?")
    await slow_ws.expect_type("assigned", conversation_id=cid)
    await asyncio.sleep(0.6)
    await slow_ws.send_text("sorry for the wait", cid)
    fast, fast_ws = await online_agent(api, connect, [skill], max_chats=5)
    await customer.send_frame({"type": "close", "conversation_id": cid})
    await customer.expect_event("closed", cid)
    view = await router_view(runtime)
    assert view["agents"][slow["agent_id"]]["response_ms"] >= 600
    assert view["agents"][fast["agent_id"]]["response_ms"] is None
    # Equal load (0 each): the measured 0.6 s beats the unmeasured default (the scale).
    _, cid2 = await open_chat(api, connect, skill)
    await slow_ws.expect_type("assigned", conversation_id=cid2)
    assert not [f for f in fast_ws.frames if f["type"] == "assigned"]


async def test_replies_close_together_each_count(api: Api, connect: Any, skill: str,
                                                 runtime: Runtime) -> None:
    """Response-time samples of replies sent in one burst by two agents all reach the
    router through the shards' deferred tells, each moving its own agent's EWMA. (That
    the samples held together all go in one call is tests/unit/test_batching.py's.)"""
    first, first_ws = await online_agent(api, connect, [skill], max_chats=1)
    customer_a, cid_a = await open_chat(api, connect, skill, "question a")
    await first_ws.expect_type("assigned", conversation_id=cid_a)
    second, second_ws = await online_agent(api, connect, [skill], max_chats=1)
    _, cid_b = await open_chat(api, connect, skill, "question b")
    await second_ws.expect_type("assigned", conversation_id=cid_b)
    await first_ws.send_text("answer a", cid_a)

    async def response_ms(wanted: Any) -> list[float | None]:
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            agents = (await router_view(runtime))["agents"]
            measured = [agents[a["agent_id"]]["response_ms"] for a in (first, second)]
            if wanted(measured) or asyncio.get_running_loop().time() > deadline:
                return measured
            await asyncio.sleep(0.1)

    [before, _] = await response_ms(lambda m: m[0] is not None)
    assert before is not None, "the first agent's reply was not measured"
    await asyncio.sleep(0.3)
    # One burst: a quick answer from the first agent, a slower one from the second.
    await customer_a.send_text("again", cid_a)
    await first_ws.expect(lambda f: f["type"] == "message" and f.get("text") == "again")
    await first_ws.send_text("answer a again", cid_a)
    await second_ws.send_text("answer b", cid_b)
    after = await response_ms(lambda m: m[1] is not None and m[0] != before)
    assert after[1] is not None and after[1] >= 300, after
    assert after[0] is not None and after[0] < before, (before, after)


async def test_vanished_agent_requeued_at_the_front(api: Api, connect: Any, ws_url: str,
                                                    skill: str) -> None:
    """An agent who disconnects and stays away past the grace period has their
    conversations requeued ahead of those already waiting; the customer is told; the next
    agent gets them first."""
    agent = await api.agent(skills=[skill], max_chats=1)
    agent_ws = await Client(ws_url, agent["token"]).connect()
    customer, cid = await open_chat(api, connect, skill, "first")
    await agent_ws.expect_type("assigned", conversation_id=cid)
    _, waiting_cid = await open_chat(api, connect, skill, "second")
    await agent_ws.close()
    requeued = await customer.expect(lambda f: f["type"] == "message" and f["seq"] > 3
                                     and (f.get("event") or {}).get("kind") == "queued")
    assert requeued["event"]["reason"] == "agent_offline"
    assert requeued["event"]["from_agent"] == agent["agent_id"]
    await customer.expect_type("queue", conversation_id=cid, position=1)
    _, next_ws = await online_agent(api, connect, [skill], max_chats=1)
    assert (await next_ws.expect_type("assigned"))["conversation_id"] == cid
    assert not [f for f in next_ws.frames if f.get("conversation_id") == waiting_cid
                and f["type"] == "assigned"]


async def test_agent_back_within_grace_keeps_chats(api: Api, connect: Any, ws_url: str,
                                                   skill: str) -> None:
    """An agent who reconnects within the grace period keeps their conversation."""
    agent = await api.agent(skills=[skill])
    first = await Client(ws_url, agent["token"]).connect()
    customer, cid = await open_chat(api, connect, skill)
    await first.expect_type("assigned", conversation_id=cid)
    await first.close()
    await asyncio.sleep(1.0)
    again = await connect(agent["token"])
    assert cid in [c["conversation_id"] for c in again.welcome["conversations"]]
    await asyncio.sleep(5.0)  # past the grace period (4 s in these tests)
    reply = await again.send_text("still here", cid)
    await customer.expect(lambda f: f["type"] == "message" and f["seq"] == reply["seq"])
    assert not [f for f in customer.frames if (f.get("event") or {}).get("kind") == "queued"
                and f["seq"] > 3]


async def test_vip_goes_first(api: Api, connect: Any, skill: str) -> None:
    """A visitor with the VIP attribute is served before ordinary visitors who came first."""
    ordinary_ws, ordinary = await open_chat(api, connect, skill, "me first")
    await ordinary_ws.expect_type("queue", conversation_id=ordinary, position=1)
    vip_ws, vip = await open_chat(api, connect, skill, "vip", attributes={"vip": "true"})
    await vip_ws.expect_type("queue", conversation_id=vip, position=1)
    await ordinary_ws.expect_type("queue", conversation_id=ordinary, position=2)
    _, agent_ws = await online_agent(api, connect, [skill], max_chats=1)
    assert (await agent_ws.expect_type("assigned"))["conversation_id"] == vip
    await ordinary_ws.expect_type("queue", conversation_id=ordinary, position=1)


async def test_admin_changes_take_effect_at_once(api: Api, connect: Any, skill: str) -> None:
    """PATCH /v1/agents/{id}: raising max_chats assigns the head of the queue at once;
    a new skill makes the agent eligible; presence away stops new assignments."""
    agent, agent_ws = await online_agent(api, connect, [skill], max_chats=1)
    _, cid1 = await open_chat(api, connect, skill)
    await agent_ws.expect_type("assigned", conversation_id=cid1)
    _, cid2 = await open_chat(api, connect, skill)
    url = f"/v1/agents/{agent['agent_id']}"
    patched = await api.http.patch(url, json={"max_chats": 2}, headers=admin(api))
    assert patched.status_code == 200 and patched.json()["max_chats"] == 2
    await agent_ws.expect_type("assigned", conversation_id=cid2)
    other = f"{skill}-new"
    _, cid3 = await open_chat(api, connect, other)
    patched = await api.http.patch(url, json={"skills": [skill, other], "max_chats": 3},
                                   headers=admin(api))
    assert patched.json()["skills"] == sorted([skill, other])
    await agent_ws.expect_type("assigned", conversation_id=cid3)
    assert (await api.http.patch(url, json={"presence": "away", "max_chats": 9},
                                 headers=admin(api))).status_code == 200
    waiting, cid4 = await open_chat(api, connect, skill)
    await waiting.expect_type("queue", conversation_id=cid4)
    await asyncio.sleep(0.5)
    assert cid4 not in [f.get("conversation_id") for f in agent_ws.frames
                        if f["type"] == "assigned"]
    # The agent setting its own presence ends the admin's override.
    await agent_ws.send_frame({"type": "presence", "status": "online"})
    await agent_ws.expect_type("assigned", conversation_id=cid4)
    bad = await api.http.patch(url, json={"max_chats": 0}, headers=admin(api))
    assert bad.status_code == 400 and "max_chats" in bad.json()["error"]["message"]
    missing = await api.http.patch("/v1/agents/a_nobody", json={}, headers=admin(api))
    assert missing.status_code == 404
    not_admin = await api.http.patch(url, json={"max_chats": 5},
                                     headers={"Authorization": f"Bearer {agent['token']}"})
    assert not_admin.status_code == 403


async def test_transfer_to_skill(api: Api, connect: Any, skill: str) -> None:
    """Transfer to a skill requeues the conversation for that skill; its agent gets it."""
    _, first_ws = await online_agent(api, connect, [skill])
    customer, cid = await open_chat(api, connect, skill)
    await first_ws.expect_type("assigned", conversation_id=cid)
    other = f"{skill}-other"
    _, other_ws = await online_agent(api, connect, [other])
    await first_ws.send_frame({"type": "transfer", "conversation_id": cid,
                               "to_skill": other})
    await other_ws.expect_type("assigned", conversation_id=cid)
    moved = await customer.expect_event("transferred", cid)
    assert moved["event"]["to_skill"] == other


async def test_router_killed_mid_scenario(api: Api, connect: Any, skill: str,
                                          runtime: Runtime) -> None:
    """Kill the router while conversations wait: after its restart every one of them is
    assigned, and none twice."""
    assert runtime.settings is not None
    chats = [await open_chat(api, connect, skill) for _ in range(4)]
    router = ray.get_actor(runtime.settings.router_name(), namespace=runtime.settings.namespace)
    ray.kill(router, no_restart=False)
    _, agent_ws = await online_agent(api, connect, [skill], max_chats=10)
    for customer, cid in chats:
        await customer.expect_event("assigned", cid)
    await asyncio.sleep(1.0)
    for customer, cid in chats:
        assigned = [m for m in customer.messages(cid)
                    if (m.get("event") or {}).get("kind") == "assigned"]
        assert len(assigned) == 1
    notes = collections.Counter(f["conversation_id"] for f in agent_ws.frames
                                if f["type"] == "assigned")
    assert all(notes[cid] == 1 for _, cid in chats)


async def test_reply_deadline_requeues(api: Api, connect: Any, skill: str,
                                       runtime: Runtime) -> None:
    """With a reply deadline, a customer left unanswered past it by the assigned agent is
    requeued at the front and told; a customer who was answered in time is not."""
    assert runtime.settings is not None
    from actors.router import Router

    routing = runtime.settings.config.routing.model_copy(update={"reply_deadline_s": 0.5})
    config = runtime.settings.config.model_copy(update={"routing": routing})
    # A second Router object on the live shards and store, driven by hand: the running
    # router has no deadline (it would requeue other tests' idle conversations).
    checker = Router(dataclasses.replace(runtime.settings, config=config))
    agent, agent_ws = await online_agent(api, connect, [skill], max_chats=5)
    ignored, ignored_cid = await open_chat(api, connect, skill, "hello?")
    answered, answered_cid = await open_chat(api, connect, skill, "hi")
    for cid in (ignored_cid, answered_cid):
        await agent_ws.expect_type("assigned", conversation_id=cid)
    await agent_ws.send_text("right with you", answered_cid)
    await asyncio.sleep(0.8)
    await checker._reconcile()
    await checker._requeue_overdue()
    requeued = await ignored.expect(lambda f: f["type"] == "message" and f["seq"] > 4 and (
        f.get("event") or {}).get("kind") == "queued")
    assert requeued["event"]["reason"] == "reply_deadline"
    assert requeued["event"]["from_agent"] == agent["agent_id"]
    assert not [m for m in answered.messages(answered_cid)
                if (m.get("event") or {}).get("reason") == "reply_deadline"]
    await checker._store.close()


async def test_partitions_have_their_own_router_and_agents(api: Api, connect: Any,
                                                           skill: str) -> None:
    """A conversation from a partition's inbox goes only to that partition's agents, even
    while an agent of another partition with the skill is free; transfers do not cross."""
    home, home_ws = await online_agent(api, connect, [skill], max_chats=5)
    p2_agent, p2_ws = await online_agent(api, connect, [skill], max_chats=1, partition="p2")
    _, first = await open_chat(api, connect, skill, inbox="inbox-p2")
    await p2_ws.expect_type("assigned", conversation_id=first)
    waiting, second = await open_chat(api, connect, skill, inbox="inbox-p2")
    await waiting.expect_type("queue", conversation_id=second, position=1)
    _, local = await open_chat(api, connect, skill)
    await home_ws.expect_type("assigned", conversation_id=local)
    await asyncio.sleep(0.5)
    assert second not in [f.get("conversation_id") for f in home_ws.frames
                          if f["type"] == "assigned"]
    await home_ws.send_frame({"type": "transfer", "conversation_id": local,
                              "to_agent": p2_agent["agent_id"]})
    refused = await home_ws.expect_type("error")
    assert refused["code"] == "conflict" and "partition" in refused["message"]
    queue = (await api.http.get("/v1/queue", headers={
        "Authorization": f"Bearer {p2_agent['token']}"})).json()["queue"]
    assert second in [e["conversation_id"] for e in queue]
    home_queue = (await api.http.get("/v1/queue", headers={
        "Authorization": f"Bearer {home['token']}"})).json()["queue"]
    assert second not in [e["conversation_id"] for e in home_queue]
    bad = await api.http.post("/v1/agents", headers=admin(api), json={
        "email": f"{skill}@example.test", "password": "long enough", "name": "X",
        "partition": "nowhere"})
    assert bad.status_code == 400 and "partition" in bad.json()["error"]["message"]


async def test_reconnecting_customer_hears_its_position(api: Api, connect: Any,
                                                        skill: str) -> None:
    """A waiting customer who reconnects gets its queue position right after welcome."""
    visitor = await api.visitor(skill=skill)
    first = await connect(visitor["token"])
    cid = (await first.send_text("anyone?"))["conversation_id"]
    await first.expect_type("queue", conversation_id=cid, position=1)
    await first.close()
    again = await connect(visitor["token"])
    assert again.frames[0]["type"] == "welcome"
    await again.expect_type("queue", conversation_id=cid, position=1)
