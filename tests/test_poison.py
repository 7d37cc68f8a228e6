"""Messages that cannot succeed end in one place, once; a missing queue is repaired.

* A rejection nobody can receive (the sender has no receipt queue) parks the message in
  ``xbroker.ingress.dead``, once, counted; it does not loop through the failures queue.
* A message that fails by itself on a healthy worker is tried again after growing delays,
  then dead-lettered; its author gets one ``failed`` receipt naming no recipient, which
  the portal SDK takes as final.
* An agency inbox deleted under a running broker is declared again when a copy finds it
  missing; the other recipients' copies are not published a second time.

Each runs with both settlements: copies confirmed one by one, and copies committed with
the ack in a transaction (where a copy whose inbox is gone is kept by the alternate
exchange and placed by `broker.worker.unroutable`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from broker.amqp import topology
from broker.app import party_keys, party_signer
from broker.errors import DeliveryFailure
from broker.pipeline import Accepted, Pipeline, Rejected
from broker.receipts.document import Receipt
from broker.sdk.agency import IN_MEMORY, AgencyClient, Delivery
from broker.sdk.portal import SubmissionState
from broker.settings import Settlement
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.world import World, fan_out_directory, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0
FAN_OUT = "gewerbe-anmeldung.xml"  # to the trade office, notified: tax office, chamber


@pytest.fixture(params=[Settlement.CONFIRM, Settlement.TRANSACTION])
async def world(
    module_vhost_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    directory = fan_out_directory(tmp_path)
    async with running_world(
        module_vhost_url,
        tmp_path / "state",
        directory=directory,
        retry_delay_seconds=0.05,
        settlement=request.param,
    ) as running:
        yield running


async def drain(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in ``queue`` now, taken out."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        taken = []
        while (message := await source.get(fail=False, timeout=5)) is not None:
            await message.ack()
            taken.append(message)
        return taken


async def publish_raw(url: str, body: bytes, uuid: str, reply_to: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(body, message_id=uuid, reply_to=reply_to),
            topology.INGRESS_ROUTING_KEY,
            timeout=10,
        )


def metric(world: World, name: str) -> float:
    return world.registry.get_sample_value(name) or 0.0


async def test_a_rejection_nobody_can_receive_is_parked_once_and_counted(
    world: World, module_vhost_url: str
) -> None:
    await publish_raw(module_vhost_url, b"<not xml", "parked-1", reply_to="fa:02000000")

    await eventually(
        lambda: metric(world, "xbroker_receipts_undeliverable_total") >= 1,
        what="the undeliverable rejection counted",
        timeout=TIMEOUT,
    )
    await eventually(
        lambda: metric(world, "xbroker_messages_in_flight") == 0,
        what="nothing in flight",
        timeout=TIMEOUT,
    )

    parked = await drain(module_vhost_url, f"{topology.INGRESS_QUEUE}.dead")
    assert [m.message_id for m in parked] == ["parked-1"]
    assert await drain(module_vhost_url, f"{topology.FAILURE_QUEUE}.dead") == []
    assert await drain(module_vhost_url, topology.receipt_queue("osi:hh-portal")) == []
    assert metric(world, "xbroker_receipts_undeliverable_total") == 1


async def test_a_message_failing_by_itself_is_retried_later_then_failed_once_and_final(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = world.fresh(FAN_OUT)
    uuid = world.uuid_of(root)
    decide = Pipeline.process

    def broken(pipeline: Pipeline, body: bytes, *, at: datetime) -> Accepted | Rejected:
        if uuid.encode() in body:
            raise RuntimeError("a bug this message meets")
        return decide(pipeline, body, at=at)

    monkeypatch.setattr(Pipeline, "process", broken)

    started = time.monotonic()
    await world.portal.submit(root)
    state = await world.portal.wait_final(uuid, TIMEOUT)
    took = time.monotonic() - started

    assert [(r.kind, r.recipients, r.reason) for r in state.receipts] == [
        (ReceiptKind.FAILED, (), DeliveryFailure.UNDELIVERABLE)
    ]
    limit = world.settings.delivery_limit
    assert metric(world, "xbroker_message_retries_total") == limit + 1
    # 0.05 s before the 2nd attempt, twice as long before each next one.
    assert took >= sum(0.05 * 2**n for n in range(limit))
    assert world.receivers_of(uuid) == []


async def test_a_deleted_inbox_is_declared_again_and_no_sibling_copy_repeats(
    world: World, module_vhost_url: str
) -> None:
    inbox = topology.agency_queue("fa:02000000")
    connection = await aio_pika.connect(module_vhost_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(inbox, if_unused=False, if_empty=False)

        async def gone() -> bool:
            # A quorum queue goes a moment after its delete-ok; declared again before,
            # it would vanish with the copy in it.
            probe = await connection.channel()
            try:
                await probe.declare_queue(inbox, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return True
            await probe.close()
            return False

        await eventually(gone, what="the inbox deleted", timeout=TIMEOUT, interval=0.1)

    root = world.fresh(FAN_OUT)
    uuid = world.uuid_of(root)
    await world.portal.submit(root)
    await world.settled(uuid, TIMEOUT)
    # Settled in a transaction, the copy waits in xbroker.unroutable until a worker has
    # declared its inbox again; with confirms that happened before the settlement.
    await eventually(
        lambda: metric(world, "xbroker_topology_repairs_total") == 1,
        what="the inbox declared again",
        timeout=TIMEOUT,
    )

    # The notified offices run no client in this world: theirs start now, after the repair.
    received: list[tuple[str, str]] = []
    clients = []
    for kennung in ("fa:02000000", "ihk:02000000"):

        async def handle(delivery: Delivery, kennung: str = kennung) -> None:
            received.append((kennung, delivery.uuid))

        clients.append(
            AgencyClient(
                module_vhost_url,
                kennung,
                party_signer(world.settings, kennung),
                world.parts.verifier(),
                handle,
                seen_path=IN_MEMORY,
                keys=party_keys(world.settings, kennung),
            )
        )
    try:
        for client in clients:
            await client.start()
        state = await world.portal.wait_final(uuid, TIMEOUT)
    finally:
        for client in clients:
            await client.close()

    assert sorted(received) == [("fa:02000000", uuid), ("ihk:02000000", uuid)]
    assert world.receivers_of(uuid) == ["gew:02000000"]
    assert metric(world, "xbroker_topology_repairs_total") == 1
    assert [r.kind for r in state.receipts].count(ReceiptKind.DELIVERED) == 3


def test_a_failed_receipt_naming_no_recipient_is_final() -> None:
    state = SubmissionState("u")
    state.add(_receipt(ReceiptKind.FAILED, recipients=()))
    assert state.final


def test_a_failed_receipt_for_one_copy_is_not_final_while_others_wait() -> None:
    state = SubmissionState("u")
    state.add(_receipt(ReceiptKind.ACCEPTED, recipients=("a", "b")))
    state.add(_receipt(ReceiptKind.FAILED, recipients=("a",)))
    assert not state.final


def _receipt(kind: ReceiptKind, recipients: tuple[str, ...]) -> Receipt:
    return Receipt(
        kind=kind,
        nachrichten_uuid="u",
        issuer="xbr:broker",
        issued=datetime.now(UTC),
        recipients=recipients,
    )
