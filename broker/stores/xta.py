"""What the XTA endpoint remembers: messages sent over XTA, and each message box's index.

Metadata only, like the status store: XTA message ids, nachrichtenUUIDs, the parties'
identifiers, service and message type codes, SHA-256 digests, stream offsets and times.
The messages themselves wait in RabbitMQ (each XTA agency's box is a stream); this store
knows where in that stream each one is, and whether the agency has closed it.

``sent``  one row per SendMessage: the XTA MessageID, the nachrichtenUUID it carried, the
          author, the digest of the message and of each attachment, the MessageMetaData.
``box``   one row per copy in an agency's box: its stream offset, its metadata, and
          when it was first fetched and when closed. A closed row is never listed again.

SQLite in WAL mode (one file shared by the endpoint processes of one host), as the
status store; the rows are written by whichever process sees a copy first (insert or
ignore), so any number of processes can index and serve the same boxes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from broker.stores.status import open_shared

__all__ = ["BoxEntry", "SendClaim", "SentMessage", "XtaStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    message_id   TEXT PRIMARY KEY,
    uuid         TEXT NOT NULL,
    author       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    attachments  TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    at           TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sent_uuid ON sent (uuid);
CREATE TABLE IF NOT EXISTS box (
    kennung      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    uuid         TEXT NOT NULL,
    author       TEXT NOT NULL,
    nachrichtentyp TEXT NOT NULL,
    stream_offset INTEGER NOT NULL,
    digest       TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    published    REAL,
    queued       TEXT NOT NULL,
    fetched      TEXT,
    closed       TEXT,
    PRIMARY KEY (kennung, message_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS box_offset ON box (kennung, stream_offset);
CREATE INDEX IF NOT EXISTS box_open ON box (kennung, closed, stream_offset);
"""

_BOX_COLUMNS = (
    "kennung, message_id, uuid, author, nachrichtentyp, stream_offset, digest, metadata, "
    "published, queued, fetched, closed"
)


class SendClaim(StrEnum):
    NEW = "new"  # publish it
    SAME = "same"  # sent before with the same bytes: answer as before, publish nothing
    CONFLICT = "conflict"  # the MessageID was used for another message


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str
    uuid: str
    author: str
    digest: str
    attachments: tuple[str, ...]  # SHA-256 of each attachment, in order
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BoxEntry:
    kennung: str
    message_id: str
    uuid: str
    author: str
    nachrichtentyp: str
    offset: int
    digest: str  # SHA-256 of the message (the signed XÖV document)
    metadata: Mapping[str, Any]
    published: float | None  # the author's publish time, for the end-to-end latency
    queued: datetime
    fetched: datetime | None = None
    closed: datetime | None = None


class XtaStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = open_shared(path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- sent --------------------------------------------------------------------------

    def claim_send(self, sent: SentMessage) -> SendClaim:
        """Record a SendMessage once per MessageID; tell a repeat from a conflict."""
        with self._db:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sent.message_id,
                    sent.uuid,
                    sent.author,
                    sent.digest,
                    json.dumps(list(sent.attachments)),
                    json.dumps(dict(sent.metadata)),
                    _now(),
                ),
            ).rowcount
        if inserted:
            return SendClaim.NEW
        known = self.sent(sent.message_id)
        same = known is not None and (known.uuid, known.author, known.digest) == (
            sent.uuid,
            sent.author,
            sent.digest,
        )
        return SendClaim.SAME if same else SendClaim.CONFLICT

    def release_send(self, message_id: str) -> None:
        """Forget a send that could not be published, so the caller may try again."""
        with self._db:
            self._db.execute("DELETE FROM sent WHERE message_id = ?", (message_id,))

    def sent(self, message_id: str) -> SentMessage | None:
        row = self._db.execute("SELECT * FROM sent WHERE message_id = ?", (message_id,)).fetchone()
        return _sent(row) if row else None

    def sent_as(self, uuid: str) -> SentMessage | None:
        """The (first) XTA send that carried the message ``uuid``."""
        row = self._db.execute(
            "SELECT * FROM sent WHERE uuid = ? ORDER BY at LIMIT 1", (uuid,)
        ).fetchone()
        return _sent(row) if row else None

    # -- boxes -------------------------------------------------------------------------

    def add(self, entry: BoxEntry) -> bool:
        """Index a copy of a box; False if it was indexed before (by any process)."""
        with self._db:
            return bool(
                self._db.execute(
                    f"INSERT OR IGNORE INTO box ({_BOX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        entry.kennung,
                        entry.message_id,
                        entry.uuid,
                        entry.author,
                        entry.nachrichtentyp,
                        entry.offset,
                        entry.digest,
                        json.dumps(dict(entry.metadata)),
                        entry.published,
                        entry.queued.astimezone(UTC).isoformat(),
                        None,
                        None,
                    ),
                ).rowcount
            )

    def next_offset(self, kennung: str) -> int | None:
        """The stream offset after the last one indexed for ``kennung`` (None: none yet)."""
        row = self._db.execute(
            "SELECT MAX(stream_offset) FROM box WHERE kennung = ?", (kennung,)
        ).fetchone()
        return None if row[0] is None else int(row[0]) + 1

    def waiting(
        self, kennung: str, limit: int, after: int = -1
    ) -> tuple[tuple[BoxEntry, ...], int]:
        """The oldest ``limit`` open copies of a box past offset ``after``, and how many
        open copies follow them."""
        rows = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND closed IS NULL "
            "AND stream_offset > ? ORDER BY stream_offset LIMIT ?",
            (kennung, after, limit),
        ).fetchall()
        entries = tuple(_entry(r) for r in rows)
        last = entries[-1].offset if entries else after
        (pending,) = self._db.execute(
            "SELECT COUNT(*) FROM box WHERE kennung = ? AND closed IS NULL AND stream_offset > ?",
            (kennung, last),
        ).fetchone()
        return entries, int(pending)

    def open_count(self, kennung: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM box WHERE kennung = ? AND closed IS NULL", (kennung,)
        ).fetchone()
        return int(row[0])

    def entry(self, kennung: str, message_id: str) -> BoxEntry | None:
        row = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND message_id = ?",
            (kennung, message_id),
        ).fetchone()
        return _entry(row) if row else None

    def entry_of(self, kennung: str, uuid: str) -> BoxEntry | None:
        row = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND uuid = ?", (kennung, uuid)
        ).fetchone()
        return _entry(row) if row else None

    def fetched(self, kennung: str, message_id: str) -> None:
        """Remember the first fetch (XTA's InitialFetch)."""
        with self._db:
            self._db.execute(
                "UPDATE box SET fetched = ? WHERE kennung = ? AND message_id = ? "
                "AND fetched IS NULL",
                (_now(), kennung, message_id),
            )

    def close_entry(self, kennung: str, message_id: str) -> bool:
        """Close a copy; True only for the call that closed it (once, across processes)."""
        with self._db:
            return bool(
                self._db.execute(
                    "UPDATE box SET closed = ? WHERE kennung = ? AND message_id = ? "
                    "AND closed IS NULL",
                    (_now(), kennung, message_id),
                ).rowcount
            )

    def reopen(self, kennung: str, message_id: str) -> None:
        """Undo a close whose receipt could not be published, so the close can be retried."""
        with self._db:
            self._db.execute(
                "UPDATE box SET closed = NULL WHERE kennung = ? AND message_id = ?",
                (kennung, message_id),
            )

    def open_counts(self, kennungen: Sequence[str]) -> dict[str, int]:
        return {kennung: self.open_count(kennung) for kennung in kennungen}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _sent(row: sqlite3.Row | tuple[Any, ...]) -> SentMessage:
    message_id, uuid, author, digest, attachments, metadata, _at = tuple(row)
    return SentMessage(
        str(message_id),
        str(uuid),
        str(author),
        str(digest),
        tuple(json.loads(str(attachments))),
        json.loads(str(metadata)),
    )


def _entry(row: sqlite3.Row | tuple[Any, ...]) -> BoxEntry:
    (
        kennung,
        message_id,
        uuid,
        author,
        nachrichtentyp,
        offset,
        digest,
        metadata,
        published,
        queued,
        fetched,
        closed,
    ) = tuple(row)
    return BoxEntry(
        kennung=str(kennung),
        message_id=str(message_id),
        uuid=str(uuid),
        author=str(author),
        nachrichtentyp=str(nachrichtentyp),
        offset=int(offset),
        digest=str(digest),
        metadata=json.loads(str(metadata)),
        published=None if published is None else float(published),
        queued=datetime.fromisoformat(str(queued)),
        fetched=_time(fetched),
        closed=_time(closed),
    )
