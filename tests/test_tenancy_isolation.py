"""Isolation on a real RabbitMQ node: each party connects as the user provisioned for it.

The broker runs as the node's user; the two Meldebehörden and the portal get users made
by `broker.ops.tenancy.accounts.provision` through rabbitmqctl (names prefixed per run,
because users belong to the node, not to the test session's vhost), deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiormq
import pytest
from prometheus_client import CollectorRegistry

from broker.amqp import topology
from broker.app import build_broker, load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.ops.tenancy.accounts import (
    accounts_for,
    amqp_url_for,
    provision,
    read_credentials,
)
from broker.ops.tenancy.backends import RabbitmqctlBackend
from broker.sdk.agency import IN_MEMORY, Delivery
from broker.sdk.portal import Portal
from broker.settings import load_settings
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from tests.conftest import RabbitMQ
from tests.world import agency_client
from xta_schemas import Catalog
from xta_schemas.samples import with_fresh_header

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
A, B = "psw:02000000", "psw:01060063"
TIMEOUT = 30.0


@dataclass
class Tenants:
    urls: dict[str, str]  # kennung → AMQP URL with that party's own credentials
    portal: Portal
    received: list[Delivery]


@pytest.fixture(scope="module")
async def tenants(
    amqp_url: str,
    rabbitmqctl: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Tenants]:
    state = tmp_path_factory.mktemp("tenancy")
    settings = load_settings(
        EXAMPLES / "xbroker.toml", amqp_url=amqp_url, state_dir=state, metrics_port=0
    )
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    broker = build_broker(parts, CollectorRegistry())
    await broker.start()
    backend = RabbitmqctlBackend(request.config.rootpath)
    accounts = accounts_for(
        parts.directory,
        only=[A, B, settings.portal_kennung],
        user_prefix=f"t{secrets.token_hex(3)}-",
    )
    credentials = state / "amqp-credentials.json"
    provision(accounts, backend, amqp_url=amqp_url, credentials=credentials)
    urls = {k: v["amqp_url"] for k, v in read_credentials(credentials).items()}
    received: list[Delivery] = []

    async def record(delivery: Delivery) -> None:
        received.append(delivery)

    agency = agency_client(urls[A], settings, parts, A, record, IN_MEMORY)
    portal = Portal(
        urls[settings.portal_kennung],
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
    )
    try:
        await agency.start()
        await portal.start()
        yield Tenants(urls, portal, received)
    finally:
        await portal.close()
        await agency.close()
        await broker.stop()
        for account in accounts:
            backend.delete_user(account.user)


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that is never called: the consume itself is refused."""


async def _channel_of(
    url: str,
) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url)
    return connection, await connection.channel(publisher_confirms=True)


async def test_an_agency_cannot_consume_another_agencys_inbox(tenants: Tenants) -> None:
    connection, channel = await _channel_of(tenants.urls[A])
    async with connection:
        queue = await channel.get_queue(topology.agency_queue(B))  # passive: allowed

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(_ignore)


async def test_an_agency_cannot_publish_into_the_delivery_exchange(tenants: Tenants) -> None:
    connection, channel = await _channel_of(tenants.urls[A])
    async with connection:
        exchange = await channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await exchange.publish(
                aio_pika.Message(b"<forged/>"), topology.agency_routing_key(B), timeout=10
            )


async def test_an_agency_cannot_read_the_portals_receipts(tenants: Tenants) -> None:
    connection, channel = await _channel_of(tenants.urls[B])
    async with connection:
        queue = await channel.get_queue(topology.receipt_queue("osi:hh-portal"))

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(_ignore)


async def test_an_agency_cannot_declare_a_queue(tenants: Tenants) -> None:
    connection, channel = await _channel_of(tenants.urls[A])
    async with connection:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue(f"agency.{A}.side-door", durable=True)


async def test_the_portal_cannot_read_an_agencys_inbox(tenants: Tenants) -> None:
    connection, channel = await _channel_of(tenants.urls["osi:hh-portal"])
    async with connection:
        queue = await channel.get_queue(topology.agency_queue(A))

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(_ignore)


async def test_with_its_own_user_an_agency_receives_and_confirms_end_to_end(
    tenants: Tenants,
) -> None:
    root = parse_untrusted((EXAMPLES / "submissions" / "anmeldung-hamburg.xml").read_bytes())
    standard, _ = Catalog.load(()).identify(root)
    uuid = await tenants.portal.submit(with_fresh_header(root, standard))

    state = await tenants.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert {r.issuer for r in state.receipts if r.kind is ReceiptKind.DELIVERED} == {A}
    assert [d.uuid for d in tenants.received] == [uuid]


async def test_a_passive_declare_of_another_agencys_inbox_tells_its_counts_and_no_more(
    tenants: Tenants,
) -> None:
    # What docs/tenancy.md says a tenant can learn: existence, ready messages, consumers.
    connection, channel = await _channel_of(tenants.urls[A])
    async with connection:
        queue = await channel.declare_queue(topology.agency_queue(B), passive=True)
        counts = queue.declaration_result

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.get(timeout=10)
    assert isinstance(counts.message_count, int)
    assert isinstance(counts.consumer_count, int)


async def test_no_permission_prevents_a_passive_declare(
    tenants: Tenants, rabbitmq: RabbitMQ, rabbitmqctl: Callable[..., str]
) -> None:
    # RabbitMQ 3.10 checks no permission for a passive queue.declare: a user granted
    # nothing at all ("^$" three times) still learns the counts of any queue by name.
    user, password = f"nothing-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", rabbitmq.vhost, user, "^$", "^$", "^$")
        url = amqp_url_for(rabbitmq.amqp_url, user, password)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.INGRESS_QUEUE, passive=True)
            assert isinstance(queue.declaration_result.message_count, int)
    finally:
        rabbitmqctl("delete_user", user)
