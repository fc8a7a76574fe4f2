"""The bot's admin API on the gateway: the FAQ, the model, the unanswered questions.

- ``PUT /v1/faq`` replaces the FAQ set and has the bot re-index it before answering;
  ``POST /v1/faq/import`` does the same from a CSV or YAML file's text; ``GET /v1/faq``.
- ``POST /v1/bot/test``: what the bot would do with a question (the console's test box).
- ``GET /v1/bot`` and ``PUT /v1/bot/model``: which model runs; a new one is rolled out by
  redeploying the Assistant's Serve application alone (gateways and their WebSockets are
  not touched), and the choice is stored so a restart keeps it.
- ``GET /v1/bot/unanswered``: questions the bot did not answer, each with the first human
  answer that followed it (``raydesk export unanswered`` writes them as Parquet).

Every route is for admins (the admin token or an agent with the admin role).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Query
from ray import serve

from models.base import Analysis
from models.loader import resolve
from models.policy import wants_human
from raydesk import store as keys
from raydesk.auth import Bearer
from raydesk.config import bot_policy
from raydesk.errors import BadRequest, Conflict, Unavailable
from raydesk.faq_file import parse_faq
from raydesk.schema import (
    BotStatus,
    BotTest,
    BotTestResult,
    FaqImport,
    FaqList,
    FaqReplace,
    FaqReplaced,
    ModelChoice,
    UnansweredPage,
    UnansweredQuestion,
)
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT

log = logging.getLogger("raydesk.bot")

# Indexing embeds every FAQ key: ~400 keys/s with MiniLM on 2 cores.
REINDEX_TIMEOUT_S = 300.0
# Loading a model: ~10 s for MiniLM here, plus the FAQ.
MODEL_CHECK_TIMEOUT_S = 600.0


def add_bot_routes(app: FastAPI, core: Any) -> None:
    """Mount the routes on the gateway's app (``core``: its GatewayCore)."""
    bot = core.settings.config.bot
    policy = bot_policy(bot)

    def assistant() -> Any:
        return serve.get_deployment_handle(ASSISTANT_DEPLOYMENT, app_name=ASSISTANT_APP)

    @app.put("/v1/faq", response_model=FaqReplaced)
    async def replace_faq(body: FaqReplace, token: Bearer) -> FaqReplaced:
        core.tokens.require_admin(token)
        return await store_faq(body)

    @app.post("/v1/faq/import", response_model=FaqReplaced)
    async def import_faq(body: FaqImport, token: Bearer) -> FaqReplaced:
        """A CSV or YAML file's text (the console's upload), parsed like the CLI's."""
        core.tokens.require_admin(token)
        faq = parse_faq(body.content, body.format, "file")
        if not faq.items:
            # An upload of the wrong file must not wipe the FAQ; PUT [] clears it on purpose.
            raise BadRequest("file: holds no FAQ items (to clear the FAQ, PUT /v1/faq "
                             "with no items)")
        return await store_faq(faq)

    @app.get("/v1/faq", response_model=FaqList)
    async def faq(token: Bearer) -> FaqList:
        core.tokens.require_admin(token)
        stored = await core.store.call("GET", keys.FAQ)
        return FaqList(items=FaqReplace.model_validate_json(stored).items if stored else [])

    @app.post("/v1/bot/test", response_model=BotTestResult)
    async def test_question(body: BotTest, token: Bearer) -> BotTestResult:
        """What the bot would do with a question as a conversation's first (no state
        changes: the console's test box)."""
        core.tokens.require_admin(token)
        if not bot.enabled:
            raise Conflict("the bot is off (bot.enabled in the config)")
        analysis: dict[str, Any] | None = None
        if not wants_human(body.text):  # as in a conversation: no model for that
            try:
                [analysis] = await asyncio.wait_for(
                    assistant().analyze.remote([body.text]), bot.timeout_s)
            except Exception as exc:
                raise Unavailable("the bot's model is not running, try again") from exc
        turn = policy.decide(body.text, Analysis.from_dict(analysis) if analysis else None, 0)
        return BotTestResult(action=turn.action, text=turn.text, intent=turn.intent,
                             faq_id=turn.faq_id, confidence=turn.confidence,
                             reason=turn.reason,
                             model_version=analysis.get("model_version") if analysis else None)

    async def store_faq(body: FaqReplace) -> FaqReplaced:
        ids = [item.id for item in body.items]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise BadRequest(f"items: id {duplicate!r} appears more than once")
        await core.store.pipeline([("SET", keys.FAQ, body.model_dump_json()),
                                   ("INCR", keys.FAQ_VERSION)], atomic=True)
        indexed = False
        if bot.enabled:
            try:
                await asyncio.wait_for(assistant().reindex.remote(), REINDEX_TIMEOUT_S)
                indexed = True
            except Exception as exc:
                log.warning("FAQ stored, re-index deferred: %s", type(exc).__name__)
        return FaqReplaced(count=len(body.items), indexed=indexed)

    async def status() -> BotStatus:
        if not bot.enabled:
            return BotStatus(enabled=False)
        try:
            info = await asyncio.wait_for(assistant().status.remote(), bot.timeout_s)
        except Exception as exc:
            raise Unavailable("the bot's model is not running, try again") from exc
        model = ModelChoice.model_validate(info["model"]) if info["model"] else None
        return BotStatus(enabled=True, model=model, faq_items=info["faq_items"])

    @app.get("/v1/bot", response_model=BotStatus)
    async def bot_status(token: Bearer) -> BotStatus:
        core.tokens.require_admin(token)
        return await status()

    @app.put("/v1/bot/model", response_model=BotStatus)
    async def use_model(body: ModelChoice, token: Bearer) -> BotStatus:
        core.tokens.require_admin(token)
        if not bot.enabled:
            raise Conflict("the bot is off (bot.enabled in the config)")
        try:
            resolve(body.model, body.options)  # a typo fails here, not in the rollout
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        from serve_app import assistant_app

        # Built once beside the serving model first: a model that cannot load or answer
        # is refused here, and the bot keeps the one it has.
        try:
            problem = await asyncio.wait_for(assistant().check.remote(body.model_dump()),
                                             MODEL_CHECK_TIMEOUT_S)
        except Exception as exc:
            raise Unavailable("the bot's model is not running, try again") from exc
        if problem:
            raise BadRequest(f"model: {body.model} does not load: {problem}")
        # Returns once the new replicas serve; the old ones answer until then.
        await asyncio.to_thread(serve.run, assistant_app(core.settings, body),
                                name=ASSISTANT_APP, route_prefix=None, blocking=False)
        await core.store.call("SET", keys.BOT_MODEL, json.dumps(
            {"choice": body.model_dump(), "config": bot.user_config()}))
        return await status()

    @app.get("/v1/bot/unanswered", response_model=UnansweredPage)
    async def unanswered(token: Bearer, offset: Annotated[int, Query(ge=0)] = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100
                         ) -> UnansweredPage:
        core.tokens.require_admin(token)
        total, members = await core.store.pipeline([
            ("ZCARD", keys.UNANSWERED),
            ("ZRANGE", keys.UNANSWERED, offset, offset + limit - 1)])
        if not members:
            return UnansweredPage(questions=[], next_offset=int(total), total=int(total))
        questions, answers = await core.store.pipeline([
            ("HMGET", keys.UNANSWERED_QUESTIONS, *members),
            ("HMGET", keys.UNANSWERED_ANSWERS, *members)])
        page = []
        for question, answer in zip(questions, answers, strict=True):
            if question is None:
                continue
            record = json.loads(question)
            record["answer"] = json.loads(answer) if answer else None
            page.append(UnansweredQuestion.model_validate(record))
        return UnansweredPage(questions=page, next_offset=offset + len(members),
                              total=int(total))
