"""The deduplication claim in PostgreSQL, shared by the broker hosts.

The same protocol as the SQLite store (`broker.stores.dedup`), made atomic across hosts
by the database: a claim is one ``INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING``.
A row that does not exist yet is inserted (NEW). One that exists is updated only when
this claim may take it over, which the statement decides under the row's lock: its
window has passed (NEW again), or it is pending, for the same bytes, and its holder's
session is gone from ``pg_stat_activity`` (RETRY: that broker process died mid-delivery).
Anything else returns the row as it stands: other bytes (REUSED), completed (DUPLICATE),
or pending with a live holder (BUSY: another process is delivering it right now). Two
workers that take the same message at the same moment therefore never both deliver it:
one inserts, the other waits on the row lock and then finds a live holder.

A statement sees the rows committed when it began; a row inserted by another host while
this statement waited is read by the next one, so a claim that returned no row is made
again (at most three times).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from broker.errors import StoreError
from broker.stores.dedup import Claim, ClaimState
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.postgres.database import Database

__all__ = ["PostgresDedupStore"]

log = logging.getLogger("xbroker.stores")

_LIVE_HOLDER = """
SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.holder_pid AND a.backend_start = c.holder_start
"""

_CLAIM = f"""
WITH claimed AS (
    INSERT INTO dedup_claims AS c
        (author, uuid, digest, first_seen, completed, holder_pid, holder_start)
    VALUES ($1, $2, $3, $4, false, $6, $7)
    ON CONFLICT (author, uuid) DO UPDATE
        SET digest = excluded.digest,
            first_seen = CASE WHEN c.first_seen < $5 THEN excluded.first_seen
                              ELSE c.first_seen END,
            completed = false,
            holder_pid = excluded.holder_pid,
            holder_start = excluded.holder_start
        WHERE c.first_seen < $5
           OR (NOT c.completed AND c.digest = excluded.digest
               AND NOT EXISTS ({_LIVE_HOLDER}))
    RETURNING c.digest, c.first_seen, c.completed, true AS mine
)
SELECT digest, first_seen, completed, mine FROM claimed
UNION ALL
SELECT c.digest, c.first_seen, c.completed, false FROM dedup_claims c
WHERE c.author = $1 AND c.uuid = $2 AND NOT EXISTS (SELECT 1 FROM claimed)
"""

_COMPLETE = """
UPDATE dedup_claims d SET completed = true, holder_pid = NULL, holder_start = NULL
FROM unnest($1::text[], $2::text[]) AS u(author, uuid)
WHERE d.author = u.author AND d.uuid = u.uuid
"""


class PostgresDedupStore:
    """Claims and completions of nachrichtenUUIDs per author, within ``window_seconds``."""

    def __init__(self, database: Database, window_seconds: float) -> None:
        self._db = database
        self._window = window_seconds
        self._abandoned: set[tuple[str, str]] = set()  # holds to give up at the next chance

    async def claim(self, author: str, uuid: str, digest: str) -> Claim:
        if self._abandoned:
            await self._give_up_abandoned()
        presence = await self._db.presence()
        now = time.time()
        for _ in range(3):
            rows = await self._db.fetch(
                "dedup claim",
                _CLAIM,
                author,
                uuid,
                digest,
                now,
                now - self._window,
                presence.pid,
                presence.started,
            )
            if not rows:
                continue  # inserted by another host after this statement began: read it
            row = rows[0]
            first_digest, first_seen = str(row["digest"]), float(row["first_seen"])
            if row["mine"]:
                state = ClaimState.NEW if first_seen == now else ClaimState.RETRY
                return Claim(state, first_digest, first_seen)
            if first_digest != digest:
                return Claim(ClaimState.REUSED, first_digest, first_seen)
            if row["completed"]:
                return Claim(ClaimState.DUPLICATE, first_digest, first_seen)
            return Claim(ClaimState.BUSY, first_digest, first_seen)
        raise StoreError(f"claim of {uuid} did not settle")

    async def complete(self, author: str, uuid: str) -> None:
        await self._db.execute("dedup complete", _COMPLETE, [author], [uuid])

    async def record(self, event: StatusEvent) -> None:
        """As a journal: an accepted message is complete."""
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """As a journal: complete the claims of the accepted messages, in one statement."""
        done = [(e.author, e.uuid) for e in events if e.kind is EventKind.ACCEPTED and e.author]
        if done:
            authors, uuids = zip(*done, strict=True)
            await self._db.execute("dedup complete", _COMPLETE, list(authors), list(uuids))

    async def release(self, author: str, uuid: str) -> None:
        """Forget an uncompleted claim (its delivery failed before anything was published)."""
        await self._db.execute(
            "dedup release",
            "DELETE FROM dedup_claims WHERE author = $1 AND uuid = $2 AND NOT completed",
            author,
            uuid,
        )

    async def abandon(self, author: str, uuid: str) -> None:
        """This process stops delivering a claimed message (it was given up, not lost):
        its claim stays pending but without a holder, so the next delivery is a RETRY.
        Remembered and tried again at the next claim if the database cannot be told now."""
        self._abandoned.add((author, uuid))
        await self._give_up_abandoned()

    async def prune(self) -> int:
        """Delete claims older than the window, a bounded chunk per statement."""
        return await self._db.delete_in_chunks(
            "dedup prune",
            "DELETE FROM dedup_claims WHERE ctid = ANY (ARRAY("
            "SELECT ctid FROM dedup_claims WHERE first_seen < $1 LIMIT 10000))",
            time.time() - self._window,
        )

    async def close(self) -> None:
        """Give up the claims this process still holds (a stop, not a crash): their
        messages come back, and their next delivery anywhere is a RETRY at once rather
        than BUSY until the server has noticed the session is gone. The `Database` is
        closed by whoever opened it."""
        presence = self._db.present
        if presence is None:
            return
        try:
            await self._db.execute(
                "dedup close",
                "UPDATE dedup_claims SET holder_pid = NULL, holder_start = NULL "
                "WHERE holder_pid = $1 AND holder_start = $2 AND NOT completed",
                presence.pid,
                presence.started,
            )
        except StoreError:
            log.warning("dedup.close_failed", exc_info=True)  # the session ends anyway

    async def _give_up_abandoned(self) -> None:
        presence = await self._db.presence()
        pending = sorted(self._abandoned)
        authors = [a for a, _ in pending]
        uuids = [u for _, u in pending]
        await self._db.execute(
            "dedup abandon",
            "UPDATE dedup_claims d SET holder_pid = NULL, holder_start = NULL "
            "FROM unnest($1::text[], $2::text[]) AS u(author, uuid) "
            "WHERE d.author = u.author AND d.uuid = u.uuid AND NOT d.completed "
            "AND d.holder_pid = $3 AND d.holder_start = $4",
            authors,
            uuids,
            presence.pid,
            presence.started,
        )
        self._abandoned.difference_update(pending)
