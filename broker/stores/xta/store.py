"""What the XTA endpoint remembers: messages sent over XTA, and each message box's index.

Metadata only, like the status store: XTA message ids, nachrichtenUUIDs, the parties'
identifiers, service and message type codes, SHA-256 digests, stream offsets and times.
The messages themselves wait in RabbitMQ (each XTA agency's box is a stream); this store
knows where in that stream each one is, and whether the agency has closed it.

``sent``    one row per SendMessage: the XTA MessageID, the nachrichtenUUID it carried,
            the author, the digest of the message and of each attachment, the
            MessageMetaData.
``box``     one row per copy in an agency's box: its stream offset, its metadata, when
            it was first fetched, and when and how it left the box (closed by the
            agency, or expired unclosed). A row that left is never listed again.
``cursor``  per box, the lowest stream offset not known to be indexed: every offset
            below it is a copy in ``box`` or was no copy (a padding, an unreadable
            entry). Indexing resumes there, so a copy whose indexing failed is read
            again, never skipped. And the box's last padding (`broker.xta.upkeep`).

SQLite in WAL mode (one file shared by the endpoint processes of one host), as the
status store; the rows are written by whichever process sees a copy first (insert or
ignore), so any number of processes can index and serve the same boxes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from broker.stores.sqlite import open_shared
from broker.stores.xta.rows import (
    BoxEntry,
    CloseResult,
    Outcome,
    Padding,
    SendClaim,
    SentMessage,
    entry_of_row,
    sent_of_row,
    time_of,
)

__all__ = ["XtaStore"]

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
    closed       TEXT,             -- when it left the box (see outcome)
    outcome      TEXT,             -- closed | expired
    expiring     TEXT,             -- a process is expiring it since (a lease)
    PRIMARY KEY (kennung, message_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS box_offset ON box (kennung, stream_offset);
CREATE INDEX IF NOT EXISTS box_open ON box (kennung, closed, stream_offset);
CREATE INDEX IF NOT EXISTS box_queued ON box (closed, queued);
CREATE TABLE IF NOT EXISTS cursor (
    kennung        TEXT PRIMARY KEY,
    next_offset    INTEGER NOT NULL,
    padding_offset INTEGER,
    padded_at      TEXT
) WITHOUT ROWID;
"""

_BOX_COLUMNS = (
    "kennung, message_id, uuid, author, nachrichtentyp, stream_offset, digest, metadata, "
    "published, queued, fetched, closed, outcome"
)
_OPEN = "closed IS NULL AND expiring IS NULL"
_ADVANCE = """
INSERT INTO cursor (kennung, next_offset) VALUES (?, ?)
ON CONFLICT (kennung) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)
"""


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
        return sent_of_row(row) if row else None

    def sent_as(self, uuid: str) -> SentMessage | None:
        """The (first) XTA send that carried the message ``uuid``."""
        row = self._db.execute(
            "SELECT * FROM sent WHERE uuid = ? ORDER BY at LIMIT 1", (uuid,)
        ).fetchone()
        return sent_of_row(row) if row else None

    # -- boxes -------------------------------------------------------------------------

    def index(self, entry: BoxEntry) -> bool:
        """Index a copy of a box and move the box's cursor past it; False if it was
        indexed before (by any process, or as an earlier copy of the same message)."""
        with self._db:
            added = self._db.execute(
                f"INSERT OR IGNORE INTO box ({_BOX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    None,
                ),
            ).rowcount
            self._db.execute(_ADVANCE, (entry.kennung, entry.offset + 1))
        return bool(added)

    def skip(self, kennung: str, offset: int, *, padding: bool = False) -> None:
        """Move the box's cursor past an offset that holds no copy."""
        with self._db:
            self._db.execute(_ADVANCE, (kennung, offset + 1))
            if padding:
                self._db.execute(
                    "UPDATE cursor SET padding_offset = MAX(COALESCE(padding_offset, -1), ?) "
                    "WHERE kennung = ?",
                    (offset, kennung),
                )

    def next_offset(self, kennung: str) -> int | None:
        """The lowest offset of ``kennung``'s stream not known to be indexed (None: none
        indexed yet, start at the stream's first)."""
        row = self._db.execute(
            "SELECT next_offset FROM cursor WHERE kennung = ?", (kennung,)
        ).fetchone()
        return None if row is None else int(row[0])

    def waiting(
        self, kennung: str, limit: int, after: int = -1
    ) -> tuple[tuple[BoxEntry, ...], int]:
        """The oldest ``limit`` open copies of a box past offset ``after``, and how many
        open copies follow them."""
        rows = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND {_OPEN} "
            "AND stream_offset > ? ORDER BY stream_offset LIMIT ?",
            (kennung, after, limit),
        ).fetchall()
        entries = tuple(entry_of_row(r) for r in rows)
        last = entries[-1].offset if entries else after
        (pending,) = self._db.execute(
            f"SELECT COUNT(*) FROM box WHERE kennung = ? AND {_OPEN} AND stream_offset > ?",
            (kennung, last),
        ).fetchone()
        return entries, int(pending)

    def open_count(self, kennung: str) -> int:
        row = self._db.execute(
            f"SELECT COUNT(*) FROM box WHERE kennung = ? AND {_OPEN}", (kennung,)
        ).fetchone()
        return int(row[0])

    def entry(self, kennung: str, message_id: str) -> BoxEntry | None:
        row = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND message_id = ?",
            (kennung, message_id),
        ).fetchone()
        return entry_of_row(row) if row else None

    def entry_of(self, kennung: str, uuid: str) -> BoxEntry | None:
        row = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE kennung = ? AND uuid = ?", (kennung, uuid)
        ).fetchone()
        return entry_of_row(row) if row else None

    def fetched(self, kennung: str, message_id: str) -> None:
        """Remember the first fetch (XTA's InitialFetch)."""
        with self._db:
            self._db.execute(
                "UPDATE box SET fetched = ? WHERE kennung = ? AND message_id = ? "
                "AND fetched IS NULL",
                (_now(), kennung, message_id),
            )

    def close_entry(self, kennung: str, message_id: str) -> CloseResult:
        """Close a copy: `CloseResult.CLOSED` only for the call that closed it (once,
        across processes)."""
        with self._db:
            closed = self._db.execute(
                f"UPDATE box SET closed = ?, outcome = ? WHERE kennung = ? AND message_id = ? "
                f"AND {_OPEN}",
                (_now(), Outcome.CLOSED.value, kennung, message_id),
            ).rowcount
        if closed:
            return CloseResult.CLOSED
        entry = self.entry(kennung, message_id)
        if entry is not None and entry.outcome is Outcome.CLOSED:
            return CloseResult.CLOSED_BEFORE
        return CloseResult.GONE

    def reopen(self, kennung: str, message_id: str) -> None:
        """Undo a close whose receipt could not be published, so the close can be retried."""
        with self._db:
            self._db.execute(
                "UPDATE box SET closed = NULL, outcome = NULL WHERE kennung = ? AND message_id = ?",
                (kennung, message_id),
            )

    # -- expiry --------------------------------------------------------------------------

    def due_to_expire(
        self, queued_before: datetime, lease_before: datetime, limit: int = 100
    ) -> tuple[BoxEntry, ...]:
        """Open copies queued before ``queued_before``, not being expired by a process
        whose lease began after ``lease_before``."""
        rows = self._db.execute(
            f"SELECT {_BOX_COLUMNS} FROM box WHERE closed IS NULL AND queued < ? "
            "AND (expiring IS NULL OR expiring < ?) ORDER BY queued LIMIT ?",
            (_iso(queued_before), _iso(lease_before), limit),
        ).fetchall()
        return tuple(entry_of_row(r) for r in rows)

    def claim_expiry(self, kennung: str, message_id: str, lease_before: datetime) -> bool:
        """Take the lease to expire an open copy; False if it left the box or another
        process holds a lease that began after ``lease_before``."""
        with self._db:
            return bool(
                self._db.execute(
                    "UPDATE box SET expiring = ? WHERE kennung = ? AND message_id = ? "
                    "AND closed IS NULL AND (expiring IS NULL OR expiring < ?)",
                    (_now(), kennung, message_id, _iso(lease_before)),
                ).rowcount
            )

    def expired(self, kennung: str, message_id: str) -> None:
        """The author was told: the copy left the box, expired."""
        with self._db:
            self._db.execute(
                "UPDATE box SET closed = ?, outcome = ?, expiring = NULL "
                "WHERE kennung = ? AND message_id = ?",
                (_now(), Outcome.EXPIRED.value, kennung, message_id),
            )

    def release_expiry(self, kennung: str, message_id: str) -> None:
        """Give the lease back (the author could not be told now; the next round will)."""
        with self._db:
            self._db.execute(
                "UPDATE box SET expiring = NULL WHERE kennung = ? AND message_id = ?",
                (kennung, message_id),
            )

    # -- padding -------------------------------------------------------------------------

    def padding(self, kennung: str) -> Padding:
        (newest,) = self._db.execute(
            "SELECT MAX(stream_offset) FROM box WHERE kennung = ?", (kennung,)
        ).fetchone()
        row = self._db.execute(
            "SELECT padding_offset, padded_at FROM cursor WHERE kennung = ?", (kennung,)
        ).fetchone()
        offset, published = row if row is not None else (None, None)
        return Padding(
            None if newest is None else int(newest),
            None if offset is None else int(offset),
            time_of(published),
        )

    def claim_padding(self, kennung: str, not_since: datetime) -> bool:
        """Take the turn to pad ``kennung``'s stream, unless a process padded it (or took
        the turn) after ``not_since``."""
        with self._db:
            return bool(
                self._db.execute(
                    "UPDATE cursor SET padded_at = ? WHERE kennung = ? "
                    "AND (padded_at IS NULL OR padded_at < ?)",
                    (_now(), kennung, _iso(not_since)),
                ).rowcount
            )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
