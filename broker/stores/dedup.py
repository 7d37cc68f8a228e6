"""Deduplication: the same nachrichtenUUID from the same author is delivered once.

Only the same bytes are the same message: a second message under an identity the author
used before, with other content, is not a duplicate but a reused identity (REUSED),
which the broker rejects (``id-reused``) rather than swallow.

SQLite in WAL mode, shared by the workers on one host; it keeps ids and digests only.
A message is *claimed* before its copies are published and *completed* after; a claim
found pending belongs to a worker that crashed or was stopped mid-delivery, so the
message is delivered again (agencies deduplicate by message id) rather than lost.
Every method raises `StoreError` when the file cannot be read or written
(`broker.stores.sqlite`).

A claim is one statement (an upsert), so one short transaction per message. The store
is also a journal (`broker.stores.journal.BatchJournal`): an ``accepted`` event completes the
claim of its message. Attached to the worker's `JournalBatch`, completions are written
with the events, many messages in one transaction, after the confirms and before the
ack, which is exactly where a completion belongs: a crash before that write leaves the
claim pending, and the redelivered message is delivered again (RETRY).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from broker.errors import StoreError
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite import StoreGuard, open_shared, rollback

__all__ = ["Claim", "ClaimState", "DedupStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    author      TEXT NOT NULL,
    uuid        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    completed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (author, uuid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_first ON seen (first_seen);
"""

_CLAIM = """
INSERT INTO seen (author, uuid, digest, first_seen, completed) VALUES (?, ?, ?, ?, 0)
ON CONFLICT (author, uuid) DO UPDATE
    SET digest = excluded.digest, first_seen = excluded.first_seen, completed = 0
    WHERE seen.first_seen < ?
RETURNING 1
"""


class ClaimState(StrEnum):
    NEW = "new"  # first time: deliver
    RETRY = "retry"  # claimed before but never completed: deliver again
    DUPLICATE = "duplicate"  # delivered before: answer with a duplicate receipt
    REUSED = "reused"  # the identity was used before for other bytes: reject


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    first_digest: str
    first_seen: float


class DedupStore:
    """Claims and completions of nachrichtenUUIDs per author, within ``window_seconds``."""

    def __init__(self, path: Path, window_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._guard = StoreGuard(path)
        self._db = open_shared(path)
        with self._guard:
            self._db.executescript(_SCHEMA)
        self._window = window_seconds

    def claim(self, author: str, uuid: str, digest: str) -> Claim:
        now = time.time()
        with self._guard:
            for _ in range(3):  # a row pruned between the two statements: claim again
                # New, or seen so long ago that the window forgot it: (re)claimed in one
                # statement. Otherwise the upsert changes nothing and returns no row.
                new = self._db.execute(_CLAIM, (author, uuid, digest, now, now - self._window))
                if new.fetchall():
                    return Claim(ClaimState.NEW, digest, now)
                row = self._db.execute(
                    "SELECT digest, first_seen, completed FROM seen WHERE author=? AND uuid=?",
                    (author, uuid),
                ).fetchone()
                if row is None:
                    continue
                if row[0] != digest:
                    return Claim(ClaimState.REUSED, row[0], row[1])
                if row[2]:
                    return Claim(ClaimState.DUPLICATE, row[0], row[1])
                return Claim(ClaimState.RETRY, row[0], row[1])
        raise StoreError(f"claim of {uuid} did not settle")

    def complete(self, author: str, uuid: str) -> None:
        with self._guard:
            self._db.execute(
                "UPDATE seen SET completed=1 WHERE author=? AND uuid=?", (author, uuid)
            )

    def record(self, event: StatusEvent) -> None:
        """As a journal: an accepted message is complete."""
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        """As a journal: complete the claims of the accepted messages, in one transaction."""
        done = [(e.author, e.uuid) for e in events if e.kind is EventKind.ACCEPTED and e.author]
        if not done:
            return
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("UPDATE seen SET completed=1 WHERE author=? AND uuid=?", done)
                self._db.execute("COMMIT")
            except BaseException:
                rollback(self._db)
                raise

    def release(self, author: str, uuid: str) -> None:
        """Forget an uncompleted claim (its delivery failed before anything was published)."""
        with self._guard:
            self._db.execute(
                "DELETE FROM seen WHERE author=? AND uuid=? AND completed=0", (author, uuid)
            )

    def prune(self) -> int:
        with self._guard:
            cur = self._db.execute(
                "DELETE FROM seen WHERE first_seen < ?", (time.time() - self._window,)
            )
        return int(cur.rowcount)

    def close(self) -> None:
        self._guard.close(self._db)
