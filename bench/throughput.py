"""Throughput: the bare relay and the broker draining the same kind of backlog.

Both figures come from a :class:`bench.queues.ArrivalClock` on a preloaded backlog, with
the same number of worker processes and the same prefetch, so their ratio is the share
of RabbitMQ's ceiling the broker reaches. The clock takes its first sample before the
workers start, so a drain cannot be under way before it is timed. A broker drain can
also sample the worker's memory and run py-spy on it (the memory figure and the profile
come from such a drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aio_pika.abc import AbstractChannel

from bench import relay
from bench.messages import MessageClass
from bench.parties import AUTHORS
from bench.queues import MIN_WINDOW_POLLS, ArrivalClock, DrainTiming, preload
from bench.workers import WorkerPool, broker_command, memory_of, py_spy, relay_command
from bench.world import BenchWorld
from broker.amqp import topology

__all__ = [
    "BrokerDrain",
    "broker_drain",
    "declare_topology",
    "purge",
    "relay_drain",
    "relay_rate",
    "uuid_of",
]

_UUID = re.compile(rb"<nachrichtenUUID>([0-9a-f-]{36})</nachrichtenUUID>")
_START_TIMEOUT = 60.0
_RELAY_TRIES = 4  # drains of a growing backlog before a relay's rate is given up on
_RELAY_MOST = 50_000  # messages: the largest backlog a relay is given


@dataclass(frozen=True, slots=True)
class BrokerDrain:
    timing: DrainTiming
    peak_rss_bytes: int  # highest VmHWM over the pool's processes
    rss_samples: tuple[int, ...]  # VmRSS of the first worker, every half second
    profile: Path | None  # py-spy's collapsed stacks, if profiled


def uuid_of(body: bytes) -> str:
    """The nachrichtenUUID of a message made by ``bench.messages`` (no parse needed)."""
    found = _UUID.search(body)
    if found is None:
        raise ValueError("no nachrichtenUUID in the message")
    return found.group(1).decode()


async def declare_topology(world: BenchWorld, channel: AbstractChannel) -> None:
    """The broker's exchanges and queues for the run's directory, and the relay's."""
    limit = world.settings.delivery_limit
    exchanges = await topology.declare_core(channel, limit)
    await topology.declare_for_directory(channel, exchanges, world.parts.directory, limit)
    await relay.declare(channel)


async def purge(channel: AbstractChannel, queues: Sequence[str]) -> None:
    for name in queues:
        queue = await channel.declare_queue(name, passive=True)
        await queue.purge()


async def relay_drain(
    world: BenchWorld,
    channel: AbstractChannel,
    bodies: Sequence[bytes],
    processes: int,
    publishes: int = 1,
    settle: relay.Settle = relay.Settle.CONFIRM,
) -> DrainTiming:
    """Messages/s of ``processes`` bare relays draining ``bodies``, ``publishes`` each,
    settled as ``settle`` says."""
    queues = [relay.RELAY_IN, relay.RELAY_OUT, relay.RELAY_SIDE]
    await purge(channel, queues)
    exchange = await channel.get_exchange(relay.RELAY_EXCHANGE)
    await preload(exchange, relay.RELAY_IN, bodies)
    command = relay_command(
        world.amqp_url, world.settings.prefetch, world.loop, publishes, settle.value
    )
    clock = ArrivalClock(channel, relay.RELAY_OUT)
    await clock.sample()
    async with (
        WorkerPool(command, processes, world.root / "logs" / "relay") as pool,
        _arrivals(channel, pool, relay.RELAY_IN, clock, len(bodies)) as arrivals,
    ):
        timing = await arrivals
    await purge(channel, queues)
    return timing


async def relay_rate(
    world: BenchWorld,
    channel: AbstractChannel,
    bodies: Sequence[bytes],
    processes: int,
    publishes: int = 1,
) -> tuple[DrainTiming, int]:
    """Like :func:`relay_drain`, with a backlog grown until the drain gives a rate; the
    timing and the backlog that gave it.

    The relay is several times faster than the broker: a backlog sized for the broker
    drains within a few polls on a quiet machine. The relay does not read what it
    forwards, so the backlog grows by repeating ``bodies`` (nothing is signed again),
    by as much as the last drain's window fell short of ``MIN_WINDOW_POLLS``, twice
    over. On a loaded machine the first drain gives a rate and nothing is repeated.
    """
    backlog = list(bodies)
    timing = await relay_drain(world, channel, backlog, processes, publishes)
    for _ in range(_RELAY_TRIES - 1):
        if timing.per_second is not None or len(backlog) >= _RELAY_MOST:
            break
        factor = -(-2 * MIN_WINDOW_POLLS // max(1, timing.polls))
        size = min(_RELAY_MOST, len(backlog) * factor)
        backlog = [bodies[i % len(bodies)] for i in range(size)]
        timing = await relay_drain(world, channel, backlog, processes, publishes)
    return timing, len(backlog)


async def broker_drain(
    world: BenchWorld,
    channel: AbstractChannel,
    cls: MessageClass,
    bodies: Sequence[bytes],
    processes: int,
    *,
    profile_seconds: float = 0.0,
    database_url: str | None = None,
) -> BrokerDrain:
    """Messages/s of ``processes`` broker workers draining ``bodies`` of one class.

    Every message is routed to ``cls.agency``; its inbox filling up is the clock. Each
    drain gets a fresh state folder (deduplication store): a backlog signed once may be
    drained by several configurations without the second one seeing duplicates. With
    ``database_url`` the workers keep their claims and Laufzettel in that database
    instead (give each drain a fresh one, for the same reason).
    """
    inbox = topology.agency_queue(cls.agency)
    await purge(channel, [inbox, topology.receipt_queue(AUTHORS[cls.key])])
    exchange = await channel.get_exchange(topology.INGRESS_EXCHANGE)
    await preload(
        exchange, topology.INGRESS_ROUTING_KEY, bodies, message_ids=[uuid_of(b) for b in bodies]
    )
    samples: list[int] = []
    profile: Path | None = None
    command = broker_command(world.settings_file, world.loop)
    drain_id = f"{cls.name}-{processes}-{secrets.token_hex(3)}"
    log_dir = world.root / "logs" / drain_id
    env = world.worker_env(world.root / "state" / drain_id)
    if database_url is not None:
        env["XBROKER_DATABASE_URL"] = database_url
    clock = ArrivalClock(channel, inbox)
    await clock.sample()
    async with (
        WorkerPool(command, processes, log_dir, env) as pool,
        _arrivals(channel, pool, topology.INGRESS_QUEUE, clock, len(bodies)) as arrivals,
    ):
        sampler = asyncio.create_task(_sample_rss(pool.pids[0], samples))
        spy: subprocess.Popen[bytes] | None = None
        if profile_seconds > 0 and (exe := py_spy()) is not None:
            profile = world.root / f"profile-{cls.name}.txt"
            spy = _start_py_spy(exe, pool.pids[0], profile_seconds, profile, log_dir)
        try:
            timing = await arrivals
            peak = max(memory_of(pid).peak_rss_bytes for pid in pool.pids)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if spy is not None:
                await _finish_py_spy(spy)
    await purge(channel, [inbox, topology.receipt_queue(AUTHORS[cls.key])])
    if profile is not None and not profile.is_file():
        profile = None
    return BrokerDrain(timing, peak, tuple(samples), profile)


@asynccontextmanager
async def _arrivals(
    channel: AbstractChannel, pool: WorkerPool, source: str, clock: ArrivalClock, count: int
) -> AsyncIterator[asyncio.Task[DrainTiming]]:
    """The timing of ``count`` arrivals, polled while the pool starts consuming ``source``
    and after: the block awaits it once the pool consumes."""
    # Generous: a stalled drain must end the run, a slow machine must not.
    arrivals = asyncio.create_task(clock.until(count, timeout=120.0 + count / 20.0))
    try:
        await pool.wait_consuming(channel, source, _START_TIMEOUT)
        yield arrivals
    finally:
        arrivals.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await arrivals


async def _sample_rss(pid: int, into: list[int]) -> None:
    while True:
        with contextlib.suppress(OSError):
            into.append(memory_of(pid).rss_bytes)
        await asyncio.sleep(0.5)


def _start_py_spy(
    exe: str, pid: int, seconds: float, out: Path, log_dir: Path
) -> subprocess.Popen[bytes]:
    log = (log_dir / "py-spy.log").open("ab")
    try:
        return subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


async def _finish_py_spy(spy: subprocess.Popen[bytes]) -> None:
    """Let py-spy write its output: it stops on its own, or on SIGINT if the drain ended."""
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    for _ in range(200):
        if spy.poll() is not None:
            return
        await asyncio.sleep(0.05)
    spy.kill()
    spy.wait()
