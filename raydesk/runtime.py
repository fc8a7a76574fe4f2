"""Starting and stopping everything raydesk runs: store, Ray, shards, router, gateways.

Used by ``raydesk serve`` and by the integration tests (which share one Ray session and
start and stop the rest around it).

``serve deploy`` of ``serve_config.yaml`` manages only the two Serve applications; the
store, the shard and router actors and the secrets stay raydesk's. So that its application
builders (``serve_app:gateway_from_config``, ``serve_app:assistant_from_config``) build
exactly what this runtime built, a started runtime publishes its :class:`Settings` in the
Ray cluster's key-value store (:func:`publish_settings`), and while it runs it records a
bot model that ``serve deploy`` rolled out as ``raydesk model use`` would
(:func:`record_declared_model`), so that a restart keeps it (docs/how-to/deploy.md).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
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
from raydesk.errors import ConfigError
from raydesk.schema import ModelChoice
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT, Settings

log = logging.getLogger("raydesk.runtime")

APP_NAME = "raydesk"
MIN_SHARDS = 2
# Where a running raydesk publishes its Settings for serve deploy's builders: Ray's
# cluster key-value store (in the GCS), this namespace, one key per cluster.namespace.
SETTINGS_KV_NAMESPACE = "raydesk"
# How often a running raydesk looks for a bot model rolled out with serve deploy.
FOLLOW_INTERVAL_S = 5.0


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
    # True when this runtime joined a Ray cluster that outlives it (--address auto, a
    # head:port, RAY_ADDRESS): stop() then leaves Serve itself running for the cluster.
    joined_cluster: bool = False
    # Whether this runtime deployed raydesk's Serve applications (stop() deletes them only
    # then: a start refused in a cluster where raydesk runs must not stop that raydesk).
    deployed_apps: bool = False
    follow_interval_s: float = FOLLOW_INTERVAL_S
    _follower: threading.Thread | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

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
            try:
                ray.init(address=address, namespace=config.cluster.namespace,
                         include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=config.log_level == "DEBUG")
            except ConnectionError as exc:
                if address == "local":
                    raise
                raise ConfigError(
                    f"cannot join the Ray cluster at {address!r}: {exc}. Is Ray running "
                    "there (`ray start --head`)? If its head has an authentication token "
                    "(Ray's token authentication), a HOST:PORT address needs "
                    "RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN, or "
                    "~/.ray/auth_token); --address auto on the head finds both") from None
            self.started_ray = True
            self.joined_cluster = address != "local"
        if on_ray_started is not None:
            on_ray_started()
        self.settings = Settings(config=config, store_url=store_url,
                                 store_password=store_password,
                                 signing_key=self.secrets.signing_key,
                                 admin_token=self.secrets.admin_token,
                                 shard_count=shard_count(config))
        # A raydesk of this namespace that ended without stopping (killed, its machine
        # lost) left its record and its detached actors in a cluster that outlives it:
        # both go, so that nothing is built with its settings (its store may be gone).
        clear_previous_settings(config.cluster.namespace)
        self._replace_stale_actors(self.settings)
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
        self.deployed_apps = True
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
        if self.joined_cluster:
            # Serve may place the gateways on other nodes than this one: a replica is
            # running once its server listens, so the application's status says it all.
            wait_running(APP_NAME, timeout)
        else:
            wait_healthy(self.url, timeout)
        if config.bot.enabled:
            wait_running(ASSISTANT_APP, timeout)
        # Last: serve deploy's builders wait for this, so a serve deploy sent while raydesk
        # starts (KubeRay's serveConfigV2) applies after raydesk's own deployments.
        publish_settings(self.settings)
        if config.bot.enabled:
            self._stopping.clear()
            self._follower = threading.Thread(target=self._follow_declared_model,
                                              name="raydesk-follow-serve-deploy",
                                              daemon=True)
            self._follower.start()
        return self.settings

    def _follow_declared_model(self) -> None:
        """Record a bot model that ``serve deploy`` rolled out, until :meth:`stop`."""
        warned: set[str] = set()
        while not self._stopping.wait(self.follow_interval_s):
            settings = self.settings
            if settings is None:
                return
            try:
                record_declared_model(settings, warned)
            except Exception as exc:  # Serve busy or restarting: try again next time
                log.debug("looking for a model rolled out with serve deploy failed: %r", exc)

    def _replace_stale_actors(self, settings: Settings) -> None:
        """Kill shard and router actors of this namespace left by a raydesk that ended
        without stopping them (they are detached and outlive it); none on a new Ray."""
        if not self.joined_cluster:
            return
        names = [*settings.shard_names, *(settings.router_name(p) for p in settings.partitions)]
        stale = []
        for name in names:
            try:
                stale.append((name, ray.get_actor(name, namespace=settings.namespace)))
            except ValueError:
                continue
        if not stale:
            return
        log.warning("replacing %d actors left in namespace %s by an earlier raydesk: %s",
                    len(stale), settings.namespace, ", ".join(n for n, _ in stale))
        for _, actor in stale:
            ray.kill(actor, no_restart=True)

        def names_free() -> bool:
            for name, _ in stale:
                try:
                    ray.get_actor(name, namespace=settings.namespace)
                    return False
                except ValueError:
                    continue
            return True

        wait_until(names_free, 30, "the earlier raydesk's actors did not stop")

    def _start_actors(self, settings: Settings) -> None:
        from actors.router import Router
        from actors.shard import ConversationShard

        common = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0,
                  "max_concurrency": 10_000, "namespace": settings.namespace,
                  "lifetime": "detached"}
        shard_cls: Any = ray.remote(ConversationShard)
        router_cls: Any = ray.remote(Router)
        # A shard's calls to the Assistant are routed on the shard's own event loop, not
        # handed to a second loop in another thread (Serve's default).
        serve_env = {"env_vars": {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}}
        shards = [shard_cls.options(name=name, runtime_env=serve_env, **common)
                  .remote(settings, name)
                  for name in settings.shard_names]
        routers = [router_cls.options(name=settings.router_name(partition), **common)
                   .remote(settings, partition) for partition in settings.partitions]
        ray.get([s.ready.remote() for s in shards])
        ray.get([r.ready.remote() for r in routers])
        self.actors = [*shards, *routers]

    def stop(self, keep_ray: bool = False) -> None:
        """Stop gateways first (clients get 1012), then actors, then the store; then Ray,
        if this runtime started it and ``keep_ray`` is false (a joined cluster goes on
        running, Serve included: this process only disconnects from it)."""
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(timeout=30)
            self._follower = None
        if self.settings is not None and ray.is_initialized():
            try:
                forget_settings(self.settings.namespace)
            except Exception:
                log.exception("removing raydesk's settings from the cluster failed")
        # Without Ray (it could not be joined), nothing below ran; and Serve's calls would
        # start a new local Ray of their own.
        apps = (APP_NAME, ASSISTANT_APP) if self.deployed_apps and ray.is_initialized() else ()
        self.deployed_apps = False
        for app in apps:
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
            if not self.joined_cluster:
                serve.shutdown()
            ray.shutdown()
            self.started_ray = False


# --- the settings serve deploy's builders use -------------------------------------------

def settings_to_json(settings: Settings) -> str:
    """``settings`` as JSON, with who published them (host, pid) and when."""
    return json.dumps({
        "config": settings.config.model_dump(mode="json"),
        "store_url": settings.store_url, "store_password": settings.store_password,
        "signing_key": settings.signing_key, "admin_token": settings.admin_token,
        "shard_count": settings.shard_count,
        "publisher": {"host": socket.gethostname(), "pid": os.getpid(),
                      "ts": int(time.time())},
    })


def settings_from_json(text: str | bytes) -> Settings:
    return _settings_from_record(json.loads(text))


def _settings_from_record(record: dict[str, Any]) -> Settings:
    return Settings(config=Config.model_validate(record["config"]),
                    store_url=record["store_url"], store_password=record["store_password"],
                    signing_key=record["signing_key"], admin_token=record["admin_token"],
                    shard_count=int(record["shard_count"]))


def _settings_key(namespace: str) -> str:
    return f"settings:{namespace}"


def _read_settings_record(namespace: str) -> dict[str, Any] | None:
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(_settings_key(namespace),
                                       namespace=SETTINGS_KV_NAMESPACE)
    return json.loads(raw) if raw else None


def publish_settings(settings: Settings) -> None:
    """Put ``settings`` where serve deploy's builders find them (Ray's key-value store,
    which holds actors' and deployments' constructor arguments, these among them, anyway).
    """
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_settings_key(settings.namespace),
                                 settings_to_json(settings), overwrite=True,
                                 namespace=SETTINGS_KV_NAMESPACE)


def published_settings(namespace: str, wait_s: float = 0.0) -> Settings:
    """The settings of the raydesk running in Ray namespace ``namespace`` of this cluster,
    waiting up to ``wait_s`` for one to start; RuntimeError if there is none."""
    deadline = time.monotonic() + wait_s
    while True:
        record = _read_settings_record(namespace)
        if record is not None:
            return _settings_from_record(record)
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"no raydesk runs in Ray namespace {namespace!r} of this cluster (waited "
                f"{wait_s:g} s): serve deploy manages only raydesk's Serve applications; "
                "start raydesk itself (store, shards, router) with `raydesk serve --address "
                "auto` on the head node, and give the builders its cluster.namespace as "
                "args.namespace (docs/how-to/deploy.md)")
        time.sleep(1.0)


def _is_ours(record: dict[str, Any]) -> bool:
    publisher = record.get("publisher") or {}
    return bool(publisher.get("host") == socket.gethostname()
                and publisher.get("pid") == os.getpid())


def _alive_here(record: dict[str, Any]) -> bool:
    """Whether the record's publisher is another process alive on this machine."""
    publisher = record.get("publisher") or {}
    if publisher.get("host") != socket.gethostname() or _is_ours(record):
        return False
    try:
        pid = int(publisher.get("pid", 0))
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def clear_previous_settings(namespace: str) -> None:
    """At start: refuse if another raydesk of this namespace runs on this machine; else
    remove the record an earlier one left (killed before it could)."""
    record = _read_settings_record(namespace)
    if record is None:
        return
    if _alive_here(record):
        raise ConfigError(f"raydesk already runs in Ray namespace {namespace!r} of this "
                          f"cluster (pid {record['publisher']['pid']} on this machine)")
    from ray.experimental import internal_kv

    log.warning("an earlier raydesk of namespace %s (%s) did not stop cleanly: replacing it",
                namespace, record.get("publisher"))
    internal_kv._internal_kv_del(_settings_key(namespace), namespace=SETTINGS_KV_NAMESPACE)


def forget_settings(namespace: str) -> None:
    """At stop: remove the published settings if this process published them."""
    record = _read_settings_record(namespace)
    if record is not None and _is_ours(record):
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(_settings_key(namespace),
                                     namespace=SETTINGS_KV_NAMESPACE)


def declared_model(details: dict[str, Any]) -> ModelChoice | None:
    """The bot model a ``serve deploy`` config declares (the Assistant's ``user_config``),
    from Serve's instance details; None unless serve deploy manages the bot's application,
    it runs, and the config names a model."""
    app = (details.get("applications") or {}).get(ASSISTANT_APP)
    if not app or app.get("source") != "declarative" or app.get("status") != "RUNNING":
        return None
    deployments = (app.get("deployed_app_config") or {}).get("deployments") or []
    declared = next((d.get("user_config") for d in deployments
                     if d.get("name") == ASSISTANT_DEPLOYMENT), None)
    if not declared:
        return None
    return ModelChoice.model_validate(declared, strict=False)


def record_declared_model(settings: Settings, warned: set[str] | None = None
                          ) -> ModelChoice | None:
    """If ``serve deploy`` rolled out a bot model that the Assistant now serves, store the
    choice as ``raydesk model use`` does, so that a restarted raydesk keeps it; the choice
    recorded, or None. A declared model that the Assistant does not serve (it failed to
    load, and the Assistant kept the one it had) is logged once, not recorded."""
    from ray.serve.context import _get_global_client

    serve_client = _get_global_client()
    if serve_client is None:
        return None
    choice = declared_model(serve_client.get_serve_details())
    if choice is None:
        return None
    wanted = choice.model_dump()
    client = redis.Redis.from_url(settings.store_url, password=settings.store_password,
                                  decode_responses=True)
    try:
        stored = client.get(keys.BOT_MODEL)
        try:
            if stored and json.loads(str(stored)).get("choice") == wanted:
                return None
        except (ValueError, AttributeError):
            pass
        handle = serve.get_deployment_handle(ASSISTANT_DEPLOYMENT, app_name=ASSISTANT_APP)
        serving = handle.status.remote().result(timeout_s=30)["model"]
        if serving != wanted:
            key = json.dumps(wanted, sort_keys=True)
            if warned is not None and key not in warned:
                warned.add(key)
                log.warning("serve deploy declared the bot model %s (%s), but the Assistant "
                            "serves %s: it did not load (see the Assistant's log)",
                            choice.version, choice.model, serving)
            return None
        client.set(keys.BOT_MODEL, json.dumps(
            {"choice": wanted, "config": settings.config.bot.user_config()}))
    finally:
        client.close()
    log.info("bot model %s (%s), rolled out with serve deploy, recorded", choice.version,
             choice.model)
    return choice


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
