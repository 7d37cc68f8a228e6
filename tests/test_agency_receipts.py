"""The agency SDK acks a copy only once its delivery receipt is confirmed, and retries it.

The delivery-receipt queue is unbound from its exchange for a while, so RabbitMQ returns
every receipt as unroutable: the copy has been handled, but stays unacked with the agency,
which keeps trying. Once the binding is back the receipt goes through, the copy is acked,
and the author's message is final; the handler ran once.

A receipt whose confirm timed out goes out again on a new channel: RabbitMQ 3.10 has
channels that stop confirming for good, and the copy stays held on the consuming one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest

from broker.amqp import topology
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0
AGENCY = "psw:02000000"


@pytest.fixture
async def world(module_vhost_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(module_vhost_url, tmp_path / "state", agencies={AGENCY}) as running:
        yield running


def unacked(rabbitmqctl: Callable[..., str], vhost: str, queue: str) -> int:
    listed = rabbitmqctl("list_queues", "-p", vhost, "name", "messages_unacknowledged")
    for line in listed.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0


async def test_a_copy_stays_unacked_until_its_delivery_receipt_is_confirmed(
    world: World, module_vhost_url: str, rabbitmqctl: Callable[..., str]
) -> None:
    vhost = unquote(urlsplit(module_vhost_url).path.lstrip("/"))
    connection = await aio_pika.connect(module_vhost_url)
    channel = await connection.channel()
    receipts = await channel.get_queue(topology.DELIVERY_RECEIPT_QUEUE, ensure=False)
    binding = (topology.DELIVERY_RECEIPT_EXCHANGE, topology.DELIVERY_RECEIPT_ROUTING_KEY)
    await receipts.unbind(*binding)
    agency = world.agencies[AGENCY]
    try:
        uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
        await eventually(
            lambda: agency.receipt_retries >= 2,
            what="the delivery receipt retried twice",
            timeout=TIMEOUT,
        )
        inbox = topology.agency_queue(AGENCY)
        await eventually(  # the node's counts lag by seconds
            lambda: asyncio.to_thread(unacked, rabbitmqctl, vhost, inbox),
            what="the copy unacked in the inbox",
            until=lambda count: count == 1,
            timeout=TIMEOUT,
            interval=0.5,
        )
        assert agency.receipt_retries >= 2, "still retrying: the copy was not acked meanwhile"
    finally:
        await receipts.bind(*binding)
        await connection.close()

    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert world.receivers_of(uuid) == [AGENCY]  # handled once, confirmed later


async def test_a_receipt_whose_confirm_timed_out_goes_out_on_a_new_channel(world: World) -> None:
    agency = world.agencies[AGENCY]
    agency.confirm_timeout = 1e-6  # no confirm comes back that fast
    try:
        uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
        await eventually(
            lambda: agency.receipt_channels_replaced,
            what="the receipt channel replaced after a confirm timeout",
            timeout=TIMEOUT,
        )
    finally:
        agency.confirm_timeout = 5.0

    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert agency.receipt_retries >= 1
    assert world.receivers_of(uuid) == [AGENCY]  # the handler ran once
