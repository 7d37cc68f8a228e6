"""Latency at fixed offered loads: publish → agency handler, publish → delivered receipt.

The broker workers run as processes; the agency (``AgencyClient``) and the portal
(``Portal``, receiving receipts) run in the benchmark's own process, as an agency and the
portal would run beside the broker. Messages are published paced, on a fixed schedule
(open loop: a slow broker does not slow the publisher down), each with its own confirm.

Two clocks per message, both from the moment before its publish:

* **agency**: until the agency's handler receives the verified copy;
* **receipt**: until the portal holds the agency's signed ``delivered`` receipt (the
  agency signed it, the broker verified and forwarded it, the portal verified it).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

from bench.messages import MessageClass
from bench.throughput import uuid_of
from bench.workers import WorkerPool, broker_command
from bench.world import BenchWorld
from broker import publishing, topology
from broker.agency import AgencyClient, Delivery
from broker.portal import Portal
from broker.receipts import Kind, Receipt

__all__ = ["LoadResult", "Percentiles", "measure_loads"]

_SETTLE_SECONDS = 30.0  # after the last publish, how long stragglers may take


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles:
        if len(seconds) < 2:
            value = seconds[0] * 1000 if seconds else float("nan")
            return cls(value, value, value)
        cuts = statistics.quantiles(seconds, n=100, method="inclusive")
        return cls(cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000)


@dataclass(frozen=True, slots=True)
class LoadResult:
    share: float  # of the measured maximum
    offered_per_s: float
    achieved_per_s: float  # publishes per second actually made
    completed_per_s: float  # delivered receipts per second, first publish to last receipt
    sent: int
    delivered: int  # reached the agency's handler
    receipted: int  # delivered receipt reached the portal
    agency: Percentiles
    receipt: Percentiles


async def measure_loads(
    world: BenchWorld,
    channel: AbstractChannel,
    cls: MessageClass,
    pool_size: int,
    maximum_per_s: float,
    shares: Sequence[float],
    batches: Sequence[Sequence[bytes]],
) -> list[LoadResult]:
    """One broker pool, one agency, one portal; one paced batch per share of the maximum."""
    published: dict[str, float] = {}
    handled: dict[str, float] = {}
    receipted: dict[str, float] = {}
    arrived = asyncio.Event()

    async def on_delivery(delivery: Delivery) -> None:
        handled.setdefault(delivery.uuid, time.perf_counter())

    async def on_receipt(receipt: Receipt) -> None:
        if receipt.kind is Kind.DELIVERED:
            receipted.setdefault(receipt.nachrichten_uuid, time.perf_counter())
            arrived.set()

    verifier = world.parts.verifier()
    agency = AgencyClient(
        world.amqp_url, cls.agency, world.signer(cls.agency), verifier, on_delivery, prefetch=64
    )
    portal = Portal(
        world.amqp_url, cls.author, world.signer(cls.author), verifier, on_receipt=on_receipt
    )
    command = broker_command(world.settings_file, world.loop)
    env = world.worker_env(world.root / "state" / f"latency-{cls.name}")
    results: list[LoadResult] = []
    async with WorkerPool(command, pool_size, world.root / "logs" / "latency", env) as pool:
        await pool.wait_consuming(channel, topology.INGRESS_QUEUE, 60.0)
        await agency.start()
        await portal.start()
        try:
            connection = await aio_pika.connect(world.amqp_url)
            async with connection:
                publish_channel = await connection.channel(publisher_confirms=True)
                exchange = await publish_channel.get_exchange(topology.INGRESS_EXCHANGE)
                for share, batch in zip(shares, batches, strict=True):
                    rate = max(1.0, share * maximum_per_s)
                    span = await _paced(exchange, batch, rate, published)
                    uuids = [uuid_of(b) for b in batch]
                    await _settle(uuids, receipted, arrived)
                    results.append(_result(share, rate, span, uuids, published, handled, receipted))
        finally:
            await portal.close()
            await agency.close()
    return results


async def _paced(
    exchange: aio_pika.abc.AbstractExchange,
    batch: Sequence[bytes],
    rate: float,
    published: dict[str, float],
) -> float:
    """Publish ``batch`` at ``rate`` per second on a fixed schedule; return the span."""
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for index, body in enumerate(batch):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        uuid = uuid_of(body)
        published[uuid] = time.perf_counter()
        task = asyncio.create_task(
            publishing.publish_confirmed(
                exchange,
                publishing.message(body, message_id=uuid),
                topology.INGRESS_ROUTING_KEY,
                30.0,
            )
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    span = time.perf_counter() - start
    if pending:
        await asyncio.gather(*pending)
    return span


async def _settle(
    uuids: Sequence[str], receipted: dict[str, float], arrived: asyncio.Event
) -> None:
    """Wait until every message of the batch has its delivered receipt, or time is up."""
    missing = [u for u in uuids if u not in receipted]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_SETTLE_SECONDS):
            while missing:
                arrived.clear()
                await arrived.wait()
                missing = [u for u in missing if u not in receipted]


def _result(
    share: float,
    rate: float,
    span: float,
    uuids: Sequence[str],
    published: dict[str, float],
    handled: dict[str, float],
    receipted: dict[str, float],
) -> LoadResult:
    to_agency = [handled[u] - published[u] for u in uuids if u in handled]
    to_receipt = [receipted[u] - published[u] for u in uuids if u in receipted]
    # Below the offered rate, the load was more than the whole round trip could carry
    # and the percentiles measure a growing queue.
    done = [receipted[u] for u in uuids if u in receipted]
    first = min(published[u] for u in uuids)
    completed = (len(done) - 1) / (max(done) - first) if len(done) > 1 else 0.0
    return LoadResult(
        share=share,
        offered_per_s=rate,
        achieved_per_s=(len(uuids) - 1) / span if span > 0 else rate,
        completed_per_s=completed,
        sent=len(uuids),
        delivered=len(to_agency),
        receipted=len(to_receipt),
        agency=Percentiles.of(to_agency),
        receipt=Percentiles.of(to_receipt),
    )
