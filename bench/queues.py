"""Loading a backlog onto a queue, and timing how fast a queue fills while it drains.

Throughput is measured the same way for the bare relay and for the broker: a backlog is
published (with confirms) before anything consumes it, the destination queue's depth is
polled once, the consumers start, and the depth is polled until the whole backlog has
arrived. The rate is taken between the first poll that sees 10 % arrived and the first
that sees 90 %, as the messages counted between those two polls over the time between
them, so start-up (process start, connection, first prefetch) and the tail are left out
of both figures alike.

A rate needs a window of several polls: a backlog that drains within a poll or two
gives a window as short as one depth query, and a "rate" of hundreds of thousands of
messages per second that no machine reaches. Such a drain has no rate (``per_second``
is None, ``shortfall`` says why); the remedy is a larger backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

__all__ = ["MIN_WINDOW_POLLS", "ArrivalClock", "DrainTiming", "depth", "preload"]

_IN_FLIGHT = 256  # unconfirmed publishes at a time while loading a backlog
_POLL_SECONDS = 0.02
_STALL_SECONDS = 30.0  # no new arrival for this long: the consumers are stuck
MIN_WINDOW_POLLS = 10
"""Polls a timed window must span to give a rate: one poll's jitter is then a tenth of it."""


@dataclass(frozen=True, slots=True)
class DrainTiming:
    """How fast ``count`` messages arrived at the destination."""

    count: int
    measured: int  # messages that arrived within the window
    seconds: float  # the window: from the poll that saw 10 % arrived to the one that saw 90 %
    polls: int  # polls within the window
    total_seconds: float  # from the first poll until all arrived

    @property
    def shortfall(self) -> str | None:
        """Why the drain gives no rate, or None when it does."""
        if self.polls < MIN_WINDOW_POLLS or self.seconds <= 0:
            return (
                f"{self.count:,} messages arrived within {self.polls} polls "
                f"({self.total_seconds:.2f} s in all); a rate needs {MIN_WINDOW_POLLS}: "
                "drain a larger backlog"
            )
        return None

    @property
    def per_second(self) -> float | None:
        """Messages per second within the window; None when it is too short to time."""
        if self.shortfall is not None:
            return None
        return self.measured / self.seconds


async def preload(
    exchange: AbstractExchange,
    routing_key: str,
    bodies: Sequence[bytes],
    *,
    message_ids: Sequence[str] | None = None,
    content_type: str = "application/xml",
) -> None:
    """Publish persistent messages with confirms, ``_IN_FLIGHT`` unconfirmed at a time."""
    window = asyncio.Semaphore(_IN_FLIGHT)

    async def one(index: int, body: bytes) -> None:
        async with window:
            await exchange.publish(
                aio_pika.Message(
                    body,
                    message_id=message_ids[index] if message_ids else None,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type=content_type,
                    timestamp=time.time(),
                ),
                routing_key,
                timeout=60,
            )

    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))


async def depth(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare: the queue must exist)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    return int(count or 0)


class ArrivalClock:
    """The depth of one queue, polled: every sample kept as (time, messages).

    Take the first sample before the consumers start, so that the window can begin at
    the first poll that sees 10 % arrived rather than at whatever the drain had reached
    when polling began.
    """

    def __init__(self, channel: AbstractChannel, queue: str) -> None:
        self._channel = channel
        self._queue = queue
        self.samples: list[tuple[float, int]] = []

    async def sample(self) -> int:
        before = time.perf_counter()
        seen = await depth(self._channel, self._queue)
        # The count is RabbitMQ's at some moment during the query: take its middle.
        self.samples.append(((before + time.perf_counter()) / 2, seen))
        return seen

    async def until(self, count: int, *, timeout: float) -> DrainTiming:
        """Poll until ``count`` messages are in the queue; time the 10 %-90 % window."""
        if not self.samples:
            await self.sample()
        start = self.samples[0][0]
        last_seen, last_change = self.samples[-1][1], self.samples[-1][0]
        while self.samples[-1][1] < count:
            await asyncio.sleep(_POLL_SECONDS)
            seen = await self.sample()
            now = self.samples[-1][0]
            if seen != last_seen:
                last_seen, last_change = seen, now
            elif seen > 0 and now - last_change > _STALL_SECONDS:
                raise TimeoutError(f"{self._queue}: stuck at {seen} of {count} messages")
            if now - start > timeout:
                raise TimeoutError(
                    f"{self._queue}: {seen} of {count} messages after {timeout:.0f} s"
                )
        return _window(self.samples, count)


def _window(samples: Sequence[tuple[float, int]], count: int) -> DrainTiming:
    low, high = max(1, count // 10), max(1, (count * 9) // 10)
    total = samples[-1][0] - samples[0][0]
    if samples[0][1] >= low:  # the drain was under way before the first poll
        return DrainTiming(count, 0, 0.0, 0, total)
    first = next(i for i, (_, seen) in enumerate(samples) if seen >= low)
    last = next(i for i, (_, seen) in enumerate(samples) if seen >= high)
    (t_first, n_first), (t_last, n_last) = samples[first], samples[last]
    return DrainTiming(count, n_last - n_first, t_last - t_first, last - first, total)
