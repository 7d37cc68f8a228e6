"""asyncpg against psycopg 3 on the two paths the broker's PostgreSQL stores take per message.

    python -m bench.drivers [--messages N] [--url postgresql://...]

* **claim/complete**: the deduplication claim (one ``INSERT ... ON CONFLICT ... RETURNING``)
  and its completion (an ``UPDATE``), for N messages from 32 concurrent tasks (a worker's
  messages in flight), each driver through its own connection pool of 4.
* **status append**: the journal's batches, N events in batches of 16 and of 64, each
  batch one transaction (``executemany`` of the events' rows).

Both drivers run the same SQL in the same run, one after the other, each on a fresh
database of the local cluster (``XBROKER_DATABASE_URL``, else ``broker.devdb``), and the
order is alternated across repetitions so that neither always runs on a warmer server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg_pool

from broker.stores.postgres.migrations import migrate

__all__ = ["fresh_database", "local_database_url", "main"]

_CLAIM_ASYNCPG = """
WITH claimed AS (
    INSERT INTO dedup_claims AS c (author, uuid, digest, first_seen, completed)
    VALUES ($1, $2, $3, $4, false)
    ON CONFLICT (author, uuid) DO UPDATE
        SET digest = excluded.digest, first_seen = excluded.first_seen, completed = false
        WHERE c.first_seen < $5
    RETURNING c.digest, c.first_seen, c.completed
)
SELECT true, digest, first_seen, completed FROM claimed
UNION ALL
SELECT false, digest, first_seen, completed FROM dedup_claims
WHERE author = $1 AND uuid = $2 AND NOT EXISTS (SELECT 1 FROM claimed)
"""
_COMPLETE_ASYNCPG = "UPDATE dedup_claims SET completed = true WHERE author = $1 AND uuid = $2"
_INSERT_ASYNCPG = (
    "INSERT INTO status_events (uuid, kind, at, author, agency, nachrichtentyp, standard, "
    "digest, reason, recipients) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)


def _psycopg(sql: str) -> str:
    """The same statement with psycopg's placeholders (%s, repeated where $n repeats)."""
    for n in range(10, 0, -1):
        sql = sql.replace(f"${n}", f"%(p{n})s")
    return sql


_CLAIM_PSYCOPG = _psycopg(_CLAIM_ASYNCPG)
_COMPLETE_PSYCOPG = _psycopg(_COMPLETE_ASYNCPG)
_INSERT_PSYCOPG = _psycopg(_INSERT_ASYNCPG)
CONCURRENCY = 32
POOL = 4
SYNC = "on"


@dataclass(frozen=True)
class Figures:
    claims_per_second: float
    claim_p50_us: float
    claim_p99_us: float
    events_per_second_16: float
    events_per_second_64: float


def _events(count: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    digest = "ab" * 32
    return [
        (
            str(uuidlib.uuid4()),
            "queued",
            now,
            "osi:hh-portal",
            "psw:02000000",
            "meldung.anmeldung.0200",
            "xmeld/1.1",
            digest,
            None,
            ["psw:02000000"],
        )
        for _ in range(count)
    ]


async def _concurrently(count: int, one: Callable[[int], Awaitable[float]]) -> list[float]:
    latencies: list[float] = []
    next_index = iter(range(count))

    async def runner() -> None:
        for index in next_index:
            latencies.append(await one(index))

    await asyncio.gather(*(runner() for _ in range(CONCURRENCY)))
    return latencies


async def _asyncpg_run(url: str, messages: int) -> Figures:
    pool = await asyncpg.create_pool(
        url, min_size=POOL, max_size=POOL, server_settings={"synchronous_commit": SYNC}
    )
    assert pool is not None
    prefix = secrets.token_hex(4)
    try:
        cutoff = time.time() - 86400

        async def claim(index: int) -> float:
            started = time.perf_counter()
            uuid = f"{prefix}-{index}"
            rows = await pool.fetch(_CLAIM_ASYNCPG, "osi:a", uuid, "ab" * 32, time.time(), cutoff)
            took = time.perf_counter() - started
            assert rows and rows[0][0]
            await pool.execute(_COMPLETE_ASYNCPG, "osi:a", uuid)
            return took

        started = time.perf_counter()
        latencies = await _concurrently(messages, claim)
        claims = messages / (time.perf_counter() - started)

        async def append(batch: int) -> float:
            rows = _events(messages)
            started = time.perf_counter()
            for start in range(0, len(rows), batch):
                async with pool.acquire() as conn, conn.transaction():
                    await conn.executemany(_INSERT_ASYNCPG, rows[start : start + batch])
            return len(rows) / (time.perf_counter() - started)

        return Figures(claims, *_percentiles(latencies), await append(16), await append(64))
    finally:
        await pool.close()


async def _psycopg_run(url: str, messages: int) -> Figures:
    pool = psycopg_pool.AsyncConnectionPool(
        url,
        min_size=POOL,
        max_size=POOL,
        open=False,
        kwargs={"options": f"-c synchronous_commit={SYNC}", "autocommit": True},
    )
    await pool.open(wait=True)
    prefix = secrets.token_hex(4)
    try:
        cutoff = time.time() - 86400

        async def claim(index: int) -> float:
            uuid = f"{prefix}-{index}"
            params = {"p1": "osi:a", "p2": uuid, "p3": "ab" * 32, "p4": time.time(), "p5": cutoff}
            started = time.perf_counter()
            async with pool.connection() as conn:
                cur = await conn.execute(_CLAIM_PSYCOPG, params)
                rows = await cur.fetchall()
            took = time.perf_counter() - started
            assert rows and rows[0][0]
            async with pool.connection() as conn:
                await conn.execute(_COMPLETE_PSYCOPG, {"p1": "osi:a", "p2": uuid})
            return took

        started = time.perf_counter()
        latencies = await _concurrently(messages, claim)
        claims = messages / (time.perf_counter() - started)

        async def append(batch: int) -> float:
            rows = [
                {f"p{n + 1}": value for n, value in enumerate(row)} for row in _events(messages)
            ]
            started = time.perf_counter()
            for start in range(0, len(rows), batch):
                async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(_INSERT_PSYCOPG, rows[start : start + batch])
            return len(rows) / (time.perf_counter() - started)

        return Figures(claims, *_percentiles(latencies), await append(16), await append(64))
    finally:
        await pool.close()


def _percentiles(latencies: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return (
        statistics.median(ordered) * 1e6,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    )


async def fresh_database(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"xbroker_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    target = url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(target)
    await migrate(conn)
    await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()

    return target, drop


async def measure(url: str, messages: int, repeats: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[Figures]] = {"asyncpg": [], "psycopg": []}
    drivers: dict[str, Callable[[str, int], Awaitable[Figures]]] = {
        "asyncpg": _asyncpg_run,
        "psycopg": _psycopg_run,
    }
    for repeat in range(repeats):
        order = ["asyncpg", "psycopg"] if repeat % 2 == 0 else ["psycopg", "asyncpg"]
        for name in order:
            target, drop = await fresh_database(url)
            try:
                runs[name].append(await drivers[name](target, messages))
            finally:
                await drop()
    return {
        name: {
            field: statistics.median(getattr(f, field) for f in figures)
            for field in Figures.__dataclass_fields__
        }
        for name, figures in runs.items()
    }


def render(figures: dict[str, dict[str, float]]) -> str:
    a, p = figures["asyncpg"], figures["psycopg"]
    rows = [
        ("claim+complete, messages/s", "claims_per_second", "{:,.0f}"),
        ("claim latency p50, µs", "claim_p50_us", "{:,.0f}"),
        ("claim latency p99, µs", "claim_p99_us", "{:,.0f}"),
        ("status append, events/s (batches of 16)", "events_per_second_16", "{:,.0f}"),
        ("status append, events/s (batches of 64)", "events_per_second_64", "{:,.0f}"),
    ]
    lines = [f"{'':42} {'asyncpg':>10} {'psycopg 3':>10} {'asyncpg/psycopg':>16}"]
    for label, key, fmt in rows:
        lines.append(
            f"{label:42} {fmt.format(a[key]):>10} {fmt.format(p[key]):>10} {a[key] / p[key]:>16.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drivers", description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", help="a database whose role may CREATE DATABASE")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--synchronous-commit", choices=("on", "off"), default="off", help="as the stores"
    )
    args = parser.parse_args(argv)
    global SYNC
    SYNC = args.synchronous_commit
    url = args.url or local_database_url()
    figures = asyncio.run(measure(url, args.messages, args.repeats))
    print(render(figures))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return 0


def local_database_url() -> str:
    import os

    from broker import devdb

    return os.environ.get("XBROKER_DATABASE_URL") or devdb.ensure_cluster().url


if __name__ == "__main__":
    sys.exit(main())
