"""raydesk.config: defaults, YAML validation, command-line overrides and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from raydesk.config import Config, RoutingConfig, load_config
from raydesk.errors import ConfigError
from raydesk.routing import Weights

TOKEN = "env-admin-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDESK_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("RAYDESK_STORE_URL", raising=False)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_defaults_without_a_file() -> None:
    """With no file, every key has its documented default."""
    config = load_config()
    assert config == Config()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.store.url is None
    assert config.store.appendfsync == "everysec"
    assert config.auth.admin_token is None
    assert config.limits.max_frame_bytes == 64 * 1024
    assert config.limits.messages_per_s == 5.0
    assert config.websocket.hello_timeout_s == 10.0
    assert config.websocket.heartbeat_timeout_s > config.websocket.heartbeat_s
    assert config.cluster.namespace == "raydesk"
    assert config.routing.default_max_chats == 5


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty YAML file means all defaults."""
    assert load_config(_yaml(tmp_path, "")) == Config()


def test_file_values_are_read(tmp_path: Path) -> None:
    """Values in the file replace defaults; keys left out keep theirs."""
    path = _yaml(tmp_path, "log_level: DEBUG\nserver:\n  port: 9001\nlimits:\n  burst: 3\n")
    config = load_config(str(path))
    assert config.log_level == "DEBUG"
    assert config.server.port == 9001
    assert config.server.host == "127.0.0.1"
    assert config.limits.burst == 3
    assert config.limits.messages_per_s == 5.0


@pytest.mark.parametrize(("text", "key"), [
    ("colour: blue\n", "colour"),
    ("server:\n  prot: 9000\n", "server.prot"),
    ("limits:\n  burst: 3\n  bursts: 4\n", "limits.bursts"),
])
def test_unknown_key_names_it(tmp_path: Path, text: str, key: str) -> None:
    """An unknown key is a ConfigError that names the dotted key."""
    message = _config_error(_yaml(tmp_path, text))
    assert f"{key}: unknown key" in message


@pytest.mark.parametrize(("text", "key"), [
    ("server:\n  port: 70000\n", "server.port"),
    ("server:\n  port: eighty\n", "server.port"),
    ("log_level: TRACE\n", "log_level"),
    ("store:\n  appendfsync: sometimes\n", "store.appendfsync"),
    ("limits:\n  messages_per_s: 0\n", "limits.messages_per_s"),
    ("cluster:\n  namespace: 'bad name'\n", "cluster.namespace"),
    ("auth:\n  admin_token: short\n", "auth.admin_token"),
    ("server: 5\n", "server"),
])
def test_wrong_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    """A wrong value is a ConfigError whose message names the key."""
    message = _config_error(_yaml(tmp_path, text))
    assert message.startswith("invalid configuration")
    assert f"\n  {key}: " in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_file_is_refused(tmp_path: Path, text: str) -> None:
    """A file that holds a list or a scalar is a ConfigError asking for a mapping."""
    assert "mapping" in _config_error(_yaml(tmp_path, text))


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    """A file that is not valid YAML is a ConfigError saying so."""
    assert "not valid YAML" in _config_error(_yaml(tmp_path, "server: [1, 2\n  port: :\n"))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A config path that cannot be read is a ConfigError naming the path."""
    missing = tmp_path / "nope.yaml"
    assert str(missing) in _config_error(missing)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    """Overrides replace file values key by key and keep the file's other keys."""
    path = _yaml(tmp_path, "server:\n  port: 9001\n  host: 0.0.0.0\nlog_level: ERROR\n")
    config = load_config(path, server={"port": 9002}, log_level="WARNING")
    assert config.server.port == 9002
    assert config.server.host == "0.0.0.0"
    assert config.log_level == "WARNING"


def test_overrides_are_validated() -> None:
    """An override with a wrong value or unknown key is a ConfigError naming it."""
    assert "server.port" in _config_error(server={"port": -1})
    assert "cluster.shard: unknown key" in _config_error(cluster={"shard": 3})


def test_env_admin_token_wins_over_file_and_overrides(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """RAYDESK_ADMIN_TOKEN sets auth.admin_token over the file and overrides."""
    monkeypatch.setenv("RAYDESK_ADMIN_TOKEN", TOKEN)
    path = _yaml(tmp_path, "auth:\n  admin_token: file-token-0123456789abcdefgh\n"
                           "  agent_token_ttl_s: 600\n")
    config = load_config(path, auth={"admin_token": "cli-token-0123456789abcdefghij"})
    assert config.auth.admin_token == TOKEN
    assert config.auth.agent_token_ttl_s == 600


def test_env_admin_token_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAYDESK_ADMIN_TOKEN alone sets the admin token and nothing else."""
    monkeypatch.setenv("RAYDESK_ADMIN_TOKEN", TOKEN)
    config = load_config()
    assert config.auth.admin_token == TOKEN
    assert config.model_copy(update={"auth": Config().auth}) == Config()


def test_empty_env_admin_token_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty RAYDESK_ADMIN_TOKEN leaves the configured value."""
    monkeypatch.setenv("RAYDESK_ADMIN_TOKEN", "")
    assert load_config(auth={"admin_token": TOKEN}).auth.admin_token == TOKEN


def test_short_env_admin_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A too-short RAYDESK_ADMIN_TOKEN is a ConfigError naming auth.admin_token."""
    monkeypatch.setenv("RAYDESK_ADMIN_TOKEN", "short")
    assert "auth.admin_token" in _config_error()


def test_env_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAYDESK_STORE_URL sets store.url."""
    monkeypatch.setenv("RAYDESK_STORE_URL", "redis://db:6379/0")
    assert load_config().store.url == "redis://db:6379/0"


def test_non_mapping_section_with_env_override_names_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auth: <scalar> in the file is a ConfigError naming 'auth' even with the env set."""
    monkeypatch.setenv("RAYDESK_ADMIN_TOKEN", TOKEN)
    assert "auth" in _config_error(_yaml(tmp_path, "auth: nope\n"))


def test_non_mapping_section_with_override_names_the_key(tmp_path: Path) -> None:
    """server: <scalar> in the file is a ConfigError naming 'server' even with overrides."""
    assert "server" in _config_error(_yaml(tmp_path, "server: 5\n"), server={"port": 1})


def test_config_is_frozen() -> None:
    """A loaded configuration cannot be changed."""
    config = load_config()
    with pytest.raises(ValidationError):
        config.server.port = 1


def test_data_path_is_absolute(tmp_path: Path) -> None:
    """data_path resolves data_dir to an absolute path."""
    config = load_config(data_dir=str(tmp_path / "d" / ".." / "data"))
    assert config.data_path == (tmp_path / "data").resolve()
    assert config.data_path.is_absolute()


# --- routing ---------------------------------------------------------------------------


def test_routing_defaults() -> None:
    """The routing section's documented defaults."""
    routing = load_config().routing
    assert routing == RoutingConfig()
    assert (routing.load_weight, routing.response_time_weight) == (1.0, 0.5)
    assert routing.response_time_scale_s == 60.0
    assert routing.response_time_alpha == 0.2
    assert routing.default_priority == 1
    assert routing.inbox_priority == {}
    assert routing.vip_attribute is None
    assert routing.priority_aging_s == 120.0
    assert routing.offline_grace_s == 60.0


def test_default_routing_config_gives_the_default_weights() -> None:
    """RoutingConfig's defaults and Weights' defaults agree."""
    assert RoutingConfig().weights() == Weights()


def test_weights_map_seconds_to_milliseconds() -> None:
    """.weights() copies the weights, alpha and aging, and turns the scale into ms."""
    routing = load_config(routing={
        "load_weight": 2.5, "response_time_weight": 0, "response_time_scale_s": 60,
        "response_time_alpha": 1, "priority_aging_s": 30}).routing
    weights = routing.weights()
    assert weights == Weights(load=2.5, response_time=0.0, response_time_scale_ms=60_000.0,
                              ewma_alpha=1.0, aging_s=30.0)
    assert weights.response_time_scale_ms == 60000.0
    assert load_config(routing={"response_time_scale_s": 0.5}).routing.weights(
    ).response_time_scale_ms == 500.0


def test_routing_values_from_the_file(tmp_path: Path) -> None:
    """inbox_priority and vip_attribute are read from YAML."""
    routing = load_config(_yaml(tmp_path, "routing:\n  vip_attribute: vip\n"
                                          "  inbox_priority:\n    sales: 0\n    web: 3\n"
                          )).routing
    assert routing.vip_attribute == "vip"
    assert routing.inbox_priority == {"sales": 0, "web": 3}


@pytest.mark.parametrize(("key", "value"), [
    ("response_time_alpha", 0),
    ("response_time_alpha", 1.5),
    ("offline_grace_s", 0),
    ("load_weight", -1),
    ("response_time_weight", -0.5),
    ("response_time_scale_s", 0),
    ("priority_aging_s", 0),
    ("default_priority", -1),
    ("default_priority", 101),
])
def test_wrong_routing_value_names_the_key(key: str, value: float) -> None:
    """An out-of-range routing value is a ConfigError naming routing.<key>."""
    message = _config_error(routing={key: value})
    assert f"\n  routing.{key}: " in message


def test_wrong_inbox_priority_names_the_inbox() -> None:
    """A negative inbox priority is a ConfigError naming routing.inbox_priority.<inbox>."""
    assert "\n  routing.inbox_priority.web: " in _config_error(
        routing={"inbox_priority": {"web": -1}})
