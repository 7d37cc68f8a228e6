"""Specification of the Prometheus configuration, recording rules and alerts.

promtool checks the syntax and runs alerts_test.yml; the tests here add what promtool
cannot know: every alert is labelled and documented, has a test that fires and one that
stays silent, and reads only metrics that `Metrics` exports.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import monitoring
from monitoring import Metrics
from monitoring.promql import exported_sample_names, metric_names

PROMETHEUS = Path(monitoring.__file__).parent / "prometheus"
OPERATIONS = Path(__file__).parent.parent / "docs" / "operations.md"
RULE_FILES = ("recording.yml", "alerts.yml")


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def load(name: str) -> Any:
    return yaml.safe_load((PROMETHEUS / name).read_text(encoding="utf-8"))


def rules(name: str) -> list[dict[str, Any]]:
    return [rule for group in load(name)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return rules("alerts.yml")


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerts()]


def alert_cases() -> list[tuple[str, bool]]:
    """(alertname, fires) for every expectation in alerts_test.yml."""
    return [
        (case["alertname"], bool(case["exp_alerts"]))
        for test in load("alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_promtool_check_rules_accepts_the_rule_files(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", *RULE_FILES)


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", "alerts_test.yml")


def test_promtool_check_config_accepts_prometheus_yml(promtool: str) -> None:
    run_promtool(promtool, "check", "config", "prometheus.yml")


def test_prometheus_loads_every_rule_file_and_the_unit_tests_cover_them() -> None:
    assert load("prometheus.yml")["rule_files"] == list(RULE_FILES)
    assert load("alerts_test.yml")["rule_files"] == list(RULE_FILES)


def test_prometheus_scrapes_the_broker_and_the_rabbitmq_plugin() -> None:
    jobs = {job["job_name"]: job for job in load("prometheus.yml")["scrape_configs"]}
    rabbitmq_targets = jobs["rabbitmq"]["static_configs"][0]["targets"]
    assert any(target.endswith(":15692") for target in rabbitmq_targets)
    assert jobs["xbroker"]["static_configs"][0]["targets"]


@pytest.mark.parametrize(
    "required",
    [
        "XBrokerDown",
        "RabbitMQNodeDown",
        "AgencyQueueWithoutConsumer",
        "AgencyQueueGrowing",
        "RejectRatioHigh",
        "DeadLettersPresent",
        "LatencySLOBurnFast",
        "LatencySLOBurnSlow",
        "CertificateExpiringSoon",
    ],
)
def test_the_agreed_alert_exists(required: str) -> None:
    assert required in alert_names()


@pytest.mark.parametrize("alert", alerts(), ids=alert_names())
def test_alert_has_a_severity_summary_description_and_runbook(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert {"summary", "description", "runbook"} <= set(alert["annotations"])


@pytest.mark.parametrize("alert", alerts(), ids=alert_names())
def test_alert_runbook_points_at_a_section_of_the_operations_guide(
    alert: dict[str, Any],
) -> None:
    path, _, anchor = alert["annotations"]["runbook"].partition("#")
    assert path == "docs/operations.md"
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    assert anchor in slugs


@pytest.mark.parametrize("name", alert_names())
def test_alert_has_a_unit_test_where_it_fires(name: str) -> None:
    assert (name, True) in alert_cases()


@pytest.mark.parametrize("name", alert_names())
def test_alert_has_a_unit_test_where_it_stays_silent(name: str) -> None:
    assert (name, False) in alert_cases()


def test_rules_read_only_metrics_that_the_broker_exports() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    known = exported_sample_names(registry) | {"up"}
    known |= {rule["record"] for rule in rules("recording.yml")}
    used = set().union(*(metric_names(r["expr"]) for f in RULE_FILES for r in rules(f)))
    # rabbitmq_* names come from RabbitMQ's plugin; test_scrape_rabbitmq.py checks them
    # against a real node.
    assert {n for n in used - known if not n.startswith("rabbitmq_")} == set()
