"""Specification of what a running broker exposes on /metrics, read as Prometheus reads it.

The example world runs in-process on a vhost of its own, its registry served by
`monitoring.http` exactly as ``xbroker run`` serves it; it has accepted, rejected and
delivered messages before the scrape, so every labelled family has samples and
``promtool check metrics`` lints real series, not only HELP and TYPE lines.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.http import build_app, serve
from tests.world import running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0
ACCEPTED = ("anmeldung-hamburg.xml", "anmeldung-norderstedt.xml", "gewerbe-anmeldung.xml")
REJECTED = ("invalid-anmeldung-missing-birthdate.xml",)


@pytest.fixture(scope="module")
def vhost_url(module_vhost_url: str) -> str:
    return module_vhost_url


@pytest.fixture(scope="module")
async def scrape(vhost_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The text of GET /metrics after the world handled accepted and rejected messages."""
    async with running_world(vhost_url, tmp_path_factory.mktemp("scrape")) as world:
        endpoint = await serve(build_app(world.registry, world.broker.readiness))
        try:
            for sample in ACCEPTED + REJECTED:
                root = world.fresh(sample)
                uuid = await world.portal.submit(world.portal_signer.sign(root), sign=False)
                await world.portal.wait_final(uuid, TIMEOUT)
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
                response = await http.get(f"{endpoint.url}/metrics")
            response.raise_for_status()
            yield response.text
        finally:
            await endpoint.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and wanted <= ls)


def test_promtool_check_metrics_finds_nothing_to_complain_about(promtool: str, scrape: str) -> None:
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_the_scrape_counts_every_accepted_message(scrape: str) -> None:
    assert total(scrape, "xbroker_messages_accepted_total") == len(ACCEPTED)


def test_the_scrape_counts_the_rejection_by_its_reason(scrape: str) -> None:
    assert total(scrape, "xbroker_messages_rejected_total", reason="schema-invalid") == 1


def test_the_scrape_counts_deliveries_and_delivered_receipts(scrape: str) -> None:
    assert total(scrape, "xbroker_deliveries_total", outcome="delivered") == len(ACCEPTED)
    assert total(scrape, "xbroker_receipts_total", kind="delivered") == len(ACCEPTED)


def test_the_scrape_has_end_to_end_latency_observations(scrape: str) -> None:
    assert total(scrape, "xbroker_end_to_end_latency_seconds_count") == len(ACCEPTED)


def test_no_label_value_of_the_scrape_is_a_message_id(scrape: str) -> None:
    values = {value for (_, labels) in samples(scrape) for _, value in labels}
    assert not [v for v in values if len(v) == 36 and v.count("-") == 4]
