"""The console's server side (protocol extensions): static pages and their headers, the
agents' feed, private notes, canned replies, the visitor panel, the agent list, the FAQ
import and test box, and queue frames that tell whether any agent is online."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.client import Api, Client

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _online_agent(api: Api, connect: Any, skill: str,
                        **body: Any) -> tuple[dict[str, str], Client]:
    agent = await api.agent(skills=[skill], **body)
    client = await connect(agent["token"])
    await client.send_frame({"type": "presence", "status": "online"})
    return agent, client


async def _assigned(api: Api, connect: Any, skill: str, **visitor: Any
                    ) -> tuple[dict[str, str], Client, Client, str]:
    """An online agent of ``skill`` and a customer whose conversation it was given."""
    agent, agent_ws = await _online_agent(api, connect, skill)
    customer = await connect((await api.visitor(skill=skill, **visitor))["token"])
    cid = (await customer.send_text("hello"))["conversation_id"]
    await agent_ws.expect_type("assigned", conversation_id=cid)
    return agent, agent_ws, customer, cid


# --- pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/console/", "/demo"])
async def test_pages_are_served_with_a_strict_content_security_policy(api: Api,
                                                                      path: str) -> None:
    """The console and the demo are HTML with a CSP that allows no inline script and no
    other origin."""
    response = await api.http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_console_without_slash_redirects_and_widget_is_javascript(api: Api) -> None:
    """/console redirects to /console/ (its modules are relative); /widget.js is script
    any site may load."""
    response = await api.http.get("/console")
    assert response.status_code == 308 and response.headers["location"] == "/console/"
    script = await api.http.get("/widget.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cross-origin-resource-policy"] == "cross-origin"


async def test_demo_embeds_the_widget_with_its_own_origin(api: Api) -> None:
    """The demo page holds the one-tag embed pointing at the origin it came from."""
    page = (await api.http.get("/demo")).text
    assert f'<script src="{api.base_url}/widget.js" data-inbox="web" async></script>' in page


async def test_demo_escapes_a_hostile_host_header(api: Api) -> None:
    """A Host header with markup in it never comes back as markup."""
    page = (await api.http.get("/demo", headers={"Host": 'x"><b>h</b>'})).text
    assert "<b>h</b>" not in page and "widget.js" in page


async def test_unknown_static_paths_are_protocol_404s(api: Api) -> None:
    """A missing file or a path that climbs out of web/ is a 404 with the error body."""
    for path in ["/console/nope.js", "/console/../pyproject.toml", "/console/%2e%2e/README.md"]:
        response = await api.http.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_rest_allows_other_origins_without_credentials(api: Api) -> None:
    """A widget on another site may call the REST API (preflight answered), but no cookie
    or credential is ever allowed across origins."""
    response = await api.http.options("/v1/visitors", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


# --- the visitor panel and the agent list --------------------------------------------------


async def test_visitor_panel_shows_what_the_widget_and_the_request_told(
        api: Api, connect: Any, skill: str) -> None:
    """An agent sees the visitor's name, email, attributes, page, browser, address and
    conversations; a customer cannot read it."""
    response = await api.http.post("/v1/visitors", json={
        "skill": skill, "name": "Ann", "email": "ann@example.com",
        "attributes": {"plan": "pro"}, "page": "https://shop.example/cart"},
        headers={"User-Agent": "TestBrowser/1.0"})
    visitor = response.json()
    customer = await connect(visitor["token"])
    cid = (await customer.send_text("hi"))["conversation_id"]
    agent = await api.agent(skills=[skill])
    info = (await api.http.get(f"/v1/visitors/{visitor['visitor_id']}",
                               headers=bearer(agent["token"]))).json()
    assert info["name"] == "Ann" and info["email"] == "ann@example.com"
    assert info["attributes"] == {"plan": "pro"}
    assert info["page"] == "https://shop.example/cart"
    assert info["browser"] == "TestBrowser/1.0" and info["ip"] == "127.0.0.1"
    assert [c["conversation_id"] for c in info["conversations"]] == [cid]
    denied = await api.http.get(f"/v1/visitors/{visitor['visitor_id']}",
                                headers=bearer(visitor["token"]))
    assert denied.status_code == 403
    missing = await api.http.get("/v1/visitors/v_nobody", headers=bearer(agent["token"]))
    assert missing.status_code == 404


async def test_agent_list_has_presence_and_load(api: Api, connect: Any, skill: str) -> None:
    """GET /v1/agents lists every agent with live presence and load; /v1/me the caller."""
    agent, _, _, _ = await _assigned(api, connect, skill, name="Bo")
    listed = (await api.http.get("/v1/agents", headers=bearer(agent["token"]))).json()
    mine = next(a for a in listed["agents"] if a["agent_id"] == agent["agent_id"])
    assert mine["presence"] == "online" and mine["load"] == 1
    assert "password" not in mine
    me = (await api.http.get("/v1/me", headers=bearer(agent["token"]))).json()
    assert me["agent_id"] == agent["agent_id"] and me["role"] == "agent"


async def test_conversation_list_has_read_cursor_and_visitor_name(
        api: Api, connect: Any, skill: str) -> None:
    """Each listed conversation carries the caller's read cursor and the visitor's name."""
    agent, agent_ws, _, cid = await _assigned(api, connect, skill, name="Cleo")
    await agent_ws.send_frame({"type": "read", "conversation_id": cid, "seq": 2})
    row: dict[str, Any] = {}
    for _ in range(50):  # the read cursor is stored by the shard, shortly after the frame
        page = (await api.http.get("/v1/conversations",
                                   headers=bearer(agent["token"]))).json()
        row = next((c for c in page["conversations"] if c["conversation_id"] == cid), {})
        if row.get("read_seq") == 2:
            break
        await asyncio.sleep(0.1)
    assert row["read_seq"] == 2 and row["visitor_name"] == "Cleo"


# --- the agents' feed ----------------------------------------------------------------------


async def test_every_agent_hears_conversations_open_and_change(api: Api, connect: Any,
                                                               skill: str) -> None:
    """An agent who is not a participant still hears a conversation queue, get assigned
    and close (the console's lists), but none of its messages."""
    watcher = await connect((await api.agent(skills=["nothing-" + skill]))["token"])
    agent, agent_ws, customer, cid = await _assigned(api, connect, skill)
    await watcher.expect_type("conversation", conversation_id=cid, status="queued")
    assigned = await watcher.expect_type("conversation", conversation_id=cid,
                                         status="assigned")
    assert assigned["assignee"] == agent["agent_id"] and assigned["skill"] == skill
    await customer.send_text("a message only its participants hear", conversation_id=cid)
    await agent_ws.send_frame({"type": "close", "conversation_id": cid})
    await watcher.expect_type("conversation", conversation_id=cid, status="closed")
    assert not [f for f in watcher.frames if f["type"] == "message"
                and f["conversation_id"] == cid]


async def test_customers_do_not_hear_the_agents_feed(api: Api, connect: Any,
                                                     skill: str) -> None:
    """A customer's connection never receives the feed of other conversations."""
    bystander = await connect((await api.visitor(skill=skill))["token"])
    watcher = await connect((await api.agent(skills=["nothing-" + skill]))["token"])
    _, _, _, cid = await _assigned(api, connect, skill)
    await watcher.expect_type("conversation", conversation_id=cid, status="assigned")
    await bystander.send_frame({"type": "ping"})
    await bystander.expect_type("pong")
    assert not [f for f in bystander.frames if f["type"] == "conversation"]


# --- private notes -------------------------------------------------------------------------


async def test_a_note_reaches_agents_and_never_the_customer(api: Api, connect: Any,
                                                            skill: str) -> None:
    """A note goes to the author and the assignee, is listed for agents, is stored once per
    client_msg_id, takes no seq, and the customer never sees it."""
    agent, agent_ws, customer, cid = await _assigned(api, connect, skill)
    colleague = await api.agent(skills=["other-" + skill])
    colleague_ws = await connect(colleague["token"])
    note = {"type": "note", "conversation_id": cid, "client_msg_id": "n1",
            "text": "VIP, be nice <b>"}
    await colleague_ws.send_frame(note)
    got = await colleague_ws.expect_type("note", client_msg_id="n1")
    seen = await agent_ws.expect_type("note", note_id=got["note_id"])
    assert seen["text"] == "VIP, be nice <b>" and seen["sender"]["id"] == colleague["agent_id"]
    await colleague_ws.send_frame(note)  # a resend: the same note, nothing new stored
    again = await colleague_ws.expect_type("note", client_msg_id="n1")
    assert again["note_id"] == got["note_id"]
    listed = (await api.http.get(f"/v1/conversations/{cid}/notes",
                                 headers=bearer(agent["token"]))).json()["notes"]
    assert [n["note_id"] for n in listed] == [got["note_id"]]
    history = (await api.http.get(f"/v1/conversations/{cid}/messages",
                                  headers=bearer(agent["token"]))).json()
    assert "VIP" not in str(history)
    await customer.send_frame({"type": "ping"})
    await customer.expect_type("pong")
    assert not [f for f in customer.frames if f["type"] == "note" or "VIP" in str(f)]


async def test_customers_cannot_write_or_read_notes(api: Api, connect: Any,
                                                    skill: str) -> None:
    """A customer's note frame is forbidden and the notes list is refused."""
    visitor = await api.visitor(skill=skill)
    customer = await connect(visitor["token"])
    cid = (await customer.send_text("hi"))["conversation_id"]
    await customer.send_frame({"type": "note", "conversation_id": cid,
                               "client_msg_id": "n9", "text": "x"})
    error = await customer.expect_type("error", ref="n9")
    assert error["code"] == "forbidden"
    response = await api.http.get(f"/v1/conversations/{cid}/notes",
                                  headers=bearer(visitor["token"]))
    assert response.status_code == 403


async def test_a_note_on_an_unknown_conversation_is_not_found(api: Api, connect: Any) -> None:
    """A note for a conversation that does not exist stores nothing: not_found."""
    agent_ws = await connect((await api.agent())["token"])
    await agent_ws.send_frame({"type": "note", "conversation_id": "c_nope",
                               "client_msg_id": "n2", "text": "x"})
    assert (await agent_ws.expect_type("error", ref="n2"))["code"] == "not_found"


# --- canned replies ------------------------------------------------------------------------


async def test_canned_replies_are_shared_by_the_team(api: Api) -> None:
    """An agent saves a canned reply; a teammate lists it; a second one with the same
    shortcut is a conflict; deleting removes it; bad input is a 400 naming the field."""
    first, second = await api.agent(), await api.agent()
    shortcut = f"hi{first['agent_id'][-6:]}"
    created = await api.http.post("/v1/canned", json={"shortcut": shortcut,
                                                      "text": "Hello! How can I help?"},
                                  headers=bearer(first["token"]))
    assert created.status_code == 201
    reply = created.json()
    listed = (await api.http.get("/v1/canned", headers=bearer(second["token"]))).json()
    assert reply in listed["items"]
    again = await api.http.post("/v1/canned", json={"shortcut": shortcut, "text": "x"},
                                headers=bearer(second["token"]))
    assert again.status_code == 409
    bad = await api.http.post("/v1/canned", json={"shortcut": "no spaces", "text": "x"},
                              headers=bearer(second["token"]))
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("shortcut")
    deleted = await api.http.delete(f"/v1/canned/{reply['id']}",
                                    headers=bearer(second["token"]))
    assert deleted.status_code == 204
    listed = (await api.http.get("/v1/canned", headers=bearer(first["token"]))).json()
    assert reply not in listed["items"]
    reused = await api.http.post("/v1/canned", json={"shortcut": shortcut, "text": "y"},
                                 headers=bearer(first["token"]))
    assert reused.status_code == 201


async def test_canned_replies_need_an_agent(api: Api) -> None:
    """Without a token, or with a visitor's, canned replies are refused."""
    assert (await api.http.get("/v1/canned")).status_code == 401
    visitor = await api.visitor()
    assert (await api.http.get("/v1/canned", headers=bearer(visitor["token"]))
            ).status_code == 403


# --- queue frames --------------------------------------------------------------------------


async def test_queue_frames_say_whether_any_agent_is_online(api: Api, connect: Any,
                                                            skill: str) -> None:
    """A customer waiting in a partition with no agent online hears agents_online 0 (the
    widget's offline notice), and hears again when an agent of that partition comes
    online, even one that cannot take it."""
    customer = await connect((await api.visitor(skill=skill, inbox="inbox-p2"))["token"])
    cid = (await customer.send_text("anyone?"))["conversation_id"]
    first = await customer.expect_type("queue", conversation_id=cid)
    assert first["agents_online"] == 0
    other = await api.agent(skills=["other-" + skill], partition="p2")
    other_ws = await connect(other["token"])
    await other_ws.send_frame({"type": "presence", "status": "online"})
    again = await customer.expect_type("queue", conversation_id=cid)
    assert again["agents_online"] == 1 and again["position"] == first["position"]


async def test_forwarded_headers_are_ignored_without_a_trusted_proxy(api: Api) -> None:
    """With no trusted proxy configured, a client cannot set its own recorded address."""
    visitor = (await api.http.post("/v1/visitors", json={},
                                   headers={"X-Forwarded-For": "203.0.113.9"})).json()
    agent = await api.agent()
    info = (await api.http.get(f"/v1/visitors/{visitor['visitor_id']}",
                               headers=bearer(agent["token"]))).json()
    assert info["ip"] == "127.0.0.1"


async def test_an_empty_faq_upload_is_refused_and_keeps_the_faq(api: Api) -> None:
    """Importing a file with no items is a 400 and the stored FAQ is untouched."""
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    before = (await api.http.get("/v1/faq", headers=admin)).json()
    response = await api.http.post("/v1/faq/import", headers=admin, json={
        "format": "csv", "content": "id,question,answer\n"})
    assert response.status_code == 400
    assert "no FAQ items" in response.json()["error"]["message"]
    bad_row = await api.http.post("/v1/faq/import", headers=admin, json={
        "format": "csv", "content": "id,question,answer\nx,,an answer\n"})
    assert bad_row.status_code == 400
    assert bad_row.json()["error"]["message"].startswith("file:2: question")
    assert (await api.http.get("/v1/faq", headers=admin)).json() == before


async def test_canned_shortcuts_are_unique_whatever_the_case(api: Api) -> None:
    """/Thanks and /thanks cannot both exist in a team."""
    agent = await api.agent()
    shortcut = f"Thanks{agent['agent_id'][-6:]}"
    first = await api.http.post("/v1/canned", json={"shortcut": shortcut, "text": "a"},
                                headers=bearer(agent["token"]))
    assert first.status_code == 201
    second = await api.http.post("/v1/canned", json={"shortcut": shortcut.lower(),
                                                     "text": "b"},
                                 headers=bearer(agent["token"]))
    assert second.status_code == 409
