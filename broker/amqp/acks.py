"""Settling a consumed message when the channel may already be gone."""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

__all__ = ["held", "settle"]

log = logging.getLogger("xbroker.broker")


async def settle(message: AbstractIncomingMessage, *, requeue: bool) -> None:
    """Nack; if the channel is already gone, RabbitMQ requeues the message by itself."""
    try:
        await message.nack(requeue=requeue)
    except Exception:
        log.debug("nack failed", exc_info=True)


def held(message: AbstractIncomingMessage) -> bool:
    """Whether the channel ``message`` came on is still open, so that it is still ours.

    Once that channel is gone, RabbitMQ has put the message back in its queue: it will be
    delivered again, maybe to another consumer, and must not be worked on or acked here.
    """
    try:
        message.channel  # noqa: B018 - raises once the channel is closed
    except ChannelInvalidStateError:
        return False
    return True
