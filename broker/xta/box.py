"""The message boxes of XTA agencies: a RabbitMQ stream each, indexed in the XTA store.

An XTA agency's inbox is a stream (`broker.amqp.topology.declare_box`): the worker
delivers into it as into any inbox. Each endpoint process follows every box's stream
into the store (`broker.xta.index`); the copy itself stays in the stream. Then:

- a status list is a query of the index (open copies, oldest first, ``limit`` at most);
- a fetch reads one copy by its offset, checks it as the agency SDK would (the author's
  signature, each attachment's SHA-256), and hands it out, as often as asked;
- a close marks the copy closed in the index (once, whichever process is asked), and
  the broker issues the ``delivered`` receipt on the agency's behalf;
- a copy nobody closes expires, and closed copies age out of the stream
  (`broker.xta.upkeep`).

Nothing here holds a payload longer than one request; restarting any process loses
nothing, and a copy fetched and not closed is listed again. docs/xta.md has the design,
the facts measured on RabbitMQ 3.10 that chose it, and its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aio_pika.abc import AbstractRobustConnection

from broker.amqp import publishing, topology
from broker.amqp.bundle import Bundle, BundleError
from broker.errors import Fault, PublishError, XtaFault
from broker.logs import event
from broker.receipts.outbox import ReceiptOutbox
from broker.stores.journal import EventKind, Recorder, StatusEvent
from broker.stores.xta import BoxEntry, CloseResult, XtaStore
from broker.xta.index import BoxIndex
from broker.xta.metrics import XtaMetrics
from broker.xta.stream import read_entry
from broker.xta.upkeep import BoxUpkeep, UpkeepPolicy
from monitoring.labels import ReceiptKind
from monitoring.metrics import Metrics
from routing import Directory
from signing import SigningError, Verifier, parse_untrusted

__all__ = ["BoxTiming", "MessageBoxes"]

log = logging.getLogger("xbroker.xta")


@dataclass(frozen=True, slots=True)
class BoxTiming:
    follow_seconds: float = 1.0  # how soon a box added to the directory is followed
    check_seconds: float = 60.0  # how often copies are expired and boxes padded


class MessageBoxes:
    def __init__(
        self,
        amqp_urls: str | Sequence[str],
        store: XtaStore,
        directory: Callable[[], Directory],
        verifier: Verifier,
        outbox: ReceiptOutbox,
        journal: Recorder,
        metrics: XtaMetrics,
        broker_metrics: Metrics,
        policy: UpkeepPolicy,
        timing: BoxTiming = BoxTiming(),
    ) -> None:
        self._urls = amqp_urls
        self._store = store
        self._directory = directory
        self._verifier = verifier
        self._outbox = outbox
        self._journal = journal
        self._metrics = metrics
        self._broker_metrics = broker_metrics
        self._policy = policy
        self._timing = timing
        self._connection: AbstractRobustConnection | None = None
        self._index: BoxIndex | None = None
        self._upkeep: BoxUpkeep | None = None
        self._task: asyncio.Task[None] | None = None
        self.upkeep_rounds = 0  # rounds of expiry and padding done (for tests to wait on)

    async def start(self) -> None:
        self._connection, channel = await publishing.connect(self._urls, "xbroker-xta")
        self._outbox.bind(await channel.get_exchange(topology.RECEIPT_EXCHANGE, ensure=False))
        self._index = BoxIndex(self._connection, self._store, self._directory, self._metrics)
        self._upkeep = BoxUpkeep(
            self._connection,
            channel.default_exchange,
            self._store,
            self._directory,
            self._outbox,
            self._journal,
            self._metrics,
            self._policy,
        )
        await self._index.follow()
        self._task = asyncio.create_task(self._maintain(), name="xta-boxes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._index is not None:
            await self._index.stop()
        if self._connection is not None:
            await self._connection.close()

    async def _maintain(self) -> None:
        """Follow the boxes of the directory as it is now; expire and pad in turn."""
        assert self._index is not None and self._upkeep is not None
        upkeep_due = 0.0
        while True:
            try:
                await self._index.follow()
                if time.monotonic() >= upkeep_due:
                    upkeep_due = time.monotonic() + self._timing.check_seconds
                    await self._upkeep.expire_due()
                    await self._upkeep.pad()
                    self.upkeep_rounds += 1
            except Exception:  # a store or RabbitMQ error: the next round tries again
                log.exception("xta.boxes_upkeep_failed")
            await asyncio.sleep(self._timing.follow_seconds)

    # -- the operations ----------------------------------------------------------------

    def waiting(
        self, kennung: str, limit: int, after: int = -1
    ) -> tuple[tuple[BoxEntry, ...], int]:
        """Open copies past offset ``after`` (``limit`` at most), and how many follow."""
        self._metrics.waiting(kennung, self._store.open_count(kennung))
        return self._store.waiting(kennung, limit, after)

    def entry(self, kennung: str, message_id: str) -> BoxEntry:
        """An open copy of the caller's box; InvalidMessageID for anything else."""
        entry = self._store.entry(kennung, message_id)
        if entry is None or entry.closed is not None:
            raise XtaFault(Fault.INVALID_MESSAGE_ID, f"no open message {message_id} in your box")
        return entry

    async def fetch(self, kennung: str, message_id: str) -> tuple[BoxEntry, Bundle]:
        """One copy, read from the stream and checked end to end."""
        entry = self.entry(kennung, message_id)
        assert self._connection is not None, "start() the boxes first"
        message = await read_entry(self._connection, kennung, entry.offset)
        if message.message_id != entry.uuid:
            raise XtaFault(
                Fault.INVALID_MESSAGE_ID, f"message {message_id} is no longer kept in your box"
            )
        try:
            bundle = Bundle.decode(message.body, message.content_type)
            if bundle.message.sha256 != entry.digest:
                raise BundleError("the message is not the one indexed")
            self._verifier.verify_now(parse_untrusted(bundle.message.content))
            sent = self._store.sent_as(entry.uuid)
            if sent is not None and sent.attachments != tuple(a.sha256 for a in bundle.attachments):
                raise BundleError("the attachments are not the ones sent")
        except (BundleError, SigningError) as exc:
            event(
                log,
                "xta.copy_refused",
                logging.ERROR,
                agency=kennung,
                uuid=entry.uuid,
                error=str(exc),
            )
            raise XtaFault(
                Fault.TECHNICAL_PROBLEM,
                f"the copy of {message_id} failed its end-to-end check; it is not handed out",
            ) from None
        self._store.fetched(kennung, message_id)
        return entry, bundle

    async def close(self, kennung: str, message_id: str) -> None:
        """The agency has the copy: close it and tell the author (once)."""
        entry = self._store.entry(kennung, message_id)
        if entry is None:
            raise XtaFault(Fault.INVALID_MESSAGE_ID, f"no message {message_id} in your box")
        closed = self._store.close_entry(kennung, message_id)
        if closed is CloseResult.CLOSED_BEFORE:
            return  # closing again changes nothing
        if closed is CloseResult.GONE:
            raise XtaFault(
                Fault.INVALID_MESSAGE_ID,
                f"message {message_id} expired unclosed; its author was told",
            )
        try:
            if entry.author:
                await self._outbox.send(
                    entry.author,
                    self._outbox.receipt(
                        ReceiptKind.DELIVERED,
                        entry.uuid,
                        digest=entry.digest,
                        nachrichtentyp=entry.nachrichtentyp or None,
                        author=entry.author,
                        recipients=(kennung,),
                    ),
                )
        except PublishError as exc:
            self._store.reopen(kennung, message_id)
            raise XtaFault(
                Fault.TECHNICAL_PROBLEM, "the close could not be recorded; close it again"
            ) from exc
        await self._journal.record(
            StatusEvent(
                entry.uuid,
                EventKind.DELIVERED,
                author=entry.author or None,
                agency=kennung,
                nachrichtentyp=entry.nachrichtentyp or None,
                digest=entry.digest,
            )
        )
        if entry.published is not None and entry.nachrichtentyp:
            self._broker_metrics.observe_end_to_end(
                entry.nachrichtentyp, time.time() - entry.published
            )
        self._metrics.waiting(kennung, self._store.open_count(kennung))
        event(log, "message.delivered", uuid=entry.uuid, agency=kennung, author=entry.author)
