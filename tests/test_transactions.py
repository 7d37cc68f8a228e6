"""Settlement in AMQP transactions (`broker.amqp.transactions`), on a real RabbitMQ node.

A consumed message's publishes and its ack go to RabbitMQ together: settled messages are
committed in groups, and a commit that does not get through (its connection lost, its
timeout passed) is all or nothing, never the publishes without the ack or the ack
without the publishes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from broker.amqp.transactions import CommitError, Disposition, Publish, Transactions
from tests.polling import eventually

pytestmark = pytest.mark.rabbitmq

Settle = Callable[[AbstractIncomingMessage], Awaitable[None]]


@pytest.fixture
async def connection(module_vhost_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(module_vhost_url)
    async with connection:
        yield connection


async def _queues(channel: AbstractChannel) -> tuple[str, str]:
    """A source and a destination quorum queue of this test's own."""
    names = []
    for role in ("source", "destination"):
        name = f"tx-{role}-{secrets.token_hex(4)}"
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        names.append(name)
    return names[0], names[1]


async def _fill(channel: AbstractChannel, queue: str, count: int) -> None:
    for n in range(count):
        await channel.default_exchange.publish(
            aio_pika.Message(f"m{n}".encode(), message_id=f"m{n}"), queue
        )


async def _count(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` now (a robust channel's declare_queue would answer
    from its first declaration)."""
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    assert declared.message_count is not None
    return declared.message_count


def _forward(destination: str, message: AbstractIncomingMessage) -> Publish:
    return Publish("", destination, aio_pika.Message(message.body, message_id=message.message_id))


async def _consume(
    connection: AbstractRobustConnection, source: str, handle: Settle
) -> AbstractChannel:
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=50)
    queue = await channel.get_queue(source, ensure=False)
    await queue.consume(handle)
    return channel


async def test_messages_settled_together_are_committed_in_groups(
    connection: AbstractRobustConnection,
) -> None:
    control = await connection.channel()
    source, destination = await _queues(control)
    await _fill(control, source, 200)
    transactions = Transactions(timeout=10.0)

    async def handle(message: AbstractIncomingMessage) -> None:
        await transactions.settle(message, [_forward(destination, message)] * 2)

    await _consume(connection, source, handle)
    await eventually(lambda: transactions.settled == 200, what="200 settled", timeout=60)

    assert await _count(control, destination) == 400
    assert await _count(control, source) == 0
    assert transactions.commits < 200, "settlements share commits"


async def test_requeue_and_dead_letter_are_settled_in_the_commit(
    connection: AbstractRobustConnection,
) -> None:
    control = await connection.channel()
    source, destination = await _queues(control)
    await _fill(control, source, 2)
    transactions = Transactions(timeout=10.0)
    seen: list[str | None] = []

    async def handle(message: AbstractIncomingMessage) -> None:
        seen.append(message.message_id)
        if message.message_id == "m0" and not message.redelivered:
            await transactions.settle(
                message, [_forward(destination, message)], Disposition.REQUEUE
            )
        else:
            await transactions.settle(message, (), Disposition.DEAD_LETTER)

    await _consume(connection, source, handle)
    await eventually(lambda: transactions.settled == 3, what="three settlements", timeout=30)

    # m0 came back once; the publish of its requeued attempt is in the destination.
    assert sorted(seen) == ["m0", "m0", "m1"]
    assert await _count(control, source) == 0
    assert await _count(control, destination) == 1


async def test_a_commit_that_times_out_is_all_or_nothing(
    connection: AbstractRobustConnection,
) -> None:
    control = await connection.channel()
    source, destination = await _queues(control)
    await _fill(control, source, 1)
    transactions = Transactions(timeout=10.0)
    failures: list[Exception] = []
    deliveries = 0

    async def handle(message: AbstractIncomingMessage) -> None:
        nonlocal deliveries
        deliveries += 1
        if deliveries == 1:
            channel = message.channel
            await channel.tx_select()  # so that only the commit can be late
            transactions._selected = channel
            transactions._timeout = 1e-6
        else:
            transactions._timeout = 10.0
        try:
            await transactions.settle(message, [_forward(destination, message)])
        except CommitError as exc:
            failures.append(exc)

    await _consume(connection, source, handle)
    await eventually(lambda: failures, what="the late commit", timeout=30)
    await eventually(
        lambda: transactions.settled == 1 or deliveries == 1, what="settled", timeout=30
    )
    await asyncio.sleep(1.0)  # a redelivery, if any, has come and been settled

    published = await _count(control, destination)
    assert await _count(control, source) == 0
    # Either the late commit went through (published, not delivered again) or it did not
    # (delivered again and published then): one copy either way.
    assert published == 1
    assert deliveries in (1, 2)
    assert (deliveries == 2) == (transactions.settled == 1)
