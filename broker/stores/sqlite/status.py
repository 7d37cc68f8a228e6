"""The status store in an SQLite file, shared by the workers of one host (WAL mode).

The store of `broker.stores.status`: ``xbroker status`` and the HTTP API read the file
while the workers write it. Every method raises `StoreError` when the file cannot be
read or written (`broker.stores.sqlite.guard`); a failed write leaves nothing
half-written behind (one transaction).

Events are written on a connection of their own (`WriteConnection`): at once when the
file's write lock is free, else from a thread (the journal batch's,
`broker.stores.journal`, or ``record_many``'s), so the event loop never waits for
another worker's write lock. Claims and reads stay on the loop's connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite.files import BUSY, WriteConnection, open_shared
from broker.stores.sqlite.guard import StoreGuard, rollback
from broker.stores.status import Laufzettel, SubmissionClaim, SubmissionMatch, WaitingCopy

__all__ = ["SqliteStatusStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    at              TEXT NOT NULL,
    author          TEXT,
    agency          TEXT,
    nachrichtentyp  TEXT,
    standard        TEXT,
    digest          TEXT,
    reason          TEXT,
    recipients      TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS events_uuid ON events (uuid, id);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS claims (
    author  TEXT NOT NULL,
    uuid    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (author, uuid)
) WITHOUT ROWID;
"""
# Claims were once keyed by the UUID alone, in a table of that name; they move over.
_OLD_CLAIMS = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='submissions'"
_MOVE_CLAIMS = (
    "INSERT OR IGNORE INTO claims (author, uuid, digest, at) "
    "SELECT author, uuid, digest, at FROM submissions"
)

_COLUMNS = "uuid, kind, at, author, agency, nachrichtentyp, standard, digest, reason, recipients"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqliteStatusStore:
    """The Laufzettel of every message. Attach it to the broker as a journal."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._guard = StoreGuard(path)
        self._db = open_shared(path)
        with self._guard:
            self._db.executescript(_SCHEMA)
            if self._db.execute(_OLD_CLAIMS).fetchone():
                self._move_old_claims()
        self._writer = WriteConnection(path)

    def _move_old_claims(self) -> None:
        # Checked again under the lock: another worker on this host may have moved them.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute(_OLD_CLAIMS).fetchone():
                self._db.execute(_MOVE_CLAIMS)
                self._db.execute("DROP TABLE submissions")
            self._db.execute("COMMIT")
        except BaseException:
            rollback(self._db)
            raise

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Write ``events`` in one transaction (all of them or none); a wait for the
        write lock is waited in a thread."""
        rows = [_row(event) for event in events]
        await self._writer.run(lambda db: db.executemany(_INSERT, rows))

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        rows = [_row(event) for event in events]
        done = self._writer.transaction(lambda db: db.executemany(_INSERT, rows), wait=False)
        return done is not BUSY

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        rows = [_row(event) for event in events]
        self._writer.transaction(lambda db: db.executemany(_INSERT, rows), wait=True)

    async def timeline(self, uuid: str) -> Laufzettel:
        with self._guard:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE uuid=? ORDER BY at, id", (uuid,)
            ).fetchall()
        return Laufzettel(uuid, tuple(_event(row) for row in rows))

    async def uuids(self, limit: int = 100) -> tuple[str, ...]:
        """The most recently active nachrichtenUUIDs, newest first."""
        with self._guard:
            rows = self._db.execute(
                "SELECT uuid FROM events GROUP BY uuid ORDER BY MAX(id) DESC LIMIT ?", (limit,)
            ).fetchall()
        return tuple(row[0] for row in rows)

    async def waiting(self, queued_before: datetime) -> tuple[WaitingCopy, ...]:
        """Copies queued for an agency before ``queued_before`` that it has neither
        confirmed (delivered) nor lost (failed): mail that waits unfetched."""
        with self._guard:
            rows = self._db.execute(
                """
                SELECT q.uuid, q.agency, q.author, MIN(q.at) FROM events q
                WHERE q.kind = 'queued' AND q.at < ?
                  AND NOT EXISTS (
                    SELECT 1 FROM events d
                    WHERE d.uuid = q.uuid AND d.agency = q.agency
                      AND d.kind IN ('delivered', 'failed'))
                GROUP BY q.uuid, q.agency
                """,
                (queued_before.astimezone(UTC).isoformat(),),
            ).fetchall()
        return tuple(
            WaitingCopy(row[0], row[1], row[2], datetime.fromisoformat(row[3])) for row in rows
        )

    async def claim_submission(self, uuid: str, author: str, digest: str) -> SubmissionClaim:
        """Register bytes ``author`` sent over HTTP under ``uuid``; say whether they are new.

        Only the author's own claims are looked at, so the work is the same whether
        another author used ``uuid`` or nobody did.
        """
        now = datetime.now(UTC)
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT digest, at FROM claims WHERE author=? AND uuid=?", (author, uuid)
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO claims VALUES (?, ?, ?, ?)",
                        (author, uuid, digest, now.isoformat()),
                    )
                    claim = SubmissionClaim(SubmissionMatch.NEW, author, digest, now)
                else:
                    match = SubmissionMatch.SAME if row[0] == digest else SubmissionMatch.CONFLICT
                    claim = SubmissionClaim(match, author, row[0], datetime.fromisoformat(row[1]))
                self._db.execute("COMMIT")
            except BaseException:
                rollback(self._db)
                raise
        return claim

    async def release_submission(self, uuid: str, author: str, digest: str) -> None:
        """Forget a claim whose publish failed, so the client's retry is new again."""
        with self._guard:
            self._db.execute(
                "DELETE FROM claims WHERE author=? AND uuid=? AND digest=?", (author, uuid, digest)
            )

    async def prune(self, before: datetime) -> int:
        """Delete events and claims older than ``before``; return how many events."""
        cutoff = before.astimezone(UTC).isoformat()
        with self._guard:
            deleted = self._db.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM claims WHERE at < ?", (cutoff,))
        return int(deleted)

    async def close(self) -> None:
        self._writer.close()
        self._guard.close(self._db)


def _row(event: StatusEvent) -> tuple[str | None, ...]:
    return (
        event.uuid,
        event.kind.value,
        event.at.astimezone(UTC).isoformat(),
        event.author,
        event.agency,
        event.nachrichtentyp,
        event.standard,
        event.digest,
        event.reason,
        json.dumps(list(event.recipients)) if event.recipients else "[]",
    )


def _event(row: Iterable[object]) -> StatusEvent:
    uuid, kind, at, author, agency, typ, standard, digest, reason, recipients = tuple(row)
    return StatusEvent(
        uuid=str(uuid),
        kind=EventKind(str(kind)),
        author=_opt(author),
        agency=_opt(agency),
        nachrichtentyp=_opt(typ),
        standard=_opt(standard),
        digest=_opt(digest),
        reason=_opt(reason),
        recipients=tuple(json.loads(str(recipients))),
        at=datetime.fromisoformat(str(at)),
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
