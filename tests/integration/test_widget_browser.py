"""The customer widget in a real browser (Debian's chromium through Playwright) on the demo
shop page, against the suite's running raydesk; the agent side is the protocol client."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from raydesk.runtime import Runtime
from tests.integration.client import WAIT_S, Api, Client, Frame
from tests.integration.conftest import artifact

pytestmark = pytest.mark.integration

WAIT_MS = WAIT_S * 1000
LAUNCHER = "[data-testid=launcher]"
PANEL = "[data-testid=panel]"
INPUT = "[data-testid=message-input]"
MESSAGE = "[data-testid=message]"
# Every message element the widget shows, read from its shadow root.
DOM_MESSAGES_JS = """() => Array.from(document.getElementById('raydesk-widget').shadowRoot
    .querySelectorAll('[data-testid=message]')).map(n => ({
        seq: n.dataset.seq ? Number(n.dataset.seq) : null, role: n.dataset.role,
        status: n.dataset.status || null, conversation: n.dataset.conversation || null,
        text: (n.querySelector('.text') || n).textContent}))"""


def visitor_key(runtime: Runtime, inbox: str = "web") -> str:
    """The widget's localStorage key for its visitor (docs/how-to/embed-widget.md)."""
    return f"raydesk:visitor:{runtime.url}:{inbox}"


def outbox_key(runtime: Runtime, inbox: str = "web") -> str:
    return f"raydesk:outbox:{runtime.url}:{inbox}"


async def seed_visitor(page: Page, runtime: Runtime, visitor: dict[str, str]) -> None:
    """Before the widget boots, store a visitor made through the API (with the test's own
    skill), as the widget would have stored the one it made itself."""
    value = json.dumps({"visitor_id": visitor["visitor_id"], "token": visitor["token"]})
    await page.add_init_script(
        f"if (location.origin === {json.dumps(runtime.url)} && "
        f"!localStorage.getItem({json.dumps(visitor_key(runtime))})) "
        f"localStorage.setItem({json.dumps(visitor_key(runtime))}, {json.dumps(value)});")


async def demo_page(new_page: Any, runtime: Runtime, visitor: dict[str, str] | None = None,
                    **page_args: Any) -> Page:
    page: Page = await new_page(**page_args)
    if visitor is not None:
        await seed_visitor(page, runtime, visitor)
    await page.goto("/demo")
    await expect(page.locator(LAUNCHER)).to_be_visible(timeout=WAIT_MS)
    return page


async def open_panel(page: Page) -> None:
    await page.locator(LAUNCHER).click()
    await expect(page.locator(PANEL)).to_be_visible(timeout=WAIT_MS)


async def write(page: Page, text: str) -> None:
    """Type a message into the widget and press Enter."""
    await page.locator(INPUT).fill(text)
    await page.locator(INPUT).press("Enter")


async def dom_messages(page: Page) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = await page.evaluate(DOM_MESSAGES_JS)
    return messages


def shown(page: Page, text: str, role: str | None = None) -> Any:
    """The widget's message elements that hold this text."""
    selector = MESSAGE + (f"[data-role={role}]" if role else "")
    return page.locator(selector).filter(has_text=text)


async def online_agent(api: Api, connect: Any, skill: str,
                       **body: Any) -> tuple[dict[str, str], Client]:
    agent = await api.agent(skills=[skill], **body)
    client: Client = await connect(agent["token"])
    await client.send_frame({"type": "presence", "status": "online"})
    return agent, client


async def stored_texts(api: Api, agent: dict[str, str], cid: str) -> list[str]:
    """The conversation's stored log, as an agent reads it over REST."""
    response = await api.http.get(f"/v1/conversations/{cid}/messages",
                                  params={"limit": 1000},
                                  headers={"Authorization": f"Bearer {agent['token']}"})
    assert response.status_code == 200, response.text
    return [m["text"] for m in response.json()["messages"]]


@dataclass
class Chat:
    page: Page
    agent: dict[str, str]
    agent_ws: Client
    visitor: dict[str, str]
    cid: str


async def assigned_to(agent_ws: Client, visitor: dict[str, str]) -> Frame:
    """The agent's assignment of this visitor's conversation. The agent can take a
    conversation without a skill that an earlier test left waiting; that one is skipped."""
    return await agent_ws.expect(lambda f: f["type"] == "assigned"
                                 and f["visitor"]["id"] == visitor["visitor_id"])


async def start_chat(api: Api, connect: Any, new_page: Any, runtime: Runtime, skill: str,
                     text: str = "Hello, where is my order?") -> Chat:
    """An online agent with the test's skill, a widget on /demo whose visitor has that
    skill, one customer message written in the widget, and the agent assigned."""
    agent, agent_ws = await online_agent(api, connect, skill)
    visitor = await api.visitor(inbox="web", skill=skill, name="Widget Customer")
    page = await demo_page(new_page, runtime, visitor)
    await open_panel(page)
    await write(page, text)
    assigned = await assigned_to(agent_ws, visitor)
    assert assigned["visitor"]["id"] == visitor["visitor_id"]
    return Chat(page, agent, agent_ws, visitor, assigned["conversation_id"])


async def test_chat_with_an_agent(api: Api, connect: Any, new_page: Any, runtime: Runtime,
                                  skill: str) -> None:
    """On /demo a customer writes, the agent gets it and replies, typing shows on both sides,
    the agent's read turns ✓ into ✓✓, and the page asks nothing of any other origin."""
    _, agent_ws = await online_agent(api, connect, skill)
    visitor = await api.visitor(inbox="web", skill=skill, name="Widget Customer")
    page: Page = await new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await seed_visitor(page, runtime, visitor)
    await page.goto("/demo")
    await expect(page.locator("script[src$='/widget.js'][data-inbox=web][async]")
                 ).to_have_attribute("src", f"{runtime.url}/widget.js")

    launcher = page.locator(LAUNCHER)
    await expect(launcher).to_have_attribute("aria-expanded", "false", timeout=WAIT_MS)
    await open_panel(page)
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(PANEL)).to_have_attribute("role", "dialog")
    await expect(page.locator("[data-testid=message-list]")).to_have_attribute("role", "log")
    await expect(page.locator("[data-testid=connection-status]")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)

    await write(page, "Hello, where is my order?")
    mine = shown(page, "Hello, where is my order?", "customer")
    await expect(mine).to_have_attribute("data-status", "sent", timeout=WAIT_MS)
    await expect(mine.locator("[data-testid=message-status]")).to_have_text("✓")

    assigned = await assigned_to(agent_ws, visitor)
    cid = assigned["conversation_id"]
    assert assigned["visitor"]["id"] == visitor["visitor_id"]
    await agent_ws.send_frame({"type": "sync", "conversation_id": cid, "since": 0})
    question = await agent_ws.expect(lambda f: f["type"] == "message"
                                     and f["text"] == "Hello, where is my order?")
    await expect(shown(page, "An agent joined", "system")).to_have_count(1, timeout=WAIT_MS)
    await expect(mine).to_have_attribute("data-seq", str(question["seq"]))

    # The customer types (without sending): the agent hears it.
    await page.locator(INPUT).press_sequentially("one more thing", delay=20)
    typing = await agent_ws.expect(lambda f: f["type"] == "typing" and f["on"] is True)
    assert typing["conversation_id"] == cid and typing["sender"]["role"] == "customer"

    # The agent types: the widget says so; the reply (markup and all) shows as text.
    indicator = page.locator("[data-testid=typing-indicator]")
    await expect(indicator).to_be_hidden()
    await agent_ws.send_frame({"type": "typing", "conversation_id": cid, "on": True})
    await expect(indicator).to_be_visible(timeout=WAIT_MS)
    await expect(indicator).to_have_text("Agent is typing…")
    reply = "Hi! <b>Order 42</b> shipped: https://example.com/track?id=42."
    ack = await agent_ws.send_text(reply, conversation_id=cid)
    answer = shown(page, "Order 42", "agent")
    await expect(answer).to_have_attribute("data-seq", str(ack["seq"]), timeout=WAIT_MS)
    assert await answer.locator(".text").text_content() == reply
    assert await answer.locator("b").count() == 0
    link = answer.locator("a")
    await expect(link).to_have_attribute("href", "https://example.com/track?id=42")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(indicator).to_be_hidden()

    # The open panel reads the reply; the agent's read turns the customer's ✓ into ✓✓.
    read = await agent_ws.expect(lambda f: f["type"] == "read" and f["seq"] >= ack["seq"])
    assert read["sender"]["role"] == "customer"
    await agent_ws.send_frame({"type": "read", "conversation_id": cid, "seq": ack["seq"]})
    await expect(mine).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    await expect(mine.locator("[data-testid=message-status]")).to_have_text("✓✓")
    await page.screenshot(path=artifact("widget-demo.png"))

    others = [url for url in requests if not url.startswith(runtime.url)
              and not url.startswith("data:")]
    assert not others, f"requests to other origins: {others}"


async def test_reload_keeps_the_conversation(api: Api, connect: Any, new_page: Any,
                                             runtime: Runtime, skill: str) -> None:
    """After a reload the widget shows the same conversation: the same seqs, each once."""
    chat = await start_chat(api, connect, new_page, runtime, skill)
    page = chat.page
    ack = await chat.agent_ws.send_text("Let me check that for you", conversation_id=chat.cid)
    await expect(page.locator(f"{MESSAGE}[data-seq='{ack['seq']}']")).to_have_count(
        1, timeout=WAIT_MS)
    await write(page, "Thanks!")
    await expect(shown(page, "Thanks!", "customer")).to_have_attribute(
        "data-status", "sent", timeout=WAIT_MS)
    before = await dom_messages(page)
    seqs = [m["seq"] for m in before]
    assert seqs == list(range(1, len(seqs) + 1)), before
    assert {m["conversation"] for m in before} == {chat.cid}

    await page.reload()
    await open_panel(page)
    await expect(page.locator(MESSAGE)).to_have_count(len(before), timeout=WAIT_MS)
    await expect(page.locator("[data-testid=connection-status]")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)
    await asyncio.sleep(0.5)  # let a late duplicate (live and sync overlapping) show up
    after = await dom_messages(page)
    assert [(m["seq"], m["role"], m["text"]) for m in after] == \
        [(m["seq"], m["role"], m["text"]) for m in before]


async def test_messages_delivered_twice_show_once(api: Api, connect: Any, new_page: Any,
                                                  runtime: Runtime, skill: str) -> None:
    """Every message frame from the server arriving a second time, late (as live events and
    sync replies can overlap), still shows once each, in seq order."""
    agent, agent_ws = await online_agent(api, connect, skill)
    visitor = await api.visitor(inbox="web", skill=skill)
    page: Page = await new_page()
    repeated: list[int] = []

    async def echo_late(route: WebSocketRoute) -> None:
        # The real server, passed through; each message frame is sent once more after the
        # next one, so duplicates also arrive out of order.
        server = route.connect_to_server()
        previous: list[str | bytes] = []

        def to_page(frame: str | bytes) -> None:
            route.send(frame)
            if isinstance(frame, str) and json.loads(frame).get("type") == "message":
                if previous:
                    route.send(previous[0])
                    repeated.append(json.loads(previous[0])["seq"])
                previous[:] = [frame]

        server.on_message(to_page)

    await page.route_web_socket(re.compile(r"/v1/ws$"), echo_late)
    await seed_visitor(page, runtime, visitor)
    await page.goto("/demo")
    await open_panel(page)
    await write(page, "First question")
    cid = (await assigned_to(agent_ws, visitor))["conversation_id"]
    for text in ("Reply one", "Reply two", "Reply three"):
        await agent_ws.send_text(text, conversation_id=cid)
    await write(page, "Second question")
    await expect(shown(page, "Second question")).to_have_attribute(
        "data-status", "sent", timeout=WAIT_MS)
    await expect(shown(page, "Reply three")).to_have_count(1, timeout=WAIT_MS)
    await asyncio.sleep(0.5)
    assert len(repeated) >= 5, repeated
    seqs = [m["seq"] for m in await dom_messages(page)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert await stored_texts(api, agent, cid) == \
        [m["text"] for m in await dom_messages(page)]


async def test_lost_message_is_fetched_at_the_gap(api: Api, connect: Any, new_page: Any,
                                                 runtime: Runtime, skill: str) -> None:
    """A live message frame lost on the way is fetched with sync as soon as the next one
    shows the gap, and shows once, in its place."""
    agent, agent_ws = await online_agent(api, connect, skill)
    visitor = await api.visitor(inbox="web", skill=skill)
    page: Page = await new_page()
    syncs: list[dict[str, Any]] = []
    dropped: list[int] = []

    async def lose_one(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def to_page(frame: str | bytes) -> None:
            data = json.loads(frame) if isinstance(frame, str) else {}
            if data.get("text") == "This one gets lost" and not dropped:
                dropped.append(data["seq"])
                return
            route.send(frame)

        def to_server(frame: str | bytes) -> None:
            data = json.loads(frame) if isinstance(frame, str) else {}
            if data.get("type") == "sync":
                syncs.append(data)
            server.send(frame)

        server.on_message(to_page)
        route.on_message(to_server)

    await page.route_web_socket(re.compile(r"/v1/ws$"), lose_one)
    await seed_visitor(page, runtime, visitor)
    await page.goto("/demo")
    await open_panel(page)
    await write(page, "Hello")
    cid = (await assigned_to(agent_ws, visitor))["conversation_id"]
    lost = await agent_ws.send_text("This one gets lost", conversation_id=cid)
    await asyncio.sleep(0.5)
    assert dropped == [lost["seq"]]
    await expect(shown(page, "This one gets lost")).to_have_count(0)
    after = await agent_ws.send_text("And this one arrives", conversation_id=cid)
    await expect(shown(page, "This one gets lost")).to_have_attribute(
        "data-seq", str(lost["seq"]), timeout=WAIT_MS)
    assert {"type": "sync", "conversation_id": cid, "since": lost["seq"] - 1} in syncs
    await expect(shown(page, "And this one arrives")).to_have_count(1)
    seqs = [m["seq"] for m in await dom_messages(page)]
    assert seqs == list(range(1, after["seq"] + 1))
    assert await stored_texts(api, agent, cid) == [m["text"] for m in await dom_messages(page)]


async def test_second_tab_is_the_same_conversation_live(api: Api, connect: Any,
                                                        new_page: Any, runtime: Runtime,
                                                        skill: str) -> None:
    """A second tab of the same browser shows the conversation and both tabs get new
    messages live, from the agent and from each other."""
    chat = await start_chat(api, connect, new_page, runtime, skill)
    first = chat.page
    await expect(shown(first, "An agent joined", "system")).to_have_count(1, timeout=WAIT_MS)
    second: Page = await new_page(context=first.context)
    await second.goto("/demo")
    await open_panel(second)
    await expect(shown(second, "Hello, where is my order?", "customer")).to_have_count(
        1, timeout=WAIT_MS)
    await expect(shown(second, "An agent joined", "system")).to_have_count(1, timeout=WAIT_MS)

    await chat.agent_ws.send_text("Both tabs see this", conversation_id=chat.cid)
    for page in (first, second):
        await expect(shown(page, "Both tabs see this", "agent")).to_have_count(
            1, timeout=WAIT_MS)
    await write(second, "Written in the second tab")
    await chat.agent_ws.expect(lambda f: f["type"] == "message"
                               and f["text"] == "Written in the second tab")
    for page in (first, second):
        await expect(shown(page, "Written in the second tab", "customer")).to_have_attribute(
            "data-status", "sent", timeout=WAIT_MS)
    assert [m["seq"] for m in await dom_messages(first)] == \
        [m["seq"] for m in await dom_messages(second)]


async def test_markup_in_a_message_is_text(api: Api, connect: Any, new_page: Any,
                                           runtime: Runtime) -> None:
    """A message of HTML shows literally: no img element, no script run, no dialog; only
    http(s) URLs become links. The widget makes its own visitor, with the page's URL."""
    page = await demo_page(new_page, runtime)
    assert await page.evaluate(f"localStorage.getItem({json.dumps(visitor_key(runtime))})") \
        is None
    await open_panel(page)
    await expect(page.locator("[data-testid=connection-status]")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)
    stored = json.loads(await page.evaluate(
        f"localStorage.getItem({json.dumps(visitor_key(runtime))})"))

    attack = "<img src=x onerror=alert(1)>"
    await write(page, attack)
    message = shown(page, "onerror", "customer")
    await expect(message).to_have_attribute("data-status", "sent", timeout=WAIT_MS)
    assert await message.locator(".text").text_content() == attack
    # Shift+Enter is a new line, not a send.
    await page.locator(INPUT).fill("see https://example.com/a?b=1, not javascript:alert(2)")
    await page.locator(INPUT).press("Shift+Enter")
    await page.locator(INPUT).press("End")
    await page.locator(INPUT).press_sequentially("<script>alert(3)</script>")
    await expect(page.locator(INPUT)).to_have_value(
        "see https://example.com/a?b=1, not javascript:alert(2)\n<script>alert(3)</script>")
    await page.locator("[data-testid=send-button]").click()
    links = shown(page, "javascript", "customer")
    await expect(links).to_have_attribute("data-status", "sent", timeout=WAIT_MS)

    counts = await page.evaluate("""() => {
        const root = document.getElementById('raydesk-widget').shadowRoot;
        return {img: root.querySelectorAll('img').length,
                script: root.querySelectorAll('script').length,
                hrefs: Array.from(root.querySelectorAll('a')).map(a => a.href)};
    }""")
    assert counts == {"img": 0, "script": 0, "hrefs": ["https://example.com/a?b=1"]}
    assert await page.evaluate("document.querySelectorAll('img').length") == 0
    await page.screenshot(path=artifact("widget-markup.png"))

    # The widget told the server where the visitor is.
    agent = await api.agent(name="Visitor Reader")
    info = await api.http.get(f"/v1/visitors/{stored['visitor_id']}",
                              headers={"Authorization": f"Bearer {agent['token']}"})
    assert info.status_code == 200, info.text
    assert info.json()["page"] == f"{runtime.url}/demo"
    assert info.json()["inbox"] == "web"
    # Close the conversation: it has no skill, and no later test's agent should get it.
    customer = await connect(stored["token"])
    cid = customer.welcome["conversations"][0]["conversation_id"]
    await customer.send_frame({"type": "close", "conversation_id": cid})
    await customer.expect_event("closed", cid)


async def test_message_written_offline_is_delivered_once(api: Api, connect: Any,
                                                         new_page: Any, runtime: Runtime,
                                                         skill: str) -> None:
    """A message written while the socket is down waits (also in localStorage, through a
    reload) and is delivered exactly once after reconnecting, and shown once."""
    chat = await start_chat(api, connect, new_page, runtime, skill)
    page = chat.page
    await expect(shown(page, "Hello, where is my order?")).to_have_attribute(
        "data-status", "sent", timeout=WAIT_MS)
    status = page.locator("[data-testid=connection-status]")

    await page.evaluate("window.RaydeskWidget.disconnect()")
    await expect(status).to_have_attribute("data-state", "offline")
    await write(page, "Written while offline")
    waiting = shown(page, "Written while offline", "customer")
    await expect(waiting).to_have_attribute("data-status", "pending")
    outbox = await page.evaluate(f"localStorage.getItem({json.dumps(outbox_key(runtime))})")
    assert "Written while offline" in outbox
    await page.evaluate("window.RaydeskWidget.connect()")
    await expect(waiting).to_have_attribute("data-status", "sent", timeout=WAIT_MS)
    await chat.agent_ws.expect(lambda f: f["type"] == "message"
                               and f["text"] == "Written while offline")

    # Down again, and the page reloaded before the socket came back: the outbox survives.
    await page.evaluate("window.RaydeskWidget.disconnect()")
    await write(page, "Written before a reload")
    await expect(shown(page, "Written before a reload")).to_have_attribute(
        "data-status", "pending")
    await page.reload()
    await open_panel(page)
    again = shown(page, "Written before a reload", "customer")
    await expect(again).to_have_attribute("data-status", "sent", timeout=WAIT_MS)
    await chat.agent_ws.expect(lambda f: f["type"] == "message"
                               and f["text"] == "Written before a reload")
    await asyncio.sleep(0.5)  # a second copy, if any, would arrive by now

    texts = await stored_texts(api, chat.agent, chat.cid)
    assert texts.count("Written while offline") == 1
    assert texts.count("Written before a reload") == 1
    await expect(shown(page, "Written while offline")).to_have_count(1)
    await expect(again).to_have_count(1)
    assert await page.evaluate(f"localStorage.getItem({json.dumps(outbox_key(runtime))})") \
        is None


async def test_offline_notice_when_no_agent_is_online(api: Api, connect: Any, new_page: Any,
                                                      runtime: Runtime, skill: str) -> None:
    """With no agent online in the conversation's partition the widget shows the offline
    notice and its queue position; both go when an agent joins."""
    # Partition p2 (inbox "inbox-p2" in the suite's config) has no agent online unless a
    # test makes one, and tests close their agents when they end.
    visitor = await api.visitor(inbox="inbox-p2", skill=skill)
    page = await demo_page(new_page, runtime, visitor)
    await open_panel(page)
    await write(page, "Is anyone there?")
    offline = page.locator("[data-testid=offline-notice]")
    await expect(offline).to_be_visible(timeout=WAIT_MS)
    await expect(offline).to_have_text(
        "No one is available right now. Leave your message and we'll answer here.")
    await expect(page.locator("[data-testid=queue-notice]")).to_have_text(
        "You are number 1 in the queue")
    await page.screenshot(path=artifact("widget-offline.png"))

    _, agent_ws = await online_agent(api, connect, skill, partition="p2")
    await assigned_to(agent_ws, visitor)
    await expect(shown(page, "An agent joined", "system")).to_have_count(1, timeout=WAIT_MS)
    await expect(offline).to_be_hidden()
    await expect(page.locator("[data-testid=queue-notice]")).to_be_hidden()


async def test_phone_sized_screen(new_page: Any, runtime: Runtime) -> None:
    """On a 390x844 screen the open panel fills the screen with its input in view, and
    Escape closes it."""
    page = await demo_page(new_page, runtime, viewport={"width": 390, "height": 844})
    await page.screenshot(path=artifact("widget-phone-closed.png"))
    await open_panel(page)
    box = await page.locator(PANEL).bounding_box()
    assert box is not None
    assert (round(box["x"]), round(box["y"]), round(box["width"]), round(box["height"])) == \
        (0, 0, 390, 844)
    field = await page.locator(INPUT).bounding_box()
    assert field is not None
    assert field["y"] > 0 and field["y"] + field["height"] <= 844
    await expect(page.locator(INPUT)).to_be_in_viewport()
    await expect(page.locator(INPUT)).to_be_focused()
    await page.screenshot(path=artifact("widget-phone.png"))
    await page.keyboard.press("Escape")
    await expect(page.locator(PANEL)).to_be_hidden()
    await expect(page.locator(LAUNCHER)).to_have_attribute("aria-expanded", "false")
    await expect(page.locator(LAUNCHER)).to_be_focused()


async def test_expired_visitor_is_replaced(new_page: Any, runtime: Runtime) -> None:
    """A stored token the server refuses (close 4401) is dropped and a new visitor made."""
    bad = {"visitor_id": "v_0000000000000000000000", "token": "not-a-token"}
    page = await demo_page(new_page, runtime, bad)
    await open_panel(page)
    await expect(page.locator("[data-testid=connection-status]")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)
    stored = json.loads(await page.evaluate(
        f"localStorage.getItem({json.dumps(visitor_key(runtime))})"))
    assert stored["visitor_id"] != bad["visitor_id"] and stored["token"] != bad["token"]
