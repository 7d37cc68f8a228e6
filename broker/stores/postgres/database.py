"""The PostgreSQL database that the broker hosts share: its pool, its schema, its faults.

One `Database` per process, shared by its stores. The pool (asyncpg) is opened on first
use, and the schema brought up to date then (`broker.stores.postgres.migrations`), so
building the broker needs no running server: a database that does not answer at start
is met by the first message like any later outage.

Every connection runs with ``statement_timeout`` (a statement that waits on a lock or a
stalled server ends with an error instead of holding its message for ever),
``idle_in_transaction_session_timeout`` (a client that stalls inside a transaction frees
its locks) and TCP keepalives (a host that vanished without closing its connections is
noticed in about 25 s; see `Presence`). The client side adds a command timeout a little
longer than the statement timeout, for a server that does not answer at all.
``synchronous_commit`` is off unless the settings say otherwise: a commit is then
acknowledged once it is in the server's memory and flushed within a fraction of a
second, which is the promise the SQLite stores make (``synchronous=NORMAL``: what a
broker process wrote survives its death, not necessarily the server's).

Failures of the surroundings leave as `StoreError`: a server that refuses connections,
is shutting down or starting up, a connection lost mid-statement, a statement timeout,
a full disk, a serialisation failure or deadlock, and a server that has become a
read-only standby (a failover the URL's ``target_session_attrs=read-write`` will follow
at the next connection). The pool replaces a lost connection at its next use, so the
store resumes by itself when the server answers again. A violated constraint or a
malformed statement is a bug and stays what it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg

from broker.errors import StoreError
from broker.stores.postgres.migrations import migrate

__all__ = ["Database", "Presence", "transient"]

log = logging.getLogger("xbroker.stores")

# SQLSTATE classes of faults outside the statement: connection exception, insufficient
# resources (disk full, too many connections), operator intervention (shutdown, start-up,
# statement timeout), system error (I/O), transaction rollback (serialisation, deadlock).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# A read-only transaction (a standby after failover) and a lock not available.
_TRANSIENT_STATES = frozenset({"25006", "55P03"})


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the database's surroundings, worth waiting out."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing": the connection went away under us.
        return "closed" in str(exc) or "closing" in str(exc)
    return isinstance(exc, OSError | TimeoutError)


class _Mapped:
    """``with _Mapped(what):`` turns transient driver errors into `StoreError`."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, StoreError) and transient(exc):
            raise StoreError(f"{self._what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Presence:
    """Who holds a claim: one server session of a live broker process.

    A claim records the backend pid and start time of its process's presence connection;
    while that session is listed in ``pg_stat_activity`` the claim's holder is alive. A
    process that dies takes its session with it (at once when its host closes the
    connection, within the keepalive time when the host itself is gone).
    """

    pid: int
    started: datetime


class Database:
    """The pool and presence of one process; opened on first use, reopened after faults."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        statement_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        synchronous_commit: bool = False,
        application_name: str = "xbroker",
    ) -> None:
        self.url = url
        self._pool_size = pool_size
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._server_settings = {
            "application_name": application_name,
            "statement_timeout": str(int(statement_timeout * 1000)),
            "idle_in_transaction_session_timeout": str(int(max(60.0, statement_timeout) * 1000)),
            "synchronous_commit": "on" if synchronous_commit else "off",
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
        }
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._presence_conn: asyncpg.Connection | None = None
        self._presence: Presence | None = None
        self._presence_lock = asyncio.Lock()
        self._closed = False

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened (and the schema migrated) on first use."""
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                if self._closed:
                    raise StoreError("the database is closed")
                with _Mapped("cannot connect to the database"):
                    pool = await asyncpg.create_pool(
                        self.url,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=self._connect_timeout,
                        command_timeout=self._statement_timeout + 2.0,
                        server_settings=self._server_settings,
                    )
                try:
                    with _Mapped("cannot migrate the database"):
                        async with pool.acquire() as conn:
                            applied = await migrate(conn)
                except BaseException:
                    await pool.close()
                    raise
                if applied:
                    log.info("database.migrated", extra={"xbroker_facts": {"versions": applied}})
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; transient failures inside leave as `StoreError`."""
        pool = await self.pool()
        with _Mapped(what):
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside one transaction (committed when the block ends)."""
        async with self.connection(what) as conn, conn.transaction():
            yield conn

    async def fetch(self, what: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection(what) as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def execute(self, what: str, sql: str, *args: Any) -> str:
        async with self.connection(what) as conn:
            status: str = await conn.execute(sql, *args)
            return status

    async def delete_in_chunks(self, what: str, sql: str, *args: Any) -> int:
        """Run a chunked DELETE (``sql`` deletes at most a bounded number of rows) until
        it deletes nothing; each chunk is a statement of its own, well inside the
        statement timeout, holding its row locks only briefly. Returns the rows deleted."""
        total = 0
        while True:
            status = await self.execute(what, sql, *args)
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted == 0:
                return total

    async def presence(self) -> Presence:
        """This process's presence: its idle session that vouches for its claims.

        Opened on first use and again whenever it was lost; a new session is a new
        presence, so claims held under a lost one look abandoned to the other hosts.
        """
        conn = self._presence_conn
        if conn is not None and not conn.is_closed() and self._presence is not None:
            return self._presence
        async with self._presence_lock:
            conn = self._presence_conn
            if conn is None or conn.is_closed() or self._presence is None:
                if self._closed:
                    raise StoreError("the database is closed")
                await self.pool()  # the schema first
                with _Mapped("cannot connect to the database"):
                    conn = await asyncpg.connect(
                        self.url,
                        timeout=self._connect_timeout,
                        command_timeout=self._statement_timeout + 2.0,
                        server_settings={
                            **self._server_settings,
                            "application_name": (
                                self._server_settings["application_name"] + " presence"
                            ),
                        },
                    )
                    row = await conn.fetchrow(
                        "SELECT pid, backend_start FROM pg_stat_activity "
                        "WHERE pid = pg_backend_pid()"
                    )
                if row is None:
                    await conn.close()
                    raise StoreError("the database does not list our own session")
                self._presence_conn = conn
                self._presence = Presence(int(row["pid"]), row["backend_start"])
            assert self._presence is not None
            return self._presence

    @property
    def present(self) -> Presence | None:
        """This process's presence if it has one open now (no connection is made)."""
        conn = self._presence_conn
        return self._presence if conn is not None and not conn.is_closed() else None

    async def close(self) -> None:
        """Close the pool and the presence; later use raises `StoreError`."""
        self._closed = True
        pool, self._pool = self._pool, None
        conn, self._presence_conn = self._presence_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self._connect_timeout)
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._connect_timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()
