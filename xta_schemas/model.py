"""Plain values the standards package hands out: parties, headers, message types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["AliasLookup", "Header", "IdentitySource", "MessageType", "NamedBy", "Party"]

# Free text naming a party (xdomea ``Institution/Name``) -> its Behördenkennung, if the
# directory knows the text; the broker passes its directory's lookup.
AliasLookup = Callable[[str], str | None]


class IdentitySource(StrEnum):
    """Where a message's identity (``Header.uuid``) comes from."""

    MESSAGE = "message"  # the element(s) the manifest names
    TRANSPORT = "transport"  # assigned: the AMQP message_id or HTTP Idempotency-Key
    DIGEST = "digest"  # assigned: derived from the SHA-256 of what was signed


class NamedBy(StrEnum):
    """How a message named a party (``Party.named_by``)."""

    KENNUNG = "kennung"  # by its Behördenkennung (or a code the manifest prefixes)
    FREE_TEXT = "free-text"  # by free text, which the directory maps to a kennung
    SIGNER = "signer"  # not at all: the message names no author, so its signer is


@dataclass(frozen=True, slots=True)
class Party:
    """An author or reader of a message, named by its Behördenkennung."""

    kennung: str
    name: str | None
    verzeichnisdienst: str | None
    named_by: NamedBy = NamedBy.KENNUNG


@dataclass(frozen=True, slots=True)
class Header:
    """The message header, read from what the signature covers."""

    uuid: str
    nachrichtentyp: str
    list_uri: str | None
    list_version: str | None
    created: datetime
    author: Party
    readers: tuple[Party, ...]
    test: bool
    identity: IdentitySource = IdentitySource.MESSAGE
    # The zone a creation time without one was read in (``[header] default_zone``).
    assumed_zone: str | None = None

    def notes(self) -> tuple[str, ...]:
        """What the broker assumed or assigned in reading this header, for the receipt."""
        notes = []
        if self.identity is not IdentitySource.MESSAGE:
            source = (
                "the transport's message id"
                if self.identity is IdentitySource.TRANSPORT
                else "the SHA-256 of the signed message"
            )
            notes.append(
                f"the message has no identity of its own: {self.uuid} assigned from {source}"
            )
        if self.assumed_zone is not None:
            notes.append(f"creation time without time zone, read in {self.assumed_zone}")
        if self.author.named_by is NamedBy.SIGNER:
            notes.append(f"the message names no author: its signer {self.author.kennung} is")
        for party in (self.author, *self.readers):
            if party.named_by is NamedBy.FREE_TEXT:
                notes.append(f"{party.name!r} is {party.kennung} by the directory")
        return tuple(notes)


@dataclass(frozen=True, slots=True)
class MessageType:
    """A message type of a standard: its nachrichtentyp code and root element local name."""

    code: str
    root: str
