"""The XML attack corpus sent to the running broker: each gets a signed rejection, the
worker survives every one and goes on accepting valid mail."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator

import aio_pika
import pytest

from broker.amqp import publishing, topology
from broker.errors import Reason
from broker.worker.service import Lifecycle
from monitoring.labels import ReceiptKind
from tests.attacks.test_xml_attacks import CORPUS
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("attacks")) as running:
        yield running


async def test_every_attack_is_rejected_as_malformed_and_the_worker_survives(
    world: World, amqp_url: str
) -> None:
    sent: dict[str, str] = {}
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        ingress = await channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
        for name, body in CORPUS.items():
            message_id = str(uuidlib.uuid4())
            sent[message_id] = name
            await publishing.publish_confirmed(
                ingress,
                publishing.message(body, message_id=message_id, reply_to=world.portal.kennung),
                topology.INGRESS_ROUTING_KEY,
                10.0,
            )
    finally:
        await connection.close()

    for message_id, name in sent.items():
        state = await world.portal.wait_final(message_id, TIMEOUT)
        (receipt,) = state.receipts
        assert (receipt.kind, receipt.reason) == (ReceiptKind.REJECTED, Reason.MALFORMED_XML), name

    assert world.broker.state is Lifecycle.RUNNING
    valid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
    after = await world.portal.wait_final(valid, TIMEOUT)
    assert [r.kind for r in after.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
