"""Loading a backlog onto a queue, and timing how fast a queue fills while it drains.

Throughput is measured the same way for the bare relay and for the broker: a backlog is
published (with confirms) before anything consumes it, the consumers start, and the
destination queue's depth is polled. The rate is taken between 10 % and 90 % of the
backlog arriving, so start-up (process start, connection, first prefetch) and the tail
are left out of both figures alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

__all__ = ["DrainTiming", "depth", "preload", "time_arrivals"]

_IN_FLIGHT = 256  # unconfirmed publishes at a time while loading a backlog
_POLL_SECONDS = 0.05
_STALL_SECONDS = 30.0  # no new arrival for this long: the consumers are stuck


@dataclass(frozen=True, slots=True)
class DrainTiming:
    """How fast ``count`` messages arrived at the destination."""

    count: int
    measured: int  # messages in the timed stretch
    seconds: float  # the timed stretch: from 10 % to 90 % arrived
    total_seconds: float  # from the start of polling until all arrived

    @property
    def per_second(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0


async def preload(
    exchange: AbstractExchange,
    routing_key: str,
    bodies: Sequence[bytes],
    *,
    message_ids: Sequence[str] | None = None,
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
                    content_type="application/xml",
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


async def time_arrivals(
    channel: AbstractChannel, queue: str, count: int, *, timeout: float
) -> DrainTiming:
    """Poll ``queue`` until ``count`` messages are in it; time the 10 %-90 % stretch."""
    start = time.perf_counter()
    deadline = start + timeout
    low, high = max(1, count // 10), max(1, (count * 9) // 10)
    t_low = t_high = None
    last_seen, last_change = -1, start
    while True:
        now = time.perf_counter()
        seen = await depth(channel, queue)
        if seen != last_seen:
            last_seen, last_change = seen, now
        elif now - last_change > _STALL_SECONDS:
            raise TimeoutError(f"{queue}: stuck at {seen} of {count} messages")
        if t_low is None and seen >= low:
            t_low = now
        if t_high is None and seen >= high:
            t_high = now
        if seen >= count:
            break
        if now > deadline:
            raise TimeoutError(f"{queue}: {seen} of {count} messages after {timeout:.0f} s")
        await asyncio.sleep(_POLL_SECONDS)
    end = time.perf_counter()
    assert t_low is not None and t_high is not None
    if t_high > t_low:
        return DrainTiming(count, high - low, t_high - t_low, end - start)
    # With tiny counts both marks can fall into one poll; then time the whole drain.
    return DrainTiming(count, count, end - start, end - start)
