"""The broker with its stores on PostgreSQL against SQLite: same run, one and two workers.

    python -m bench.stores [--count N] [--database-url postgresql://...] [--json PATH]

The same signed backlog of 2 KB ECDSA messages is drained by ``xbroker run`` worker
processes four ways: SQLite files (the default for one host) and PostgreSQL (shared by
hosts), each with one worker and with two. Each PostgreSQL drain gets a new database of
its own (so that no drain sees the claims of another as duplicates), each SQLite drain a
new state folder. The bare relay's rate on the same backlog is measured in the same run
as the ceiling. Figures: messages/s (from the agency inbox filling, ``bench.queues``),
and the ratio of PostgreSQL to SQLite at the same number of workers.

RabbitMQ as for ``python -m bench``; PostgreSQL: ``--database-url`` (a role that may
CREATE DATABASE), else ``XBROKER_DATABASE_URL``, else this checkout's cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aio_pika

from bench.drivers import fresh_database, local_database_url
from bench.messages import all_classes, sign_many
from bench.queues import DrainTiming
from bench.report import load_average, machine
from bench.throughput import broker_drain, declare_topology, relay_drain
from bench.world import bench_world

__all__ = ["main", "measure"]

WORKERS = (1, 2)


async def measure(count: int, database_url: str, amqp_url: str | None = None) -> dict[str, Any]:
    cls = all_classes()[0]
    figures: dict[str, Any] = {
        "machine": machine(),
        "class": cls.name,
        "messages": count,
        "load_before": load_average(),
    }
    async with bench_world(amqp_url) as world:
        bodies = sign_many(world.settings.pki, cls, count)
        connection = await aio_pika.connect(world.amqp_url)
        async with connection:
            channel = await connection.channel()
            await declare_topology(world, channel)
            for workers in WORKERS:
                relay = await relay_drain(world, channel, bodies, workers)
                figures[f"relay_{workers}"] = _rate(relay)
                sqlite = await broker_drain(world, channel, cls, bodies, workers)
                figures[f"sqlite_{workers}"] = _rate(sqlite.timing)
                url, drop = await fresh_database(database_url)
                try:
                    drain = await broker_drain(
                        world, channel, cls, bodies, workers, database_url=url
                    )
                finally:
                    await drop()
                figures[f"postgres_{workers}"] = _rate(drain.timing)
                figures[f"ratio_{workers}"] = _ratio(
                    figures[f"postgres_{workers}"], figures[f"sqlite_{workers}"]
                )
                _say(
                    f"{workers} worker(s): relay {figures[f'relay_{workers}']}, "
                    f"SQLite {figures[f'sqlite_{workers}']}, "
                    f"PostgreSQL {figures[f'postgres_{workers}']} messages/s"
                )
    figures["load_after"] = load_average()
    return figures


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['messages']:,} messages of {figures['class']} per drain "
        f"(load {figures['load_before'][0]:.2f} before, {figures['load_after'][0]:.2f} after)",
        "",
        "workers   relay/s   SQLite/s   PostgreSQL/s   PostgreSQL/SQLite",
    ]
    for workers in WORKERS:
        ratio = figures[f"ratio_{workers}"]
        lines.append(
            f"{workers:>7}   {_text(figures[f'relay_{workers}']):>7}   "
            f"{_text(figures[f'sqlite_{workers}']):>8}   "
            f"{_text(figures[f'postgres_{workers}']):>12}   "
            f"{'-' if ratio is None else f'{ratio:.2f}':>17}"
        )
    return "\n".join(lines)


def _rate(timing: DrainTiming) -> float | None:
    return None if timing.per_second is None else round(timing.per_second, 1)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _say(text: str) -> None:
    print(f"[bench.stores] {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__)
    parser.add_argument("--count", type=int, default=3000, help="messages per drain")
    parser.add_argument("--database-url", help="a database whose role may CREATE DATABASE")
    parser.add_argument("--amqp-url", help="run against this URL's vhost as given")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    url = args.database_url or local_database_url()
    figures = asyncio.run(measure(args.count, url, args.amqp_url))
    print(render(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
