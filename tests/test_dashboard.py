"""Specification of the Grafana dashboard and its provisioning.

Nothing compiles a dashboard against the code: these tests catch a panel that reads a
metric xbroker does not export, a query PromQL cannot parse, and a provisioning path that
points nowhere.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import monitoring
from broker.xta.metrics import XtaMetrics
from monitoring import Metrics
from monitoring.promql import exported_sample_names, metric_names

GRAFANA = Path(monitoring.__file__).parent / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "xbroker.json"
# Grafana's own variables, replaced by values PromQL accepts for the syntax check.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$agency": ".*"}


def dashboard() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return model


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def exprs() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def panel_titles() -> list[str]:
    return [panel["title"] for panel in panels()]


def test_dashboard_has_a_uid_title_and_recent_schema_version() -> None:
    model = dashboard()
    assert model["uid"] == "xbroker-overview"
    assert model["title"]
    assert model["schemaVersion"] >= 36


def test_dashboard_offers_an_agency_variable_with_all_agencies() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    agency = variables["agency"]
    assert "xbroker_agency_queue_messages" in agency["definition"]
    assert agency["includeAll"] is True


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("panel", panels(), ids=panel_titles())
def test_panel_has_a_position_and_queries(panel: dict[str, Any]) -> None:
    assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
    assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    assert panel["targets"]
    assert all(target["expr"].strip() for target in panel["targets"])


@pytest.mark.parametrize(
    "required",
    [
        "xbroker_messages_received_total",
        "xbroker_messages_accepted_total",
        "xbroker_messages_rejected_total",
        "xbroker_stage_duration_seconds_bucket",
        "xbroker_end_to_end_latency_seconds_bucket",
        "xbroker_agency_queue_messages",
        "xbroker_agency_queue_consumers",
        "xbroker_deliveries_total",
        "xbroker_certificate_expiry_seconds",
        "xbroker_xta_requests_total",
        "xbroker_xta_box_waiting_messages",
    ],
)
def test_dashboard_shows_the_agreed_metric(required: str) -> None:
    assert any(required in metric_names(expr) for expr in exprs())


def test_agency_panels_follow_the_agency_variable() -> None:
    agency_exprs = [e for e in exprs() if "xbroker_agency_" in e]
    assert agency_exprs
    assert all('agency=~"$agency"' in e for e in agency_exprs)


def test_every_panel_query_reads_only_exported_metrics() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    XtaMetrics(registry, ["bau:02000000"])
    known = exported_sample_names(registry) | {"up"}
    used = set().union(*(metric_names(expr) for expr in exprs()))
    unknown = {name for name in used - known if not name.startswith("rabbitmq_")}
    assert unknown == set()


def test_every_panel_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses the expression of every rule it checks; each query becomes one.
    rules = []
    for number, expr in enumerate(exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    rule_file = tmp_path / "dashboard.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_datasource_provisioning_names_the_uid_the_dashboard_defaults_to() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    uids = {source["uid"] for source in provisioning["datasources"]}
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] in uids


def test_dashboard_provisioning_reads_a_file_provider() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "xbroker.yml").read_text(encoding="utf-8")
    )
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
