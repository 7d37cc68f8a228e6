"""The index of the message boxes: each XTA box's stream, followed into the XTA store.

Every endpoint process follows the stream of every XTA agency of the directory as it is
now (a reload that adds one is followed within a second, `BoxIndex.follow`), each on a
channel of its own, from the box's cursor: the lowest offset not known to be indexed
(`broker.stores.xta`). Each copy becomes a row (offset, MessageID, nachrichtenUUID,
author, type, digest, MessageMetaData, times); the row and the cursor move in one
transaction, and in offset order. When indexing a copy fails (a store error, anything),
the follower stops at that copy and is started again from the cursor after a pause:
the copy is read again, never skipped, and nothing after it is indexed first. Rows are
inserted once, whichever process sees a copy first, so any number of processes can
index the same boxes; a message delivered twice (a worker's retry) is listed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from broker.amqp import topology
from broker.amqp.bundle import Bundle, BundleError
from broker.amqp.publishing import (
    HEADER_AUTHOR,
    HEADER_PADDING,
    HEADER_PUBLISHED,
    HEADER_TYPE,
    header_text,
)
from broker.logs import event
from broker.stores.xta import BoxEntry, XtaStore
from broker.xta.metadata import Code, Identifier, MessageMetaData, Times, xta_message_id
from broker.xta.metrics import XtaMetrics
from broker.xta.stream import FIRST, stream_offset
from routing import Directory, XtaEndpoint

__all__ = ["BoxIndex", "xta_agencies"]

log = logging.getLogger("xbroker.xta")

_PREFETCH = 64
_RETRY_FIRST = 1.0  # seconds before a failed follower starts again; doubles up to
_RETRY_MAX = 60.0


def xta_agencies(directory: Directory) -> tuple[str, ...]:
    """The agencies whose inbox is an XTA message box."""
    return tuple(
        a.kennung
        for a in directory
        if isinstance(a.endpoint, XtaEndpoint) and topology.has_inbox(a)
    )


@dataclass(slots=True)
class _Follower:
    """One box's stream, consumed on a channel of its own (strong references kept:
    aio-pika holds queues weakly)."""

    channel: AbstractChannel
    queue: AbstractQueue | None = None
    failed: bool = False

    @property
    def working(self) -> bool:
        return not self.failed and not self.channel.is_closed


class BoxIndex:
    def __init__(
        self,
        connection: AbstractConnection,
        store: XtaStore,
        directory: Callable[[], Directory],
        metrics: XtaMetrics,
    ) -> None:
        self._connection = connection
        self._store = store
        self._directory = directory
        self._metrics = metrics
        self._followers: dict[str, _Follower] = {}
        self._retry: dict[str, tuple[float, float]] = {}  # kennung -> (not before, pause)

    def following(self, kennung: str) -> bool:
        follower = self._followers.get(kennung)
        return follower is not None and follower.working

    async def follow(self) -> None:
        """Follow every box of the directory as it is now: start followers for new boxes
        and for failed ones (after their pause), stop those of boxes no longer there."""
        boxes = set(xta_agencies(self._directory()))
        for kennung in [k for k, f in self._followers.items() if k not in boxes or not f.working]:
            await self._stop_following(kennung)
        now = time.monotonic()
        for kennung in sorted(boxes - set(self._followers)):
            not_before, _pause = self._retry.get(kennung, (0.0, 0.0))
            if now >= not_before:
                await self._start_following(kennung)

    async def stop(self) -> None:
        for kennung in list(self._followers):
            await self._stop_following(kennung)

    async def _start_following(self, kennung: str) -> None:
        channel = await self._connection.channel()
        follower = _Follower(channel)
        try:
            await channel.set_qos(prefetch_count=_PREFETCH)
            follower.queue = queue = await channel.get_queue(
                topology.agency_queue(kennung), ensure=False
            )
            start = self._store.next_offset(kennung)

            async def index(message: AbstractIncomingMessage) -> None:
                await self._index(kennung, follower, message)

            await queue.consume(
                index, arguments={"x-stream-offset": FIRST if start is None else start}
            )
        except Exception as exc:  # no box yet (the worker declares it), a lost channel
            self._failed(kennung, f"cannot follow the box: {exc}")
            if not channel.is_closed:
                await channel.close()
            return
        self._followers[kennung] = follower
        self._metrics.waiting(kennung, self._store.open_count(kennung))
        event(log, "xta.box_followed", agency=kennung, offset=start)

    async def _stop_following(self, kennung: str) -> None:
        follower = self._followers.pop(kennung)
        if not follower.channel.is_closed:
            await follower.channel.close()

    def _failed(self, kennung: str, error: str) -> None:
        """Pause, then follow again from the cursor; the pause doubles while it fails."""
        _not_before, pause = self._retry.get(kennung, (0.0, 0.0))
        pause = min(_RETRY_MAX, max(_RETRY_FIRST, pause * 2))
        self._retry[kennung] = (time.monotonic() + pause, pause)
        self._metrics.index_failure(kennung)
        event(log, "xta.index_failed", logging.ERROR, agency=kennung, error=error, retry=pause)

    async def _index(
        self, kennung: str, follower: _Follower, message: AbstractIncomingMessage
    ) -> None:
        # Deliveries are handled in offset order (each runs to its first await in turn),
        # so once one fails, none after it may move the cursor.
        if follower.failed:
            return
        offset = stream_offset(message)
        try:
            if offset is not None:
                self._index_entry(kennung, offset, message)
        except Exception as exc:
            follower.failed = True
            self._failed(kennung, f"offset {offset}: {exc}")
            return
        self._retry.pop(kennung, None)
        await message.ack()

    def _index_entry(self, kennung: str, offset: int, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        if headers.get(HEADER_PADDING):
            self._store.skip(kennung, offset, padding=True)
            return
        uuid = message.message_id or ""
        try:
            bundle = Bundle.decode(message.body, message.content_type)
        except BundleError as exc:
            # The worker checked the message before delivering it, so this is not the
            # sender's doing; keep it out of the box and tell the operator.
            event(log, "xta.box_copy_unreadable", logging.ERROR, agency=kennung, error=str(exc))
            uuid = ""
        if not uuid:
            self._store.skip(kennung, offset)
            return
        published = headers.get(HEADER_PUBLISHED)
        queued = message.timestamp or datetime.now(UTC)
        entry = BoxEntry(
            kennung=kennung,
            message_id="",
            uuid=uuid,
            author=header_text(headers.get(HEADER_AUTHOR)) or "",
            nachrichtentyp=header_text(headers.get(HEADER_TYPE)) or "",
            offset=offset,
            digest=bundle.message.sha256,
            metadata={},
            published=float(published) if isinstance(published, int | float) else None,
            queued=queued if queued.tzinfo else queued.replace(tzinfo=UTC),
        )
        metadata = self._metadata(entry, len(message.body))
        entry = replace(entry, message_id=metadata.message_id, metadata=metadata.to_json())
        if self._store.index(entry):
            self._metrics.waiting(kennung, self._store.open_count(kennung))

    def _metadata(self, entry: BoxEntry, size: int) -> MessageMetaData:
        """For a message sent over XTA, the sender's MessageMetaData (with this box as its
        reader); otherwise made from the copy's headers, under a reserved MessageID."""
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
