"""Every ``rabbitmq_*`` metric the alerts and the dashboard read exists on a real node.

The names are the rabbitmq_prometheus plugin's, not ours, so nothing in the code can check
them; a name the plugin does not export would leave an alert silent forever. Each job of
monitoring/prometheus/prometheus.yml is scraped from the local node as configured (path
and params), and the names it returns are compared with those the queries select.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import monitoring
from broker import devnode
from monitoring.promql import metric_names

MONITORING = Path(monitoring.__file__).parent
PROMETHEUS = MONITORING / "prometheus"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "xbroker.json"


def rabbitmq_jobs() -> list[dict[str, Any]]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    return [j for j in config["scrape_configs"] if j["job_name"].startswith("rabbitmq")]


def read_by_queries() -> set[str]:
    exprs = [
        rule["expr"]
        for name in ("alerts.yml", "recording.yml")
        for group in yaml.safe_load((PROMETHEUS / name).read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {n for e in exprs for n in metric_names(e) if n.startswith("rabbitmq_")}


@pytest.fixture(scope="module")
def exported(local_node: devnode.NodeInfo) -> set[str]:
    """Sample names of every rabbitmq job, scraped from the local node as configured."""
    names: set[str] = set()
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        for job in rabbitmq_jobs():
            url = f"http://127.0.0.1:{local_node.prometheus_port}{job['metrics_path']}"
            response = http.get(url, params=job.get("params", {}))
            response.raise_for_status()
            # Family names count too: a node without queues yet writes HELP and TYPE only.
            for family in text_string_to_metric_families(response.text):
                names.add(family.name + ("_total" if family.type == "counter" else ""))
                names |= {sample.name for sample in family.samples}
    return names


def test_the_queries_read_rabbitmq_metrics_at_all() -> None:
    assert "rabbitmq_detailed_queue_consumers" in read_by_queries()


def test_every_rabbitmq_metric_the_queries_read_is_exported_by_a_configured_job(
    exported: set[str],
) -> None:
    assert read_by_queries() - exported == set()
