"""What Kubernetes and Prometheus ask a gateway: ``/healthz``, ``/readyz``, ``/metrics``.

- ``/healthz`` (liveness): this process answers HTTP. It checks nothing else on purpose:
  a store or shard outage must not make Kubernetes restart every gateway.
- ``/readyz`` (readiness): the store answers, every shard and router actor answers, and
  (with the bot enabled) a bot replica has a model loaded. Each check has
  ``CHECK_TIMEOUT_S``; they run together, so the answer comes within about that.
- ``/metrics``: every raydesk process's metrics (raydesk/metrics.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from ray import serve

from raydesk import metrics
from raydesk.errors import RaydeskError
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT

if TYPE_CHECKING:
    from raydesk.gateway import GatewayCore

log = logging.getLogger("raydesk.gateway")

# Under Kubernetes' default probe timeout (1 s): an actor or store that takes longer than
# this to answer a no-op is not one to send users to. An idle actor answers in ~1 ms.
CHECK_TIMEOUT_S = 0.8
# Each actor's own limit inside a check: shorter, so a slow one is named in the answer.
CALL_TIMEOUT_S = 0.6
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A check's failure, with what to show (no internal detail)."""


async def run_checks(checks: Mapping[str, Check],
                     limit_s: float = CHECK_TIMEOUT_S) -> dict[str, str]:
    """Run every check at once, each within ``limit_s``: ``{name: "ok" or why not}``."""

    async def one(name: str, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), limit_s)
        except TimeoutError:
            return f"no answer within {limit_s} s"
        except (NotReady, RaydeskError) as exc:
            return str(exc) or type(exc).__name__
        except Exception as exc:
            log.warning("readiness check %s failed: %r", name, exc)
            return "failed"
        return "ok"

    results = await asyncio.gather(*(one(name, check) for name, check in checks.items()))
    return dict(zip(checks, results, strict=True))


def verdict(checks: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``/readyz`` for these check results."""
    failing = [name for name, result in checks.items() if result != "ok"]
    body: dict[str, Any] = {"status": "not_ready" if failing else "ready",
                            "checks": dict(checks)}
    if failing:
        body["failing"] = failing
    return (503 if failing else 200), body


async def all_answer(calls: Mapping[str, Callable[[], Awaitable[Any]]]) -> None:
    """Raise :class:`NotReady` naming each of ``calls`` that failed or took too long."""

    async def call(name: str) -> Any:
        return await calls[name]()  # what it raises, even at once, is this call's result

    names = list(calls)
    results = await asyncio.gather(
        *(asyncio.wait_for(call(name), CALL_TIMEOUT_S) for name in names),
        return_exceptions=True)
    failed = [f"{name}: {'no answer' if isinstance(r, TimeoutError) else 'failed'}"
              for name, r in zip(names, results, strict=True) if isinstance(r, BaseException)]
    if failed:
        raise NotReady("; ".join(failed))


def readiness_checks(core: GatewayCore) -> dict[str, Check]:
    settings = core.settings
    assistant: list[Any] = []  # the bot's handle, made once

    async def store() -> None:
        if not await core.store.ping():
            raise NotReady("unreachable")

    async def shards() -> None:
        await all_answer({name: functools.partial(_shard_ready, core, name)
                          for name in settings.shard_names})

    async def routers() -> None:
        await all_answer({partition: functools.partial(_router_ready, core, partition)
                          for partition in settings.partitions})

    async def bot() -> None:
        if not assistant:
            assistant.append(serve.get_deployment_handle(ASSISTANT_DEPLOYMENT,
                                                         app_name=ASSISTANT_APP))
        status = await assistant[0].status.remote()
        if not status.get("model"):
            raise NotReady("no model loaded")

    checks: dict[str, Check] = {"store": store, "shards": shards, "routers": routers}
    if settings.config.bot.enabled:
        checks["bot"] = bot
    return checks


async def _shard_ready(core: GatewayCore, name: str) -> Any:
    return await core.shards.handle(name).ready.remote()


async def _router_ready(core: GatewayCore, partition: str) -> Any:
    return await core.router_call("ready", partition=partition)


def add_probe_routes(app: FastAPI, core: GatewayCore) -> None:
    checks = readiness_checks(core)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        status, body = verdict(await run_checks(checks))
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        core.metrics.start()  # a no-op once running
        text = await metrics.exposition(core.store, core.metrics)
        return PlainTextResponse(text, media_type=PROMETHEUS_TEXT)
