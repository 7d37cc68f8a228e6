"""Plain values the standards package hands out: parties, headers, message types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Header", "MessageType", "Party"]


@dataclass(frozen=True, slots=True)
class Party:
    """An author or reader of a message, named by its Behördenkennung."""

    kennung: str
    name: str | None
    verzeichnisdienst: str | None


@dataclass(frozen=True, slots=True)
class Header:
    """The g2g message header, read from what the signature covers."""

    uuid: str
    nachrichtentyp: str
    list_uri: str | None
    list_version: str | None
    created: datetime
    author: Party
    readers: tuple[Party, ...]
    test: bool


@dataclass(frozen=True, slots=True)
class MessageType:
    """A message type of a standard: its nachrichtentyp code and root element local name."""

    code: str
    root: str
