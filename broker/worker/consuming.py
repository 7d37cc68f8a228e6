"""The worker's consumers, taken on and off in line with its faults.

A worker consumes three queues (ingress, delivery receipts, failures) while it runs and no
fault holds it (`broker.worker.faults`); when a fault begins it cancels them, so that no new
message arrives while the ones it has are held, and when the fault clears it consumes
again. Handlers are tracked while they run, so that a stop can wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from broker.logs import event
from broker.worker.faults import Faults

__all__ = ["Consumption", "Handler"]

log = logging.getLogger("xbroker.broker")

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Consumption:
    """Consumes ``handlers`` (queue name → handler) while ``wanted()`` and healthy."""

    def __init__(
        self, handlers: Sequence[tuple[str, Handler]], faults: Faults, wanted: Callable[[], bool]
    ) -> None:
        self._handlers = tuple(handlers)
        self._faults = faults
        self._wanted = wanted
        self._channel: AbstractChannel | None = None
        self._own_channels: dict[str, AbstractChannel] = {}
        self._consumers: list[tuple[AbstractQueue, str]] | None = None
        self._lock = asyncio.Lock()
        self.in_flight: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return self._consumers is not None

    def bind(self, channel: AbstractChannel, own: dict[str, AbstractChannel] | None = None) -> None:
        """The channel to consume on, once the topology is declared; ``own``: queues
        consumed on a channel of their own (one in transaction mode)."""
        self._channel = channel
        self._own_channels = dict(own or {})

    async def follow(self) -> None:
        """Consume while wanted and healthy; cancel the consumers else.

        Each step awaits RabbitMQ (a cancel waits as long as a memory alarm blocks the
        connection), so the state is read again after every step.
        """
        async with self._lock:
            while True:
                want = self._wanted() and self._faults.healthy
                if want and self._consumers is None:
                    try:
                        await self._consume()
                    except Exception as exc:  # the connection went; its return resumes us
                        event(log, "broker.consume_failed", logging.WARNING, error=str(exc))
                        return
                    event(log, "broker.resumed")
                elif not want and self._consumers is not None:
                    faults = sorted(self._faults.active)
                    await self._cancel()
                    if self._wanted():
                        event(log, "broker.paused", faults=faults)
                else:
                    return

    async def stop(self) -> None:
        """Cancel the consumers for good (the worker stops)."""
        async with self._lock:
            await self._cancel()

    async def _consume(self) -> None:
        assert self._channel is not None, "bind() the channel first"
        self._consumers = []
        try:
            for name, handler in self._handlers:
                channel = self._own_channels.get(name, self._channel)
                queue = await channel.get_queue(name, ensure=False)
                self._consumers.append((queue, await queue.consume(self._track(handler))))
        except BaseException:
            await self._cancel()
            raise

    async def _cancel(self) -> None:
        consumers, self._consumers = self._consumers, None
        for queue, tag in consumers or ():
            try:
                await queue.cancel(tag)
            except Exception:  # the connection may already be gone; nothing is restored
                log.debug("cancel failed", exc_info=True)

    def _track(self, handler: Handler) -> Handler:
        """Wrap a consumer so that a stop can wait for the messages it is handling."""

        async def run(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.in_flight.add(task)
            try:
                await handler(message)
            finally:
                self.in_flight.discard(task)

        return run
