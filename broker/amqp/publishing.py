"""Confirmed, mandatory publishing with a deadline.

A publish counts only when RabbitMQ confirmed it. A confirm can hang forever (seen on
3.10 after a node loss), so every publish has a timeout; a timed-out publish is unknown
and is retried by the caller (receivers deduplicate by message id). An unroutable
message is returned by RabbitMQ, and a return is a failure, never a silent drop. A
`Publisher` also replaces a channel whose confirm timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid as uuidlib
from collections.abc import Mapping, Sequence

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
    HeadersType,
)

from broker.amqp.connection import connect_first
from broker.errors import ConfirmTimeoutError, PublishError, UnroutableError
from xta_schemas.header import assigned_identity

__all__ = [
    "HEADER_AUTHOR",
    "HEADER_PADDING",
    "HEADER_PUBLISHED",
    "HEADER_RECEIVED",
    "HEADER_TYPE",
    "MAX_MESSAGE_ID_BYTES",
    "Publisher",
    "connect",
    "header_text",
    "message",
    "publish_confirmed",
    "travelling_identity",
]

# AMQP 0-9-1 carries message_id as a short string: at most 255 bytes of UTF-8.
MAX_MESSAGE_ID_BYTES = 255


def travelling_identity(stated: str | None, transport_id: str | None) -> str:
    """The identity a submission travels under: the one the message ``stated``, unless it
    states none or one too long for an AMQP message id; then the one the broker assigns
    from ``transport_id`` (a new one if None). A message whose header cannot be read
    goes so too, and the broker's rejection comes back under that identity."""
    if stated is not None and len(stated.encode()) <= MAX_MESSAGE_ID_BYTES:
        return stated
    return assigned_identity(transport_id or str(uuidlib.uuid4()))


# Headers the broker adds to an agency's copy: metadata the agency SDK and the webhook
# deliverer use, and that the agency echoes back with its delivery receipt.
HEADER_PUBLISHED = "x-xbroker-published"  # the author's publish time (Unix seconds)
HEADER_TYPE = "x-xbroker-nachrichtentyp"
HEADER_AUTHOR = "x-xbroker-author"
# Set on a submission by the endpoint that took it (HTTP API, XTA) and has recorded its
# received event, so that the worker does not record the same fact a second time.
HEADER_RECEIVED = "x-xbroker-received"
# A padding the XTA endpoint writes into a message box's stream so that RabbitMQ closes
# its segment and can drop it when it ages out (broker.xta.upkeep): no message, no id.
HEADER_PADDING = "x-xbroker-padding"


def header_text(value: object) -> str | None:
    """A text header value as RabbitMQ hands it back (str or bytes); None if empty."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) if value else None


async def connect(
    amqp_urls: str | Sequence[str], name: str
) -> tuple[AbstractRobustConnection, AbstractRobustChannel]:
    """A robust connection to the first of ``amqp_urls`` that answers (it reconnects by
    itself, to the next URL, see `broker.amqp.connection`) and a channel whose publishes
    are confirmed and whose unroutable publishes raise, as every publish here needs."""
    connection = await connect_first(amqp_urls, name)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    assert isinstance(channel, AbstractRobustChannel)
    return connection, channel


class Publisher:
    """Confirmed publishes to one exchange, on a channel of their own.

    A channel that let a confirm time out is closed and the next publish opens a new one
    on the same connection: RabbitMQ 3.10 has channels that stop confirming for good
    (rabbitmq-server#6081), and on such a channel every later publish would time out
    too. Receiving stays on the caller's other channels, untouched by the swap.
    """

    def __init__(self, connection: AbstractRobustConnection, exchange: str) -> None:
        self._connection = connection
        self._exchange_name = exchange
        self._current: tuple[AbstractChannel, AbstractExchange] | None = None
        self._opening = asyncio.Lock()
        self.channels_replaced = 0

    async def publish(self, msg: aio_pika.Message, routing_key: str, timeout: float) -> None:
        """`publish_confirmed` on the current channel; PublishError unless confirmed."""
        current = self._current
        if current is None or current[0].is_closed:
            current = await self._open()
        try:
            await publish_confirmed(current[1], msg, routing_key, timeout)
        except ConfirmTimeoutError:
            await self._replace(current)
            raise

    async def _open(self) -> tuple[AbstractChannel, AbstractExchange]:
        async with self._opening:
            if self._current is None or self._current[0].is_closed:
                try:
                    channel = await self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    exchange = await channel.get_exchange(self._exchange_name, ensure=False)
                except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
                    raise PublishError(f"cannot open a channel to publish: {exc!r}") from exc
                self._current = channel, exchange
            return self._current

    async def _replace(self, stuck: tuple[AbstractChannel, AbstractExchange]) -> None:
        """Close ``stuck`` unless another publish has done so already."""
        async with self._opening:
            if self._current is not stuck:
                return
            self._current = None
            self.channels_replaced += 1
        with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
            await stuck[0].close()


def message(
    body: bytes,
    *,
    message_id: str,
    headers: Mapping[str, str | int | float] | None = None,
    reply_to: str | None = None,
    content_type: str = "application/xml",
    expiration: float | None = None,
) -> aio_pika.Message:
    """A persistent message as xbroker sends it; ``expiration`` in seconds."""
    hdrs: HeadersType = dict(headers or {})
    return aio_pika.Message(
        body,
        message_id=message_id,
        headers=hdrs,
        reply_to=reply_to,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=time.time(),
        expiration=expiration,
    )


async def publish_confirmed(
    exchange: AbstractExchange, msg: aio_pika.Message, routing_key: str, timeout: float
) -> None:
    """Publish and wait for the confirm; raise PublishError unless it was confirmed."""
    try:
        await exchange.publish(msg, routing_key, mandatory=True, timeout=timeout)
    except aiormq.exceptions.PublishError as exc:
        raise UnroutableError(f"unroutable: {exchange.name!r} {routing_key!r}") from exc
    except aiormq.exceptions.DeliveryError as exc:
        raise PublishError(f"nacked by RabbitMQ: {exchange.name!r} {routing_key!r}") from exc
    except TimeoutError as exc:
        raise ConfirmTimeoutError(f"no confirm within {timeout} s: {routing_key!r}") from exc
    except (
        aiormq.exceptions.AMQPError,
        aiormq.exceptions.ChannelInvalidStateError,
        ConnectionError,
        asyncio.CancelledError,
    ) as exc:
        if isinstance(exc, asyncio.CancelledError) and _cancelled_by_caller():
            raise
        raise PublishError(f"connection lost while publishing to {routing_key!r}") from exc


def _cancelled_by_caller() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
