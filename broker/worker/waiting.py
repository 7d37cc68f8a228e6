"""Warn when an agency leaves its mail unfetched for longer than ``warn_after_days``.

Copies that wait until ``expire_after_days`` expire in RabbitMQ and end with a
``failed`` receipt (see the failure consumer of the service). Before that, the status
store knows which copies were queued and never confirmed; this watch turns them into a
gauge per agency (for the alert) and one warning log event per copy.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

from broker.logs import event
from broker.stores.status import StatusStore
from broker.worker.periodic import Periodic
from monitoring.metrics import Metrics

__all__ = ["WaitingWatch"]

log = logging.getLogger("xbroker.waiting")


class WaitingWatch:
    def __init__(
        self,
        status: StatusStore,
        metrics: Metrics,
        *,
        warn_after: timedelta,
        interval: float = 300.0,
    ) -> None:
        self._status = status
        self._metrics = metrics
        self._warn_after = warn_after
        self._periodic = Periodic("waiting", self.check, interval, log)
        self._warned: set[tuple[str, str]] = set()

    async def check(self, now: datetime | None = None) -> Counter[str]:
        """One look: update the gauge, warn once per newly late copy; counts per agency."""
        now = now or datetime.now(UTC)
        waiting = await self._status.waiting(now - self._warn_after)
        counts = Counter(copy.agency for copy in waiting)
        self._metrics.set_waiting(counts)
        current = {(copy.uuid, copy.agency) for copy in waiting}
        for copy in waiting:
            if (copy.uuid, copy.agency) not in self._warned:
                event(
                    log,
                    "message.waiting",
                    logging.WARNING,
                    uuid=copy.uuid,
                    agency=copy.agency,
                    author=copy.author,
                    queued=copy.queued.isoformat(),
                )
        self._warned = current
        return counts

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
