"""End to end with a real Prometheus server: it scrapes the broker and RabbitMQ, and
PromQL answers what happened.

Debian's ``prometheus`` binary runs on loopback only, on a free port, with a data folder
of its own and a scrape interval of one second; it is stopped when the module ends.
The broker is the example world in-process, its registry served by `monitoring.http`,
with the client of one agency stopped so that its inbox holds a message nobody consumes;
RabbitMQ's per-queue metrics come from the local node's rabbitmq_prometheus plugin with
the same families as the ``rabbitmq_queues`` job of monitoring/prometheus/prometheus.yml.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import yaml

import monitoring
from broker import devnode
from monitoring.http import build_app, serve
from tests.conftest import free_port
from tests.polling import eventually
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0
# Delivered to agencies with a consumer, each waited for until final.
DELIVERED = ("anmeldung-hamburg.xml", "gewerbe-anmeldung.xml") * 2
# The agency of this sample has its client stopped: its copy waits in the inbox.
UNCONSUMED_SAMPLE = "anmeldung-norderstedt.xml"
UNCONSUMED = "psw:01060063"
PROMETHEUS = Path(monitoring.__file__).parent / "prometheus"
PROMETHEUS_YML = PROMETHEUS / "prometheus.yml"


def alert_expr() -> str:
    """AgencyQueueWithoutConsumer's expression as shipped (its ``for`` left to Prometheus)."""
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    (rule,) = [
        r for g in groups for r in g["rules"] if r.get("alert") == "AgencyQueueWithoutConsumer"
    ]
    expr: str = rule["expr"]
    return expr


@dataclass
class Stack:
    world: World
    prometheus: str  # base URL of the Prometheus server
    vhost: str


@pytest.fixture(scope="module")
def vhost_url(module_vhost_url: str) -> str:
    return module_vhost_url


def rabbitmq_queues_job(target: str, vhost: str) -> dict[str, Any]:
    """The shipped ``rabbitmq_queues`` job, pointed at the local node and one vhost."""
    shipped = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    (job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == "rabbitmq_queues"]
    job = dict(job, static_configs=[{"targets": [target]}])
    job["params"] = dict(job["params"], vhost=[vhost])
    return job


@pytest.fixture(scope="module")
async def stack(
    prometheus: str,
    local_node: devnode.NodeInfo,
    vhost_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    vhost = unquote(urlsplit(vhost_url).path[1:])
    tmp = tmp_path_factory.mktemp("prometheus")
    async with running_world(vhost_url, tmp / "state") as world:
        endpoint = await serve(build_app(world.registry, world.broker.readiness))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "xbroker",
                    "static_configs": [{"targets": [f"127.0.0.1:{endpoint.port}"]}],
                },
                rabbitmq_queues_job(f"127.0.0.1:{local_node.prometheus_port}", vhost),
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        with (tmp / "prometheus.log").open("wb") as log:
            server = await asyncio.create_subprocess_exec(
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            await world.agencies.pop(UNCONSUMED).close()
            for sample in DELIVERED:
                uuid = await world.portal.submit(world.fresh(sample))
                await world.portal.wait_final(uuid, TIMEOUT)
            await accepted(world, await world.portal.submit(world.fresh(UNCONSUMED_SAMPLE)))
            yield Stack(world, f"http://127.0.0.1:{port}", vhost)
        finally:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), 10)
            except TimeoutError:
                server.kill()
                await server.wait()
            await endpoint.stop()


async def accepted(world: World, uuid: str) -> None:
    await eventually(lambda: world.portal.state(uuid).recipients, what=f"{uuid} accepted")


async def query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        response = await http.get(f"{stack.prometheus}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def value_of(stack: Stack, promql: str) -> float | None:
    """The value of a one-series query; None while it has no series."""
    result = await query(stack, promql)
    return float(result[0]["value"][1]) if result else None


async def comes_to(stack: Stack, promql: str, expected: float) -> None:
    """Wait until a one-series query returns ``expected`` (Prometheus scrapes each second)."""
    await eventually(
        lambda: value_of(stack, promql),
        until=lambda value: value == expected,
        what=f"{promql} = {expected:g}",
        interval=0.5,
        ignoring=(httpx.TransportError,),  # the server is still starting
    )


async def test_promql_counts_the_accepted_messages_that_were_sent(stack: Stack) -> None:
    sent = len(DELIVERED) + 1  # one more waits in the inbox nobody consumes

    await comes_to(stack, "sum(xbroker_messages_accepted_total)", sent)


async def test_prometheus_sees_the_broker_up_and_ready(stack: Stack) -> None:
    await comes_to(stack, 'up{job="xbroker"}', 1)
    await comes_to(stack, "xbroker_ready", 1)


async def alert_rows(stack: Stack, expr: str) -> dict[str, float]:
    """The agencies of this module's vhost that ``expr`` returns, and their values."""
    return {
        row["metric"]["agency"]: float(row["value"][1])
        for row in await query(stack, expr)
        if row["metric"].get("vhost") == stack.vhost
    }


async def test_the_consumer_count_the_alert_reads_shows_the_agency_client(stack: Stack) -> None:
    # The left operand of the alert: consumers per agency inbox.
    consumers = alert_expr().split(") == 0")[0] + ")"
    mine = await eventually(
        lambda: alert_rows(stack, consumers),
        until=lambda rows: "psw:02000000" in rows,
        what="psw:02000000 among the inboxes' consumer counts",
        interval=0.5,
    )

    assert mine["psw:02000000"] == 1
    assert mine[UNCONSUMED] == 0


async def test_the_alert_expression_names_the_inbox_with_messages_and_no_consumer(
    stack: Stack,
) -> None:
    firing = await eventually(
        lambda: alert_rows(stack, alert_expr()),
        until=lambda rows: UNCONSUMED in rows,
        what=f"the alert expression naming {UNCONSUMED}",
        interval=0.5,
    )

    assert set(firing) == {UNCONSUMED}
