"""The message boxes of XTA agencies: a RabbitMQ stream each, indexed in the XTA store.

An XTA agency's inbox is a stream (`broker.amqp.topology.declare_box`): the worker
delivers into it as into any inbox. Each endpoint process follows every box's stream
from the offset after the last one indexed and records each copy's metadata and offset
(`broker.stores.xta`); the copy itself stays in the stream. Then:

- a status list is a query of the index (open copies, oldest first, ``limit`` at most);
- a fetch reads one copy by its offset, checks it as the agency SDK would (the author's
  signature, each attachment's SHA-256), and hands it out, as often as asked;
- a close marks the copy closed in the index (once, whichever process is asked), and
  the broker issues the ``delivered`` receipt on the agency's behalf.

Nothing here holds a payload longer than one request; restarting any process loses
nothing, and a copy fetched and not closed is listed again. docs/xta.md has the design,
the facts measured on RabbitMQ 3.10 that chose it, and its limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from broker.amqp import publishing, topology
from broker.amqp.bundle import Bundle, BundleError
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE, header_text
from broker.errors import Fault, PublishError, XtaFault
from broker.logs import event
from broker.receipts.outbox import ReceiptOutbox
from broker.stores.journal import EventKind, Journal, StatusEvent
from broker.stores.xta import BoxEntry, XtaStore
from broker.xta.metadata import Code, Identifier, MessageMetaData, Times
from broker.xta.metrics import XtaMetrics
from monitoring.labels import ReceiptKind
from monitoring.metrics import Metrics
from routing import Directory, XtaEndpoint
from signing import SigningError, Verifier, parse_untrusted

__all__ = [
    "MESSAGE_ID_PREFIX",
    "RESERVED_PREFIX",
    "MessageBoxes",
    "xta_agencies",
    "xta_message_id",
]

log = logging.getLogger("xbroker.xta")

_READ_TIMEOUT = 10.0
_INDEX_PREFETCH = 64


def xta_agencies(directory: Directory) -> tuple[str, ...]:
    return tuple(
        a.kennung
        for a in directory
        if isinstance(a.endpoint, XtaEndpoint) and topology.has_inbox(a)
    )


MESSAGE_ID_PREFIX = "urn:de:xta:messageid:xbroker:"
RESERVED_PREFIX = f"{MESSAGE_ID_PREFIX}nachricht:"


def xta_message_id(uuid: str) -> str:
    """The XTA MessageID of a message that did not arrive over XTA (reserved: no sender
    may use it, so that no send can take the place of such a message in a box)."""
    return f"{RESERVED_PREFIX}{uuid}"


class MessageBoxes:
    def __init__(
        self,
        amqp_url: str,
        store: XtaStore,
        directory: Callable[[], Directory],
        verifier: Verifier,
        outbox: ReceiptOutbox,
        journal: Journal,
        metrics: XtaMetrics,
        broker_metrics: Metrics,
    ) -> None:
        self._url = amqp_url
        self._store = store
        self._directory = directory
        self._verifier = verifier
        self._outbox = outbox
        self._journal = journal
        self._metrics = metrics
        self._broker_metrics = broker_metrics
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._followed: list[tuple[AbstractQueue, str]] = []  # strong references

    async def start(self) -> None:
        self._connection, channel = await publishing.connect(self._url, "xbroker-xta")
        self._outbox.bind(await channel.get_exchange(topology.RECEIPT_EXCHANGE, ensure=False))
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=_INDEX_PREFETCH)
        for kennung in xta_agencies(self._directory()):
            await self._follow(kennung)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def owns_box(self, kennung: str) -> bool:
        return kennung in xta_agencies(self._directory())

    # -- the index ---------------------------------------------------------------------

    async def _follow(self, kennung: str) -> None:
        assert self._channel is not None
        queue = await self._channel.get_queue(topology.agency_queue(kennung), ensure=False)
        start = self._store.next_offset(kennung)

        async def index(message: AbstractIncomingMessage) -> None:
            await self._index(kennung, message)

        tag = await queue.consume(
            index,
            arguments={"x-stream-offset": "first" if start is None else start},
        )
        self._followed.append((queue, tag))
        self._metrics.waiting(kennung, self._store.open_count(kennung))

    async def _index(self, kennung: str, message: AbstractIncomingMessage) -> None:
        offset = (message.headers or {}).get("x-stream-offset")
        uuid = message.message_id or ""
        try:
            bundle = Bundle.decode(message.body, message.content_type)
        except BundleError as exc:
            # The worker checked the message before delivering it, so this is not the
            # sender's doing; keep it out of the box and tell the operator.
            event(log, "xta.box_copy_unreadable", logging.ERROR, agency=kennung, error=str(exc))
            await message.ack()
            return
        if isinstance(offset, int) and uuid:
            headers = message.headers or {}
            author = header_text(headers.get(HEADER_AUTHOR)) or ""
            published = headers.get(HEADER_PUBLISHED)
            queued = message.timestamp or datetime.now(UTC)
            entry = BoxEntry(
                kennung=kennung,
                message_id="",
                uuid=uuid,
                author=author,
                nachrichtentyp=header_text(headers.get(HEADER_TYPE)) or "",
                offset=offset,
                digest=bundle.message.sha256,
                metadata={},
                published=float(published) if isinstance(published, int | float) else None,
                queued=queued if queued.tzinfo else queued.replace(tzinfo=UTC),
            )
            metadata = self._metadata(entry, len(message.body))
            entry = replace(entry, message_id=metadata.message_id, metadata=metadata.to_json())
            if self._store.add(entry):
                self._metrics.waiting(kennung, self._store.open_count(kennung))
        await message.ack()

    def _metadata(self, entry: BoxEntry, size: int) -> MessageMetaData:
        directory = self._directory()

        def party(kennung: str) -> Identifier:
            agency = directory.get(kennung)
            return Identifier(kennung, name=agency.name if agency is not None else "")

        times = Times(
            initial_send=datetime.fromtimestamp(entry.published, UTC).isoformat()
            if entry.published is not None
            else "",
            delivery=entry.queued.isoformat(),
        )
        sent = self._store.sent_as(entry.uuid)
        if sent is not None:
            metadata = MessageMetaData.from_json(sent.metadata)
            # One message can reach several boxes; each names its own reader.
            return MessageMetaData(
                message_id=metadata.message_id,
                author=metadata.author,
                reader=party(entry.kennung),
                service=metadata.service,
                business_scenario=metadata.business_scenario,
                message_type=metadata.message_type,
                payload_schema=metadata.payload_schema,
                size=size,
                times=times,
            )
        return MessageMetaData(
            message_id=xta_message_id(entry.uuid),
            author=party(entry.author),
            reader=party(entry.kennung),
            message_type=Code(entry.nachrichtentyp),
            size=size,
            times=times,
        )

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
        message = await self._read(kennung, entry.offset)
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

    async def _read(self, kennung: str, offset: int) -> AbstractIncomingMessage:
        """The copy at ``offset`` (or, if retention removed it, the first one after)."""
        assert self._connection is not None, "start() the boxes first"
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=1)
            queue = await channel.get_queue(topology.agency_queue(kennung), ensure=False)
            first: asyncio.Future[AbstractIncomingMessage] = (
                asyncio.get_running_loop().create_future()
            )

            async def take(message: AbstractIncomingMessage) -> None:
                if not first.done():
                    first.set_result(message)

            tag = await queue.consume(take, arguments={"x-stream-offset": offset})
            try:
                async with asyncio.timeout(_READ_TIMEOUT):
                    return await first
            except TimeoutError:
                raise XtaFault(
                    Fault.TECHNICAL_PROBLEM, "the message box did not answer in time"
                ) from None
            finally:
                await queue.cancel(tag)
        finally:
            await channel.close()

    async def close(self, kennung: str, message_id: str) -> None:
        """The agency has the copy: close it and tell the author (once)."""
        entry = self._store.entry(kennung, message_id)
        if entry is None:
            raise XtaFault(Fault.INVALID_MESSAGE_ID, f"no message {message_id} in your box")
        if not self._store.close_entry(kennung, message_id):
            return  # closed before: closing again changes nothing
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
        self._journal.record(
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
