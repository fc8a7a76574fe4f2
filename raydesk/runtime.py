"""Starting and stopping everything raydesk runs: store, Ray, shards, router, gateways.

Used by ``raydesk serve`` and by the integration tests (which share one Ray session and
start and stop the rest around it).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
import redis
from ray import serve

from raydesk import store as keys
from raydesk.auth import Secrets, load_or_create_secrets
from raydesk.config import Config
from raydesk.embedded_store import EmbeddedValkey
from raydesk.schema import ModelChoice
from raydesk.settings import ASSISTANT_APP, Settings

log = logging.getLogger("raydesk.runtime")

APP_NAME = "raydesk"
MIN_SHARDS = 2


def shard_count(config: Config) -> int:
    if config.cluster.shards is not None:
        return config.cluster.shards
    return max(MIN_SHARDS, int(ray.cluster_resources().get("CPU", MIN_SHARDS)))


@dataclass
class Runtime:
    """Everything one ``raydesk serve`` started; :meth:`stop` undoes :meth:`start`."""

    config: Config
    secrets: Secrets | None = None
    store: EmbeddedValkey | None = None
    settings: Settings | None = None
    actors: list[Any] = field(default_factory=list)
    started_ray: bool = False

    @property
    def url(self) -> str:
        server = self.config.server
        return f"http://{server.host}:{server.port}"

    def start(self, ray_init: bool = True, timeout: float = 120.0,
              on_ray_started: Callable[[], None] | None = None) -> Settings:
        """Start everything; ``on_ray_started`` runs right after ``ray.init`` (which
        installs signal handlers of its own that a caller may need to replace)."""
        config = self.config
        data = config.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.secrets = load_or_create_secrets(data, config.auth.admin_token)
        if config.store.url is None:
            self.store = EmbeddedValkey(data, self.secrets.store_password,
                                        config.store.appendfsync)
            self.store.start()
            store_url, store_password = self.store.url, self.store.password
        else:
            store_url, store_password = config.store.url, None
        if ray_init and not ray.is_initialized():
            # "local": a new Ray of our own unless told to join one, so that raydesk never
            # lands by accident in a cluster someone else started on this machine.
            address = config.cluster.ray_address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, namespace=config.cluster.namespace,
                     include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=config.log_level == "DEBUG")
            self.started_ray = True
        if on_ray_started is not None:
            on_ray_started()
        self.settings = Settings(config=config, store_url=store_url,
                                 store_password=store_password,
                                 signing_key=self.secrets.signing_key,
                                 admin_token=self.secrets.admin_token,
                                 shard_count=shard_count(config))
        self._start_actors(self.settings)
        from serve_app import assistant_app, gateway_app

        server = config.server
        if server.ingress == "reuseport":
            # Gateways own the public port; Serve's proxy would only cost a process.
            serve.start(proxy_location="Disabled")
            route_prefix = None
        else:
            serve.start(proxy_location="HeadOnly",
                        http_options={"host": server.host, "port": server.port})
            route_prefix = "/"
        if config.bot.enabled:
            # Deployed first but not waited for: the model loads while the gateways start,
            # and the first questions wait in Serve's handle until it is ready.
            choice = chosen_model(self.settings)
            log.info("loading the bot model %s (%s)", choice.version, choice.model)
            serve.run_many([serve.RunTarget(assistant_app(self.settings, choice),
                                            name=ASSISTANT_APP, route_prefix=None)],
                           wait_for_ingress_deployment_creation=False,
                           wait_for_applications_running=False)
        serve.run(gateway_app(self.settings), name=APP_NAME, route_prefix=route_prefix,
                  blocking=False)
        wait_healthy(self.url, timeout)
        if config.bot.enabled:
            wait_running(ASSISTANT_APP, timeout)
        return self.settings

    def _start_actors(self, settings: Settings) -> None:
        from actors.router import Router
        from actors.shard import ConversationShard

        common = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0,
                  "max_concurrency": 10_000, "namespace": settings.namespace,
                  "lifetime": "detached"}
        shard_cls: Any = ray.remote(ConversationShard)
        router_cls: Any = ray.remote(Router)
        shards = [shard_cls.options(name=name, **common).remote(settings, name)
                  for name in settings.shard_names]
        routers = [router_cls.options(name=settings.router_name(partition), **common)
                   .remote(settings, partition) for partition in settings.partitions]
        ray.get([s.ready.remote() for s in shards])
        ray.get([r.ready.remote() for r in routers])
        self.actors = [*shards, *routers]

    def stop(self, keep_ray: bool = False) -> None:
        """Stop gateways first (clients get 1012), then actors, then the store; then Ray,
        if this runtime started it and ``keep_ray`` is false."""
        for app in (APP_NAME, ASSISTANT_APP):
            try:
                serve.delete(app)
            except Exception:
                log.exception("stopping the Serve application %s failed", app)
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                log.exception("stopping an actor failed")
        self.actors = []
        if self.store is not None:
            self.store.stop()
            self.store = None
        if self.started_ray and not keep_ray:
            serve.shutdown()
            ray.shutdown()
            self.started_ray = False


def chosen_model(settings: Settings) -> ModelChoice:
    """The model an admin rolled out last (``raydesk model use``), unless the config's
    ``bot`` model has been edited since; else the config's."""
    configured = settings.config.bot.user_config()
    client = redis.Redis.from_url(settings.store_url, password=settings.store_password,
                                  decode_responses=True)
    try:
        stored = client.get(keys.BOT_MODEL)
    finally:
        client.close()
    if stored:
        try:
            record = json.loads(str(stored))
            if record["config"] == configured:
                return ModelChoice.model_validate(record["choice"], strict=False)
            log.info("the config's bot model changed since the last 'raydesk model use': "
                     "using the config's")
        except (ValueError, KeyError, TypeError):
            log.warning("the stored bot model choice is unreadable; using the config's")
    return ModelChoice.model_validate(configured, strict=False)


def wait_until(ready: Callable[[], bool], timeout: float, failure: str) -> None:
    """Poll ``ready`` until it is true; RuntimeError with ``failure`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{failure} after {timeout} s")
        time.sleep(0.2)


def wait_running(app: str, timeout: float) -> None:
    def running() -> bool:
        status = serve.status().applications.get(app)
        if status is not None and status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"the Serve application {app} failed: {status.message}")
        return status is not None and status.status == "RUNNING"

    wait_until(running, timeout, f"the Serve application {app} is not running")


def wait_healthy(url: str, timeout: float) -> None:
    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(healthy, timeout, f"raydesk did not become healthy at {url}")
