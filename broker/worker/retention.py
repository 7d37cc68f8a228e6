"""Pruning by age, as a scheduled statement: the stores keep metadata only as long as
the settings say.

Every ``retention_check_seconds`` the worker deletes dedup claims older than the dedup
window and Laufzettel events (and HTTP submission claims) older than
``status_retention_days``. On SQLite each host prunes its own files; on PostgreSQL every
host runs the same statements against the shared tables, which is harmless: a DELETE by
age that another host ran first deletes nothing. Each deletes in bounded chunks, so a
large backlog never holds a lock or outlasts the statement timeout. A store that cannot
be reached (or any failed round) is tried again at the next round, logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.logs import event
from broker.stores.dedup import DedupStore
from broker.stores.status import StatusStore
from broker.worker.periodic import Periodic

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
        self._periodic = Periodic("retention", self._round, interval, log)

    async def prune(self, now: datetime | None = None) -> Pruned:
        """One round: delete what is older than the settings keep."""
        now = now or datetime.now(UTC)
        claims = await self._dedup.prune()
        events = await self._status.prune(now - self._keep_events)
        return Pruned(claims, events)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _round(self) -> None:
        pruned = await self.prune()
        if pruned.claims or pruned.events:
            event(log, "retention.pruned", claims=pruned.claims, events=pruned.events)
