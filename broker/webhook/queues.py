"""Delay queues for webhook retries, and the backoff schedule they implement.

A failed push must wait (seconds to hours) without holding up the messages behind it,
and without a timer in the broker process that a restart would forget. So the copy is
republished into a delay queue of its agency: a quorum queue with a message TTL whose
dead-letter target is the agency's inbox again::

    agency.<kennung>.inbox ──push fails──► agency.<kennung>.inbox.delay.<seconds>s
             ▲                                   │  x-message-ttl = seconds
             └──── dead-lettered on expiry ──────┘  (at-least-once, via xbroker.deliver)

Every message in one delay queue waits equally long, so the queue expires in order at
its head. The attempt number travels in a header; when the schedule is exhausted the
copy is parked in the inbox's ``.dead`` queue and the author gets a ``failed`` receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel

from broker.amqp import topology

__all__ = [
    "HEADER_ATTEMPT",
    "HEADER_LAST_ERROR",
    "RetrySchedule",
    "declare_delay_queues",
    "delay_queue",
]

HEADER_ATTEMPT = "x-xbroker-webhook-failures"  # failed pushes of this copy so far
HEADER_LAST_ERROR = "x-xbroker-webhook-error"


def delay_queue(kennung: str, seconds: float, *, test: bool = False) -> str:
    return f"{topology.agency_queue(kennung, test=test)}.delay.{_label(seconds)}"


def _label(seconds: float) -> str:
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """How long to wait after the 1st, 2nd, … failed push; then give up."""

    delays: tuple[float, ...]

    def __post_init__(self) -> None:
        if any(d <= 0 for d in self.delays):
            raise ValueError("retry delays must be positive")

    def delay_after(self, failures: int) -> float | None:
        """The wait after ``failures`` failed pushes, or None when the schedule is spent."""
        if 1 <= failures <= len(self.delays):
            return self.delays[failures - 1]
        return None

    @property
    def distinct(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.delays)))

    @property
    def total_seconds(self) -> float:
        return sum(self.delays)


async def declare_delay_queues(
    channel: AbstractChannel, kennung: str, *, test: bool, delays: Sequence[float]
) -> None:
    """One delay queue per distinct delay, for the inbox (and test inbox) of ``kennung``."""
    for is_test in (False, True) if test else (False,):
        for seconds in sorted(set(delays)):
            await channel.declare_queue(
                delay_queue(kennung, seconds, test=is_test),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": round(seconds * 1000),
                    "x-dead-letter-exchange": topology.DELIVER_EXCHANGE,
                    "x-dead-letter-routing-key": topology.agency_routing_key(kennung, test=is_test),
                    # at-least-once: an expired copy leaves the delay queue only once
                    # the inbox has confirmed it, so a node crash cannot lose it.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
