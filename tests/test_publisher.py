"""`broker.amqp.publishing.Publisher`: a channel that let a confirm time out is replaced.

RabbitMQ 3.10 has channels that stop confirming for good; the portal SDK and the HTTP
ingress publish through a `Publisher`, so one timed-out confirm costs them one channel,
not every later publish. A deadline no confirm can meet stands in for the stuck channel:
what matters is what the publisher does after the timeout, on a real node.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from broker.amqp import publishing
from broker.amqp.connection import connect_first
from broker.errors import ConfirmTimeoutError

EXCHANGE = "t.publisher"
KEY = "k"
NO_CONFIRM_CAN_MEET = 1e-6  # seconds: a confirm needs a round trip to the node


async def test_a_channel_whose_confirm_timed_out_is_replaced_and_receiving_goes_on(
    module_vhost_url: str,
) -> None:
    connection = await connect_first([module_vhost_url], "test-publisher")
    async with connection:
        receiving = await connection.channel()
        exchange = await receiving.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT)
        queue = await receiving.declare_queue("", exclusive=True)
        await queue.bind(exchange, KEY)
        received: asyncio.Queue[str | None] = asyncio.Queue()

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            await received.put(message.message_id)

        await queue.consume(take)
        publisher = publishing.Publisher(connection, EXCHANGE)

        def msg(n: int) -> aio_pika.Message:
            return publishing.message(b"<x/>", message_id=f"m{n}")

        await publisher.publish(msg(1), KEY, 10.0)
        with pytest.raises(ConfirmTimeoutError):
            await publisher.publish(msg(2), KEY, NO_CONFIRM_CAN_MEET)
        assert publisher.channels_replaced == 1

        await publisher.publish(msg(3), KEY, 10.0)  # on a new channel, confirmed

        assert publisher.channels_replaced == 1
        seen = set()
        async with asyncio.timeout(30):
            while not {"m1", "m3"} <= seen:
                seen.add(await received.get())
        assert not receiving.is_closed
