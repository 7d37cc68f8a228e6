"""The status store: every state change of every message, as metadata (the Laufzettel).

A `Journal` the broker reports to. SQLite in WAL mode, so the HTTP API and
``xbroker status`` read while workers write, and workers on one host share one file.
It holds ids, codes, agencies, times and the SHA-256 of the bytes received; a
`StatusEvent` has no field for payload, and this store adds none.

It is a `broker.stores.journal.BatchJournal`: `record_many` writes a batch of events in one
transaction, which is how the worker's `JournalBatch` writes (one commit per event
cost more than all the checks of a message). Every method raises `StoreError` when the
file cannot be read or written (`broker.stores.sqlite`); a failed write leaves nothing
half-written behind (one transaction).

It also remembers which bytes arrived over HTTP from which author under which
nachrichtenUUID (`claim_submission`), so that a repeated POST gets the same answer and a
different message from the same author under a used UUID is refused (409). The claim is
the author's own: another author's message under the same UUID is a message of its own,
claimed and answered exactly as a fresh UUID is, so a POST tells nobody which UUIDs
others have used, nor lets anybody take a UUID away from its author.

Who sees what of a timeline is `Laufzettel.seen_by`: the author all events of its
message, a recipient those of its own copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite import StoreGuard, open_shared, rollback

__all__ = [
    "Laufzettel",
    "StatusStore",
    "SubmissionClaim",
    "SubmissionMatch",
    "WaitingCopy",
    "event_dict",
]

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


class SubmissionMatch(StrEnum):
    """How bytes arriving over HTTP compare with those claimed before under their UUID."""

    NEW = "new"  # first time this UUID arrives: publish it
    SAME = "same"  # the same bytes again: answer as before, publish nothing
    CONFLICT = "conflict"  # other bytes under a used UUID: refuse


@dataclass(frozen=True, slots=True)
class SubmissionClaim:
    match: SubmissionMatch
    author: str
    digest: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Laufzettel:
    """The timeline of one message, oldest event first."""

    uuid: str
    events: tuple[StatusEvent, ...]

    @property
    def author(self) -> str | None:
        return next((e.author for e in self.events if e.author), None)

    @property
    def recipients(self) -> tuple[str, ...]:
        for e in self.events:
            if e.kind is EventKind.ACCEPTED:
                return e.recipients
        return ()

    @property
    def state(self) -> str:
        """The latest event's kind; ``unknown`` for a message never seen."""
        return self.events[-1].kind.value if self.events else "unknown"

    def seen_by(self, kennung: str) -> Laufzettel:
        """Only the events that concern ``kennung``.

        The author sees every event of its message. A recipient sees those of its own
        copy, and the acceptance naming itself as the only recipient: never who else
        received the message. Events written before the author was known (a message
        taken from the queue, not yet read) concern nobody: under one UUID they could
        belong to another author's message.
        """
        seen: list[StatusEvent] = []
        for e in self.events:
            if e.author == kennung or e.agency == kennung:
                seen.append(e)
            elif kennung in e.recipients:
                seen.append(replace(e, recipients=(kennung,)))
        return Laufzettel(self.uuid, tuple(seen))

    def as_dict(self) -> dict[str, object]:
        """The JSON form served by the HTTP API and ``xbroker status --json``."""
        return {
            "uuid": self.uuid,
            "state": self.state,
            "author": self.author,
            "recipients": list(self.recipients),
            "events": [event_dict(e) for e in self.events],
        }


def event_dict(event: StatusEvent) -> dict[str, object]:
    """One event as JSON: empty fields left out."""
    fields: dict[str, object] = {
        "kind": event.kind.value,
        "at": event.at.astimezone(UTC).isoformat(),
        "author": event.author,
        "agency": event.agency,
        "nachrichtentyp": event.nachrichtentyp,
        "standard": event.standard,
        "sha256": event.digest,
        "reason": event.reason,
        "recipients": list(event.recipients) or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True, slots=True)
class WaitingCopy:
    uuid: str
    agency: str
    author: str | None
    queued: datetime


class StatusStore:
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

    def record(self, event: StatusEvent) -> None:
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Write ``events`` in one transaction: all of them or none."""
        rows = [_row(event) for event in events]
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                rollback(self._db)
                raise

    def timeline(self, uuid: str) -> Laufzettel:
        with self._guard:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE uuid=? ORDER BY at, id", (uuid,)
            ).fetchall()
        return Laufzettel(uuid, tuple(_event(row) for row in rows))

    def uuids(self, limit: int = 100) -> tuple[str, ...]:
        """The most recently active nachrichtenUUIDs, newest first."""
        with self._guard:
            rows = self._db.execute(
                "SELECT uuid FROM events GROUP BY uuid ORDER BY MAX(id) DESC LIMIT ?", (limit,)
            ).fetchall()
        return tuple(row[0] for row in rows)

    def waiting(self, queued_before: datetime) -> tuple[WaitingCopy, ...]:
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

    def claim_submission(self, uuid: str, author: str, digest: str) -> SubmissionClaim:
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

    def release_submission(self, uuid: str, author: str, digest: str) -> None:
        """Forget a claim whose publish failed, so the client's retry is new again."""
        with self._guard:
            self._db.execute(
                "DELETE FROM claims WHERE author=? AND uuid=? AND digest=?", (author, uuid, digest)
            )

    def prune(self, before: datetime) -> int:
        """Delete events and claims older than ``before``; return how many events."""
        cutoff = before.astimezone(UTC).isoformat()
        with self._guard:
            deleted = self._db.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM claims WHERE at < ?", (cutoff,))
        return int(deleted)

    def close(self) -> None:
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
