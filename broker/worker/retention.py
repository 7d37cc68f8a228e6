"""Pruning by age, as a scheduled statement: the stores keep metadata only as long as
the settings say.

Every ``retention_check_seconds`` the worker deletes dedup claims older than the dedup
window and Laufzettel events (and HTTP submission claims) older than
``status_retention_days``. On SQLite each host prunes its own files; on PostgreSQL every
host runs the same statements against the shared tables, which is harmless: a DELETE by
age that another host ran first deletes nothing. Each deletes in bounded chunks, so a
large backlog never holds a lock or outlasts the statement timeout. A store that cannot
be reached is tried again at the next round (a fault of the surroundings, logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.errors import TransientError
from broker.logs import event
from broker.stores.dedup import DedupStore
from broker.stores.status import StatusStore

__all__ = ["Pruned", "Retention"]

log = logging.getLogger("xbroker.retention")


@dataclass(frozen=True, slots=True)
class Pruned:
    claims: int
    events: int


class Retention:
    """Prunes the dedup and status stores every ``interval`` seconds."""

    def __init__(
        self,
        dedup: DedupStore,
        status: StatusStore,
        *,
        keep_events: timedelta,
        interval: float = 3600.0,
    ) -> None:
        self._dedup = dedup
        self._status = status
        self._keep_events = keep_events
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def prune(self, now: datetime | None = None) -> Pruned:
        """One round: delete what is older than the settings keep."""
        now = now or datetime.now(UTC)
        claims = await self._dedup.prune()
        events = await self._status.prune(now - self._keep_events)
        return Pruned(claims, events)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                pruned = await self.prune()
            except TransientError as exc:
                event(log, "retention.failed", logging.WARNING, error=str(exc))
            else:
                if pruned.claims or pruned.events:
                    event(log, "retention.pruned", claims=pruned.claims, events=pruned.events)
            await asyncio.sleep(self._interval)
