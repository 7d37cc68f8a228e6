"""Deduplication: the same nachrichtenUUID from the same author is delivered once.

SQLite in WAL mode, shared by the workers on one host; it keeps ids and digests only.
A message is *claimed* before its copies are published and *completed* after; a claim
found pending belongs to a worker that crashed or was stopped mid-delivery, so the
message is delivered again (agencies deduplicate by message id) rather than lost.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

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


class ClaimState(StrEnum):
    NEW = "new"  # first time: deliver
    RETRY = "retry"  # claimed before but never completed: deliver again
    DUPLICATE = "duplicate"  # delivered before: answer with a duplicate receipt


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    first_digest: str
    first_seen: float


class DedupStore:
    def __init__(self, path: Path, window_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._window = window_seconds

    def claim(self, author: str, uuid: str, digest: str) -> Claim:
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute(
                "SELECT digest, first_seen, completed FROM seen WHERE author=? AND uuid=?",
                (author, uuid),
            ).fetchone()
            if row is None or row[1] < now - self._window:
                self._db.execute(
                    "INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, 0)",
                    (author, uuid, digest, now),
                )
                claim = Claim(ClaimState.NEW, digest, now)
            elif row[2] or row[0] != digest:
                claim = Claim(ClaimState.DUPLICATE, row[0], row[1])
            else:
                claim = Claim(ClaimState.RETRY, row[0], row[1])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return claim

    def complete(self, author: str, uuid: str) -> None:
        self._db.execute("UPDATE seen SET completed=1 WHERE author=? AND uuid=?", (author, uuid))

    def release(self, author: str, uuid: str) -> None:
        """Forget an uncompleted claim (its delivery failed before anything was published)."""
        self._db.execute(
            "DELETE FROM seen WHERE author=? AND uuid=? AND completed=0", (author, uuid)
        )

    def prune(self) -> int:
        cur = self._db.execute(
            "DELETE FROM seen WHERE first_seen < ?", (time.time() - self._window,)
        )
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
