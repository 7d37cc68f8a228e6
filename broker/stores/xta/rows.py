"""The rows of the XTA store as the endpoint sees them, and their vocabularies."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "BoxEntry",
    "CloseResult",
    "Outcome",
    "Padding",
    "SendClaim",
    "SentMessage",
    "entry_of_row",
    "sent_of_row",
    "time_of",
]


class Outcome(StrEnum):
    """How a copy left its box."""

    CLOSED = "closed"  # the agency closed it: it has it
    EXPIRED = "expired"  # not closed within expire_after_days; the author was told


class CloseResult(StrEnum):
    CLOSED = "closed"  # closed by this call
    CLOSED_BEFORE = "closed-before"  # the agency closed it before: nothing to do
    GONE = "gone"  # expired (or expiring): the agency cannot have it any more


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
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Padding:
    """What the box's upkeep knows of a box's stream (`broker.xta.upkeep`)."""

    newest_copy: int | None  # the highest offset indexed as a copy
    offset: int | None  # the last padding indexed
    published: datetime | None  # when a padding was last published


def time_of(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def sent_of_row(row: sqlite3.Row | tuple[Any, ...]) -> SentMessage:
    message_id, uuid, author, digest, attachments, metadata, _at = tuple(row)
    return SentMessage(
        str(message_id),
        str(uuid),
        str(author),
        str(digest),
        tuple(json.loads(str(attachments))),
        json.loads(str(metadata)),
    )


def entry_of_row(row: sqlite3.Row | tuple[Any, ...]) -> BoxEntry:
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
        outcome,
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
        fetched=time_of(fetched),
        closed=time_of(closed),
        outcome=None if outcome is None else Outcome(str(outcome)),
    )
