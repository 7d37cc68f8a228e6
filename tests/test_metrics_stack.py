"""Specification of the monitoring stack in docker-compose.yml and the broker's Dockerfile.

Docker does not run in the test environment, so these tests check what can be checked
without it: the files parse, every mounted path exists, and the services agree with each
other and with the Prometheus and Grafana configuration on names and ports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).parent.parent
MONITORING = ROOT / "monitoring"


def compose() -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return model


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def bind_mounts() -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount, over all services."""
    mounts = []
    for service in services().values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts.append((source, target))
    return mounts


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_compose_runs_rabbitmq_broker_prometheus_and_grafana() -> None:
    assert {"rabbitmq", "broker", "prometheus", "grafana"} <= set(services())


@pytest.mark.parametrize("mount", bind_mounts(), ids=lambda m: m[0])
def test_every_bind_mounted_path_exists_in_the_repository(mount: tuple[str, str]) -> None:
    assert (ROOT / mount[0]).exists()


def test_every_named_volume_is_declared() -> None:
    declared = set(compose().get("volumes") or {})
    used = {
        volume.split(":")[0]
        for service in services().values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert used <= declared


def test_rabbitmq_is_a_management_image_of_at_least_3_10() -> None:
    image = services()["rabbitmq"]["image"]
    match = re.fullmatch(r"rabbitmq:(\d+)\.(\d+)[\w.-]*-management", image)
    assert match, image
    assert (int(match[1]), int(match[2])) >= (3, 10)


def test_rabbitmq_enables_the_prometheus_plugin() -> None:
    mounts = dict((target, source) for source, target in bind_mounts())
    plugins = (ROOT / mounts["/etc/rabbitmq/enabled_plugins"]).read_text(encoding="utf-8")
    assert "rabbitmq_prometheus" in plugins
    assert plugins.strip().endswith("].")


def test_broker_is_built_here_and_runs_xbroker_run() -> None:
    broker = services()["broker"]
    assert broker["build"] == "."
    assert broker["command"] == ["xbroker", "run"]


def test_broker_reaches_the_rabbitmq_service() -> None:
    url = urlsplit(services()["broker"]["environment"]["XBROKER_AMQP_URL"])
    assert url.scheme == "amqp"
    assert url.hostname == "rabbitmq"


def test_prometheus_scrape_targets_are_compose_services_on_their_ports() -> None:
    broker_port = services()["broker"]["environment"]["XBROKER_METRICS_PORT"]
    expected = {
        "xbroker": f"broker:{broker_port}",
        "rabbitmq": "rabbitmq:15692",
        "rabbitmq_queues": "rabbitmq:15692",
    }
    config = load_yaml(MONITORING / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == expected


def test_broker_metrics_listen_beyond_the_container_loopback() -> None:
    assert services()["broker"]["environment"]["XBROKER_METRICS_HOST"] == "0.0.0.0"


def test_prometheus_reads_the_mounted_configuration() -> None:
    prometheus = services()["prometheus"]
    mounts = dict((target, source) for source, target in bind_mounts())
    assert mounts["/etc/prometheus"] == "./monitoring/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_mounts_the_dashboards_where_provisioning_looks() -> None:
    provider = load_yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "xbroker.yml")
    path = provider["providers"][0]["options"]["path"]
    mounts = dict((target, source) for source, target in bind_mounts())
    assert mounts[path] == "./monitoring/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"


def test_grafana_datasource_points_at_the_prometheus_service() -> None:
    provisioning = load_yaml(
        MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    )
    url = urlsplit(provisioning["datasources"][0]["url"])
    assert url.hostname == "prometheus"
    assert url.port == 9090


def test_published_ports_listen_on_loopback_only() -> None:
    ports = [port for service in services().values() for port in service.get("ports", [])]
    assert ports
    assert all(port.startswith("127.0.0.1:") for port in ports)


def test_dockerfile_builds_on_python_3_11_slim_and_runs_xbroker_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, re.M)
    assert re.search(r'^CMD \["xbroker", "run"\]$', dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+$", dockerfile, re.M)


def test_dockerfile_copies_every_package_the_project_installs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    include = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert include
    packages = {name.strip(' "*') for name in include[1].split(",") if name.strip()}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+)/ ", dockerfile, re.M))
    assert packages <= copied
