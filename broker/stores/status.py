"""The status store: every state change of every message, as metadata (the Laufzettel).

A journal the broker reports to (`broker.stores.journal.BatchJournal`: `record_many`
writes a batch of events in one transaction, which is how the worker's `JournalBatch`
writes). ``xbroker status``, the HTTP API and the waiting watch read it while workers
write. It holds ids, codes, agencies, times and the SHA-256 of the bytes received; a
`StatusEvent` has no field for payload, and no store adds one.

It also remembers which bytes arrived over HTTP from which author under which
nachrichtenUUID (`claim_submission`), so that a repeated POST gets the same answer and a
different message from the same author under a used UUID is refused (409). The claim is
the author's own: another author's message under the same UUID is a message of its own,
claimed and answered exactly as a fresh UUID is, so a POST tells nobody which UUIDs
others have used, nor lets anybody take a UUID away from its author.

Who sees what of a timeline is `Laufzettel.seen_by`: the author all events of its
message, a recipient those of its own copy.

Two implementations: SQLite for one host (`broker.stores.sqlite.SqliteStatusStore`,
where the workers of the host share a file) and PostgreSQL for several
(`broker.stores.postgres.PostgresStatusStore`, where every host reads what any host
wrote); the settings choose (`broker.stores.backend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from broker.stores.journal import EventKind, StatusEvent

__all__ = [
    "Laufzettel",
    "StatusStore",
    "SubmissionClaim",
    "SubmissionMatch",
    "WaitingCopy",
    "event_dict",
]


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


class StatusStore(Protocol):
    """The Laufzettel of every message. Attach it to the broker as a journal.

    Every method raises `broker.errors.StoreError` when the store cannot be read or
    written now; a failed write leaves nothing half-written behind (one transaction).
    """

    async def record(self, event: StatusEvent) -> None: ...

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Write ``events`` in one transaction: all of them or none."""

    async def timeline(self, uuid: str) -> Laufzettel: ...

    async def uuids(self, limit: int = 100) -> tuple[str, ...]:
        """The most recently active nachrichtenUUIDs, newest first."""

    async def waiting(self, queued_before: datetime) -> tuple[WaitingCopy, ...]:
        """Copies queued for an agency before ``queued_before`` that it has neither
        confirmed (delivered) nor lost (failed): mail that waits unfetched."""

    async def claim_submission(self, uuid: str, author: str, digest: str) -> SubmissionClaim:
        """Register bytes ``author`` sent over HTTP under ``uuid``; say whether they are
        new. Only the author's own claims are looked at."""

    async def release_submission(self, uuid: str, author: str, digest: str) -> None:
        """Forget a claim whose publish failed, so the client's retry is new again."""

    async def prune(self, before: datetime) -> int:
        """Delete events and claims older than ``before``; return how many events."""

    async def close(self) -> None: ...
