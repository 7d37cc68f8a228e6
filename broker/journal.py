"""Where the service reports each state change of a message (metadata only).

The status store (the Laufzettel) and the audit trail subscribe through this
protocol; the service never knows which are attached. An event carries ids, codes,
agencies, times and the SHA-256 of the bytes received: never payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

__all__ = ["EventKind", "Journal", "Journals", "StatusEvent"]


class EventKind(StrEnum):
    RECEIVED = "received"  # taken from the ingress queue (or the HTTP API)
    ACCEPTED = "accepted"  # every check passed; copies published
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    QUEUED = "queued"  # a copy is in an agency's queue (one event per recipient)
    DELIVERED = "delivered"  # the agency confirmed receipt
    FAILED = "failed"  # a copy expired or could never be delivered


@dataclass(frozen=True, slots=True)
class StatusEvent:
    uuid: str
    kind: EventKind
    author: str | None = None
    agency: str | None = None  # for queued / delivered / failed
    nachrichtentyp: str | None = None
    standard: str | None = None
    digest: str | None = None
    reason: str | None = None
    recipients: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Journal(Protocol):
    def record(self, event: StatusEvent) -> None: ...


class Journals:
    """Fans one event out to every attached journal."""

    def __init__(self, journals: Sequence[Journal] = ()) -> None:
        self._journals = tuple(journals)

    def record(self, event: StatusEvent) -> None:
        for journal in self._journals:
            journal.record(event)
