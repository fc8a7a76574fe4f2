"""The agent console (/console) in a real browser (Debian's chromium through Playwright)
against the suite's running raydesk; customers are protocol clients, and once the real
widget on /demo."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from raydesk.runtime import Runtime
from tests.integration.client import WAIT_S, Api, Client
from tests.integration.conftest import artifact

pytestmark = pytest.mark.integration

WAIT_MS = WAIT_S * 1000
PASSWORD = "correct horse 1"
WIDGET = Path(__file__).resolve().parents[2] / "web" / "widget.js"
# What a visitor's browser sends; the visitor panel shows it.
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(new_page: Any, agent: dict[str, str], presence: str = "online") -> Page:
    """Open /console, sign in as the agent, pick a presence, wait for the socket."""
    page: Page = await new_page(viewport={"width": 1440, "height": 900})
    await page.goto("/console")
    await page.get_by_test_id("login-email").fill(agent["email"])
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)
    await page.get_by_test_id("presence").select_option(presence)
    return page


async def presence_of(api: Api, token: str, agent_id: str) -> str:
    response = await api.http.get("/v1/agents", headers=bearer(token))
    assert response.status_code == 200, response.text
    return next(str(a["presence"]) for a in response.json()["agents"]
                if a["agent_id"] == agent_id)


async def wait_presence(api: Api, token: str, agent_id: str, want: str) -> None:
    """Until the router reports the agent's presence as `want` (set from the console)."""
    for _ in range(int(WAIT_S * 10)):
        if await presence_of(api, token, agent_id) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"agent {agent_id} never became {want}")


async def customer(api: Api, connect: Any, skill: str, **visitor: Any) -> tuple[Client, str]:
    """A visitor with the test's skill (created with a browser's User-Agent) and its
    connection."""
    response = await api.http.post("/v1/visitors", json={"skill": skill, **visitor},
                                   headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 201, response.text
    created = response.json()
    client: Client = await connect(created["token"])
    return client, str(created["visitor_id"])


def item(page: Page, listing: str, cid: str) -> Locator:
    return page.locator(f"[data-testid=list-{listing}] [data-conversation-id='{cid}']")


def messages(page: Page, role: str | None = None) -> Locator:
    selector = "[data-testid=message-list] [data-testid=message]"
    return page.locator(selector + (f"[data-role={role}]" if role else ""))


async def open_section(page: Page, listing: str) -> None:
    """The All open and Closed lists are folded (<details>) until opened."""
    section = page.get_by_test_id(f"section-{listing}")
    if await section.get_attribute("open") is None:
        await section.locator("summary").click()


async def test_agent_chats_with_a_customer(api: Api, connect: Any, new_page: Any,
                                           skill: str) -> None:
    """Chat in the console: reply, typing, receipts, markup as text, visitor, private note."""
    agent = await api.agent(skills=[skill], name="Maya Agent")
    page = await sign_in(new_page, agent)
    await wait_presence(api, agent["token"], agent["agent_id"], "online")
    await expect(page.get_by_test_id("me")).to_contain_text("Maya Agent")
    await expect(page.get_by_test_id("admin-nav")).to_have_count(0)

    cust, _ = await customer(
        api, connect, skill, name="Ann Lee", email="ann@example.com",
        attributes={"plan": "pro", "order": "#1042"}, page="https://shop.example.com/checkout")
    cid = (await cust.send_text("Hello, I was charged twice for order #1042."))["conversation_id"]
    assigned = await cust.expect_event("assigned", cid)
    assert assigned["event"]["agent_id"] == agent["agent_id"]

    mine = item(page, "mine", cid)
    await expect(mine).to_contain_text("Ann Lee", timeout=WAIT_MS)
    # One message from her; the system events before it (opened, queued, assigned) are
    # not unread.
    await expect(mine.get_by_test_id("unread")).to_have_text("1", timeout=WAIT_MS)
    await mine.click()
    await expect(page).to_have_url(f"{page.url.split('#')[0]}#/inbox/{cid}")
    await expect(messages(page, "customer").first).to_contain_text("charged twice",
                                                                    timeout=WAIT_MS)
    # The routing reason of the assignment is shown with the event.
    assigned_event = page.locator("[data-testid=message][data-event=assigned]")
    await expect(assigned_event).to_contain_text("Assigned to you")
    await expect(assigned_event.get_by_test_id("event-detail")).to_contain_text("score")
    seqs = [int(s) for s in await messages(page).evaluate_all(
        "nodes => nodes.map(n => n.dataset.seq)")]
    assert seqs == sorted(seqs) and seqs[0] == 1, seqs
    await expect(mine.get_by_test_id("unread")).to_have_count(0)

    # The visitor panel.
    panel = page.get_by_test_id("visitor-panel")
    await expect(panel.get_by_test_id("visitor-email")).to_have_text("ann@example.com")
    await expect(panel.get_by_test_id("visitor-page")).to_have_text(
        "https://shop.example.com/checkout", timeout=WAIT_MS)
    await expect(panel.get_by_test_id("visitor-browser")).to_contain_text("Chrome 131")
    await expect(panel.get_by_test_id("visitor-attributes")).to_contain_text("#1042")
    await expect(panel.get_by_test_id("visitor-conversations")).to_contain_text("this one")

    # Typing: the customer's shows in the console, the agent's reaches the customer.
    await cust.send_frame({"type": "typing", "conversation_id": cid, "on": True})
    await expect(page.get_by_test_id("typing-indicator")).to_have_text(
        "Ann Lee is typing…", timeout=WAIT_MS)
    await cust.send_frame({"type": "typing", "conversation_id": cid, "on": False})
    await expect(page.get_by_test_id("typing-indicator")).to_be_hidden(timeout=WAIT_MS)
    box = page.get_by_test_id("reply-box")
    await box.press_sequentially("Sorry about that, Ann")
    typing = await cust.expect(lambda f: f["type"] == "typing" and f["on"] is True)
    assert typing["sender"] == {"role": "agent", "id": agent["agent_id"]}

    # Shift+Enter is a new line, Enter sends.
    await box.press("Shift+Enter")
    await box.press_sequentially("I am refunding the second charge now.")
    await box.press("Enter")
    await expect(box).to_have_value("")
    reply = await cust.expect(lambda f: f["type"] == "message" and f["sender"]["role"] == "agent")
    assert reply["text"] == "Sorry about that, Ann\nI am refunding the second charge now."
    assert reply["client_msg_id"]
    agent_msg = page.locator(f"[data-testid=message][data-role=agent][data-seq='{reply['seq']}']")
    await expect(agent_msg.get_by_test_id("receipt")).to_have_text("✓", timeout=WAIT_MS)
    await cust.send_frame({"type": "read", "conversation_id": cid, "seq": reply["seq"]})
    await expect(agent_msg.get_by_test_id("receipt")).to_have_text("✓✓", timeout=WAIT_MS)

    # Markup from a customer is text: no element is made from it, and nothing runs (the
    # new_page fixture fails the test on any dialog or page error).
    hostile = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"
    await cust.send_text(hostile, cid)
    await expect(messages(page, "customer").filter(has_text="onerror")).to_have_count(
        1, timeout=WAIT_MS)
    await expect(messages(page, "customer").last.locator(".msg-text")).to_have_text(hostile)
    await expect(page.locator("[data-testid=message-list] img")).to_have_count(0)
    await expect(page.locator("[data-testid=message-list] script")).to_have_count(0)
    # A link in a message opens elsewhere, without a handle on the console.
    await cust.send_text("The receipt: https://shop.example.com/orders/1042.", cid)
    link = messages(page, "customer").last.locator("a")
    await expect(link).to_have_attribute("href", "https://shop.example.com/orders/1042",
                                         timeout=WAIT_MS)
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(link).to_have_attribute("target", "_blank")

    # A private note: in the console, marked as such, never to the customer.
    await page.get_by_test_id("composer-note-tab").click()
    await page.get_by_test_id("note-box").fill("Refund approved by finance (ticket F-77).")
    await page.get_by_test_id("note-box").press("Enter")
    note = page.get_by_test_id("note")
    await expect(note).to_contain_text("Refund approved by finance", timeout=WAIT_MS)
    await expect(note).to_contain_text("only agents see this")
    # The next customer send is acked after the note was stored and published: had the
    # note gone to the customer, it would have arrived by now.
    await cust.send_text("Thanks!", cid)
    await expect(messages(page, "customer").last).to_contain_text("Thanks!", timeout=WAIT_MS)
    assert not [f for f in cust.frames if f["type"] == "note"]
    assert "F-77" not in json.dumps(cust.frames)
    response = await api.http.get(f"/v1/conversations/{cid}/notes", headers=bearer(agent["token"]))
    assert [n["text"] for n in response.json()["notes"]] == [
        "Refund approved by finance (ticket F-77)."]
    await page.get_by_test_id("composer-reply-tab").click()
    await box.fill("Done: you will see it in 3 to 5 days.")
    await box.press("Enter")
    await cust.expect(lambda f: f["type"] == "message" and f["text"].startswith("Done:"))
    # For the screenshot: another chat of this agent's, and one no agent has the skill for.
    ben, _ = await customer(api, connect, skill, name="Ben Ortiz")
    ben_cid = (await ben.send_text("Can I change the delivery address?"))["conversation_id"]
    await expect(item(page, "mine", ben_cid).get_by_test_id("unread")).to_have_text(
        "1", timeout=WAIT_MS)
    lena, _ = await customer(api, connect, f"{skill}-nordic", name="Lena Berg")
    lena_cid = (await lena.send_text("Do you ship to Norway?"))["conversation_id"]
    # The feed has no names: the console reads them from the conversation list.
    await expect(item(page, "queued", lena_cid)).to_contain_text("Lena Berg", timeout=WAIT_MS)
    await cust.send_frame({"type": "typing", "conversation_id": cid, "on": True})
    await expect(page.get_by_test_id("typing-indicator")).to_be_visible(timeout=WAIT_MS)
    await page.screenshot(path=artifact("console.png"))
    await lena.send_frame({"type": "close", "conversation_id": lena_cid})
    await expect(item(page, "queued", lena_cid)).to_have_count(0, timeout=WAIT_MS)

    # Reloading the tab keeps the agent signed in (sessionStorage) and the history whole.
    await page.reload()
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS)
    await expect(messages(page)).to_have_count(len(cust.messages(cid)), timeout=WAIT_MS)
    await expect(page.get_by_test_id("note")).to_have_count(1)
    await expect(page.get_by_test_id("visitor-panel").get_by_test_id("conversation-id")
                 ).to_have_text(cid)

    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login-email")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_queue_accept_transfer_and_close(api: Api, connect: Any, new_page: Any,
                                               skill: str) -> None:
    """Away: a chat waits in the queue (ticking); accept, transfer to an agent, close another."""
    agent = await api.agent(skills=[skill], name="Quinn Agent")
    page = await sign_in(new_page, agent, presence="away")
    await wait_presence(api, agent["token"], agent["agent_id"], "away")

    cust, _ = await customer(api, connect, skill, name="Carl Queue")
    cid = (await cust.send_text("Is anyone there?"))["conversation_id"]
    waiting = item(page, "queued", cid)
    await expect(waiting).to_contain_text("Carl Queue", timeout=WAIT_MS)
    first = await waiting.locator(".wait").inner_text()
    await expect(waiting.locator(".wait")).not_to_have_text(first, timeout=WAIT_MS)
    await waiting.click()
    await expect(page.get_by_test_id("conversation-status")).to_have_text("queued")
    await expect(page.get_by_test_id("reply-box")).to_be_disabled()
    await page.get_by_test_id("accept").click()
    event = await cust.expect_event("assigned", cid)
    assert event["event"] == {"kind": "assigned", "agent_id": agent["agent_id"],
                              "reason": {"by": "accept"}}
    await expect(item(page, "mine", cid)).to_be_visible(timeout=WAIT_MS)
    await expect(waiting).to_have_count(0)
    await expect(page.get_by_test_id("conversation-status")).to_have_text("assigned")
    await expect(page.locator("[data-testid=message][data-event=assigned]")).to_contain_text(
        "taken from the queue by hand")

    # Transfer to another agent (online through a protocol client).
    other = await api.agent(skills=[skill], name="Olga Other")
    other_ws = await connect(other["token"])
    await other_ws.send_frame({"type": "presence", "status": "online"})
    await wait_presence(api, agent["token"], other["agent_id"], "online")
    await page.get_by_test_id("transfer-open").click()
    options = page.locator(f"[data-testid=transfer-agent] option[value='{other['agent_id']}']")
    await expect(options).to_be_enabled(timeout=WAIT_MS)
    await page.get_by_test_id("transfer-agent").select_option(other["agent_id"])
    await page.get_by_test_id("transfer-agent-submit").click()
    assigned = await other_ws.expect_type("assigned", conversation_id=cid)
    assert assigned["visitor"]["name"] == "Carl Queue"
    moved = await cust.expect_event("transferred", cid)
    assert moved["event"]["to_agent"] == other["agent_id"]
    await expect(item(page, "mine", cid)).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator("[data-testid=message][data-event=transferred]")).to_contain_text(
        "Olga Other")
    await expect(page.get_by_test_id("reply-box")).to_be_disabled()
    await expect(page.get_by_test_id("close-conversation")).to_be_hidden()
    await other_ws.send_text("Olga here, I can help.", cid)
    await open_section(page, "open")
    await expect(item(page, "open", cid)).to_contain_text("Olga Other", timeout=WAIT_MS)

    # Close another conversation: back online (and the other agent away), it is routed here.
    await other_ws.send_frame({"type": "presence", "status": "away"})
    await wait_presence(api, agent["token"], other["agent_id"], "away")
    await page.get_by_test_id("presence").select_option("online")
    await wait_presence(api, agent["token"], agent["agent_id"], "online")
    second, _ = await customer(api, connect, skill, name="Dina Close")
    cid2 = (await second.send_text("Just wanted to say thanks."))["conversation_id"]
    await item(page, "mine", cid2).click()
    await page.get_by_test_id("close-conversation").click()
    await page.get_by_test_id("close-cancel").click()
    await expect(page.get_by_test_id("close-conversation")).to_be_focused()
    await page.get_by_test_id("close-conversation").click()
    await page.get_by_test_id("close-confirm").click()
    closed = await second.expect_event("closed", cid2)
    assert closed["event"]["by"] == agent["agent_id"]
    await expect(page.get_by_test_id("conversation-status")).to_have_text("closed",
                                                                          timeout=WAIT_MS)
    await expect(page.get_by_test_id("reply-box")).to_be_disabled()
    await expect(item(page, "mine", cid2)).to_have_count(0)
    await open_section(page, "closed")
    await expect(item(page, "closed", cid2)).to_be_visible()
    await page.screenshot(path=artifact("console-transfer-close.png"))


async def test_canned_reply_inserted_with_slash(api: Api, connect: Any, new_page: Any,
                                                skill: str) -> None:
    """A canned reply is found with / in the reply box, inserted with Enter or a click, sent."""
    agent = await api.agent(skills=[skill], name="Cato Canned")
    page = await sign_in(new_page, agent)
    shortcut = f"ship{uuid.uuid4().hex[:8]}"
    text = "Orders ship within 2 business days; you get a tracking link by email."
    await page.get_by_test_id("nav-canned").click()
    await page.get_by_test_id("canned-shortcut").fill(shortcut)
    await page.get_by_test_id("canned-text").fill(text)
    await page.get_by_test_id("canned-add").click()
    await expect(page.locator(f"[data-testid=canned-row][data-shortcut={shortcut}]")
                 ).to_be_visible(timeout=WAIT_MS)

    await wait_presence(api, agent["token"], agent["agent_id"], "online")
    cust, _ = await customer(api, connect, skill, name="Sam Ship")
    cid = (await cust.send_text("When will my order ship?"))["conversation_id"]
    await page.get_by_test_id("nav-inbox").click()
    await item(page, "mine", cid).click()
    box = page.get_by_test_id("reply-box")
    await box.click()
    await box.press_sequentially(f"/{shortcut[:6]}")
    listing = page.get_by_test_id("canned-list")
    await expect(listing).to_be_visible()
    await box.press("Escape")
    await expect(listing).to_be_hidden()
    await box.press_sequentially(shortcut[6:])
    choice = listing.locator(f"[data-testid=canned-item][data-shortcut={shortcut}]")
    await expect(choice).to_be_visible()
    await expect(choice).to_have_attribute("aria-selected", "true")
    await box.press("Enter")
    await expect(box).to_have_value(text)
    await expect(listing).to_be_hidden()
    await box.press("Enter")
    sent = await cust.expect(lambda f: f["type"] == "message" and f["sender"]["role"] == "agent")
    assert sent["text"] == text

    # A click inserts too.
    await box.press_sequentially(f"/{shortcut}")
    await choice.click()
    await expect(box).to_have_value(text)
    await box.fill("")

    await page.get_by_test_id("nav-canned").click()
    row = page.locator(f"[data-testid=canned-row][data-shortcut={shortcut}]")
    await row.get_by_role("button", name=f"Delete /{shortcut}").click()
    await expect(row).to_have_count(0, timeout=WAIT_MS)


async def test_reply_written_offline_is_sent_once(api: Api, connect: Any, new_page: Any,
                                                  skill: str) -> None:
    """A reply written offline is sent once after the reconnect; missed messages show up."""
    agent = await api.agent(skills=[skill], name="Rita Reconnect")
    page = await sign_in(new_page, agent)
    await wait_presence(api, agent["token"], agent["agent_id"], "online")
    cust, _ = await customer(api, connect, skill, name="Nils Network")
    cid = (await cust.send_text("Hello?"))["conversation_id"]
    await item(page, "mine", cid).click()
    await expect(messages(page, "customer")).to_have_count(1, timeout=WAIT_MS)

    await page.context.set_offline(True)
    box = page.get_by_test_id("reply-box")
    await box.fill("Written while offline")
    await box.press("Enter")
    await expect(page.get_by_test_id("message-pending")).to_be_visible()
    # The server drops the silent socket (heartbeat timeout); the console reconnects.
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "reconnecting", timeout=WAIT_MS)
    await cust.send_text("I am still here", cid)
    await page.context.set_offline(False)
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "online", timeout=WAIT_MS * 4)
    await cust.expect(lambda f: f["type"] == "message" and f["text"] == "Written while offline")
    await expect(messages(page, "customer").filter(has_text="I am still here")).to_have_count(
        1, timeout=WAIT_MS)
    await expect(messages(page, "agent").filter(has_text="Written while offline")
                 ).to_have_count(1, timeout=WAIT_MS)
    await expect(page.get_by_test_id("message-pending")).to_have_count(0)
    response = await api.http.get(f"/v1/conversations/{cid}/messages",
                                  headers=bearer(agent["token"]))
    texts = [m["text"] for m in response.json()["messages"]]
    assert texts.count("Written while offline") == 1, texts


async def test_admin_pages(api: Api, new_page: Any, skill: str, tmp_path: Path) -> None:
    """Admin: create an agent (listed), edit it, import an FAQ file, the test box answers."""
    admin = await api.agent(skills=[skill], name="Ada Admin", role="admin")
    page = await sign_in(new_page, admin)
    await expect(page.get_by_test_id("admin-nav")).to_be_visible()

    await page.get_by_test_id("nav-agents").click()
    email = f"new-{uuid.uuid4().hex[:10]}@example.test"
    await page.get_by_test_id("agent-create-email").fill(email)
    await page.get_by_test_id("agent-create-name").fill("Nora New")
    await page.get_by_test_id("agent-create-password").fill(PASSWORD)
    await page.get_by_test_id("agent-create-role").select_option("agent")
    await page.get_by_test_id("agent-create-skills").fill(f"{skill}, vip")
    await page.get_by_test_id("agent-create-max-chats").fill("3")
    await page.get_by_test_id("agent-create-submit").click()
    row = page.locator("[data-testid=agent-row]").filter(has_text=email)
    await expect(row).to_contain_text("Nora New", timeout=WAIT_MS)
    await expect(row.get_by_test_id("agent-max-chats")).to_have_text("3")
    await row.get_by_test_id("agent-edit").click()
    await row.get_by_test_id("agent-edit-max-chats").fill("7")
    await row.get_by_test_id("agent-edit-save").click()
    await expect(row.get_by_test_id("agent-max-chats")).to_have_text("7", timeout=WAIT_MS)
    listed = (await api.http.get("/v1/agents", headers=bearer(admin["token"]))).json()["agents"]
    nora = next(a for a in listed if a["email"] == email)
    assert (nora["max_chats"], nora["role"], nora["skills"]) == (7, "agent", sorted([skill, "vip"]))

    # The FAQ is the whole server's: put back what was there.
    before = (await api.http.get("/v1/faq", headers=bearer(admin["token"]))).json()["items"]
    faq = tmp_path / "faq.csv"
    faq.write_text("id,question,answer,alternates\n"
                   "console-reset,How do I reset my password?,"
                   "Use the Forgot password link on the sign-in page.,"
                   "forgot my password|lost password\n"
                   "console-refund,How do I get a refund?,Open Billing > Refunds.,money back\n")
    try:
        await page.get_by_test_id("nav-faq").click()
        await page.get_by_test_id("faq-file").set_input_files(faq)
        await page.get_by_test_id("faq-import").click()
        await expect(page.get_by_test_id("faq-import-result")).to_contain_text(
            "Imported 2 items", timeout=WAIT_MS * 6)
        await expect(page.locator("[data-testid=faq-row]")).to_have_count(2)
        await page.get_by_test_id("faq-test-input").fill("How do I reset my password?")
        await page.get_by_test_id("faq-test-submit").click()
        await expect(page.get_by_test_id("faq-test-action")).to_have_text("answer",
                                                                          timeout=WAIT_MS)
        await expect(page.get_by_test_id("faq-test-faq-id")).to_have_text("console-reset")
        await expect(page.get_by_test_id("faq-test-reply")).to_have_text(
            "Use the Forgot password link on the sign-in page.")
        await expect(page.get_by_test_id("faq-test-confidence")).to_contain_text("%")
        await page.screenshot(path=artifact("console-faq.png"))
    finally:
        restored = await api.http.put("/v1/faq", json={"items": before},
                                      headers=bearer(admin["token"]), timeout=WAIT_S * 30)
        assert restored.status_code == 200, restored.text

    await page.get_by_test_id("nav-unanswered").click()
    await expect(page.get_by_test_id("unanswered-summary")).to_contain_text(
        "question", timeout=WAIT_MS)
    await page.get_by_test_id("nav-overview").click()
    me = page.locator(f"[data-testid=overview-agent][data-agent-id='{admin['agent_id']}']")
    await expect(me).to_contain_text("online", timeout=WAIT_MS)
    assert int(await page.get_by_test_id("overview-online").inner_text()) >= 1


async def test_agent_has_no_admin_pages(api: Api, new_page: Any, skill: str) -> None:
    """An agent without the admin role gets no admin links, and no admin page by address."""
    agent = await api.agent(skills=[skill], name="Plain Agent")
    page = await sign_in(new_page, agent)
    await expect(page.get_by_test_id("admin-nav")).to_have_count(0)
    await page.goto("/console/#/admin/agents")
    await expect(page.get_by_test_id("inbox")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_test_id("admin-agents")).to_have_count(0)


@pytest.mark.skipif(not WIDGET.exists(), reason="web/widget.js is not there yet")
async def test_console_with_the_real_widget(api: Api, new_page: Any, runtime: Runtime,
                                            skill: str) -> None:
    """The real widget on /demo and the console: each sees the other type; the reply arrives."""
    agent = await api.agent(skills=[skill], name="Wendy Widget")
    console = await sign_in(new_page, agent)
    await wait_presence(api, agent["token"], agent["agent_id"], "online")

    # The widget keeps its visitor in localStorage (docs/how-to/embed-widget.md): seed
    # one with the test's skill so routing gives its conversation to this agent.
    visitor = await api.visitor(inbox="web", skill=skill, name="Wim Widget")
    shop: Page = await new_page()
    key = f"raydesk:visitor:{runtime.url}:web"
    value = json.dumps({"visitor_id": visitor["visitor_id"], "token": visitor["token"]})
    await shop.add_init_script(f"if (!localStorage.getItem({json.dumps(key)})) "
                               f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)});")
    await shop.goto("/demo")
    await shop.get_by_test_id("launcher").click()
    await shop.get_by_test_id("message-input").fill("Hi, is the kettle in stock?")
    await shop.get_by_test_id("message-input").press("Enter")

    row = console.locator("[data-testid=list-mine] [data-testid=conversation-item]").filter(
        has_text="Wim Widget")
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await row.click()
    await expect(messages(console, "customer")).to_contain_text(["kettle in stock"],
                                                                timeout=WAIT_MS)
    await shop.get_by_test_id("message-input").press_sequentially("and the teapot")
    await expect(console.get_by_test_id("typing-indicator")).to_be_visible(timeout=WAIT_MS)
    box = console.get_by_test_id("reply-box")
    await box.press_sequentially("Yes, both are in stock")
    await expect(shop.get_by_test_id("typing-indicator")).to_be_visible(timeout=WAIT_MS)
    await box.press("Enter")
    answer = shop.locator("[data-testid=message][data-role=agent]").filter(
        has_text="Yes, both are in stock")
    await expect(answer).to_be_visible(timeout=WAIT_MS)
    seq = await answer.get_attribute("data-seq")
    assert seq is not None and int(seq) > 0
