"""Copies the transactional delivery exchange could not route: their inbox declared
again, each published to it once more.

A copy settled in a transaction (`broker.amqp.transactions`) goes to
``xbroker.deliver.tx`` with the ack of its message; when its inbox is gone, that
exchange's alternate exchange keeps it in ``xbroker.unroutable`` instead of dropping it
(`broker.amqp.topology`). Here the inbox is declared again (`broker.worker.repair`) and
the copy published to it through ``xbroker.deliver``, confirmed and mandatory, before the
copy is acked: nothing is lost between the two. An inbox that cannot be declared again
(its agency has left the directory) is a fault of the topology, as for a confirmed copy
whose inbox is gone: the copy is held and tried again. Copies are taken one at a time:
they are rare, and two copies of one message in flight on one channel would confuse
their returns (`broker.amqp.copies`).
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from broker.amqp import publishing, topology
from broker.logs import event
from broker.worker.faults import Faults
from broker.worker.repair import Repair

__all__ = ["Unroutable"]

log = logging.getLogger("xbroker.broker")


class Unroutable:
    """Consumer of ``xbroker.unroutable``; one per worker."""

    def __init__(self, repair: Repair, faults: Faults, confirm_timeout: float) -> None:
        self._repair = repair
        self._faults = faults
        self._timeout = confirm_timeout
        self._exchange: AbstractExchange | None = None
        self._one_at_a_time = asyncio.Lock()

    def bind(self, deliver: AbstractExchange) -> None:
        """``xbroker.deliver`` on a channel with confirms and returns."""
        self._exchange = deliver

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        async with self._one_at_a_time:
            done, _ = await self._faults.handle(message, lambda: self._place(message))
            if done:
                await message.ack()

    async def _place(self, message: AbstractIncomingMessage) -> None:
        assert self._exchange is not None, "bind() the delivery exchange first"
        key = message.routing_key or ""
        agency = topology.agency_of_routing_key(key)
        if agency is None:
            # Not a copy the broker made: a failure of the message (in the end parked).
            raise ValueError(f"no agency inbox is routed by {key!r}")
        await self._repair.inbox(agency[0])
        await publishing.publish_confirmed(self._exchange, _again(message), key, self._timeout)
        event(log, "copy.rerouted", logging.WARNING, uuid=message.message_id, routing_key=key)


def _again(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The copy as it was published: body, id, headers, type and expiry."""
    if message.message_id is None:
        raise ValueError("an unroutable copy without a message id")
    headers: dict[str, str | int | float] = {}
    for name, value in (message.headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str | int | float):
            headers[name] = value
    return publishing.message(
        message.body,
        message_id=message.message_id,
        headers=headers,
        content_type=message.content_type or "application/xml",
        expiration=message.expiration if isinstance(message.expiration, int | float) else None,
    )
