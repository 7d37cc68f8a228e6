"""The delivery exchange on one channel per copy of a message.

All copies of one message carry the same AMQP message id (the nachrichtenUUID: agencies
deduplicate by it). aiormq finds the publish a returned message belongs to by its message
id, per channel; with several copies of one message in flight on one channel, the return
of one copy was pinned on another (measured: the copy for a deleted inbox counted as
confirmed, the copy for a healthy one as unroutable). So the n-th copy of every message
is published on the n-th channel: copies of one message never share a channel, and a
return names its own copy.
"""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractExchange, AbstractRobustConnection

__all__ = ["CopyExchanges"]


class CopyExchanges:
    """``await exchanges.get(n)``: the exchange to publish the n-th copy on."""

    def __init__(self, connection: AbstractRobustConnection, exchange: str) -> None:
        self._connection = connection
        self._name = exchange
        self._exchanges: list[AbstractExchange] = []
        self._opening = asyncio.Lock()

    async def get(self, index: int) -> AbstractExchange:
        if index < len(self._exchanges):
            return self._exchanges[index]
        async with self._opening:
            while len(self._exchanges) <= index:
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._exchanges.append(await channel.get_exchange(self._name, ensure=False))
        return self._exchanges[index]
