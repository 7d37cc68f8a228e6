"""One signed submission from portal to agency and back, on a real RabbitMQ node; with
copies confirmed one by one, and with copies and ack committed in a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from broker.errors import DeliveryFailure, Reason
from broker.settings import Settlement
from monitoring.labels import ReceiptKind
from signing import Signer
from signing.devpki import create_ca, issue
from tests.polling import eventually
from tests.world import World, metrics_url_of, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0


@pytest.fixture(scope="module", params=[Settlement.CONFIRM, Settlement.TRANSACTION])
async def world(
    amqp_url: str,
    rabbitmq: object,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[World]:
    async with running_world(
        amqp_url,
        tmp_path_factory.mktemp("state"),
        rabbitmq_metrics_url=metrics_url_of(rabbitmq),
        settlement=request.param,
    ) as running:
        yield running


def _kinds(world: World, uuid: str) -> list[ReceiptKind]:
    return [r.kind for r in world.portal.state(uuid).receipts]


async def test_valid_submission_reaches_exactly_the_named_reader(world: World) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))

    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert _kinds(world, uuid) == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert state.recipients == ("psw:02000000",)
    assert world.receivers_of(uuid) == ["psw:02000000"]


async def test_receipts_are_signed_by_broker_and_agency(world: World) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))

    state = await world.portal.wait_final(uuid, TIMEOUT)

    issuers = {r.kind: r.issuer for r in state.receipts}
    assert issuers == {ReceiptKind.ACCEPTED: "xbr:broker", ReceiptKind.DELIVERED: "psw:02000000"}
    assert world.portal.invalid_receipts == 0


async def test_submission_without_reader_goes_to_the_agency_of_its_region(world: World) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-norderstedt.xml"))

    await world.portal.wait_final(uuid, TIMEOUT)

    assert world.receivers_of(uuid) == ["psw:01060063"]


async def test_agency_gets_the_bytes_the_author_signed(world: World) -> None:
    signed = world.portal_signer.sign(world.fresh("gewerbe-anmeldung.xml"))
    uuid = await world.portal.submit(signed, sign=False)

    await world.portal.wait_final(uuid, TIMEOUT)

    (delivery,) = world.received["gew:02000000"][-1:]
    assert delivery.uuid == uuid
    assert delivery.body == signed


def _tamper(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    leaves = [
        e
        for e in root.iter()
        if isinstance(e.tag, str) and "xmldsig" not in e.tag and len(e) == 0 and e.text
    ]
    leaves[-1].text = f"{leaves[-1].text}X"
    return etree.tostring(root)


async def _rejection(
    world: World, body: bytes, uuid: str
) -> tuple[Reason | DeliveryFailure | None, str]:
    await world.portal.submit(body, sign=False)
    state = await world.portal.wait_final(uuid, TIMEOUT)
    assert _kinds(world, uuid) == [ReceiptKind.REJECTED]
    assert world.receivers_of(uuid) == []
    (receipt,) = state.receipts
    return receipt.reason, str(receipt.detail)


async def test_payload_tampered_after_signing_is_rejected(world: World) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)

    reason, _ = await _rejection(world, _tamper(world.portal_signer.sign(root)), uuid)

    assert reason is Reason.DIGEST_MISMATCH


async def test_message_signed_by_unknown_key_is_rejected(world: World, tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "Somebody Else's CA")
    issue(tmp_path / "ca", "osi:hh-portal", "Hamburg Service-Portal (forged)", tmp_path / "out")
    stranger = Signer.from_files(
        tmp_path / "out" / "osi_hh-portal.key", tmp_path / "out" / "osi_hh-portal.crt"
    )
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)

    reason, _ = await _rejection(world, stranger.sign(root), uuid)

    assert reason is Reason.CERTIFICATE_UNTRUSTED


async def test_schema_violation_is_rejected_with_its_report(world: World) -> None:
    root = world.fresh("invalid-anmeldung-missing-birthdate.xml")
    uuid = world.uuid_of(root)

    await world.portal.submit(world.portal_signer.sign(root), sign=False)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    (receipt,) = state.receipts
    assert receipt.kind is ReceiptKind.REJECTED
    assert receipt.reason is Reason.SCHEMA_INVALID
    assert receipt.issues, "the rejection carries the validation report"
    assert world.receivers_of(uuid) == []


async def test_resubmitted_message_is_answered_as_duplicate_and_not_delivered_again(
    world: World,
) -> None:
    signed = world.portal_signer.sign(world.fresh("anmeldung-hamburg.xml"))
    uuid = await world.portal.submit(signed, sign=False)
    await world.portal.wait_final(uuid, TIMEOUT)
    await world.settled(uuid)

    await world.portal.submit(signed, sign=False)
    await eventually(
        lambda: ReceiptKind.DUPLICATE in _kinds(world, uuid), what="a duplicate receipt"
    )

    assert world.receivers_of(uuid) == ["psw:02000000"]


async def test_queue_gauges_cover_every_agency_inbox(world: World) -> None:
    def gauge(name: str, agency: str) -> float | None:
        return world.registry.get_sample_value(name, {"agency": agency})

    # RabbitMQ refreshes its queue statistics every few seconds.
    await eventually(
        lambda: gauge("xbroker_agency_queue_consumers", "psw:02000000") == 1,
        what="one consumer on psw:02000000's inbox in the gauge",
    )

    assert gauge("xbroker_agency_queue_messages", "gew:02000000") is not None
    assert gauge("xbroker_agency_dead_letter_messages", "psw:02000000") is not None
    assert gauge("xbroker_agency_queue_messages", "osi:hh-portal") is None, "a sender has no inbox"
