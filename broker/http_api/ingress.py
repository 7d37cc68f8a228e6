"""Publishing to the ingress exchange, and how full the ingress queue is.

The HTTP API publishes exactly as the portal SDK does: confirmed, mandatory, with a
deadline (`broker.amqp.publishing`), message id = nachrichtenUUID, reply-to = the caller;
and says that it records the message's received event itself (``HEADER_RECEIVED``).

The queue depth comes from a passive declare on a channel of its own (a passive
declare of a missing queue closes its channel; the publishing channel must survive
that). It is cached for ``depth_ttl`` seconds so a burst of requests costs one round
trip per second, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from broker.amqp import publishing, topology
from broker.amqp.connection import connect_first
from broker.errors import TransientError

__all__ = ["IngressPublisher"]


class IngressPublisher:
    """One AMQP connection of the HTTP API (or the XTA endpoint): publish submissions,
    read the queue depth."""

    def __init__(
        self,
        amqp_urls: str | Sequence[str],
        *,
        confirm_timeout: float,
        depth_queue: str = topology.INGRESS_QUEUE,
        depth_ttl: float = 1.0,
        name: str = "xbroker-http-api",
    ) -> None:
        self._urls = amqp_urls
        self._name = name
        self._confirm_timeout = confirm_timeout
        self._depth_queue = depth_queue
        self._depth_ttl = depth_ttl
        self._connection: AbstractRobustConnection | None = None
        self._publisher: publishing.Publisher | None = None
        self._probe: AbstractChannel | None = None
        self._depth: tuple[float, int] | None = None
        self._depth_lock = asyncio.Lock()

    async def start(self) -> None:
        self._connection = await connect_first(self._urls, self._name)
        self._publisher = publishing.Publisher(self._connection, topology.INGRESS_EXCHANGE)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(
        self, body: bytes, uuid: str, reply_to: str, content_type: str = "application/xml"
    ) -> None:
        """Publish one submission whose received event the caller records; PublishError
        unless RabbitMQ confirmed it."""
        assert self._publisher is not None, "start() the publisher first"
        await self._publisher.publish(
            publishing.message(
                body,
                message_id=uuid,
                reply_to=reply_to,
                content_type=content_type,
                headers={publishing.HEADER_RECEIVED: 1},
            ),
            topology.INGRESS_ROUTING_KEY,
            self._confirm_timeout,
        )

    async def depth(self) -> int:
        """Messages waiting in the ingress queue, at most ``depth_ttl`` seconds old."""
        async with self._depth_lock:
            now = time.monotonic()
            if self._depth is not None and now - self._depth[0] < self._depth_ttl:
                return self._depth[1]
            count = await self._read_depth()
            self._depth = (now, count)
            return count

    async def _read_depth(self) -> int:
        assert self._connection is not None, "start() the publisher first"
        try:
            if self._probe is None or self._probe.is_closed:
                self._probe = await self._connection.channel()
            queue = await self._probe.declare_queue(self._depth_queue, passive=True)
        except (aio_pika.exceptions.AMQPError, ConnectionError) as exc:
            raise TransientError(f"cannot read the depth of {self._depth_queue}: {exc}") from exc
        result = queue.declaration_result
        return int(result.message_count or 0)
