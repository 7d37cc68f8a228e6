"""Receipts on a real RabbitMQ: how many of which kind, that they verify, that they fit the XSD.

A tap queue bound to the receipt exchange beside the portal's own queue sees the exact
bytes of every receipt sent to the portal.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
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
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0


@dataclass
class ReceiptTap:
    """Raw receipt bodies routed to one author, in arrival order."""

    bodies: list[bytes] = field(default_factory=list)

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
    tap = ReceiptTap()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.RECEIPT_EXCHANGE, routing_key=author)

    async def keep(message: AbstractIncomingMessage) -> None:
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
    await world.portal.wait_final(uuid, TIMEOUT)
    expected = len(world.portal.state(uuid).receipts)
    async with asyncio.timeout(TIMEOUT):
        while len(tap.for_uuid(world.parts.verifier(), uuid)) < expected:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a second receipt of a kind would arrive by now
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
