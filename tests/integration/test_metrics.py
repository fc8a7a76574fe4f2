"""/metrics, /readyz and /healthz of a real raydesk, and a real Prometheus scraping it."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from raydesk.embedded_store import free_port
from raydesk.metrics import STALE_AFTER_S
from raydesk.runtime import Runtime
from tests.integration.client import SCALE, Api, Client
from tests.integration.conftest import BOT_INBOX

pytestmark = pytest.mark.integration

PROMETHEUS = os.environ.get("RAYDESK_PROMETHEUS", "/usr/bin/prometheus")
# Shards, routers and bots push their numbers every 5 s (metrics.PUSH_EVERY_S).
MOVE_WITHIN_S = 20.0 * SCALE

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(api: Api) -> Samples:
    response = await api.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"series {key} twice in one answer"
            samples[key] = sample.value
    return samples


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for (series, pairs), value in samples.items()
               if series == name and set(labels.items()) <= pairs)


async def _until_moved(api: Api, before: Samples, wanted: dict[str, dict[str, str]],
                       present: dict[str, dict[str, str]] | None = None) -> Samples:
    """Scrape until every wanted series (name: labels) has grown since ``before`` and
    every ``present`` gauge is at least 1 (each process's gauges come from its latest
    snapshot, which can predate a connection whose messages other processes have already
    counted)."""
    deadline = asyncio.get_running_loop().time() + MOVE_WITHIN_S
    while True:
        now = await _scrape(api)
        still = [name for name, labels in wanted.items()
                 if _sum(now, name.split("#")[0], **labels)
                 <= _sum(before, name.split("#")[0], **labels)]
        still += [name for name, labels in (present or {}).items()
                  if _sum(now, name.split("#")[0], **labels) < 1]
        if not still:
            return now
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"did not move within {MOVE_WITHIN_S} s: {still}")
        await asyncio.sleep(0.5)


async def _online_agent(api: Api, connect: Any, skill: str) -> tuple[dict[str, str], Client]:
    agent = await api.agent(skills=[skill])
    client: Client = await connect(agent["token"])
    await client.send_frame({"type": "presence", "status": "online"})
    return agent, client


async def test_counters_move_after_a_chat(api: Api, connect: Any, skill: str) -> None:
    """A customer's message, its assignment and the agent's reply move the message, ack,
    frame, latency, assignment and store series, from gateways, shard and router."""
    before = await _scrape(api)
    _, agent = await _online_agent(api, connect, skill)
    visitor = await api.visitor(skill=skill)
    customer: Client = await connect(visitor["token"])
    ack = await customer.send_text("where is my parcel?")
    cid = ack["conversation_id"]
    await agent.expect_type("assigned", conversation_id=cid)
    reply = await agent.send_text("let me check", conversation_id=cid)
    await customer.expect(lambda f: f["type"] == "message" and f["seq"] == reply["seq"])
    after = await _until_moved(api, before, {
        "raydesk_messages_received_total": {"role": "customer"},
        "raydesk_messages_received_total#agent": {"role": "agent"},
        "raydesk_acks_total": {},
        "raydesk_frames_received_total": {"type": "send"},
        "raydesk_frames_sent_total": {"type": "message"},
        "raydesk_ack_latency_seconds_count": {},
        "raydesk_delivery_latency_seconds_count": {},
        "raydesk_assignments_total": {"how": "router", "component": "router"},
        "raydesk_queue_wait_seconds_count": {"skill": skill},
        "raydesk_shard_commands_total": {"kind": "send", "outcome": "ok"},
        "raydesk_store_commits_total": {"outcome": "ok", "component": "shard"},
        "raydesk_store_seconds_count": {"op": "commit"},
    }, present={"raydesk_connections": {"role": "agent"},
                "raydesk_connections#customer": {"role": "customer"},
                "raydesk_agents": {"presence": "online"}})
    # Two acks in this test, each well under the 10 s top bucket.
    assert _sum(after, "raydesk_ack_latency_seconds_bucket", le="10.0") == \
        _sum(after, "raydesk_ack_latency_seconds_count")


async def test_every_process_is_reported_once(api: Api, runtime: Runtime) -> None:
    """Both gateway replicas, every shard, every partition's router and the bot replica
    report, whichever replica answers the scrape."""
    assert runtime.settings is not None
    expected = {"gateway": runtime.config.server.gateway_replicas,
                "shard": runtime.settings.shard_count,
                "router": len(runtime.settings.partitions),
                "bot": runtime.config.bot.replicas}
    # A replica replaced by an earlier test is reported until its snapshot is stale.
    deadline = asyncio.get_running_loop().time() + MOVE_WITHIN_S + STALE_AFTER_S
    while True:
        seen: dict[str, set[str]] = collections.defaultdict(set)
        for _ in range(4):  # answered by either replica
            for (name, pairs), _age in (await _scrape(api)).items():
                if name == "raydesk_metrics_snapshot_age_seconds":
                    labels = dict(pairs)
                    seen[labels["component"]].add(labels["process"])
        counts = {component: len(processes) for component, processes in seen.items()}
        if counts == expected:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"processes reported: {counts}, expected {expected}")
        await asyncio.sleep(0.5)
    assert seen["shard"] == set(runtime.settings.shard_names)
    assert seen["router"] == set(runtime.settings.partitions)


async def test_bot_turns_are_counted(api: Api, connect: Any, skill: str) -> None:
    """A question to the bot moves the bot's turn, request and model series, and the
    turns counted by how they were stored add up to the answers and hand-offs."""
    before = await _scrape(api)
    # A skill of its own: if the bot hands off, no later test's agent is given it.
    visitor = await api.visitor(inbox=BOT_INBOX, skill=skill)
    customer: Client = await connect(visitor["token"])
    ack = await customer.send_text("hello!")
    await customer.expect(lambda f: f["type"] == "message" and f["seq"] > ack["seq"]
                          and f["sender"]["role"] in ("bot", "system"))
    after = await _until_moved(api, before, {
        "raydesk_bot_request_seconds_count": {"component": "shard"},
        "raydesk_bot_inference_seconds_count": {"component": "bot"},
        "raydesk_bot_batch_questions_count": {"component": "bot"},
        "raydesk_bot_turns_total": {"component": "shard"},
    })
    turns = [_sum(s, "raydesk_bot_answers_total") + _sum(s, "raydesk_bot_handoffs_total")
             for s in (before, after)]
    assert turns[1] > turns[0]
    # Every turn is counted once more by how it was stored (with its question or alone).
    stored = [_sum(s, "raydesk_bot_turns_total") for s in (before, after)]
    assert stored[1] - stored[0] == turns[1] - turns[0]
    assert _sum(after, "raydesk_bot_model_info") >= 1


async def test_readyz_reports_every_check(api: Api) -> None:
    """/readyz is 200 with each check named and ok; /healthz is 200."""
    response = await api.http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {
        "store": "ok", "shards": "ok", "routers": "ok", "bot": "ok"}}
    assert (await api.http.get("/healthz")).status_code == 200


# --- a real Prometheus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus, scraping the test raydesk's /metrics every second."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} not found: ./scripts/test.sh installs it "
                    "(apt-get install prometheus), or set RAYDESK_PROMETHEUS")
    folder = tmp_path_factory.mktemp("prometheus")
    target = runtime.url.removeprefix("http://")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: raydesk\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(int(300 * SCALE)):
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"prometheus not ready: {log.read_text()[-2000:]}")


async def _query(http: httpx.AsyncClient, expr: str) -> float | None:
    response = await http.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, response.text
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def _until(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + MOVE_WITHIN_S
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} within {MOVE_WITHIN_S} s")
        await asyncio.sleep(0.5)


async def test_prometheus_scrapes_raydesk(prometheus: str, api: Api, connect: Any,
                                          skill: str) -> None:
    """A real Prometheus scrapes /metrics (target up) and its query API shows raydesk's
    received messages go up after a customer writes."""
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as http:
        expr = 'sum(raydesk_messages_received_total{role="customer"})'

        async def up() -> bool:
            return await _query(http, 'up{job="raydesk"} == 1') == 1 and \
                await _query(http, expr) is not None

        await _until(up, "the raydesk target up with a messages series")
        before = await _query(http, expr)
        assert before is not None
        visitor = await api.visitor(skill=skill)
        customer: Client = await connect(visitor["token"])
        await customer.send_text("hello from the Prometheus test")

        async def moved() -> bool:
            now = await _query(http, expr)
            return now is not None and now > before

        await _until(moved, "the message counter moving in Prometheus")
        gateways = await _query(http, 'count(raydesk_metrics_snapshot_age_seconds{'
                                      'component="gateway"})')
        assert gateways is not None and gateways >= 2
