"""Latency at fixed offered loads: publish → agency handler, publish → delivered receipt.

The broker workers run as processes, and so do the agency (``AgencyClient``, which
verifies each copy and sends its signed delivered receipt) and the portal (``Portal``,
receiving and verifying receipts): ``bench.peer``, one process each, as they would run
on hosts of their own. The benchmark's process only publishes, paced on a fixed
schedule (open loop: a slow broker does not slow the publisher down), each message with
its own confirm.

The offered loads are shares of the **round trip's own maximum**, measured first in the
same setup: a batch published as fast as confirms allow, and the rate at which delivered
receipts come back. A message of the latency test costs more than one of the ingress
drain (the workers also verify and forward the agency's receipt, and the agency and the
portal verify and sign on the same cores), so a share of the ingress-only maximum can
exceed what the round trip carries; the percentiles then measure a growing queue, not
the broker. The ingress-only maximum is reported beside it.

Two clocks per message, both from the moment before its publish (``time.perf_counter``,
``CLOCK_MONOTONIC``, one clock for every process of the machine):

* **agency**: until the agency's handler receives the verified copy;
* **receipt**: until the portal holds the agency's signed ``delivered`` receipt (the
  agency signed it, the broker verified and forwarded it, the portal verified it).

Beside them, the stalls of the workers' event loops from the first publish of a load to
its last receipt (`bench.stalls.StallLog`, in every worker): the worst, and how many
held the loop 5 ms or more. A stall delays every message the worker holds at the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel

from bench import floor
from bench.cpu import CpuClock, rabbitmq_pid
from bench.messages import MessageClass
from bench.stalls import STALL_LOG_ENV, Stalls, stalls_within
from bench.throughput import uuid_of
from bench.workers import WorkerPool, broker_command, floor_command
from bench.world import BenchWorld
from broker.amqp import publishing, topology

__all__ = ["Latency", "LoadResult", "Percentiles", "measure_floor", "measure_loads"]

_SETTLE_SECONDS = 30.0  # after the last publish, how long stragglers may take
_PEER_START_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float  # of a quick run's few hundred messages, about its slowest

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles:
        if len(seconds) < 2:
            value = seconds[0] * 1000 if seconds else float("nan")
            return cls(value, value, value, value)
        cuts = statistics.quantiles(seconds, n=1000, method="inclusive")
        return cls(*(cuts[i] * 1000 for i in (499, 949, 989, 998)))


@dataclass(frozen=True, slots=True)
class LoadResult:
    share: float  # of the round trip's measured maximum
    offered_per_s: float
    achieved_per_s: float  # publishes per second actually made (and confirmed)
    completed_per_s: float  # delivered receipts per second, first publish to last receipt
    sent: int
    delivered: int  # reached the agency's handler
    receipted: int  # delivered receipt reached the portal
    agency: Percentiles
    receipt: Percentiles
    # of the workers' loops, from the first publish to the last receipt
    stalls: Stalls = field(default_factory=Stalls)


@dataclass(frozen=True, slots=True)
class Latency:
    maximum_per_s: float  # the round trip's maximum: the base of the offered loads
    saturation: LoadResult  # how it was measured (a batch published unpaced)
    loads: list[LoadResult]
    # CPU ms per delivered receipt of the unpaced batch, by process group (bench.cpu)
    cpu_ms: dict[str, float]


class _Clock:
    """The times one peer process reported, by message UUID."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.ready = asyncio.Event()

    async def follow(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode().strip()
            if text == "ready":
                self.ready.set()
                continue
            uuid, _, at = text.partition(" ")
            self.seen.setdefault(uuid, float(at))
            self.arrived.set()


def _peer(
    world: BenchWorld, role: str, kennung: str, prefetch: int
) -> contextlib.AbstractAsyncContextManager[_Clock]:
    """``bench.peer ROLE`` for the run's world."""
    command = [sys.executable, "-m", "bench.peer", role, str(world.settings_file)]
    command += [world.amqp_url, kennung, str(prefetch)]
    return _timed(command, world.root / "logs", f"peer-{role}")


@asynccontextmanager
async def _timed(command: Sequence[str], log_dir: Path, name: str) -> AsyncIterator[_Clock]:
    """Run ``command``, which prints ``ready`` and then ``<uuid> <time>`` lines, until the
    block ends; its stderr goes to ``log_dir/NAME.log``."""
    log = (log_dir / f"{name}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=log
    )
    clock = _Clock(process.pid)
    assert process.stdout is not None
    reader = asyncio.create_task(clock.follow(process.stdout))
    try:
        ready = asyncio.create_task(clock.ready.wait())
        try:
            async with asyncio.timeout(_PEER_START_SECONDS):
                await asyncio.wait({ready, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not clock.ready.is_set():
            raise RuntimeError(f"{name} ended before it was ready; see {log.name}")
        yield clock
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15.0):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        log.close()


async def measure_loads(
    world: BenchWorld,
    channel: AbstractChannel,
    cls: MessageClass,
    pool_size: int,
    shares: Sequence[float],
    saturation: Sequence[bytes],
    batches: Sequence[Sequence[bytes]],
    seconds: float,
    prefetch: int,
) -> Latency:
    """One broker pool, one agency, one portal: the round trip's maximum, then the loads.

    ``batches`` holds one batch per share, at least as many messages as ``seconds`` at
    that share of the maximum need; only those are published.
    """
    command = broker_command(world.settings_file, world.loop, watched=True)
    stall_log = world.root / "stalls" / f"latency-{cls.name}"
    env = world.worker_env(world.root / "state" / f"latency-{cls.name}")
    env[STALL_LOG_ENV] = str(stall_log)
    (world.root / "logs").mkdir(parents=True, exist_ok=True)
    async with (
        WorkerPool(command, pool_size, world.root / "logs" / "latency", env) as pool,
        _peer(world, "agency", cls.agency, prefetch) as agency,
        _peer(world, "portal", cls.author, prefetch) as portal,
    ):
        await pool.wait_consuming(channel, topology.INGRESS_QUEUE, 60.0)
        connection = await aio_pika.connect(world.amqp_url)
        async with connection:
            publish_channel = await connection.channel(publisher_confirms=True)
            exchange = await publish_channel.get_exchange(topology.INGRESS_EXCHANGE)

            async def run(share: float, rate: float, batch: Sequence[bytes]) -> LoadResult:
                start = time.perf_counter()
                result = await _load(
                    exchange, topology.INGRESS_ROUTING_KEY, share, rate, batch, agency, portal
                )
                uuids = [uuid_of(b) for b in batch]
                end = max((portal.seen[u] for u in uuids if u in portal.seen), default=start)
                return replace(result, stalls=stalls_within(stall_log, start, end))

            cpu = CpuClock(
                {
                    "workers": pool.pids,
                    "agency": [agency.pid],
                    "portal": [portal.pid],
                    "publisher": [os.getpid()],
                    "rabbitmq": [pid] if (pid := rabbitmq_pid()) is not None else [],
                }
            )
            cpu.start()
            unpaced = await run(1.0, float("inf"), saturation)
            cpu_ms = cpu.stop(unpaced.receipted)
            saturated = replace(unpaced, offered_per_s=unpaced.achieved_per_s)
            maximum = saturated.completed_per_s
            loads = []
            for share, batch in zip(shares, batches, strict=True):
                rate = max(1.0, share * maximum)
                size = min(len(batch), max(20, int(rate * seconds)))
                loads.append(await run(share, rate, batch[:size]))
    return Latency(maximum, saturated, loads, cpu_ms)


async def measure_floor(
    world: BenchWorld,
    channel: AbstractChannel,
    pool_size: int,
    loads: Sequence[LoadResult],
    batches: Sequence[Sequence[bytes]],
    prefetch: int,
) -> list[LoadResult]:
    """The same loads (rate and messages) through RabbitMQ's four hops alone
    (`bench.floor`): ``pool_size`` relays in the workers' place, an echo in the agency's,
    a timer in the portal's; the percentiles are the floor under the broker's."""
    await floor.declare(channel)
    log_dir = world.root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def command(role: str) -> list[str]:
        return floor_command(role, world.amqp_url, prefetch, world.loop)

    async with AsyncExitStack() as stack:
        for index in range(pool_size):
            await stack.enter_async_context(
                _timed(command("relay"), log_dir, f"floor-relay-{index}")
            )
        agency = await stack.enter_async_context(_timed(command("agency"), log_dir, "floor-agency"))
        portal = await stack.enter_async_context(_timed(command("portal"), log_dir, "floor-portal"))
        connection = await stack.enter_async_context(await aio_pika.connect(world.amqp_url))
        publish_channel = await connection.channel(publisher_confirms=True)
        exchange = await publish_channel.get_exchange(floor.EXCHANGE, ensure=False)
        return [
            await _load(
                exchange,
                floor.INGRESS,
                load.share,
                load.offered_per_s,
                batch[: load.sent],
                agency,
                portal,
            )
            for load, batch in zip(loads, batches, strict=True)
        ]


async def _load(
    exchange: aio_pika.abc.AbstractExchange,
    routing_key: str,
    share: float,
    rate: float,
    batch: Sequence[bytes],
    agency: _Clock,
    portal: _Clock,
) -> LoadResult:
    """Publish ``batch`` at ``rate``, wait for its receipts, and time them."""
    published: dict[str, float] = {}
    span = await _paced(exchange, routing_key, batch, rate, published)
    uuids = [uuid_of(b) for b in batch]
    await _settle(uuids, portal)
    return _result(share, rate, span, uuids, published, agency.seen, portal.seen)


async def _paced(
    exchange: aio_pika.abc.AbstractExchange,
    routing_key: str,
    batch: Sequence[bytes],
    rate: float,
    published: dict[str, float],
) -> float:
    """Publish ``batch`` at ``rate`` per second on a fixed schedule; return the span from
    the first publish to the last confirm (unpaced, the publishes are made in a burst and
    only their confirms tell how fast RabbitMQ took them)."""
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for index, body in enumerate(batch):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif index % 64 == 0:
            await asyncio.sleep(0)  # unpaced: let confirms in now and then
        uuid = uuid_of(body)
        published[uuid] = time.perf_counter()
        task = asyncio.create_task(
            publishing.publish_confirmed(
                exchange,
                publishing.message(body, message_id=uuid),
                routing_key,
                30.0,
            )
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return time.perf_counter() - start


async def _settle(uuids: Sequence[str], portal: _Clock) -> None:
    """Wait until every message of the batch has its delivered receipt, or time is up."""
    missing = [u for u in uuids if u not in portal.seen]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_SETTLE_SECONDS):
            while missing:
                portal.arrived.clear()
                await portal.arrived.wait()
                missing = [u for u in missing if u not in portal.seen]


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
