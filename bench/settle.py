"""How the broker's AMQP work could be settled: confirms, or one transaction per burst.

    python -m bench.settle [--quick] [--amqp-url URL] [--json PATH]

The two-publish relay (``bench.relay`` with two publishes: the broker's copy and
receipt, without its checks) settles each message two ways (`bench.relay.Settle`):

``confirm``
    each publish confirmed, then the ack: what the broker worker does.
``tx``
    the consuming channel in AMQP transaction mode; the publishes and acks of every
    message delivered since the last commit go out together, then one ``tx.commit``.

Two figures for each: the drain rate (``bench.queues``, as in ``python -m bench``), and
what a SIGKILL leaves behind: the same backlog with message ids of its own is drained
by one relay, which is killed once a share of the backlog has arrived (a different share
in each round), and a second relay drains the rest. Then every message in the two
destination queues is read and counted by its id: *published twice* are the ids found
more than once (RabbitMQ holds a copy twice), *lost* those found in neither.

With confirms there is always a moment between a copy's confirm and the input's ack in
which only the dying process knows that the copy went out, and its successor publishes
that copy again. In a transaction the ack is committed with the publishes: a relay
killed before its commit has done nothing that RabbitMQ keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from bench import relay
from bench.queues import depth, preload
from bench.report import load_average, machine
from bench.throughput import purge, relay_drain
from bench.workers import WorkerPool, relay_command
from bench.world import BenchWorld, bench_world

__all__ = ["main", "measure", "render"]

_BODY_BYTES = 4096  # about a signed 2 KB message
_QUEUES = (relay.RELAY_IN, relay.RELAY_OUT, relay.RELAY_SIDE)
_START_TIMEOUT = 120.0
_DRAIN_TIMEOUT = 600.0
_QUIET_SECONDS = 1.0  # the destination unchanged this long, the source empty: drained


async def measure(count: int, kills: int, amqp_url: str | None = None) -> dict[str, Any]:
    """Rate and SIGKILL rounds of ``count`` messages, ``kills`` rounds per way."""
    figures: dict[str, Any] = {
        "machine": machine(),
        "messages": count,
        "load_before": load_average(),
        "settle": {},
    }
    async with bench_world(amqp_url) as world:
        connection = await aio_pika.connect(world.amqp_url)
        async with connection:
            channel = await connection.channel()
            await relay.declare(channel)
            bodies = [os.urandom(_BODY_BYTES) for _ in range(count)]
            for settle in relay.Settle:
                timing = await relay_drain(world, channel, bodies, 1, publishes=2, settle=settle)
                rounds = [
                    await _killed_round(world, channel, settle, count, (k + 1) / (kills + 1))
                    for k in range(kills)
                ]
                figures["settle"][settle.value] = {
                    "per_second": timing.per_second,
                    "unmeasured": timing.shortfall,
                    "rounds": rounds,
                }
    figures["load_after"] = load_average()
    return figures


async def _killed_round(
    world: BenchWorld, channel: AbstractChannel, settle: relay.Settle, count: int, share: float
) -> dict[str, Any]:
    """One relay killed once ``share`` of ``count`` messages has arrived, a second one
    draining the rest; what the destinations then hold, counted by message id."""
    await purge(channel, _QUEUES)
    ids = [f"{settle.value}-{share:.2f}-{i}" for i in range(count)]
    exchange = await channel.get_exchange(relay.RELAY_EXCHANGE)
    await preload(exchange, relay.RELAY_IN, [os.urandom(_BODY_BYTES)] * count, message_ids=ids)
    command = relay_command(world.amqp_url, world.settings.prefetch, world.loop, 2, settle.value)
    logs = world.root / "logs" / f"settle-{settle.value}"
    async with WorkerPool(command, 1, logs) as first:
        await first.wait_consuming(channel, relay.RELAY_IN, _START_TIMEOUT)
        arrived = await _until(channel, lambda out, _: out >= share * count)
        first.processes[0].kill()
        await asyncio.to_thread(first.processes[0].wait)
    async with WorkerPool(command, 1, logs) as second:
        await second.wait_consuming(channel, relay.RELAY_IN, _START_TIMEOUT)
        await _drained(channel)
    copies = {name: await _ids(channel, name) for name in (relay.RELAY_OUT, relay.RELAY_SIDE)}
    return {
        "killed_at": arrived,
        "published_twice": {
            name: sum(1 for n in found.values() if n > 1) for name, found in copies.items()
        },
        "most_copies": max((n for found in copies.values() for n in found.values()), default=0),
        "lost": sum(1 for i in ids if any(i not in found for found in copies.values())),
    }


async def _until(channel: AbstractChannel, done: Callable[[int, int], bool]) -> int:
    """Poll the destination and the source until ``done(out, in)``; the destination's depth."""
    deadline = time.monotonic() + _DRAIN_TIMEOUT
    while True:
        out, source = await depth(channel, relay.RELAY_OUT), await depth(channel, relay.RELAY_IN)
        if done(out, source):
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{relay.RELAY_OUT}: {out} messages, {source} left to relay")
        await asyncio.sleep(0.02)


async def _drained(channel: AbstractChannel) -> None:
    """Wait until the source is empty and the destination has not grown for a while (the
    source counts only ready messages: one in the relay's hands is not among them)."""
    seen, since = -1, time.monotonic()
    while True:
        out = await _until(channel, lambda _, source: source == 0)
        if out != seen:
            seen, since = out, time.monotonic()
        elif time.monotonic() - since >= _QUIET_SECONDS:
            return
        await asyncio.sleep(0.1)


async def _ids(channel: AbstractChannel, name: str) -> collections.Counter[str]:
    """Every message in ``name``, taken off it, counted by message id."""
    queue = await channel.get_queue(name, ensure=False)
    found: collections.Counter[str] = collections.Counter()
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        found[message.message_id or ""] += 1
    return found


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"The two-publish relay settled two ways; {figures['messages']:,} messages, one relay "
        "SIGKILLed per round, a second draining the rest; load average before "
        f"{figures['load_before']}, after {figures['load_after']}",
        f"  {'settle':8} {'msg/s':>9}  rounds: arrived at the kill / published twice "
        "(out, side) / lost",
    ]
    for name, row in figures["settle"].items():
        rate = f"{row['per_second']:,.1f}" if row["per_second"] else "not timed"
        rounds = "; ".join(
            f"{r['killed_at']:,} / {r['published_twice'][relay.RELAY_OUT]}, "
            f"{r['published_twice'][relay.RELAY_SIDE]} / {r['lost']}"
            for r in row["rounds"]
        )
        lines.append(f"  {name:8} {rate:>9}  {rounds}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.settle", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 3 kills per way")
    parser.add_argument("--amqp-url", help="run against this URL's vhost as given")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    count, kills = (2000, 3) if args.quick else (5000, 5)
    figures = asyncio.run(measure(count, kills, args.amqp_url))
    print(render(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
