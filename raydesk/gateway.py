"""The gateway: WebSocket sessions and the REST API of PROTOCOL.md, as one ASGI app.

:class:`GatewayCore` holds what the sessions and routes share in one gateway process
(store, tokens, shard client, fan-out hub, local presence). :func:`create_app` builds the
FastAPI app around it; ``serve_app.py`` runs that app inside each Serve replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Annotated, Any, Literal

import ray
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayError, RayTaskError
from starlette.exceptions import HTTPException as StarletteHTTPException

from raydesk import __version__, metrics
from raydesk import store as keys
from raydesk.auth import Bearer, Principal, Tokens, hash_password, verify_password
from raydesk.bot_admin import add_bot_routes
from raydesk.config import DEFAULT_PARTITION
from raydesk.console_api import add_console_routes, agent_info
from raydesk.conversation import Conversation
from raydesk.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RaydeskError,
    Unauthorized,
    Unavailable,
)
from raydesk.hub import Hub
from raydesk.probes import add_probe_routes
from raydesk.routing import PRESENCE_RANK
from raydesk.schema import (
    AgentCreate,
    AgentCreated,
    AgentInfo,
    AgentUpdate,
    ConversationInfo,
    ConversationPage,
    Login,
    LoginResult,
    MessagePage,
    QueueEntry,
    QueuePage,
    VisitorCreate,
    VisitorCreated,
)
from raydesk.session import Session, new_conversation_id
from raydesk.settings import Settings
from raydesk.shard_client import ShardClient
from raydesk.store import Store
from raydesk.web import add_web_routes

log = logging.getLogger("raydesk.gateway")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
CHANGES_PAGE = 500
USER_AGENT_CHARS = 500
# How often the gateway looks for connections silent past the heartbeat timeout (at most;
# a quarter of the timeout if that is shorter).
HEARTBEAT_SWEEP_S = 1.0


class GatewayCore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.config
        self.gateway_id = f"g{uuid.uuid4().hex[:8]}"
        self.tokens = Tokens(settings.signing_key, settings.admin_token)
        self.store = Store(settings.store_url, settings.store_password)
        self.shards = ShardClient(settings.shard_names, settings.namespace)
        self.hub = Hub(self.store.redis)
        self.sessions: set[Session] = set()
        self._routers: dict[str, Any] = {}
        self._lease_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.metrics = metrics.Publisher(self.store, "gateway", self.gateway_id,
                                         refresh=self._refresh_metrics)

    # --- sessions ---------------------------------------------------------------------------

    async def attach(self, session: Session, principal: Principal) -> None:
        await self.hub.join(principal.id, session)
        if principal.is_agent:
            await self.hub.join(keys.AGENT_FEED, session)
        self.sessions.add(session)

    async def detach(self, session: Session) -> None:
        self.sessions.discard(session)
        assert session.principal is not None
        await self.hub.leave(session.principal.id, session)
        if session.principal.is_agent:
            await self.hub.leave(keys.AGENT_FEED, session)
            await self.presence_changed()

    def presence_snapshot(self) -> dict[str, str]:
        best: dict[str, str] = {}
        for session in self.sessions:
            if session.principal is None or not session.principal.is_agent:
                continue
            current = best.get(session.principal.id, "offline")
            if PRESENCE_RANK[session.presence] >= PRESENCE_RANK[current]:
                best[session.principal.id] = session.presence
        return best

    async def presence_changed(self, chosen_by: str | None = None) -> None:
        """Tell the router at once (and renew this gateway's lease). ``chosen_by``: the
        agent who just set its own presence."""
        snapshot = self.presence_snapshot()
        for partition in self.settings.partitions:  # each router keeps its own agents
            try:
                await self.router(partition).presence.remote(self.gateway_id, snapshot,
                                                             chosen_by)
            except (RayError, ValueError):
                self._routers.pop(partition, None)
                log.warning("gateway %s: router %s unreachable for presence",
                            self.gateway_id, partition)

    async def renew_leases(self) -> None:
        period = self.config.routing.presence_lease_s
        while True:
            await asyncio.sleep(period)
            try:
                await self.presence_changed()
            except Exception:
                log.exception("presence lease renewal failed")

    async def watch_heartbeats(self) -> None:
        """Close connections silent past the heartbeat timeout. One sweep for all of
        them: a watchdog task per connection took 11% of the gateway's py-spy samples at
        10,000 connections (each woke every 5 s), and its removal took the idle load
        test from 41.5 to 40.2 KB per connection."""
        timeout = self.config.websocket.heartbeat_timeout_s
        every = min(HEARTBEAT_SWEEP_S, timeout / 4)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for session in list(self.sessions):
                session.check_heartbeat(now, timeout)

    def start_background(self) -> None:
        if self._lease_task is None:
            loop = asyncio.get_running_loop()
            self._lease_task = loop.create_task(self.renew_leases())
            self._heartbeat_task = loop.create_task(self.watch_heartbeats())

    def _refresh_metrics(self) -> None:
        metrics.CONNECTIONS.clear()
        for session in self.sessions:
            if session.principal is not None:
                metrics.CONNECTIONS.labels(session.principal.role).inc()
        metrics.SUBSCRIBED.labels().set(self.hub.participants)

    def router(self, partition: str = DEFAULT_PARTITION) -> Any:
        if partition not in self._routers:
            self._routers[partition] = ray.get_actor(self.settings.router_name(partition),
                                                     namespace=self.settings.namespace)
        return self._routers[partition]

    async def conversation_partition(self, cid: str) -> str:
        inbox = await self.store.call("HGET", keys.state_key(cid), "inbox")
        return self.config.routing.partition_of(inbox or None)

    async def agent_partition(self, agent_id: str) -> str:
        partition = await self.store.call("HGET", keys.agent_key(agent_id), "partition")
        return str(partition or DEFAULT_PARTITION)

    async def agent_changed(self, agent_id: str) -> None:
        """Tell every router (an agent may have moved between partitions) to reload the
        agent. A router not told finds the change at its next reconcile."""
        for partition in self.settings.partitions:
            try:
                await self.router_call("agent_updated", agent_id, partition=partition)
            except Unavailable:
                log.warning("router %s not told of agent %s's change", partition, agent_id)

    async def router_call(self, method: str, *args: Any,
                          partition: str = DEFAULT_PARTITION) -> Any:
        try:
            return await getattr(self.router(partition), method).remote(*args)
        except RayTaskError as exc:
            if isinstance(exc.cause, RaydeskError):
                raise exc.cause from None
            log.error("router %s failed: %s", method, exc)
            raise Unavailable("the router failed, try again") from None
        except (RayError, ValueError):
            self._routers.pop(partition, None)
            raise Unavailable("the router is restarting, try again") from None

    async def open_conversation_of(self, visitor_id: str, closed: str | None = None) -> str:
        """The visitor's open conversation id, claiming a new one if it has none.

        Claimed with HSETNX so two devices writing first at once share one conversation.
        ``closed`` is an id the caller found closed: it is released first (if still set).
        """
        key = keys.visitor_key(visitor_id)
        if closed is not None:
            await self.store.pipeline([("EVAL", _RELEASE_OPEN, 1, key, closed)])
        candidate = new_conversation_id()
        _, current = await self.store.pipeline([("HSETNX", key, "open", candidate),
                                                ("HGET", key, "open")])
        if not current:
            raise Unavailable("could not open a conversation, try again")
        return str(current)

    async def restart_all(self) -> None:
        """Close every connection with 1012 (reconnect and sync): this gateway is going."""
        for session in list(self.sessions):
            session.restart()
        # Give the writers a moment to send the close frames before the server stops.
        await asyncio.sleep(0.2)


_RELEASE_OPEN = ("if redis.call('HGET', KEYS[1], 'open') == ARGV[1] then "
                 "return redis.call('HDEL', KEYS[1], 'open') end return 0")


def create_app(settings: Settings) -> tuple[FastAPI, GatewayCore]:
    core = GatewayCore(settings)
    app = FastAPI(title="raydesk", version=__version__,
                  description="raydesk REST API (protocol v1). The WebSocket endpoint "
                  "/v1/ws is described in docs/reference/protocol.md.")

    @app.exception_handler(RaydeskError)
    async def _raydesk_error(_: Request, exc: RaydeskError) -> JSONResponse:
        metrics.ERRORS.labels(exc.code, "http").inc()
        return JSONResponse(exc.body(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        metrics.ERRORS.labels(BadRequest.code, "http").inc()
        if first.get("type") == "json_invalid":
            return JSONResponse(BadRequest("body is not valid JSON").body(), status_code=400)
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse(BadRequest(f"{where}: {first['msg']}").body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and methods: the protocol's error body, not FastAPI's "detail".
        code = {404: "not_found", 405: "not_found", 401: "unauthorized",
                403: "forbidden", 413: "too_large"}.get(exc.status_code, "bad_request")
        status = 404 if exc.status_code == 405 else exc.status_code
        metrics.ERRORS.labels(code, "http").inc()
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        metrics.ERRORS.labels(Unavailable.code, "http").inc()
        return JSONResponse(Unavailable("internal error, try again later").body(),
                            status_code=Unavailable.http_status)

    def check_partition(partition: str) -> None:
        if partition not in settings.partitions:
            raise BadRequest(f"partition: unknown partition {partition!r} (configured: "
                             f"{', '.join(settings.partitions)})")

    def principal(token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token")
        return core.tokens.verify(token)

    @app.post("/v1/visitors", status_code=201, response_model=VisitorCreated)
    async def create_visitor(body: VisitorCreate, request: Request) -> VisitorCreated:
        visitor_id = f"v_{uuid.uuid4().hex[:22]}"
        fields = {"created_ts": str(int(time.time() * 1000)), "name": body.name or "",
                  "email": body.email or "", "skill": body.skill or "",
                  "inbox": body.inbox or "", "attributes": json.dumps(body.attributes or {}),
                  # For the agent's visitor panel (behind a proxy: the proxy's address).
                  "page": body.page or "",
                  "browser": request.headers.get("user-agent", "")[:USER_AGENT_CHARS],
                  "ip": request.client.host if request.client else ""}
        await core.store.call("HSET", keys.visitor_key(visitor_id), *keys.hash_args(fields))
        token = core.tokens.issue(Principal(visitor_id, "customer"),
                                  settings.config.auth.visitor_token_ttl_s)
        return VisitorCreated(visitor_id=visitor_id, token=token)

    @app.post("/v1/agents", status_code=201, response_model=AgentCreated)
    async def create_agent(body: AgentCreate, token: Bearer) -> AgentCreated:
        core.tokens.require_admin(token)
        agent_id = f"a_{uuid.uuid4().hex[:22]}"
        email = body.email.strip().lower()
        check_partition(body.partition)
        claimed = await core.store.call("SET", keys.email_key(email), agent_id, "NX")
        if not claimed:
            raise Conflict(f"an agent with email {email} exists")
        fields = {"email": email, "name": body.name, "role": body.role,
                  "skills": json.dumps(sorted(set(body.skills))),
                  "max_chats": str(body.max_chats or settings.config.routing.default_max_chats),
                  "password": await asyncio.to_thread(hash_password, body.password),
                  "partition": body.partition,
                  "created_ts": str(int(time.time() * 1000))}
        await core.store.pipeline([
            ("HSET", keys.agent_key(agent_id), *keys.hash_args(fields)),
            ("SADD", keys.AGENTS, agent_id)])
        await core.agent_changed(agent_id)
        return AgentCreated(agent_id=agent_id)

    @app.patch("/v1/agents/{agent_id}", response_model=AgentInfo)
    async def update_agent(agent_id: str, body: AgentUpdate, token: Bearer) -> AgentInfo:
        core.tokens.require_admin(token)
        key = keys.agent_key(agent_id)
        if not await core.store.call("EXISTS", key):
            raise NotFound(f"agent {agent_id} not found")
        fields: dict[str, str] = {}
        if body.name is not None:
            fields["name"] = body.name
        if body.skills is not None:
            fields["skills"] = json.dumps(sorted(set(body.skills)))
        if body.max_chats is not None:
            fields["max_chats"] = str(body.max_chats)
        if body.partition is not None:
            check_partition(body.partition)
            fields["partition"] = body.partition
        if fields:
            await core.store.call("HSET", key, *keys.hash_args(fields))
        await core.agent_changed(agent_id)
        if body.presence is not None:
            await core.router_call("set_presence", agent_id, body.presence,
                                   partition=await core.agent_partition(agent_id))
        return agent_info(agent_id, dict(await core.store.call("HGETALL", key)))

    @app.get("/v1/queue", response_model=QueuePage)
    async def queue(token: Bearer) -> QueuePage:
        """Conversations waiting for an agent, head first (agents only)."""
        who = principal(token)
        if not who.is_agent:
            raise Forbidden("the queue is for agents")
        snapshot = await core.router_call("snapshot",
                                          partition=await core.agent_partition(who.id))
        return QueuePage(queue=[QueueEntry(**entry) for entry in snapshot["queue"]])

    @app.post("/v1/agents/login", response_model=LoginResult)
    async def login(body: Login) -> LoginResult:
        agent_id = await core.store.call("GET", keys.email_key(body.email))
        fields = dict(await core.store.call("HGETALL", keys.agent_key(agent_id))) \
            if agent_id else {}
        ok = await asyncio.to_thread(verify_password, fields.get("password"), body.password)
        if not ok or not agent_id:
            raise Unauthorized("wrong email or password")
        role: Literal["admin", "agent"] = "admin" if fields.get("role") == "admin" else "agent"
        token = core.tokens.issue(Principal(agent_id, role),
                                  settings.config.auth.agent_token_ttl_s)
        return LoginResult(agent_id=agent_id, token=token)

    @app.get("/v1/conversations/{conversation_id}/messages", response_model=MessagePage)
    async def messages(conversation_id: str, token: Bearer,
                       since: Annotated[int, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
                       ) -> MessagePage:
        who = principal(token)
        state = await core.store.conversation_state(conversation_id)
        if not state:
            raise NotFound(f"conversation {conversation_id} not found")
        conv = Conversation.from_state(conversation_id, state)
        conv.check_can_read(who.id, who.is_agent)
        frames = await core.store.messages(conversation_id, since, limit)
        return MessagePage(messages=[json.loads(f) for f in frames], last_seq=conv.last_seq)

    @app.get("/v1/conversations", response_model=ConversationPage)
    async def conversations(token: Bearer,
                            status: Annotated[str | None, Query(
                                pattern="^(bot|queued|assigned|closed)$")] = None,
                            updated_since: Annotated[int, Query(ge=0)] = 0,
                            ) -> ConversationPage:
        who = principal(token)
        if not who.is_agent:
            raise Forbidden("the conversation list is for agents")
        cids, cursor = await core.store.changes_since(updated_since, CHANGES_PAGE)
        listed = [(cid, state) for cid, state in
                  zip(cids, await core.store.states(cids), strict=True)
                  if state and (not status or state.get("status") == status)]
        # The caller's read cursors and the visitors' names, in one round trip.
        extras = await core.store.pipeline(
            [("HGET", keys.reads_key(cid), who.id) for cid, _ in listed]
            + [("HGET", keys.visitor_key(state["customer"]), "name") for _, state in listed]
        ) if listed else []
        infos = []
        for i, (cid, state) in enumerate(listed):
            infos.append(ConversationInfo(
                conversation_id=cid, status=state["status"],  # type: ignore[arg-type]
                last_seq=int(state.get("last_seq", 0)), customer=state["customer"],
                assignee=state.get("assignee") or None, skill=state.get("skill") or None,
                created_ts=int(state.get("created_ts", 0)),
                updated_ts=int(state.get("updated_ts", 0)),
                read_seq=int(extras[i] or 0), visitor_name=extras[len(listed) + i] or None))
        return ConversationPage(conversations=infos, cursor=cursor)

    add_bot_routes(app, core)
    add_console_routes(app, core)
    add_web_routes(app)
    add_probe_routes(app, core)
    # Replicas' metrics are gathered from the store: push from the start, not from the
    # first connection (outside a running loop, from the first scrape).
    with contextlib.suppress(RuntimeError):
        core.metrics.start()

    @app.websocket("/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        core.start_background()
        await Session(core, ws).run()

    return app, core
