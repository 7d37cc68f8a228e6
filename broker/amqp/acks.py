"""Settling a consumed message when the channel may already be gone."""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractIncomingMessage

__all__ = ["settle"]

log = logging.getLogger("xbroker.broker")


async def settle(message: AbstractIncomingMessage, *, requeue: bool) -> None:
    """Nack; if the channel is already gone, RabbitMQ requeues the message by itself."""
    try:
        await message.nack(requeue=requeue)
    except Exception:
        log.debug("nack failed", exc_info=True)
