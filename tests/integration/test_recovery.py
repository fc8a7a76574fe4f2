"""Nothing acknowledged is lost when a shard dies or the whole server restarts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest
import ray
import websockets

from raydesk.placement import shard_for
from raydesk.runtime import Runtime
from tests.integration.client import WAIT_S, Api, Client

pytestmark = pytest.mark.integration


async def send_until_acked(client: Client, text: str, client_msg_id: str,
                           conversation_id: str | None = None) -> dict[str, Any]:
    """Send, and resend the same client_msg_id on ``unavailable`` (what a real client does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S * 3
    while True:
        frame = {"type": "send", "client_msg_id": client_msg_id, "text": text}
        if conversation_id:
            frame["conversation_id"] = conversation_id
        await client.send_frame(frame)
        reply = await client.expect(lambda f: f["type"] in ("ack", "error") and (
            f.get("client_msg_id") == client_msg_id or f.get("ref") == client_msg_id))
        if reply["type"] == "ack":
            return reply
        assert reply["code"] == "unavailable", reply
        assert loop.time() < deadline, "still unavailable"
        await asyncio.sleep(0.2)


async def history(api: Api, cid: str, token: str) -> list[dict[str, Any]]:
    response = await api.http.get(f"/v1/conversations/{cid}/messages?limit=1000",
                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def test_shard_killed_mid_chat(api: Api, connect: Any, skill: str,
                                     runtime: Runtime) -> None:
    """Kill the conversation's shard while the customer is writing: later messages work
    once Ray restarts it, and every acknowledged message is stored once, seqs gapless."""
    assert runtime.settings is not None
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    acks = [await send_until_acked(customer, "before 0", "k0")]
    cid = acks[0]["conversation_id"]
    shard = ray.get_actor(shard_for(cid, runtime.settings.shard_names),
                          namespace=runtime.settings.namespace)
    sending = asyncio.ensure_future(asyncio.gather(*[
        send_until_acked(customer, f"during {i}", f"k{i + 1}", cid) for i in range(20)]))
    await asyncio.sleep(0.05)
    ray.kill(shard, no_restart=False)
    acks += await sending
    acks.append(await send_until_acked(customer, "after", "k-after", cid))
    stored = await history(api, cid, visitor["token"])
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    by_cmid = {}
    for message in stored:
        if "client_msg_id" in message:
            assert message["client_msg_id"] not in by_cmid, "stored twice"
            by_cmid[message["client_msg_id"]] = message
    for ack in acks:
        assert by_cmid[ack["client_msg_id"]]["seq"] == ack["seq"]
        assert by_cmid[ack["client_msg_id"]]["message_id"] == ack["message_id"]


async def test_whole_server_restart_keeps_everything(api: Api, ws_url: str, skill: str,
                                                     runtime: Runtime) -> None:
    """Stop every raydesk process and start again on the same data folder: history,
    conversation state, dedupe and the queue survive, and old tokens still work."""
    agent = await api.agent(skills=[skill])
    agent_ws = await Client(ws_url, agent["token"]).connect()
    visitor = await api.visitor(skill=skill)
    customer = await Client(ws_url, visitor["token"]).connect()
    first = await customer.send_text("before the restart", client_msg_id="r-1")
    cid = first["conversation_id"]
    await agent_ws.expect_type("assigned", conversation_id=cid)
    reply = await agent_ws.send_text("noted", conversation_id=cid)
    waiting_v = await api.visitor(skill=f"{skill}-later")
    waiting = await Client(ws_url, waiting_v["token"]).connect()
    queued = await waiting.send_text("nobody here yet")
    before = await history(api, cid, visitor["token"])

    runtime.stop(keep_ray=True)
    for client in (agent_ws, customer, waiting):
        assert await client.wait_closed() == 1012
    runtime.start()

    customer = await Client(ws_url, visitor["token"]).connect()
    summary = {c["conversation_id"]: c for c in customer.welcome["conversations"]}[cid]
    assert summary == {"conversation_id": cid, "status": "assigned",
                       "last_seq": reply["seq"]}
    assert await send_until_acked(customer, "before the restart", "r-1") == first
    assert await history(api, cid, visitor["token"]) == before
    agent_ws = await Client(ws_url, agent["token"]).connect()
    assert cid in [c["conversation_id"] for c in agent_ws.welcome["conversations"]]
    later = await send_until_acked(agent_ws, "after the restart", "r-2", cid)
    assert later["seq"] == reply["seq"] + 1
    # The queued conversation is still queued and goes to the first agent who can take it.
    late_agent = await api.agent(skills=[f"{skill}-later"])
    late_ws = await Client(ws_url, late_agent["token"]).connect()
    await late_ws.expect_type("assigned", conversation_id=queued["conversation_id"])
    for client in (customer, agent_ws, late_ws, waiting):
        await client.close()


async def test_store_outage_gives_unavailable_never_a_false_ack(
        api: Api, ws_url: str, skill: str, runtime: Runtime) -> None:
    """With the store down, a send gets `unavailable` (no ack) and connections are told to
    reconnect (1012); once it is back (same data folder), everything acknowledged before is
    there and sends work again."""
    assert runtime.store is not None
    visitor = await api.visitor(skill=skill)
    customer = await Client(ws_url, visitor["token"]).connect()
    before = await customer.send_text("before the outage", client_msg_id="o-1")
    cid = before["conversation_id"]

    runtime.store.kill()  # as a crash would: SIGKILL
    try:
        # The send may be refused (unavailable) or the connection told to reconnect
        # first (1012, the gateway's event feed broke): either way, no ack.
        with contextlib.suppress(websockets.ConnectionClosed):
            await customer.send_frame({"type": "send", "client_msg_id": "o-2",
                                       "conversation_id": cid, "text": "during"})
        assert await customer.wait_closed() == 1012
        replies = [f for f in customer.frames
                   if f.get("client_msg_id") == "o-2" or f.get("ref") == "o-2"]
        assert all(f["type"] == "error" and f["code"] == "unavailable" for f in replies)
    finally:
        runtime.store.start()

    back = await Client(ws_url, visitor["token"]).connect()
    assert await send_until_acked(back, "before the outage", "o-1", cid) == before
    after = await send_until_acked(back, "after the outage", "o-3", cid)
    stored = await history(api, cid, visitor["token"])
    assert [m["seq"] for m in stored] == list(range(1, after["seq"] + 1))
    assert [m.get("client_msg_id") for m in stored if m["sender"]["role"] == "customer"] \
        == ["o-1", "o-3"]
    await back.close()


async def test_gateway_redeploy(api: Api, ws_url: str, skill: str, runtime: Runtime) -> None:
    """A redeploy of the gateways (new settings: Serve replaces every replica) tells
    connected clients to reconnect (1012); they reconnect to the new replicas on the same
    port, sync, and lose nothing."""
    assert runtime.settings is not None
    from ray import serve

    from raydesk.runtime import APP_NAME
    from serve_app import gateway_app

    visitor = await api.visitor(skill=skill)
    customer = await Client(ws_url, visitor["token"]).connect()
    first = await customer.send_text("before the redeploy")
    cid = first["conversation_id"]
    original = runtime.settings
    changed = dataclasses.replace(original, config=original.config.model_copy(
        update={"log_level": "WARNING"}))
    try:
        await asyncio.to_thread(serve.run, gateway_app(changed), name=APP_NAME,
                                route_prefix=None)
        assert await customer.wait_closed(timeout=WAIT_S * 3) == 1012
        back = await Client(ws_url, visitor["token"]).connect()
        second = await send_until_acked(back, "after the redeploy", "rd-2", cid)
        await back.send_frame({"type": "sync", "conversation_id": cid, "since": 0})
        synced = await back.expect_type("synced", conversation_id=cid)
        assert synced["last_seq"] == second["seq"]
        assert [m["seq"] for m in back.messages(cid)] == list(range(1, second["seq"] + 1))
        await back.close()
    finally:
        await asyncio.to_thread(serve.run, gateway_app(original), name=APP_NAME,
                                route_prefix=None)
