"""The deduplication claim in an SQLite file, shared by the workers of one host.

The protocol is `broker.stores.dedup`'s. WAL mode; it keeps ids and digests only. A
claim is one ``BEGIN IMMEDIATE`` transaction, so the workers of the host take turns:
it reads the message's row and decides, under that lock, whether this store may hold
it (new, past the window, or pending with a holder that is gone) or must leave it
(other bytes, completed, or a live holder: `broker.stores.sqlite.files.Holder`).
Every method raises `StoreError` when the file cannot be read or written
(`broker.stores.sqlite.guard`). Claims and completions run on a connection of their own
(`WriteConnection`): on the loop when the file's write lock is free, else in a thread,
so the loop never waits for another worker's write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from broker.stores.dedup import Claim, ClaimState
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite.files import BUSY, Holder, WriteConnection, open_shared
from broker.stores.sqlite.guard import StoreGuard

__all__ = ["SqliteDedupStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    author      TEXT NOT NULL,
    uuid        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    completed   INTEGER NOT NULL DEFAULT 0,
    holder      TEXT,
    PRIMARY KEY (author, uuid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_first ON seen (first_seen);
"""
_COMPLETE = "UPDATE seen SET completed=1, holder=NULL WHERE author=? AND uuid=?"


class SqliteDedupStore:
    """Claims and completions of nachrichtenUUIDs per author, within ``window_seconds``."""

    def __init__(self, path: Path, window_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._guard = StoreGuard(path)
        self._db = open_shared(path)
        with self._guard:
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(seen)")}
            if "holder" not in columns:  # a file written before claims named their holder
                self._db.execute("ALTER TABLE seen ADD COLUMN holder TEXT")
        self._window = window_seconds
        self._holder = Holder()
        self._writer = WriteConnection(path)

    async def claim(self, author: str, uuid: str, digest: str) -> Claim:
        now = time.time()
        return await self._writer.run(lambda db: self._claim(db, author, uuid, digest, now))

    def _claim(
        self, db: sqlite3.Connection, author: str, uuid: str, digest: str, now: float
    ) -> Claim:
        row = db.execute(
            "SELECT digest, first_seen, completed, holder FROM seen WHERE author=? AND uuid=?",
            (author, uuid),
        ).fetchone()
        if row is None or row[1] < now - self._window:
            db.execute(
                "INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, 0, ?)",
                (author, uuid, digest, now, self._holder.name),
            )
            return Claim(ClaimState.NEW, digest, now)
        first_digest, first_seen, completed, holder = row
        if first_digest != digest:
            return Claim(ClaimState.REUSED, first_digest, first_seen)
        if completed:
            return Claim(ClaimState.DUPLICATE, first_digest, first_seen)
        if Holder.alive(holder):
            return Claim(ClaimState.BUSY, first_digest, first_seen)
        db.execute(
            "UPDATE seen SET holder=? WHERE author=? AND uuid=?", (self._holder.name, author, uuid)
        )
        return Claim(ClaimState.RETRY, first_digest, first_seen)

    async def complete(self, author: str, uuid: str) -> None:
        await self.record_many((StatusEvent(uuid, EventKind.ACCEPTED, author=author),))

    async def record(self, event: StatusEvent) -> None:
        """As a journal: an accepted message is complete."""
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """As a journal: complete the claims of the accepted messages, in one transaction;
        a wait for the write lock is waited in a thread."""
        done = _completed(events)
        if done:
            await self._writer.run(lambda db: db.executemany(_COMPLETE, done))

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        done = _completed(events)
        if not done:
            return True
        completed = self._writer.transaction(lambda db: db.executemany(_COMPLETE, done), wait=False)
        return completed is not BUSY

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        done = _completed(events)
        if done:
            self._writer.transaction(lambda db: db.executemany(_COMPLETE, done), wait=True)

    async def release(self, author: str, uuid: str) -> None:
        """Forget an uncompleted claim (its delivery failed before anything was published)."""
        with self._guard:
            self._db.execute(
                "DELETE FROM seen WHERE author=? AND uuid=? AND completed=0", (author, uuid)
            )

    async def abandon(self, author: str, uuid: str) -> None:
        """Stop holding a claim without completing it: the next delivery is a RETRY."""
        with self._guard:
            self._db.execute(
                "UPDATE seen SET holder=NULL"
                " WHERE author=? AND uuid=? AND completed=0 AND holder=?",
                (author, uuid, self._holder.name),
            )

    async def prune(self) -> int:
        with self._guard:
            cur = self._db.execute(
                "DELETE FROM seen WHERE first_seen < ?", (time.time() - self._window,)
            )
        return int(cur.rowcount)

    async def close(self) -> None:
        self._holder.close()
        self._writer.close()
        self._guard.close(self._db)


def _completed(events: Sequence[StatusEvent]) -> list[tuple[str, str]]:
    """(author, uuid) of the accepted messages among ``events``."""
    return [(e.author, e.uuid) for e in events if e.kind is EventKind.ACCEPTED and e.author]
