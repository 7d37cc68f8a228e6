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

How a relay settles (`Settle`): ``confirm`` as above; ``tx`` puts its consuming channel
in AMQP transaction mode and commits what has arrived in one go: the publishes of every
message delivered since the last commit and their acks, then ``tx.commit``. A relay
killed before a commit has published nothing of it and acked nothing of it, so its
successor relays those messages once more and no copy exists twice; with confirms, a
copy confirmed before the kill and not yet acked is published again (`bench.settle`
counts both).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractTransaction,
    ExchangeType,
)

__all__ = [
    "RELAY_EXCHANGE",
    "RELAY_IN",
    "RELAY_OUT",
    "RELAY_SIDE",
    "Settle",
    "declare",
    "main",
    "relay",
]

RELAY_IN = "bench.relay.in"
RELAY_OUT = "bench.relay.out"
RELAY_SIDE = "bench.relay.side"  # the second publish of a two-publish relay
RELAY_EXCHANGE = "bench.relay"
_COMMIT_TIMEOUT = 30.0  # a commit can hang like a confirm (RabbitMQ 3.10)


class Settle(Enum):
    """How a relay makes what it forwarded safe before it lets the input go."""

    CONFIRM = "confirm"  # each publish confirmed, then the ack
    TX = "tx"  # publishes and acks of a burst in one AMQP transaction


async def declare(channel: AbstractChannel) -> None:
    """The relay's exchange and its quorum queues: in, out and side (idempotent)."""
    exchange = await channel.declare_exchange(RELAY_EXCHANGE, ExchangeType.DIRECT, durable=True)
    for name in (RELAY_IN, RELAY_OUT, RELAY_SIDE):
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key=name)


async def relay(
    url: str,
    prefetch: int,
    stop: asyncio.Event,
    publishes: int = 1,
    settle: Settle = Settle.CONFIRM,
) -> None:
    """Relay RELAY_IN → RELAY_OUT (and RELAY_SIDE if ``publishes`` is 2) until ``stop``."""
    targets = (RELAY_OUT, RELAY_SIDE)[:publishes]
    confirms = settle is Settle.CONFIRM
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
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
                # In a transaction the commit is the confirm; an alternate exchange, not
                # a return, would catch what no queue takes.
                mandatory=confirms,
                timeout=30 if confirms else None,
            )

        async def forward(message: AbstractIncomingMessage) -> None:
            if len(targets) == 1:
                await publish(message, targets[0])
            else:
                await asyncio.gather(*(publish(message, target) for target in targets))
            await message.ack()

        if confirms:
            tag = await queue.consume(forward)
            await stop.wait()
        else:
            arrived: list[AbstractIncomingMessage] = []
            wake = asyncio.Event()

            async def take(message: AbstractIncomingMessage) -> None:
                arrived.append(message)
                wake.set()

            transaction = channel.transaction()
            await transaction.select()
            tag = await queue.consume(take)
            committing = asyncio.create_task(_commit_bursts(transaction, arrived, wake, forward))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait((committing, stopping), return_when=asyncio.FIRST_COMPLETED)
            if committing.done():  # a commit failed: the relay ends with its error
                stopping.cancel()
                committing.result()
            committing.cancel()
        await queue.cancel(tag)


async def _commit_bursts(
    transaction: AbstractTransaction,
    arrived: list[AbstractIncomingMessage],
    wake: asyncio.Event,
    forward: Callable[[AbstractIncomingMessage], Awaitable[None]],
) -> None:
    """Forward what has arrived and commit it, burst after burst. Nothing else writes on
    the channel meanwhile, so a commit holds whole messages only: each one's publishes
    with its ack."""
    while True:
        await wake.wait()
        wake.clear()
        burst = arrived[:]
        arrived.clear()
        for message in burst:
            await forward(message)
        await asyncio.wait_for(transaction.commit(), _COMMIT_TIMEOUT)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.relay URL PREFETCH [PUBLISHES [SETTLE]]``: relay until SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    settles = [s.value for s in Settle]
    if (
        len(args) not in (2, 3, 4)
        or args[2:3] not in ([], ["1"], ["2"])
        or args[3:] not in ([], *([s] for s in settles))
    ):
        usage = f"AMQP_URL PREFETCH [1|2 [{'|'.join(settles)}]]"
        print(f"usage: python -m bench.relay {usage}", file=sys.stderr)
        return 2
    publishes = int(args[2]) if len(args) >= 3 else 1
    settle = Settle(args[3]) if len(args) == 4 else Settle.CONFIRM

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await relay(args[0], int(args[1]), stop, publishes, settle)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
