"""Reading one entry of a message box's stream, by offset.

A stream cannot be read with ``basic.get`` (RabbitMQ 3.10 refuses it), so a read is a
consumer on a channel of its own that starts at the offset and is cancelled after the
first delivery. If retention dropped the offset, the first entry after it comes.
"""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from broker.amqp import topology
from broker.errors import Fault, XtaFault

__all__ = ["FIRST", "READ_TIMEOUT", "read_entry", "stream_offset"]

READ_TIMEOUT = 10.0
FIRST = "first"  # the stream's first entry still kept


def stream_offset(message: AbstractIncomingMessage) -> int | None:
    offset = (message.headers or {}).get("x-stream-offset")
    return offset if isinstance(offset, int) else None


async def read_entry(
    connection: AbstractConnection, kennung: str, offset: int | str
) -> AbstractIncomingMessage:
    """The entry of ``kennung``'s box at ``offset`` (an int, or `FIRST`)."""
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=1)
        queue = await channel.get_queue(topology.agency_queue(kennung), ensure=False)
        first: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

        async def take(message: AbstractIncomingMessage) -> None:
            if not first.done():
                first.set_result(message)

        tag = await queue.consume(take, arguments={"x-stream-offset": offset})
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                return await first
        except TimeoutError:
            raise XtaFault(
                Fault.TECHNICAL_PROBLEM, "the message box did not answer in time"
            ) from None
        finally:
            await queue.cancel(tag)
    finally:
        await channel.close()
