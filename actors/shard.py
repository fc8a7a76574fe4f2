"""ConversationShard: a Ray actor hosting the conversations whose ids hash to it.

Each conversation is a logical actor: its state (a :class:`Conversation`) and a mailbox
(an ``asyncio.Lock``, FIFO) so its commands run one at a time while the shard's other
conversations proceed. A conversation is activated from the store on first use and
dropped from memory when the shard holds more than ``ACTIVE_LIMIT`` (least recently used
first); the store always has everything, so a restart rebuilds lazily.

Guarantees: a command's reply is sent only after its store commit returned; a failed
commit changes nothing (the in-memory state is replaced only after success). If the shard
dies, callers get ``unavailable`` and retry; dedupe by ``client_msg_id`` makes a retried
send safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from models.base import Analysis
from models.policy import Turn, wants_human
from raydesk import decide, logs, metrics, tracing
from raydesk import store as keys
from raydesk.batching import Batcher, Deferred
from raydesk.config import bot_policy
from raydesk.conversation import Conversation, Status
from raydesk.errors import NotFound, RaydeskError, Unavailable
from raydesk.ordering import Chains
from raydesk.placement import shard_for
from raydesk.routing import priority_for
from raydesk.schema import Message, ShardCommand
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT, Settings
from raydesk.store import Commit, CommitResult, Store

log = logging.getLogger("raydesk.shard")

# Conversation state is a few hundred bytes; 50k active is ~25 MB per shard.
ACTIVE_LIMIT = 50_000
# Bot questions carried by one Serve call to the Assistant.
QUESTIONS_PER_CALL = 64
# How often a shard looks for bot turns a dead instance owed.
RECOVERY_EVERY_S = 5.0
# Agents' response-time samples go to the router in one call per partition at most this
# often: one Ray call per agent reply cost the router 0.6 ms of CPU per message at 1,000
# messages/s (benchmarks/results/loadtest_steady.json). A later tell to the same router
# sends the waiting samples first, so the router sees everything in the order it was told.
RESPONSE_SAMPLES_EVERY_S = 0.05


@dataclass(frozen=True)
class BotTurn:
    """A bot turn decided and not yet committed: the policy's choice, its decision, and
    whether the model answered (else the confidence means nothing)."""

    policy: Turn
    decision: decide.Decision
    analysed: bool

    @property
    def commit(self) -> Commit:
        assert self.decision.commit is not None  # a turn always writes
        return self.decision.commit


class StaleState(Exception):
    """The store's seq moved under us (another shard instance wrote): reload and redo."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def new_message_id() -> str:
    return f"m_{uuid.uuid4().hex[:20]}"


class ConversationShard:
    def __init__(self, settings: Settings, name: str) -> None:
        tracing.setup(settings.config, f"shard {name}")
        self._settings = settings
        self._name = name
        self._store = Store(settings.store_url, settings.store_password)
        self._active: OrderedDict[str, Conversation] = OrderedDict()
        self._mailboxes: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}
        self._routers: dict[str, Any] = {}
        self._response_samples: Deferred[tuple[str, int]] = Deferred(
            lambda partition, samples: self._call_router(partition, "responded", samples),
            RESPONSE_SAMPLES_EVERY_S)
        self._router_warned: dict[str, float] = {}
        bot = settings.config.bot
        self._policy = bot_policy(bot)
        self._inline_wait_s = bot.inline_wait_ms / 1000
        self._assistant: Any = None
        self._questions: Batcher[str, dict[str, Any]] = Batcher(
            self._ask_assistant, max_batch=QUESTIONS_PER_CALL, max_in_flight=4)
        # Bot turns, one at a time per conversation.
        self._bot_turns = Chains()
        self._recovery: asyncio.Task[None] | None = None
        self._metrics = metrics.Publisher(self._store, "shard", name,
                                          refresh=self._refresh_metrics)
        # Also right after a restart, when no caller may come to this shard for a while.
        with contextlib.suppress(RuntimeError):  # no running loop: started on first call
            self._start_background()
        log.info("shard %s started", name)

    async def ready(self) -> str:
        self._start_background()
        return self._name

    def _start_background(self) -> None:
        if self._recovery is None and self._settings.config.bot.enabled:
            self._recovery = asyncio.ensure_future(self._recover_bot_turns())
        self._metrics.start()

    def _refresh_metrics(self) -> None:
        metrics.ACTIVE_CONVERSATIONS.set(len(self._active))

    async def handle(self, commands: list[ShardCommand]) -> list[Any]:
        """Run a batch of commands; one result per command (a reply dict or an error).
        The batch's results go back together, so its questions wait for the model only if
        it holds nothing but questions to the bot: a wait would hold other commands'
        replies, and, in the caller, the calls behind them."""
        self._start_background()
        may_wait = all(self._may_be_bot_question(cmd) for cmd in commands)
        tasks = [asyncio.ensure_future(self._run(cmd, may_wait)) for cmd in commands]
        results = list(await asyncio.gather(*tasks))
        for cmd, result in zip(commands, results, strict=True):
            metrics.SHARD_COMMANDS.labels(
                cmd.kind, result.code if isinstance(result, RaydeskError) else "ok").inc()
        return results

    def _may_be_bot_question(self, cmd: ShardCommand) -> bool:
        """A customer's message to a conversation with the bot, or to one not in memory
        (a new one, say)."""
        if cmd.kind != "send" or cmd.actor_role != "customer":
            return False
        conv = self._active.get(cmd.conversation_id)
        return conv is None or conv.status is Status.BOT

    async def _run(self, cmd: ShardCommand, may_wait: bool) -> Any:
        # Each command runs in a task of its own: these ids stay with its log lines.
        logs.CONVERSATION_ID.set(cmd.conversation_id)
        logs.PARTICIPANT_ID.set(cmd.actor_id)
        with tracing.command_span(cmd):
            result = await self._in_mailbox(cmd.conversation_id,
                                            lambda: self._dispatch(cmd, may_wait),
                                            f"{cmd.kind} by {cmd.actor_id}")
            if tracing.enabled():
                tracing.annotate(
                    message_id=result.get("message_id") if isinstance(result, dict) else None,
                    error=result.code if isinstance(result, RaydeskError) else None)
            return result

    async def _commit(self, commit: Commit, message: Message | None) -> CommitResult:
        """The store commit, in its own span; its events carry that span to the gateways
        that deliver them."""
        with tracing.commit_span(commit, message):
            commit.publish = tracing.tag_events(commit.publish)
            result = await self._store.commit(commit)
            if result.outcome != "ok":
                tracing.annotate(outcome=result.outcome)
            return result

    async def _in_mailbox(self, cid: str, work: Callable[[], Awaitable[Any]],
                          what: str) -> Any:
        """Run ``work`` on the conversation alone (FIFO); errors become results."""
        mailbox = self._mailboxes.setdefault(cid, asyncio.Lock())
        self._waiting[cid] = self._waiting.get(cid, 0) + 1
        try:
            async with mailbox:
                try:
                    return await work()
                except StaleState:
                    self._active.pop(cid, None)
                    return await work()
        except RaydeskError as exc:
            return exc
        except StaleState:
            return Unavailable("the conversation is busy, try again")
        except Exception:
            log.exception("shard %s: %s on conversation %s failed", self._name, what, cid)
            return Unavailable("internal error")
        finally:
            self._waiting[cid] -= 1
            if self._waiting[cid] == 0:
                del self._waiting[cid]
                del self._mailboxes[cid]

    async def _load(self, cid: str) -> Conversation | None:
        conv = self._active.get(cid)
        if conv is not None:
            self._active.move_to_end(cid)
            return conv
        state = await self._store.conversation_state(cid)
        if not state:
            return None
        conv = Conversation.from_state(cid, state)
        self._remember(conv)
        return conv

    def _remember(self, conv: Conversation) -> None:
        self._active[conv.id] = conv
        self._active.move_to_end(conv.id)
        while len(self._active) > ACTIVE_LIMIT:
            self._active.popitem(last=False)

    async def _visitor(self, visitor_id: str) -> dict[str, Any]:
        fields = await self._store.call("HGETALL", keys.visitor_key(visitor_id))
        return decide.visitor_card(visitor_id, dict(fields))

    async def _dispatch(self, cmd: ShardCommand, may_wait: bool) -> dict[str, Any]:
        """Run ``cmd`` on its conversation; ``may_wait``: a customer's question may wait
        for the model (bot.inline_wait_ms), as its batch holds nothing the wait would
        hold back (see :meth:`handle`)."""
        conv = await self._load(cmd.conversation_id)
        now = _now_ms()
        if conv is None:
            if cmd.kind != "send" or cmd.actor_role != "customer":
                raise NotFound(f"conversation {cmd.conversation_id} not found")
            visitor = dict(await self._store.call("HGETALL", keys.visitor_key(cmd.actor_id)))
            # The gateway claimed this id as the visitor's open conversation; anything
            # else is not this visitor's to create.
            if visitor.get("open") != cmd.conversation_id:
                raise NotFound(f"conversation {cmd.conversation_id} not found")
            skill, priority = self._routing_needs(visitor)
            decision = decide.open_conversation(
                cmd, visitor, now, [new_message_id() for _ in range(3)], skill, priority,
                bot=self._settings.config.bot.takes(visitor.get("inbox") or None))
        elif cmd.kind == "send":
            if conv.status is Status.CLOSED:
                # A resend of a message stored before the close gets its original ack.
                stored = await self._store.call("HGET", keys.dedupe_key(conv.id),
                                                decide.dedupe_field(cmd))
                if stored:
                    return decide.ack_from_dedupe(cmd, stored)
            decision = decide.send_message(conv, cmd, now, new_message_id())
        elif cmd.kind == "typing":
            decision = decide.typing(conv, cmd)
        elif cmd.kind == "read":
            decision = decide.read(conv, cmd)
        elif cmd.kind == "close":
            decision = decide.close(conv, cmd, now, new_message_id())
        elif cmd.kind == "assign":
            decision = decide.assign(conv, cmd, now, new_message_id(),
                                     await self._visitor(conv.customer))
        elif cmd.kind == "requeue":
            decision = decide.requeue(conv, cmd, now, new_message_id())
        elif cmd.kind == "transfer":
            visitor = await self._visitor(conv.customer) if cmd.to_agent else {}
            decision = decide.transfer(conv, cmd, now, new_message_id(), visitor)
        else:  # pragma: no cover - ShardCommandKind is closed
            raise ValueError(cmd.kind)
        decide.tell_agents(conv, decision)
        if decision.signals:
            await self._store.publish(tracing.tag_events(decision.signals))
        # A customer's message: the bot takes its turn. The model starts on the question
        # at once; if it answers within bot.inline_wait_ms (and no earlier turn of the
        # conversation is pending, and its batch holds only questions to the bot), the
        # turn is stored with the question in one commit.
        # Otherwise the question is committed alone and the turn follows in order, outside
        # the mailbox. If the commit fails or was a resend, the model's request is
        # cancelled.
        question = decision.message if decision.message is not None and \
            decision.conversation.status is Status.BOT else None
        analysis = self._ask_model(question) if question is not None else None
        try:
            turn = None
            if question is not None and may_wait and \
                    await self._in_time(question, analysis):
                turn = self._turn(decision.conversation, question,
                                  analysis.result() if analysis is not None else None)
            if turn is None:
                resent = await self._store_decision(cmd, decision)
            else:
                with tracing.span("bot turn", conversation_id=cmd.conversation_id,
                                  message_id=decision.reply.get("message_id"), inline=True):
                    resent = await self._store_decision(cmd, decision, turn)
            if resent is not None:
                return resent
            if turn is not None:
                await self._turn_committed(turn, with_question=True)
            elif question is not None:  # the turn follows, in order
                self._schedule_bot_turn(question, analysis)
                analysis = None
            return decision.reply
        finally:
            if analysis is not None:
                analysis.cancel()

    async def _store_decision(self, cmd: ShardCommand, decision: decide.Decision,
                              turn: BotTurn | None = None) -> dict[str, Any] | None:
        """Commit ``decision`` (with the bot's ``turn`` after it, in one commit) and keep
        its state. A resend stores nothing: its original ack is returned."""
        if decision.commit is not None:
            commit = decision.commit if turn is None else decision.commit.then(turn.commit)
            result = await self._commit(commit, decision.message)
            if result.outcome == "dup":
                return decide.ack_from_dedupe(cmd, result.value)
            if result.outcome == "stale":
                log.warning("shard %s: conversation %s seq moved to %s, reloading",
                            self._name, cmd.conversation_id, result.value)
                raise StaleState()
        await self._committed(decision)
        return None

    async def _committed(self, decision: decide.Decision) -> None:
        """Keep the state the store now has, and tell the router what it must hear."""
        self._remember(decision.conversation)
        if decision.router:
            partition = self._settings.config.routing.partition_of(
                decision.conversation.inbox)
            for method, args in decision.router:
                self._tell_router(partition, method, *args)

    # --- the bot ------------------------------------------------------------------------

    def _ask_model(self, question: Message) -> asyncio.Future[dict[str, Any] | None] | None:
        """The model's analysis of ``question``, asked for now; None if the customer asks
        for a person (the bot hands off without the model)."""
        if wants_human(question.text):
            return None
        return asyncio.ensure_future(self._analyze(question.text))

    def _schedule_bot_turn(self, question: Message,
                           asked: asyncio.Future[dict[str, Any] | None] | None) -> None:
        """The bot's turn on ``question`` (``asked``: from :meth:`_ask_model`), after the
        conversation's turns before it. It inherits the caller's trace span."""
        self._bot_turns.add(question.conversation_id,
                            functools.partial(self._bot_turn, question, asked))

    async def _bot_turn(self, question: Message,
                        asked: asyncio.Future[dict[str, Any] | None] | None) -> None:
        with tracing.span("bot turn", conversation_id=question.conversation_id,
                          message_id=question.message_id):
            try:
                await self._take_bot_turn(question, asked)
            finally:
                if asked is not None:
                    asked.cancel()  # a no-op once it is done

    async def _take_bot_turn(self, question: Message,
                             asked: asyncio.Future[dict[str, Any] | None] | None) -> None:
        analysis = await asked if asked is not None else None

        async def commit() -> None:
            conv = await self._load(question.conversation_id)
            if conv is None:
                return
            turn = self._turn(conv, question, analysis)
            if turn is None:
                return  # handed off or closed meanwhile: the bot stays silent
            result = await self._commit(turn.commit, None)
            if result.outcome == "stale":
                raise StaleState()
            await self._turn_committed(turn, with_question=False)

        result = await self._in_mailbox(question.conversation_id, commit, "bot turn")
        if isinstance(result, Exception):
            log.warning("shard %s: the bot's turn on %s failed: %s", self._name,
                        question.conversation_id, result)

    async def _in_time(self, question: Message,
                       asked: asyncio.Future[dict[str, Any] | None] | None) -> bool:
        """Whether the bot's turn on ``question`` can be stored with it: no earlier turn
        of the conversation is pending, and the model (if asked) answered within
        ``bot.inline_wait_ms``. A late model's questions wait too: waiting costs no CPU,
        and a second commit does (skipping the wait while the model was late was measured
        to lose throughput, docs/explanation/bot.md)."""
        if self._inline_wait_s <= 0 or question.conversation_id in self._bot_turns:
            return False
        if asked is None:
            return True
        done, _ = await asyncio.wait({asked}, timeout=self._inline_wait_s)
        return bool(done)

    def _turn(self, conv: Conversation, question: Message,
              analysis: dict[str, Any] | None) -> BotTurn | None:
        """The bot's turn on ``question`` in the state ``conv``; None if the bot no longer
        has the conversation (handed off or closed)."""
        if conv.status is not Status.BOT:
            return None
        policy = self._policy.decide(question.text,
                                     Analysis.from_dict(analysis) if analysis else None,
                                     conv.unanswered)
        decision = decide.bot_turn(
            conv, policy, question, _now_ms(), [new_message_id(), new_message_id()],
            analysis.get("model_version") if analysis else None)
        decide.tell_agents(conv, decision)
        return BotTurn(policy, decision, analysis is not None)

    async def _turn_committed(self, turn: BotTurn, with_question: bool) -> None:
        await self._committed(turn.decision)
        metrics.bot_turn(turn.policy.action, turn.policy.reason, turn.policy.faq_id,
                         turn.policy.confidence, turn.analysed, with_question)

    async def _recover_bot_turns(self) -> None:
        """Take the bot turns that a dead shard instance owed (its customers would wait
        for ever otherwise): conversations in the store's due set for longer than a turn
        may take, that this shard owns and is not already answering."""
        overdue_s = self._settings.config.bot.timeout_s + RECOVERY_EVERY_S
        while True:
            await asyncio.sleep(RECOVERY_EVERY_S)
            try:
                cutoff = _now_ms() - int(overdue_s * 1000)
                due = await self._store.call("ZRANGEBYSCORE", keys.BOT_DUE, "-inf", cutoff,
                                             "LIMIT", 0, 500)
                for cid in due:
                    if cid not in self._bot_turns and \
                            shard_for(cid, self._settings.shard_names) == self._name:
                        await self._in_mailbox(cid, functools.partial(self._resume_bot, cid),
                                               "bot turn recovery")
            except Exception:
                log.exception("shard %s: recovering bot turns failed", self._name)

    async def _resume_bot(self, cid: str) -> None:
        conv = await self._load(cid)
        if conv is None or conv.status is not Status.BOT or not conv.bot_due:
            await self._store.call("ZREM", keys.BOT_DUE, cid)
            return
        [frame] = await self._store.messages(cid, conv.bot_due - 1, 1)
        log.warning("shard %s: taking the bot turn owed on %s seq %d", self._name, cid,
                    conv.bot_due)
        question = Message.model_validate_json(frame)
        self._schedule_bot_turn(question, self._ask_model(question))

    async def _analyze(self, text: str) -> dict[str, Any] | None:
        """The model's analysis, or None if it is unavailable or too slow (hand off)."""
        try:
            return await self._questions.submit(text)
        except Exception as exc:
            log.warning("shard %s: the bot model is unavailable (%s): handing off",
                        self._name, type(exc).__name__)
            return None

    async def _ask_assistant(self, texts: list[str]) -> list[dict[str, Any]]:
        """One Serve call for the questions of many conversations (a Serve request costs
        milliseconds of CPU: per question it would cost more than the model)."""
        if self._assistant is None:
            # Over Serve's gRPC transport to the replica (every replica serves it) rather
            # than a Ray actor call: Serve's Ray-call path is a streaming call (an accept
            # message, then the reply) with cloudpickle; this one is one unary call with
            # plain pickle (a list of strings out, dicts of strings and numbers back).
            # Measured: the reply's median at 5 questions/s 26 -> 21 ms, at 50/s 51-63 ->
            # 34-37 ms, 13% less CPU per question (docs/explanation/bot.md).
            self._assistant = serve.get_deployment_handle(
                ASSISTANT_DEPLOYMENT, app_name=ASSISTANT_APP).options(
                _by_reference=False, request_serialization="pickle",
                response_serialization="pickle")
        response = self._assistant.analyze.remote(texts)
        started = time.perf_counter()
        try:
            results: list[dict[str, Any]] = await asyncio.wait_for(
                response, self._settings.config.bot.timeout_s)
        finally:
            metrics.BOT_REQUEST.observe(time.perf_counter() - started)
        return results

    def _routing_needs(self, visitor: dict[str, str]) -> tuple[str | None, int]:
        """The skill and queue priority a visitor's new conversation gets."""
        routing = self._settings.config.routing
        inbox = visitor.get("inbox") or None
        skill = visitor.get("skill") or (routing.inbox_skills.get(inbox) if inbox else None)
        attributes = json.loads(visitor.get("attributes") or "{}")
        priority = priority_for(attributes, inbox, routing.inbox_priority,
                                routing.vip_attribute, routing.default_priority)
        return skill, priority

    def _tell_router(self, partition: str, method: str, *args: Any) -> None:
        """Fire and forget: the router also reconciles with the store on a timer.
        Response-time samples (``responded``) wait to go in one call per partition."""
        if method == "responded":
            self._response_samples.add(partition, (args[0], args[1]))
            return
        self._response_samples.flush(partition)
        self._call_router(partition, method, *args)

    def _call_router(self, partition: str, method: str, *args: Any) -> None:
        try:
            if partition not in self._routers:
                self._routers[partition] = ray.get_actor(
                    self._settings.router_name(partition), namespace=self._settings.namespace)
            getattr(self._routers[partition], method).remote(*args)
        except Exception as exc:
            self._routers.pop(partition, None)
            # Once per partition and minute: under load a router that is away would
            # otherwise write a line per message.
            now = time.monotonic()
            if now - self._router_warned.get(partition, -math.inf) >= 60:
                self._router_warned[partition] = now
                log.warning("shard %s: router %s unreachable for %s (%s: %s); it reconciles "
                            "with the store when back", self._name, partition, method,
                            type(exc).__name__, exc)
