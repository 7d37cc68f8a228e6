"""The schema of the PostgreSQL stores, as numbered SQL files applied once each, in order.

``migrations/NNNN_name.sql`` is version NNNN. ``schema_migrations`` records which
versions a database has; `migrate` applies the missing ones, each in its own transaction
together with its row in that table, under a transaction-scoped advisory lock, so that
workers starting together on several hosts apply each migration exactly once and none
of them uses a half-made schema. A version, once released, is never edited: a change is
a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

__all__ = ["MIGRATIONS", "Migration", "migrate"]

# Any constant of our own: the key of the advisory lock that serialises migrations.
_LOCK_KEY = 0x78627231  # "xbr1"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _load() -> tuple[Migration, ...]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


MIGRATIONS = _load()


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations ``conn``'s database lacks; return the versions applied.

    Even ``schema_migrations`` is made under the lock: two sessions creating a table of
    the same name at once are not both told it exists; one fails (a unique violation in
    the catalog), which hosts starting together on a new database did."""
    applied: list[int] = []
    for migration in MIGRATIONS:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await conn.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
            )
            if done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied
