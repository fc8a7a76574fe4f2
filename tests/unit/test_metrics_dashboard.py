"""The Grafana dashboard (deploy/grafana/raydesk.json) is a valid dashboard model whose
queries use only metrics, and labels, that raydesk exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from raydesk import metrics
from raydesk.prometheus import RESERVED_LABELS, Histogram

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "raydesk.json"
_METRIC = re.compile(r"\braydesk_[a-z0-9_]+\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")


def _labels_by_series() -> dict[str, set[str]]:
    """Every exported series name and the labels it may carry."""
    out = {metrics.SNAPSHOT_AGE: set(RESERVED_LABELS)}
    for registries in metrics.REGISTRIES.values():
        for registry in registries:
            for family in registry.families:
                labels = {*family.label_names, *RESERVED_LABELS}
                if isinstance(family, Histogram):
                    out[f"{family.name}_bucket"] = labels | {"le"}
                    out[f"{family.name}_sum"] = labels
                    out[f"{family.name}_count"] = labels
                else:
                    out[family.name] = labels
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_model_and_datasource_variable(dashboard: dict[str, Any]) -> None:
    """The fields Grafana needs to import it, and the Prometheus datasource as a variable
    that every panel and query uses."""
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["refId"] and target["expr"]


def test_every_query_uses_exported_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    exported = _labels_by_series()
    assert set(exported) == metrics.exported_names()
    used: set[str] = set()
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(_METRIC.findall(expr))
            assert names, f"{panel['title']}: {expr} uses no raydesk metric"
            unknown = names - set(exported)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not exported"
            allowed = set().union(*(exported[name] for name in names))
            labels = {label.strip() for group in _GROUPING.findall(expr)
                      for label in group.split(",") if label.strip()}
            labels |= {m.split("=")[0].rstrip("!~").strip()
                       for group in _MATCHER.findall(expr) for m in group.split(",")}
            assert labels <= allowed, f"{panel['title']}: labels {labels - allowed}"
            used |= names
    # The list, each on the dashboard.
    for needed in ("raydesk_connections", "raydesk_frames_received_total",
                   "raydesk_frames_sent_total", "raydesk_messages_received_total",
                   "raydesk_acks_total", "raydesk_errors_total",
                   "raydesk_ack_latency_seconds_bucket",
                   "raydesk_delivery_latency_seconds_bucket", "raydesk_store_seconds_bucket",
                   "raydesk_bot_answers_total", "raydesk_bot_handoffs_total",
                   "raydesk_bot_confidence_ratio_bucket", "raydesk_queue_length",
                   "raydesk_queue_wait_seconds_bucket", "raydesk_assignments_total",
                   "raydesk_agents", "raydesk_agent_open_chats"):
        assert needed in used, needed
