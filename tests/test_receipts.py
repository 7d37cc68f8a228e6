"""Receipts on a real RabbitMQ: how many of which kind, that they verify, that they fit the XSD.

A tap queue bound to the receipt exchange beside the portal's own queue sees the exact
bytes of every receipt sent to the portal. To know it holds every receipt sent so far,
the tap sends itself a marker through the same exchange and waits for it: the queue
delivers in the order it was filled.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from lxml import etree

from broker.amqp import publishing, topology
from broker.app import party_signer
from broker.errors import Reason
from broker.receipts.document import (
    Receipt,
    UnknownReason,
    build_receipt,
    read_receipt,
    receipt_schema,
    receipt_schema_errors,
)
from monitoring.labels import ReceiptKind
from signing import Verifier, parse_untrusted
from tests.polling import eventually
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0


@dataclass
class ReceiptTap:
    """Raw receipt bodies routed to one author, in arrival order."""

    channel: AbstractChannel
    marker_key: str  # a routing key of the tap's own, for its markers
    bodies: list[bytes] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)

    async def caught_up(self) -> None:
        """Return once the tap holds every receipt RabbitMQ had routed to the author
        when this was called."""
        marker = secrets.token_hex(8)
        exchange = await self.channel.get_exchange(topology.RECEIPT_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(b"", message_id=marker), self.marker_key)
        await eventually(lambda: marker in self.markers, what="the tap's marker back")

    def for_uuid(self, verifier: Verifier, uuid: str) -> list[tuple[Receipt, bytes]]:
        found = []
        for body in self.bodies:
            signed = verifier.verify(parse_untrusted(body), at=datetime.now(UTC)).signed
            receipt = read_receipt(signed)
            if receipt.nachrichten_uuid == uuid:
                found.append((receipt, body))
        return found


@asynccontextmanager
async def receipt_tap(amqp_url: str, author: str) -> AsyncIterator[ReceiptTap]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    tap = ReceiptTap(channel, f"tap.{secrets.token_hex(4)}")
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.RECEIPT_EXCHANGE, routing_key=author)
    await queue.bind(topology.RECEIPT_EXCHANGE, routing_key=tap.marker_key)

    async def keep(message: AbstractIncomingMessage) -> None:
        if message.routing_key == tap.marker_key:
            tap.markers.add(message.message_id or "")
        else:
            tap.bodies.append(message.body)
        await message.ack()

    await queue.consume(keep)
    try:
        yield tap
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("receipts")) as running:
        yield running


@pytest.fixture(scope="module")
async def tap(world: World, amqp_url: str) -> AsyncIterator[ReceiptTap]:
    async with receipt_tap(amqp_url, world.settings.portal_kennung) as running:
        yield running


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return receipt_schema()


async def _settled(world: World, tap: ReceiptTap, uuid: str) -> list[tuple[Receipt, bytes]]:
    """Every receipt sent for ``uuid``, once the portal holds a final set and the broker
    has recorded the message as handled (after every publish of its handling was
    confirmed): a second receipt of a kind would be in the tap by then."""
    await world.portal.wait_final(uuid, TIMEOUT)
    await world.settled(uuid)
    await tap.caught_up()
    return tap.for_uuid(world.parts.verifier(), uuid)


async def test_an_accepted_message_yields_one_accepted_and_one_delivered_per_recipient(
    world: World, tap: ReceiptTap
) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))

    receipts = await _settled(world, tap, uuid)

    kinds = Counter((r.kind, r.issuer) for r, _ in receipts)
    assert kinds == {
        (ReceiptKind.ACCEPTED, "xbr:broker"): 1,
        (ReceiptKind.DELIVERED, "psw:02000000"): 1,
    }


async def test_a_rejected_message_yields_exactly_one_rejected_receipt(
    world: World, tap: ReceiptTap
) -> None:
    root = world.fresh("invalid-anmeldung-missing-birthdate.xml")
    uuid = world.uuid_of(root)

    await world.portal.submit(root)
    receipts = await _settled(world, tap, uuid)

    assert [r.kind for r, _ in receipts] == [ReceiptKind.REJECTED]


async def test_every_receipt_sent_validates_against_the_receipt_schema(
    world: World, tap: ReceiptTap, schema: etree.XMLSchema
) -> None:
    uuids = [
        await world.portal.submit(world.fresh("anmeldung-norderstedt.xml")),
        await world.portal.submit(world.fresh("gewerbe-anmeldung.xml")),
        await world.portal.submit(world.fresh("invalid-anmeldung-missing-birthdate.xml")),
    ]
    receipts = [pair for uuid in uuids for pair in await _settled(world, tap, uuid)]

    assert {r.kind for r, _ in receipts} == {
        ReceiptKind.ACCEPTED,
        ReceiptKind.DELIVERED,
        ReceiptKind.REJECTED,
    }
    for _, body in receipts:
        assert receipt_schema_errors(schema, parse_untrusted(body)) == ()


async def test_the_portal_keeps_a_receipt_whose_reason_a_later_version_added(
    world: World, amqp_url: str
) -> None:
    settings = world.settings
    uuid = str(uuid4())
    root = build_receipt(
        Receipt(
            ReceiptKind.REJECTED,
            uuid,
            settings.broker_kennung,
            datetime.now(UTC),
            reason=Reason.NO_ROUTE,
            detail="a reason this portal's version does not know",
        )
    )
    grund = root.find("{urn:xbroker:quittung:1}grund")
    assert grund is not None
    grund.set("code", "reason-of-a-later-version")
    body = party_signer(settings, settings.broker_kennung).sign(root)
    dropped = world.portal.invalid_receipts

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.RECEIPT_EXCHANGE)
        await publishing.publish_confirmed(
            exchange,
            publishing.message(body, message_id=str(uuid4())),
            settings.portal_kennung,
            TIMEOUT,
        )
        state = await world.portal.wait_final(uuid, TIMEOUT)
    finally:
        await connection.close()

    [kept] = state.receipts
    assert kept.kind is ReceiptKind.REJECTED
    assert isinstance(kept.reason, UnknownReason)
    assert kept.reason == "reason-of-a-later-version"
    assert world.portal.invalid_receipts == dropped


def test_the_schema_refuses_a_receipt_of_an_unknown_kind(schema: etree.XMLSchema) -> None:
    root = build_receipt(
        Receipt(
            ReceiptKind.ACCEPTED,
            "6f1c2d3e-4a5b-4c6d-8e7f-001122334455",
            "xbr:broker",
            datetime.now(UTC),
        )
    )
    root.set("art", "lost")

    assert receipt_schema_errors(schema, root) != ()


def test_the_schema_refuses_a_digest_that_is_no_sha256(schema: etree.XMLSchema) -> None:
    root = build_receipt(
        Receipt(
            ReceiptKind.ACCEPTED,
            "6f1c2d3e-4a5b-4c6d-8e7f-001122334455",
            "xbr:broker",
            datetime.now(UTC),
            digest="not-a-digest",
        )
    )

    assert receipt_schema_errors(schema, root) != ()
