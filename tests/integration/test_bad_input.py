"""Every bad input of PROTOCOL.md is answered as specified, and nothing is stored."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from raydesk.runtime import Runtime
from tests.integration.client import WAIT_S, Api, Client

pytestmark = pytest.mark.integration


async def _history(api: Api, cid: str, token: str) -> list[dict[str, Any]]:
    response = await api.http.get(f"/v1/conversations/{cid}/messages",
                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


@pytest.mark.parametrize("frame, field", [
    ("this is not json", "JSON"),
    ('["a", "list"]', "object"),
    ('{"no": "type"}', "type"),
    ('{"type": "shout", "text": "hi"}', "type"),
    ('{"type": "send", "text": "hi"}', "client_msg_id"),
    ('{"type": "send", "client_msg_id": "x1", "text": 5}', "text"),
    ('{"type": "send", "client_msg_id": "has space", "text": "hi"}', "client_msg_id"),
    ('{"type": "send", "client_msg_id": "x2", "text": "hi", "extra": 1}', "extra"),
    ('{"type": "send", "client_msg_id": "x3", "text": ""}', "text"),
    ('{"type": "sync", "conversation_id": "c", "since": -1}', "since"),
    ('{"type": "typing", "conversation_id": "c", "on": "yes"}', "on"),
])
async def test_malformed_frames_get_bad_request(api: Api, connect: Any, skill: str,
                                                frame: str, field: str) -> None:
    """A malformed frame gets a bad_request error naming the field; the connection stays
    open and nothing is stored."""
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    ack = await customer.send_text("first")
    cid = ack["conversation_id"]
    before = await _history(api, cid, visitor["token"])
    await customer.send_frame(frame)
    error = await customer.expect_type("error")
    assert error["code"] == "bad_request"
    assert field.lower() in error["message"].lower()
    assert "Traceback" not in error["message"]
    still = await customer.send_text("still open")
    assert still["seq"] == before[-1]["seq"] + 1
    after = await _history(api, cid, visitor["token"])
    assert after[:-1] == before


async def test_oversize_frame_closes_1009(api: Api, ws_url: str, skill: str,
                                          runtime: Runtime) -> None:
    """A frame over the configured size closes the connection with 1009 and stores nothing."""
    visitor = await api.visitor(skill=skill)
    client = await Client(ws_url, visitor["token"]).connect()
    limit = runtime.config.limits.max_frame_bytes
    await client.send_frame({"type": "send", "client_msg_id": "big", "text": "x" * limit})
    assert await client.wait_closed() == 1009
    fresh = await Client(ws_url, visitor["token"]).connect()
    assert fresh.welcome["conversations"] == []
    await fresh.close()


async def test_text_over_the_limit_is_too_large(api: Api, connect: Any, skill: str,
                                                runtime: Runtime) -> None:
    """Text longer than limits.max_text_chars (inside a legal frame) is refused too_large."""
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    await customer.send_frame({"type": "send", "client_msg_id": "long",
                               "text": "y" * (runtime.config.limits.max_text_chars + 1)})
    error = await customer.expect_type("error")
    assert error["code"] == "too_large" and error["ref"] == "long"


async def test_no_hello_closes_4408(ws_url: str) -> None:
    """A connection that sends no hello within hello_timeout_s is closed with 4408."""
    async with websockets.connect(ws_url) as ws:
        await asyncio.wait_for(ws.wait_closed(), WAIT_S)
        assert ws.close_code == 4408


async def test_first_frame_not_hello_is_bad_request(api: Api, ws_url: str) -> None:
    """A frame before hello is refused (bad_request) and hello can still follow."""
    visitor = await api.visitor()
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert error["type"] == "error" and error["code"] == "bad_request"
        await ws.send(json.dumps({"type": "hello", "token": visitor["token"]}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert welcome["type"] == "welcome" and welcome["role"] == "customer"


@pytest.mark.parametrize("token", ["not-a-token", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_bad_token_closes_4401(ws_url: str, token: str) -> None:
    """A bad token gets an unauthorized error frame, then close 4401."""
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert error["type"] == "error" and error["code"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), WAIT_S)
        assert ws.close_code == 4401


async def test_admin_token_is_not_a_participant_token(ws_url: str, runtime: Runtime) -> None:
    """The admin token opens no WebSocket session (it is not a signed participant token)."""
    assert runtime.secrets is not None
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": runtime.secrets.admin_token}))
        await asyncio.wait_for(ws.wait_closed(), WAIT_S)
        assert ws.close_code == 4401


async def test_heartbeat_timeout_closes_4408(api: Api, connect: Any) -> None:
    """A connection silent for longer than the heartbeat timeout is closed with 4408."""
    visitor = await api.visitor()
    quiet = await connect(visitor["token"], ping_every=None)
    chatty = await connect(visitor["token"], ping_every=0.5)
    assert await quiet.wait_closed(timeout=WAIT_S * 2) == 4408
    assert chatty.close_code is None


async def test_rate_limit_then_4429(api: Api, connect: Any, skill: str) -> None:
    """Over the message rate a client gets rate_limited errors; one that keeps going is
    closed with 4429."""
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    frame = json.dumps({"type": "typing", "conversation_id": "c_missing", "on": True})
    for _ in range(400):
        if customer.close_code is not None:
            break
        try:
            await customer.send_frame(frame)
        except websockets.ConnectionClosed:
            break
    assert await customer.wait_closed() == 4429
    assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in customer.frames)


async def test_other_partys_conversation(api: Api, connect: Any, skill: str) -> None:
    """A customer can neither read nor write nor sync another customer's conversation; an
    agent not assigned cannot write into it; nothing is stored."""
    owner_v = await api.visitor(skill=skill)
    owner = await connect(owner_v["token"])
    ack = await owner.send_text("private")
    cid = ack["conversation_id"]
    intruder_v = await api.visitor(skill=skill)
    intruder = await connect(intruder_v["token"])
    for frame in ({"type": "send", "client_msg_id": "i1", "conversation_id": cid,
                   "text": "hi"},
                  {"type": "sync", "conversation_id": cid, "since": 0},
                  {"type": "typing", "conversation_id": cid, "on": True},
                  {"type": "read", "conversation_id": cid, "seq": 1},
                  {"type": "close", "conversation_id": cid}):
        await intruder.send_frame(frame)
        error = await intruder.expect_type("error")
        assert error["code"] in ("forbidden", "not_found"), error
    assert not [f for f in intruder.frames if f["type"] == "message"]
    response = await api.http.get(f"/v1/conversations/{cid}/messages",
                                  headers={"Authorization": f"Bearer {intruder_v['token']}"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    outsider = await api.agent(skills=[f"{skill}-x"])
    agent_ws = await connect(outsider["token"])
    await agent_ws.send_frame({"type": "send", "client_msg_id": "o1", "conversation_id": cid,
                               "text": "not mine"})
    assert (await agent_ws.expect_type("error"))["code"] == "forbidden"
    for frame in ({"type": "presence", "status": "online"},
                  {"type": "accept", "conversation_id": cid}):
        await intruder.send_frame(frame)
        assert (await intruder.expect_type("error"))["code"] == "forbidden"
    history = await _history(api, cid, owner_v["token"])
    assert [m["seq"] for m in history] == [1, 2, 3]
    assert owner.close_code is None


async def test_rest_errors(api: Api, runtime: Runtime) -> None:
    """Wrong admin token, wrong password, duplicate email, bad bodies and missing tokens get
    the protocol's error bodies and statuses."""
    http = api.http
    body = {"email": "dup@example.test", "password": "long enough", "name": "Dup"}
    wrong = await http.post("/v1/agents", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    missing = await http.post("/v1/agents", json=body)
    assert missing.status_code == 401
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    assert (await http.post("/v1/agents", json=body, headers=admin)).status_code == 201
    again = await http.post("/v1/agents", json=body, headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    login = await http.post("/v1/agents/login", json={"email": body["email"],
                                                      "password": "wrong password"})
    assert login.status_code == 401 and login.json()["error"]["code"] == "unauthorized"
    unknown = await http.post("/v1/agents/login", json={"email": "nobody@example.test",
                                                        "password": "whatever"})
    assert unknown.status_code == 401
    agent_login = await http.post("/v1/agents/login", json={"email": body["email"],
                                                            "password": body["password"]})
    agent_token = {"Authorization": f"Bearer {agent_login.json()['token']}"}
    not_admin = await http.post("/v1/agents", json={**body, "email": "x@example.test"},
                                headers=agent_token)
    assert not_admin.status_code == 403 and not_admin.json()["error"]["code"] == "forbidden"
    bad = await http.post("/v1/visitors", json={"skill": 5})
    assert bad.status_code == 400 and "skill" in bad.json()["error"]["message"]
    not_json = await http.post("/v1/visitors", content=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "bad_request"
    visitor = await api.visitor()
    listing = await http.get("/v1/conversations",
                             headers={"Authorization": f"Bearer {visitor['token']}"})
    assert listing.status_code == 403
    assert (await http.get("/v1/conversations")).status_code == 401
    limit = await http.get("/v1/conversations/c_x/messages?limit=1001", headers=agent_token)
    assert limit.status_code == 400 and "limit" in limit.json()["error"]["message"]
    nothing = await http.get("/v1/conversations/c_nope/messages", headers=agent_token)
    assert nothing.status_code == 404
