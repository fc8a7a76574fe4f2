"""The Serve application: gateway replicas that terminate WebSockets themselves.

Serve manages the replicas (count, restarts, redeploys); each replica runs its own uvicorn
server on the one public port, opened with SO_REUSEPORT so the kernel spreads connections
over the replicas of a node. Frames never cross Serve's HTTP proxy, which measured here at
~2 ms of CPU per WebSocket frame against ~0.05 ms for bare uvicorn
(docs/explanation/architecture.md has the figures and the choice).

``raydesk serve`` builds the application with :func:`gateway_app`. ``serve deploy
serve_config.yaml`` builds both of raydesk's applications with :func:`gateway_from_config`
and :func:`assistant_from_config`, from the settings of the raydesk already running in the
cluster (docs/how-to/deploy.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import socket
import time
import uuid
from typing import Any

import uvicorn
from ray import serve
from ray.serve import Application

from models.base import FaqItem, Model
from models.loader import load_model
from raydesk import metrics, tracing
from raydesk import store as keys
from raydesk.batching import Batcher
from raydesk.config import Config
from raydesk.gateway import create_app
from raydesk.schema import FaqReplace, ModelChoice
from raydesk.settings import ASSISTANT_DEPLOYMENT, Settings
from raydesk.store import Store

log = logging.getLogger("raydesk.gateway")


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def raise_open_files_limit() -> int:
    """Every WebSocket holds a file descriptor: take the hard limit, not the soft one the
    worker inherited (a low soft limit would cap connections per gateway silently)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    log.info("gateway: up to %s open files", soft)
    return soft


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ws="websockets-sansio",
        ws_max_size=settings.config.limits.max_frame_bytes,
        # raydesk's own ping/pong and heartbeat timeout (4408) replace protocol pings.
        ws_ping_interval=None,
        # Chat frames are small: compressing them cost more CPU than it saved bytes.
        ws_per_message_deflate=False,
        lifespan="off",
        proxy_headers=bool(settings.config.server.trusted_proxies),
        forwarded_allow_ips=",".join(settings.config.server.trusted_proxies) or None,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through raydesk's format (raydesk.logs)
        access_log=False,
        timeout_graceful_shutdown=2,
    )


@serve.deployment(
    # An open WebSocket holds a Serve request slot only if it goes through Serve; ours do
    # not, but keep the limit high so handle calls (readiness) are never starved.
    max_ongoing_requests=10_000,
    health_check_period_s=5,
    graceful_shutdown_timeout_s=5,
)
class Gateway:
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        tracing.setup(settings.config, "gateway")
        raise_open_files_limit()
        self._settings = settings
        self._app, self._core = create_app(settings)
        server_config = settings.config.server
        self._socket = reuseport_socket(server_config.host, server_config.port)
        self._server = uvicorn.Server(uvicorn_config(self._app, settings))
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped the server
            await asyncio.sleep(0.02)
        log.info("gateway %s listening on %s:%d", self._core.gateway_id, server_config.host,
                 self._socket.getsockname()[1])

    async def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError("the gateway's HTTP server stopped")

    async def info(self) -> dict[str, Any]:
        return {"gateway_id": self._core.gateway_id, "connections": len(self._core.sessions)}

    async def __del__(self) -> None:
        # Serve calls this on a graceful shutdown (redeploy, scale down, stop): tell
        # clients to reconnect (1012) and sync, then stop accepting.
        await self._core.restart_all()
        self._server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self._task), 5)
        await self._core.hub.close()


@serve.deployment(max_ongoing_requests=10_000, health_check_period_s=5,
                  graceful_shutdown_timeout_s=5)
@serve.ingress()
class ProxiedGateway:
    """The same gateway app behind Serve's HTTP proxy (``server.ingress: serve_proxy``).

    Every frame then crosses the proxy; kept to measure against and for clusters where a
    replica may not bind the public port.
    """

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        tracing.setup(settings.config, "gateway")
        self._app, self._core = create_app(settings)

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    async def __del__(self) -> None:
        await self._core.restart_all()
        await self._core.hub.close()


def gateway_app(settings: Settings) -> Application:
    deployment: Any = Gateway if settings.config.server.ingress == "reuseport" \
        else ProxiedGateway
    app: Application = deployment.options(
        num_replicas=settings.config.server.gateway_replicas).bind(settings)
    return app


# How often a replica looks for a FAQ newer than the one it indexed.
FAQ_CHECK_S = 1.0


@serve.deployment(
    name=ASSISTANT_DEPLOYMENT,
    max_ongoing_requests=1000,
    # A rollout starts the new replicas first: the old model answers until the new one
    # has loaded (Serve's default stops the old replica first, leaving no model).
    max_surge_percent=100,
    # Serve logs every request by default; at 100 questions/s that only fills the logs.
    logging_config={"enable_access_log": False, "log_level": "WARNING"},
    health_check_period_s=10,
    graceful_shutdown_timeout_s=10,
    ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": {
        # OpenMP threads that sleep when idle, one per thread of ours: MiniLM's p50 at 25
        # questions/s was 173 ms before, 85-111 ms in three runs after (bot_latency.py).
        "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
        # Requests run on the replica's own event loop, not handed to a second loop in
        # another thread (the model itself runs in a worker thread either way).
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}},
)
class Assistant:
    """The bot's model, behind Serve: many shards' questions batched into one encoder pass.

    Batching is a group commit (:class:`raydesk.batching.Batcher`), not ``@serve.batch``:
    a request that finds the model idle runs at once, and the requests that arrive while
    it runs go together in its next pass. ``@serve.batch`` closes a batch after its wait
    whether or not the model is free, so under load it queued many one-request batches
    behind the running one, and at low load every question paid the wait
    (docs/explanation/bot.md, "Batching").

    ``user_config`` (a :class:`ModelChoice`) says which model runs; changing it (``raydesk
    model use``, ``serve deploy``) loads the new model and swaps it in. The FAQ comes from
    the store: a replica re-indexes when the store's FAQ version moves.
    """

    def __init__(self, store_url: str, store_password: str | None, config: Config) -> None:
        tracing.setup(config, "bot")
        bot = config.bot
        self._store = Store(store_url, store_password)
        self._model: Model | None = None
        self._choice: ModelChoice | None = None
        self._faq_version: str | None = None
        self._faq_count = 0
        self._swap = asyncio.Lock()
        self._metrics = metrics.Publisher(self._store, "bot", f"b{uuid.uuid4().hex[:8]}",
                                          refresh=self._refresh_metrics)
        self._faq_checked = -math.inf
        self._passes = Batcher(self._analyze_together, max_batch=bot.max_batch_size,
                               max_in_flight=1, linger_s=bot.batch_wait_ms / 1000)

    def _refresh_metrics(self) -> None:
        metrics.BOT_MODEL.clear()
        if self._choice is not None:
            metrics.BOT_MODEL.labels(self._choice.model, self._choice.version).set(1)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self._metrics.start()  # Serve calls this first, on the replica's event loop
        choice = ModelChoice.model_validate(user_config, strict=False)
        async with self._swap:
            try:
                model, version, items = await self._build(choice)
            except Exception:
                if self._model is None:
                    raise  # the first model must load: fail the deployment loudly
                log.exception("bot model %s %s failed to load; still serving %s",
                              choice.model, choice.version, self._model.version)
                return
            self._model, self._choice = model, choice
            self._faq_version, self._faq_count = version, len(items)
        log.info("bot model %s (%s) serving, %d FAQ items", choice.version, choice.model,
                 len(items))

    async def check(self, user_config: dict[str, Any]) -> str | None:
        """Build a model the way a rollout would, beside the one serving, and index the
        FAQ with it: None if that works, else what went wrong (the rollout is refused)."""
        try:
            model, _, _ = await self._build(ModelChoice.model_validate(user_config,
                                                                       strict=False))
            await asyncio.to_thread(model.analyze, ["hello"])
        except Exception as exc:  # whatever a builder raises is the answer
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _build(self, choice: ModelChoice) -> tuple[Model, str | None, list[FaqItem]]:
        """Load a model and index the store's FAQ with it: the model, the FAQ version."""
        model = await asyncio.to_thread(load_model, choice.model, choice.version,
                                        choice.options)
        version, items = await self._faq()
        await asyncio.to_thread(model.index_faq, items)
        return model, version, items

    async def _faq(self) -> tuple[str | None, list[FaqItem]]:
        version, raw = await self._store.pipeline([("GET", keys.FAQ_VERSION),
                                                   ("GET", keys.FAQ)])
        if not raw:
            return version, []
        body = FaqReplace.model_validate_json(raw)
        return version, [FaqItem(i.id, i.question, i.answer, tuple(i.alternates))
                         for i in body.items]

    async def reindex(self) -> int:
        """Re-index the FAQ now if the store has a newer one; the number of items."""
        if await self._store.call("GET", keys.FAQ_VERSION) != self._faq_version:
            async with self._swap:
                version, items = await self._faq()
                if version != self._faq_version and self._model is not None:
                    await asyncio.to_thread(self._model.index_faq, items)
                    self._faq_version, self._faq_count = version, len(items)
        return self._faq_count

    async def analyze(self, texts: list[str]) -> list[dict[str, Any]]:
        """Analyses of ``texts`` (a shard's batch of questions), one dict per text, each
        with the ``model_version`` that made it."""
        results: list[dict[str, Any]] = await self._passes.submit(texts)
        return results

    async def _analyze_together(self, requests: list[list[str]]
                                ) -> list[list[dict[str, Any]]]:
        """Many shards' requests in one encoder pass."""
        now = time.monotonic()
        if now - self._faq_checked >= FAQ_CHECK_S:
            # PUT /v1/faq re-indexes one replica at once; the others see the store's new
            # FAQ version here, within FAQ_CHECK_S (a store round trip in every pass cost
            # every question its latency).
            self._faq_checked = now
            await self.reindex()
        model = self._model
        assert model is not None
        texts = [text for request in requests for text in request]
        started = time.perf_counter()
        analyses = await asyncio.to_thread(model.analyze, texts)
        metrics.BOT_INFERENCE.observe(time.perf_counter() - started)
        metrics.BOT_BATCH.observe(len(texts))
        flat = [{**a.to_dict(), "model_version": model.version} for a in analyses]
        out, start = [], 0
        for request in requests:
            out.append(flat[start:start + len(request)])
            start += len(request)
        return out

    async def status(self) -> dict[str, Any]:
        choice = self._choice.model_dump() if self._choice else None
        return {"model": choice, "faq_items": self._faq_count,
                "faq_version": self._faq_version}


def assistant_app(settings: Settings, choice: ModelChoice) -> Application:
    bot = settings.config.bot
    deployment: Any = Assistant
    app: Application = deployment.options(
        num_replicas=bot.replicas, user_config=choice.model_dump()).bind(
        settings.store_url, settings.store_password, settings.config)
    return app


# --- application builders for `serve deploy` (serve_config.yaml) --------------------------

# The builders' `args` in serve_config.yaml, and their defaults.
DEPLOY_ARGS = {
    # The cluster.namespace of the raydesk whose applications these are.
    "namespace": "raydesk",
    # How long a build waits for that raydesk to start (`raydesk serve --address auto`),
    # e.g. when KubeRay deploys serveConfigV2 while the head container still starts it.
    "wait_s": 300.0,
}


def _deployed_settings(args: dict[str, Any]) -> Settings:
    """The settings of the raydesk that ``args`` name, as it published them: the config,
    the store it uses and its secrets, which serve deploy cannot know otherwise (the
    embedded store's port, generated secrets, the shard count it chose)."""
    unknown = sorted(set(args) - set(DEPLOY_ARGS))
    if unknown:
        raise ValueError(f"args: unknown key(s) {unknown}; allowed: {sorted(DEPLOY_ARGS)}")
    namespace = str(args.get("namespace", DEPLOY_ARGS["namespace"]))
    wait_s = float(args.get("wait_s", DEPLOY_ARGS["wait_s"]))
    from raydesk.runtime import published_settings

    return published_settings(namespace, wait_s)


def gateway_from_config(args: dict[str, Any]) -> Application:
    """``serve deploy`` builder of the gateways' application (``raydesk``): the one
    ``raydesk serve`` deploys, ``server.gateway_replicas`` replicas unless the config file
    says otherwise."""
    return gateway_app(_deployed_settings(args))


def assistant_from_config(args: dict[str, Any]) -> Application:
    """``serve deploy`` builder of the bot's application (``raydesk-bot``). The config
    file's ``user_config`` of the ``Assistant`` deployment chooses the model; without one,
    the model is the one ``raydesk serve`` would load."""
    from raydesk.runtime import chosen_model

    settings = _deployed_settings(args)
    return assistant_app(settings, chosen_model(settings))
