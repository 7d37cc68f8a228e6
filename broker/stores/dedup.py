"""Deduplication: the same nachrichtenUUID from the same author is delivered once.

Only the same bytes are the same message: a second message under an identity the author
used before, with other content, is not a duplicate but a reused identity (REUSED),
which the broker rejects (``id-reused``) rather than swallow.

A message is *claimed* before its copies are published and *completed* after. The claim
names its holder, the broker process delivering it. A claim found pending is one of two
things: its holder is alive and delivering it right now (BUSY: the same message arrived
twice at once, at two workers or twice at one; the later one waits until the first has
finished and then gets DUPLICATE), or its holder is gone (RETRY: it crashed or was
stopped mid-delivery, so the message is delivered again rather than lost; agencies
deduplicate by message id). So two live workers never both publish a message's copies,
on one host or on several, while a message whose worker died is delivered at least once.

The store is also a journal (`broker.stores.journal.BatchJournal`): an ``accepted`` event
completes the claim of its message. Attached to the worker's `JournalBatch`, completions
are written with the events, many messages in one transaction, after the confirms and
before the ack, which is exactly where a completion belongs: a crash before that write
leaves the claim pending, and the redelivered message is delivered again (RETRY).

Two implementations: SQLite for one host (`broker.stores.sqlite.SqliteDedupStore`) and
PostgreSQL for several (`broker.stores.postgres.PostgresDedupStore`); the settings choose
(`broker.stores.backend`). Both keep ids and digests only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from broker.stores.journal import StatusEvent

__all__ = ["Claim", "ClaimState", "DedupStore"]


class ClaimState(StrEnum):
    NEW = "new"  # first time: deliver
    RETRY = "retry"  # claimed before, its holder is gone: deliver again
    BUSY = "busy"  # claimed by a live holder that is delivering it now: wait, claim again
    DUPLICATE = "duplicate"  # delivered before: answer with a duplicate receipt
    REUSED = "reused"  # the identity was used before for other bytes: reject


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    first_digest: str
    first_seen: float

    @property
    def held(self) -> bool:
        """Whether this claim makes its caller the holder (it must deliver the message)."""
        return self.state in (ClaimState.NEW, ClaimState.RETRY)


class DedupStore(Protocol):
    """Claims and completions of nachrichtenUUIDs per author, within a window.

    Every method raises `broker.errors.StoreError` when the store cannot be read or
    written now (a fault of the surroundings, never of the message).
    """

    async def claim(self, author: str, uuid: str, digest: str) -> Claim: ...

    async def complete(self, author: str, uuid: str) -> None: ...

    async def record(self, event: StatusEvent) -> None:
        """As a journal: an accepted message is complete."""

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        """As a journal: complete the claims of the accepted messages, in one write."""

    async def release(self, author: str, uuid: str) -> None:
        """Forget an uncompleted claim (its delivery failed before anything was published)."""

    async def abandon(self, author: str, uuid: str) -> None:
        """Stop holding a claim without completing it (the message was given up, and
        comes back): the next delivery is a RETRY, not BUSY."""

    async def prune(self) -> int:
        """Delete claims older than the window; return how many."""

    async def close(self) -> None: ...
