"""A worker that settles in AMQP transactions (``settlement = "transaction"``).

The common paths run with both settlements in test_end_to_end and test_poison; here is
what only a transaction has: a commit that is lost. A node lost in the middle of a
commit can apply the ack of the ingress message and not its copies
(`broker.amqp.transactions`); the worker cannot tell that from a commit that did
nothing, so it publishes the copies again with confirms. Which of the two a real node
failure gives cannot be chosen in a test, so the commit is made to apply the ack alone
(the worse one, which would lose the copies) and to fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from broker.amqp import topology
from broker.amqp.transactions import CommitError, Disposition, Publish
from broker.settings import Settlement
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.world import World, fan_out_directory, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0
FAN_OUT = "gewerbe-anmeldung.xml"  # to the trade office, the tax office and the chamber
NOTIFIED = ("fa:02000000", "ihk:02000000")  # no client runs for them in this world


@pytest.fixture
async def world(module_vhost_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(
        module_vhost_url,
        tmp_path / "state",
        directory=fan_out_directory(tmp_path),
        settlement=Settlement.TRANSACTION,
    ) as running:
        yield running


async def test_a_commit_lost_after_the_ack_applied_loses_no_copy(
    world: World, module_vhost_url: str
) -> None:
    transactions = world.broker._transactions
    assert transactions is not None
    settle = transactions.settle
    lost: list[str | None] = []

    async def ack_applied_then_lost(
        message: AbstractIncomingMessage,
        publishes: Sequence[Publish] = (),
        disposition: Disposition = Disposition.ACK,
    ) -> None:
        if lost or disposition is not Disposition.ACK or not publishes:
            await settle(message, publishes, disposition)
            return
        lost.append(message.message_id)
        await message.ack()  # outside any transaction: applied at once, the copies never
        raise CommitError("connection lost during the commit")

    transactions.settle = ack_applied_then_lost  # type: ignore[method-assign]
    root = world.fresh(FAN_OUT)
    uuid = world.uuid_of(root)
    await world.portal.submit(root)

    # The trade office runs a client here; the notified offices' copies wait in their
    # inboxes.
    await eventually(lambda: world.receivers_of(uuid), what="the trade office's copy")
    waiting = await eventually(
        lambda: _ready(module_vhost_url, NOTIFIED),
        what="the notified offices' copies",
        until=lambda counts: sum(counts.values()) >= 2,
        timeout=TIMEOUT,
    )
    await asyncio.sleep(1.0)  # a copy published twice would be there by now
    waiting = await _ready(module_vhost_url, NOTIFIED)

    assert lost == [uuid]
    assert world.receivers_of(uuid) == ["gew:02000000"]
    assert waiting == {kennung: 1 for kennung in NOTIFIED}
    # The ack was applied: the message did not come back, and was accepted once.
    receipts = [r.kind for r in world.portal.state(uuid).receipts]
    assert receipts.count(ReceiptKind.ACCEPTED) == 1


async def _ready(url: str, agencies: Sequence[str]) -> dict[str, int]:
    """Copies waiting in each agency's inbox."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await (await connection.channel()).get_underlay_channel()
        counts = {}
        for kennung in agencies:
            declared = await channel.queue_declare(topology.agency_queue(kennung), passive=True)
            counts[kennung] = declared.message_count or 0
        return counts
