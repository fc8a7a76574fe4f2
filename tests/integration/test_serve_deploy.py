"""`serve deploy serve_config.yaml` on a running raydesk (the session's).

The test Ray runs without its dashboard, so there is no Serve REST API to send the file
to. Each deploy here does what `serve deploy FILE` and the dashboard's
`PUT /api/serve/applications/` do with it: the CLI validates the file as a
ServeDeploySchema and sends `model_dump(exclude_unset=True)` as JSON; the dashboard
validates that again, gets the Serve controller (`serve_start`) and applies it
(`client.deploy_apps`). From there on it is Serve's own path: the controller's build task
imports the builders in serve_config.yaml, calls them with the file's args, and applies
the file's deployment options.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from ray import serve
from ray.serve._private.api import serve_start
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from raydesk import store as keys
from raydesk.runtime import APP_NAME, Runtime, chosen_model
from raydesk.schema import ModelChoice
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT
from serve_app import assistant_app, gateway_app
from tests.integration.client import SCALE, Api

pytestmark = pytest.mark.integration

SERVE_CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"
DEPLOY_TIMEOUT_S = 240 * SCALE


def serve_deploy(raw: dict[str, Any]) -> None:
    """What `serve deploy` and the dashboard do with a config file's content."""
    sent = json.loads(json.dumps(
        ServeDeploySchema.model_validate(raw).model_dump(exclude_unset=True, mode="json")))
    config = ServeDeploySchema.model_validate(sent)
    client = serve_start(http_options=config.http_options.model_dump(),
                         proxy_location=config.proxy_location,
                         grpc_options=config.grpc_options.model_dump(),
                         global_logging_config=config.logging_config)
    client.deploy_apps(config)


def details() -> dict[str, Any]:
    client = _get_global_client()
    assert client is not None
    return client.get_serve_details()  # type: ignore[no-any-return]


def replica_ids(info: dict[str, Any], app: str, deployment: str) -> set[str]:
    replicas = info["applications"][app]["deployments"][deployment]["replicas"]
    return {r["replica_id"] for r in replicas if r["state"] == "RUNNING"}


async def wait_for(check: Any, what: str, within: float = DEPLOY_TIMEOUT_S) -> Any:
    """Poll ``check`` (sync, run in a thread) until it returns something true."""
    deadline = time.monotonic() + within
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {within:.0f} s")
        await asyncio.sleep(0.5)


def our_config(runtime: Runtime, choice: dict[str, Any]) -> dict[str, Any]:
    """serve_config.yaml as an operator of the test raydesk would edit it: its namespace,
    its gateway and model replica counts, and the model ``choice``."""
    assert runtime.settings is not None
    config = runtime.settings.config
    raw = yaml.safe_load(SERVE_CONFIG.read_text())
    for app in raw["applications"]:
        app["args"]["namespace"] = config.cluster.namespace
        [deployment] = app["deployments"]
        if app["name"] == APP_NAME:
            deployment["num_replicas"] = config.server.gateway_replicas
        else:
            deployment["num_replicas"] = config.bot.replicas
            deployment["user_config"] = choice
    return raw


def test_serve_deploy_without_raydesk_says_what_to_do(runtime: Runtime) -> None:
    """serve deploy manages only the Serve applications: a builder that finds no raydesk
    in its namespace fails the application with a message saying to start one."""
    raw = yaml.safe_load(SERVE_CONFIG.read_text())
    [bot] = [a for a in raw["applications"] if a["name"] == ASSISTANT_APP]
    probe = {**bot, "name": "raydesk-probe", "args": {"namespace": "nobody", "wait_s": 0}}
    serve_deploy({**raw, "applications": [probe]})
    try:
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while True:
            app = details()["applications"].get("raydesk-probe", {})
            if app.get("status") == "DEPLOY_FAILED":
                break
            assert time.monotonic() < deadline, app
            time.sleep(0.5)
        assert "raydesk serve --address auto" in app["message"]
        # raydesk's own applications (deployed by `raydesk serve`) were left alone.
        for name in (APP_NAME, ASSISTANT_APP):
            assert details()["applications"][name]["status"] == "RUNNING"
    finally:
        serve.delete("raydesk-probe")


async def test_serve_deploy_swaps_the_model_like_model_use(
        runtime: Runtime, api: Api, connect: Any, skill: str) -> None:
    """On a raydesk that `raydesk serve` started: the first serve deploy takes both
    applications over (rebuilt once, from the running raydesk's settings); a second one
    that changes the Assistant's user_config rolls the model out in place, with no
    gateway or WebSocket touched, and raydesk records the choice as `model use` does."""
    settings = runtime.settings
    assert settings is not None
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    original = (await api.http.get("/v1/bot", headers=admin)).json()["model"]
    store = redis.Redis.from_url(settings.store_url, password=settings.store_password,
                                 decode_responses=True)
    stored_before = store.get(keys.BOT_MODEL)
    interval = runtime.follow_interval_s
    runtime.follow_interval_s = 0.5
    try:
        # 1. The first deploy: serve deploy takes the applications over from raydesk serve.
        before = await asyncio.to_thread(details)
        old_gateways = replica_ids(before, APP_NAME, "Gateway")
        old_models = replica_ids(before, ASSISTANT_APP, ASSISTANT_DEPLOYMENT)
        await asyncio.to_thread(serve_deploy, our_config(runtime, original))

        def taken_over() -> dict[str, Any] | None:
            info = details()
            apps = info["applications"]
            if any(apps[a]["source"] != "declarative" or apps[a]["status"] != "RUNNING"
                   for a in (APP_NAME, ASSISTANT_APP)):
                return None
            gateways = replica_ids(info, APP_NAME, "Gateway")
            models = replica_ids(info, ASSISTANT_APP, ASSISTANT_DEPLOYMENT)
            if (len(gateways) != settings.config.server.gateway_replicas
                    or gateways & old_gateways or not models or models & old_models):
                return None
            return info

        deployed = await wait_for(taken_over, "serve deploy's applications running")
        gateways = replica_ids(deployed, APP_NAME, "Gateway")
        models = replica_ids(deployed, ASSISTANT_APP, ASSISTANT_DEPLOYMENT)

        # 2. A customer is connected while the model is swapped by serve deploy.
        async def bot_model() -> Any:
            try:
                response = await api.http.get("/v1/bot", headers=admin)
            except Exception:  # the new gateways may still be taking their first requests
                return None
            return response.json()["model"] if response.status_code == 200 else None

        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while await bot_model() != original:
            assert time.monotonic() < deadline, "the rebuilt bot did not serve the model"
            await asyncio.sleep(1)
        # A skill of its own: if the bot hands off, no later test's agent is given it.
        visitor = await api.visitor(skill=skill)
        customer = await connect(visitor["token"])
        version = f"serve-deploy-{int(time.time())}"
        swapped = {**copy.deepcopy(original), "version": version}
        await asyncio.to_thread(serve_deploy, our_config(runtime, swapped))
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        answered_by = []
        while True:
            # While the new model loads, the old one answers: no question goes unanswered.
            answer = await api.http.post("/v1/bot/test", json={"text": "hello there"},
                                         headers=admin)
            assert answer.status_code == 200, answer.text
            answered_by.append(answer.json()["model_version"])
            assert answered_by[-1] in (original["version"], version)
            assert customer.close_code is None
            if answered_by[-1] == version:
                break
            assert time.monotonic() < deadline, "the swapped model never served"
            await asyncio.sleep(0.5)
        assert await bot_model() == swapped
        assert customer.close_code is None
        after = await asyncio.to_thread(details)
        # In place: the same gateway and model replicas (a user_config change reconfigures).
        assert replica_ids(after, APP_NAME, "Gateway") == gateways
        assert replica_ids(after, ASSISTANT_APP, ASSISTANT_DEPLOYMENT) == models
        # The WebSocket still works.
        ack = await customer.send_text("still here after the model swap")
        assert ack["type"] == "ack"

        # 3. Recorded as `raydesk model use` records it: a restart keeps the model.
        await wait_for(lambda: chosen_model(settings).version == version,
                       "the serve deploy model recorded", within=60 * SCALE)
        record = json.loads(str(store.get(keys.BOT_MODEL)))
        assert record == {"choice": swapped, "config": settings.config.bot.user_config()}
    finally:
        runtime.follow_interval_s = interval
        # Back to what `raydesk serve` deployed, for the other tests.
        await asyncio.to_thread(
            serve.run, assistant_app(settings, ModelChoice.model_validate(original)),
            name=ASSISTANT_APP, route_prefix=None)
        await asyncio.to_thread(serve.run, gateway_app(settings), name=APP_NAME,
                                route_prefix=None)
        if stored_before is None:
            store.delete(keys.BOT_MODEL)
        else:
            store.set(keys.BOT_MODEL, str(stored_before))
        store.close()
