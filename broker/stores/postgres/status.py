"""The status store in PostgreSQL: every host writes the Laufzettel to one database.

The same store as the SQLite one (`broker.stores.status`): events as metadata (ids,
codes, agencies, times, digests; never a payload), written a batch per transaction, and
the HTTP submission claims. Since every host writes here, ``xbroker status`` and ``GET
/v1/messages/{uuid}`` on any host show the events that every other host wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from broker.errors import StoreError
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.postgres.database import Database
from broker.stores.status import Laufzettel, SubmissionClaim, SubmissionMatch, WaitingCopy

__all__ = ["PostgresStatusStore"]

_COLUMNS = "uuid, kind, at, author, agency, nachrichtentyp, standard, digest, reason, recipients"
_INSERT = f"INSERT INTO status_events ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"

_CLAIM_SUBMISSION = """
WITH claimed AS (
    INSERT INTO submissions (uuid, author, digest, at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (author, uuid) DO NOTHING
    RETURNING digest, at, true AS mine
)
SELECT digest, at, mine FROM claimed
UNION ALL
SELECT digest, at, false FROM submissions
WHERE author = $2 AND uuid = $1 AND NOT EXISTS (SELECT 1 FROM claimed)
"""

_WAITING = """
SELECT q.uuid, q.agency, min(q.author) AS author, min(q.at) AS queued
FROM status_events q
WHERE q.kind = 'queued' AND q.at < $1
  AND NOT EXISTS (
    SELECT 1 FROM status_events d
    WHERE d.uuid = q.uuid AND d.agency = q.agency AND d.kind IN ('delivered', 'failed'))
GROUP BY q.uuid, q.agency
"""


class PostgresStatusStore:
    """The Laufzettel of every message, shared by the hosts. Attach it as a journal."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Write ``events`` in one transaction: all of them or none."""
        if not events:
            return
        rows = [_row(event) for event in events]
        async with self._db.transaction("status write") as conn:
            await conn.executemany(_INSERT, rows)

    async def timeline(self, uuid: str) -> Laufzettel:
        rows = await self._db.fetch(
            "status read",
            f"SELECT {_COLUMNS} FROM status_events WHERE uuid = $1 ORDER BY at, id",
            uuid,
        )
        return Laufzettel(uuid, tuple(_event(row) for row in rows))

    async def uuids(self, limit: int = 100) -> tuple[str, ...]:
        """The most recently active nachrichtenUUIDs, newest first.

        Read from the newest events only (a message has a handful), so the answer costs
        the same however large the table has grown."""
        rows = await self._db.fetch(
            "status read",
            "SELECT uuid FROM (SELECT uuid, id FROM status_events ORDER BY id DESC LIMIT $2) e "
            "GROUP BY uuid ORDER BY max(id) DESC LIMIT $1",
            limit,
            limit * 20,
        )
        return tuple(str(row["uuid"]) for row in rows)

    async def waiting(self, queued_before: datetime) -> tuple[WaitingCopy, ...]:
        """Copies queued for an agency before ``queued_before`` that it has neither
        confirmed (delivered) nor lost (failed): mail that waits unfetched."""
        rows = await self._db.fetch("status read", _WAITING, queued_before.astimezone(UTC))
        return tuple(
            WaitingCopy(
                str(row["uuid"]),
                str(row["agency"]),
                None if row["author"] is None else str(row["author"]),
                row["queued"],
            )
            for row in rows
        )

    async def claim_submission(self, uuid: str, author: str, digest: str) -> SubmissionClaim:
        """Register bytes ``author`` sent over HTTP under ``uuid``; say whether they are
        new. Only the author's own claims are looked at (the claim is the author's)."""
        now = datetime.now(UTC)
        for _ in range(3):
            rows = await self._db.fetch(
                "submission claim", _CLAIM_SUBMISSION, uuid, author, digest, now
            )
            if not rows:
                continue  # inserted by another host after the statement began: read it
            row = rows[0]
            if row["mine"]:
                return SubmissionClaim(SubmissionMatch.NEW, author, digest, row["at"])
            match = SubmissionMatch.SAME if row["digest"] == digest else SubmissionMatch.CONFLICT
            return SubmissionClaim(match, author, str(row["digest"]), row["at"])
        raise StoreError(f"submission claim of {uuid} did not settle")

    async def release_submission(self, uuid: str, author: str, digest: str) -> None:
        """Forget a claim whose publish failed, so the client's retry is new again."""
        await self._db.execute(
            "submission release",
            "DELETE FROM submissions WHERE author = $1 AND uuid = $2 AND digest = $3",
            author,
            uuid,
            digest,
        )

    async def prune(self, before: datetime) -> int:
        """Delete events and claims older than ``before``; return how many events."""
        cutoff = before.astimezone(UTC)
        deleted = await self._db.delete_in_chunks(
            "status prune",
            "DELETE FROM status_events WHERE id = ANY (ARRAY("
            "SELECT id FROM status_events WHERE at < $1 ORDER BY at LIMIT 10000))",
            cutoff,
        )
        await self._db.delete_in_chunks(
            "status prune",
            "DELETE FROM submissions WHERE ctid = ANY (ARRAY("
            "SELECT ctid FROM submissions WHERE at < $1 LIMIT 10000))",
            cutoff,
        )
        return deleted

    async def close(self) -> None:
        """Nothing of its own: the `Database` is closed by whoever opened it."""


def _row(event: StatusEvent) -> tuple[object, ...]:
    return (
        event.uuid,
        event.kind.value,
        event.at.astimezone(UTC),
        event.author,
        event.agency,
        event.nachrichtentyp,
        event.standard,
        event.digest,
        event.reason,
        list(event.recipients),
    )


def _event(row: asyncpg.Record) -> StatusEvent:
    return StatusEvent(
        uuid=str(row["uuid"]),
        kind=EventKind(str(row["kind"])),
        author=row["author"],
        agency=row["agency"],
        nachrichtentyp=row["nachrichtentyp"],
        standard=row["standard"],
        digest=row["digest"],
        reason=row["reason"],
        recipients=tuple(row["recipients"]),
        at=row["at"],
    )
