"""RabbitMQ's part of the round trip alone: its four hops with nothing else.

    python -m bench.floor {relay,agency,portal} AMQP_URL PREFETCH

The round trip of the latency test crosses four quorum queues: the portal publishes to
the ingress, a worker copies into the agency's inbox, the agency publishes its delivery
receipt, a worker forwards it to the portal's receipt queue. Here the same hops run with
no checking, no signing and no store:

* ``relay``, in the workers' place (one process per worker): ingress → inbox and
  return → receipts;
* ``agency``: takes a copy from the inbox and sends it back at once (return);
* ``portal``: takes the returned message from its receipt queue.

Every publish is persistent, mandatory and confirmed before the message it came from is
acked, as in the broker. The agency and the portal print ``ready`` once they consume,
then ``<uuid> <time>`` per message (`bench.peer`'s protocol, read by `bench.latency`).
What the round trip costs above these figures is xbroker's (and its SDKs') own.

`disk_sync` beside it times what every hop waits for: a write made durable on the disk
the node writes to (``fdatasync``, as RabbitMQ's quorum queues do before they confirm).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, ExchangeType

from broker.amqp import publishing

__all__ = [
    "EXCHANGE",
    "INGRESS",
    "QUEUES",
    "ROLES",
    "DiskSync",
    "declare",
    "disk_sync",
    "main",
]

EXCHANGE = "bench.floor"
INGRESS = "bench.floor.ingress"  # the portal publishes here (queue and routing key)
_INBOX = "bench.floor.inbox"
_RETURN = "bench.floor.return"
_RECEIPTS = "bench.floor.receipts"
QUEUES = (INGRESS, _INBOX, _RETURN, _RECEIPTS)
# where the messages of each queue go next (None: they end there)
_NEXT: dict[str, dict[str, str | None]] = {
    "relay": {INGRESS: _INBOX, _RETURN: _RECEIPTS},
    "agency": {_INBOX: _RETURN},
    "portal": {_RECEIPTS: None},
}
ROLES = tuple(_NEXT)
_CONFIRM_TIMEOUT = 30.0


async def declare(channel: AbstractChannel) -> None:
    """The floor's exchange and quorum queues, each bound under its own name."""
    exchange = await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)
    for name in QUEUES:
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key=name)


def _emit(uuid: str) -> None:
    sys.stdout.write(f"{uuid} {time.perf_counter():.9f}\n")
    sys.stdout.flush()


async def _run(role: str, url: str, prefetch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        for source, target in _NEXT[role].items():
            queue = await channel.get_queue(source, ensure=False)
            await queue.consume(_hop(exchange, target, timed=role != "relay"))
        print("ready", flush=True)
        await stop.wait()


def _hop(
    exchange: AbstractExchange, target: str | None, *, timed: bool
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def on_message(message: AbstractIncomingMessage) -> None:
        if timed:
            _emit(message.message_id or "")
        if target is not None:
            await publishing.publish_confirmed(
                exchange,
                publishing.message(message.body, message_id=message.message_id or ""),
                target,
                _CONFIRM_TIMEOUT,
            )
        await message.ack()

    return on_message


@dataclass(frozen=True, slots=True)
class DiskSync:
    """fdatasync of a 4 KiB append, ms: what a durable write waits for on this disk."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def disk_sync(folder: Path, count: int) -> DiskSync:
    """Append 4 KiB to a file in ``folder`` and ``fdatasync`` it, ``count`` times."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disk-sync.probe"
    block = os.urandom(4096)
    seconds = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, block)
            start = time.perf_counter()
            os.fdatasync(fd)
            seconds.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return DiskSync(count, cuts[49] * 1000, cuts[98] * 1000, max(seconds) * 1000)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in ROLES or not args[2].isdigit():
        print(f"usage: python -m bench.floor {{{','.join(ROLES)}}} AMQP_URL PREFETCH")
        return 2
    asyncio.run(_run(args[0], args[1], int(args[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
