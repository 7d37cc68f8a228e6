"""The upkeep of the message boxes: copies nobody closed expire, closed ones age out.

**Expiry.** A copy not closed within ``expire_after_days`` (the setting every inbox
uses) expires as an AMQP copy does: its author gets the same signed ``failed`` receipt
(`broker.worker.failures.failed_receipt`, reason ``expired``), the Laufzettel its
``failed`` event, and the box no longer lists it. One process expires a copy: it takes
a lease on the copy's row first, tells the author, then marks it expired; a process
that dies holding a lease leaves it to the next round after the lease (at most then
the author is told twice, as after a crash of the failures consumer).

**Padding.** A stream drops data a whole segment at a time, when every entry in it is
older than the box's ``x-max-age``, and RabbitMQ 3.10 looks only when it starts a new
segment: it starts one when the current one is full, so in a box that receives little
a closed copy could stay for good. So every ``xta_box_roll_seconds`` a box that
received copies since its last padding gets a padding: an entry of a segment's size
(no message, no id; the index skips it) that fills the segment, so that the next entry
starts a new one. Once the last padding is older than ``x-max-age`` and the stream
still holds what came before it, one more padding makes RabbitMQ drop it. A copy's
bytes therefore leave RabbitMQ at most ``x-max-age`` plus two roll intervals after the
copy arrived (docs/xta.md, "Payload retention").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractExchange

from broker.amqp import publishing, topology
from broker.amqp.publishing import HEADER_PADDING
from broker.errors import DeliveryFailure, TransientError
from broker.logs import event
from broker.receipts.outbox import ReceiptOutbox
from broker.stores.journal import Recorder
from broker.stores.xta import BoxEntry, XtaStore
from broker.worker.failures import failed_event, failed_receipt, not_fetched
from broker.xta.index import xta_agencies
from broker.xta.metrics import XtaMetrics
from broker.xta.stream import FIRST, read_entry, stream_offset
from routing import Directory

__all__ = ["BoxUpkeep", "UpkeepPolicy"]

log = logging.getLogger("xbroker.xta")

_LEASE = timedelta(minutes=5)  # a process expiring a copy holds it this long at most


@dataclass(frozen=True, slots=True)
class UpkeepPolicy:
    expire_after: timedelta  # expire_after_days
    max_age: timedelta  # the boxes' x-max-age
    roll_every: timedelta  # xta_box_roll_seconds
    segment_bytes: int  # xta_box_segment_bytes
    confirm_timeout: float


class BoxUpkeep:
    def __init__(
        self,
        connection: AbstractConnection,
        exchange: AbstractExchange,
        store: XtaStore,
        directory: Callable[[], Directory],
        outbox: ReceiptOutbox,
        journal: Recorder,
        metrics: XtaMetrics,
        policy: UpkeepPolicy,
    ) -> None:
        self._connection = connection
        self._exchange = exchange  # the default exchange, on a channel with confirms
        self._store = store
        self._directory = directory
        self._outbox = outbox
        self._journal = journal
        self._metrics = metrics
        self._policy = policy

    # -- expiry --------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Expire the copies whose time is up; how many this process expired."""
        now = datetime.now(UTC)
        expired = 0
        for entry in self._store.due_to_expire(now - self._policy.expire_after, now - _LEASE):
            if not self._store.claim_expiry(entry.kennung, entry.message_id, now - _LEASE):
                continue  # closed meanwhile, or another process is at it
            try:
                await self._tell(entry)
            except TransientError as exc:  # PublishError, or a journal that did not write
                self._store.release_expiry(entry.kennung, entry.message_id)
                event(log, "xta.expiry_retry", logging.WARNING, uuid=entry.uuid, error=str(exc))
                continue
            self._store.expired(entry.kennung, entry.message_id)
            self._metrics.waiting(entry.kennung, self._store.open_count(entry.kennung))
            expired += 1
        return expired

    async def _tell(self, entry: BoxEntry) -> None:
        days = self._policy.expire_after / timedelta(days=1)
        author = entry.author or None
        event(
            log,
            "message.failed",
            logging.WARNING,
            uuid=entry.uuid,
            nachrichtentyp=entry.nachrichtentyp or None,
            agency=entry.kennung,
            reason=DeliveryFailure.EXPIRED.value,
            why="expired",
        )
        if author is not None and author in self._directory():
            receipt = failed_receipt(
                self._outbox,
                entry.uuid,
                author=author,
                agency=entry.kennung,
                nachrichtentyp=entry.nachrichtentyp or None,
                reason=DeliveryFailure.EXPIRED,
                detail=not_fetched(entry.kennung, days),
            )
            await self._outbox.send(author, receipt)
        await self._journal.record(
            failed_event(
                entry.uuid,
                author=author,
                agency=entry.kennung,
                nachrichtentyp=entry.nachrichtentyp or None,
                reason=DeliveryFailure.EXPIRED,
            )
        )

    # -- padding -------------------------------------------------------------------------

    async def pad(self) -> int:
        """Pad the boxes that need it (and whose turn this process takes); how many."""
        padded = 0
        for kennung in xta_agencies(self._directory()):
            if await self._needs_padding(kennung) and self._store.claim_padding(
                kennung, datetime.now(UTC) - self._policy.roll_every
            ):
                await self._publish_padding(kennung)
                padded += 1
        return padded

    async def _needs_padding(self, kennung: str) -> bool:
        state = self._store.padding(kennung)
        if state.newest_copy is None:
            return False  # nothing ever arrived
        if state.offset is None or state.newest_copy > state.offset:
            return True  # copies since the last padding: close their segment
        published = state.published
        if published is None or datetime.now(UTC) - published < self._policy.max_age:
            return False
        # Everything before the last padding is old enough to go: if the stream still
        # holds it, one more padding starts a segment, and RabbitMQ drops the old ones.
        first = stream_offset(await read_entry(self._connection, kennung, FIRST))
        return first is not None and first < state.offset

    async def _publish_padding(self, kennung: str) -> None:
        padding = aio_pika.Message(
            bytes(self._policy.segment_bytes),
            headers={HEADER_PADDING: 1},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await publishing.publish_confirmed(
            self._exchange,
            padding,
            topology.agency_queue(kennung),
            self._policy.confirm_timeout,
        )
        event(log, "xta.box_padded", agency=kennung, bytes=self._policy.segment_bytes)
