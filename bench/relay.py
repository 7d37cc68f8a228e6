"""The bare relay: the ceiling xbroker is measured against.

It does what the broker worker does with RabbitMQ and nothing else: consume from a quorum
queue with the broker's prefetch, publish each message persistently to another quorum
queue through a direct exchange with publisher confirms (mandatory, one awaited confirm
per message, as ``broker.amqp.publishing`` does), then ack. Same client library, same
process model (``python -m bench.relay`` processes), so the distance to the broker is
the cost of xbroker's own work.

With ``PUBLISHES`` 2 it also publishes every message to a side queue, both publishes at
once, each confirmed, before the ack: the AMQP work of the broker's ingress (the copy
and the accepted receipt) without any of its checks. The broker cannot beat that; the
distance to it is what xbroker's Python costs beyond the protocol it speaks.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, ExchangeType

__all__ = ["RELAY_EXCHANGE", "RELAY_IN", "RELAY_OUT", "RELAY_SIDE", "declare", "main", "relay"]

RELAY_IN = "bench.relay.in"
RELAY_OUT = "bench.relay.out"
RELAY_SIDE = "bench.relay.side"  # the second publish of a two-publish relay
RELAY_EXCHANGE = "bench.relay"


async def declare(channel: AbstractChannel) -> None:
    """The relay's exchange and its quorum queues: in, out and side (idempotent)."""
    exchange = await channel.declare_exchange(RELAY_EXCHANGE, ExchangeType.DIRECT, durable=True)
    for name in (RELAY_IN, RELAY_OUT, RELAY_SIDE):
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key=name)


async def relay(url: str, prefetch: int, stop: asyncio.Event, publishes: int = 1) -> None:
    """Relay RELAY_IN → RELAY_OUT (and RELAY_SIDE if ``publishes`` is 2) until ``stop``."""
    targets = (RELAY_OUT, RELAY_SIDE)[:publishes]
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.get_exchange(RELAY_EXCHANGE)
        queue = await channel.get_queue(RELAY_IN)

        async def publish(message: AbstractIncomingMessage, routing_key: str) -> None:
            await exchange.publish(
                aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    headers=message.headers,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    timestamp=message.timestamp,
                ),
                routing_key,
                mandatory=True,
                timeout=30,
            )

        async def forward(message: AbstractIncomingMessage) -> None:
            if len(targets) == 1:
                await publish(message, targets[0])
            else:
                await asyncio.gather(*(publish(message, target) for target in targets))
            await message.ack()

        tag = await queue.consume(forward)
        await stop.wait()
        await queue.cancel(tag)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.relay URL PREFETCH [PUBLISHES]``: relay until SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[2:] not in ([], ["1"], ["2"]):
        print("usage: python -m bench.relay AMQP_URL PREFETCH [1|2]", file=sys.stderr)
        return 2
    publishes = int(args[2]) if len(args) == 3 else 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await relay(args[0], int(args[1]), stop, publishes)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
