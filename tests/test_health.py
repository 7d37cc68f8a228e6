"""Specification of the operator's endpoint: /metrics, /livez, /readyz on a real socket."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitoring import Metrics
from monitoring.http import ServerHandle, build_app, serve


class Checks:
    """Readiness checks the test flips, standing in for the broker's state."""

    def __init__(self) -> None:
        self.state = {"amqp": False, "standards": True}

    def __call__(self) -> dict[str, bool]:
        return dict(self.state)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
async def endpoint(registry: CollectorRegistry, checks: Checks) -> AsyncIterator[ServerHandle]:
    handle = await serve(build_app(registry, checks), "127.0.0.1", 0)
    yield handle
    await handle.stop()


@pytest.fixture
async def client(endpoint: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=endpoint.url, timeout=5.0, trust_env=False) as http:
        yield http


async def test_port_zero_reports_the_port_the_kernel_chose(endpoint: ServerHandle) -> None:
    assert endpoint.port > 0
    assert endpoint.url == f"http://127.0.0.1:{endpoint.port}"


async def test_livez_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/livez")
    assert response.status_code == 200


async def test_readyz_is_503_while_a_check_fails_and_names_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "checks": {"amqp": False, "standards": True}}


async def test_readyz_turns_200_once_every_check_passes(
    client: httpx.AsyncClient, checks: Checks
) -> None:
    assert (await client.get("/readyz")).status_code == 503
    checks.state["amqp"] = True
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["ready"] is True


async def test_readyz_is_503_when_a_check_raises(registry: CollectorRegistry) -> None:
    def broken() -> dict[str, bool]:
        raise OSError("store unreachable")

    handle = await serve(build_app(registry, broken), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=handle.url, trust_env=False) as http:
            response = await http.get("/readyz")
    finally:
        await handle.stop()
    assert response.status_code == 503
    assert "store unreachable" in response.json()["error"]


async def test_metrics_serves_the_injected_registry(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    Metrics(registry).received.inc(3)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "xbroker_messages_received_total 3.0" in response.text


async def test_metrics_speaks_openmetrics_when_asked(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    Metrics(registry)
    response = await client.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_stop_releases_the_port(registry: CollectorRegistry, checks: Checks) -> None:
    handle = await serve(build_app(registry, checks), "127.0.0.1", 0)
    await handle.stop()
    with socket.create_server(("127.0.0.1", handle.port)):
        pass


async def test_serve_on_a_port_in_use_raises_oserror(
    registry: CollectorRegistry, checks: Checks
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await serve(build_app(registry, checks), "127.0.0.1", port)


async def test_readyz_says_why_in_words_when_the_process_knows(
    registry: CollectorRegistry, checks: Checks
) -> None:
    checks.state = {"amqp": True, "disk": False}

    def reasons() -> dict[str, str]:
        return {"disk": "0 bytes free, reserve 67108864"}

    handle = await serve(build_app(registry, checks, reasons), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            answer = await http.get(f"{handle.url}/readyz")
    finally:
        await handle.stop()

    assert answer.status_code == 503
    assert answer.json()["reasons"] == {"disk": "0 bytes free, reserve 67108864"}
