"""The agency SDK: receive, verify end to end, hand over, acknowledge, confirm receipt.

    async def handle(delivery: Delivery) -> None:
        ...  # store it in the agency's own system; raise to have it redelivered

    client = AgencyClient(urls, "psw:02000000", signer, verifier, handle)
    await client.start()

A copy whose signature does not verify is never handed over: it is rejected and lands in
the agency's dead-letter queue. After the handler returns, the SDK sends a delivery
receipt signed by the agency, which the broker forwards to the author, and acks the copy
only once RabbitMQ has confirmed that receipt. A receipt that cannot be published (a
lost node, a memory alarm, a confirm that never comes) is retried with growing waits
while the copy stays unacked; if the channel is lost meanwhile, RabbitMQ hands the copy
out again and it is confirmed then. Either way the author hears of it, and nothing is
acked without its receipt. Receipts go out on a channel of their own
(`broker.amqp.publishing.Publisher`): a channel that let a confirm time out is replaced
(RabbitMQ 3.10 has channels that stop confirming for good), while the copies stay held
on the consuming channel.

Handled message ids are remembered in SQLite, by default in
``.xbroker/agencies/<kennung>.sqlite3`` below the working directory (``seen_path``
names another file), so a copy delivered again, even after a restart of the agency's
process, is confirmed again without reaching the handler twice. ``seen_path=IN_MEMORY``
keeps them in memory only, for tests and for handlers that deduplicate by themselves.

A sealed copy (``application/jose``, `sealing`) is opened in memory with the agency's
key ring (``keys``: every encryption key it holds, so copies sealed for a key being
rotated out still open) and then verified end to end like any other. A copy that does
not open (sealed for a key the agency does not hold, or altered) is never handed over
and never lost: the SDK sends the broker a refusal signed by the agency, which carries
the sealed copy back; the broker parks the copy in the inbox's dead-letter queue and
tells the author why, with a ``failed`` receipt (``copy-seal-key-unknown``,
``copy-seal-invalid``). The copy is acked only once RabbitMQ confirmed the refusal; until then it
comes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from lxml import etree

from broker.amqp import publishing, topology
from broker.amqp.acks import held
from broker.amqp.backoff import Backoff
from broker.amqp.bundle import Bundle, BundleError, Part
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE, header_text
from broker.amqp.refusal import refusal_message
from broker.errors import DeliveryFailure, PublishError
from broker.receipts.document import Receipt, build_receipt
from monitoring.labels import ReceiptKind
from sealing import SEALED_CONTENT_TYPE, KeyRing, SealLimits, UnsealError, unseal
from signing import Signer, SigningError, Verifier, parse_untrusted

__all__ = ["IN_MEMORY", "AgencyClient", "Delivery", "Handler", "default_seen_path"]

log = logging.getLogger("xbroker.agency")


@dataclass(frozen=True, slots=True)
class Delivery:
    uuid: str
    body: bytes  # as signed by the author, signature included (less what it does not cover)
    signed: etree._Element  # what the signature covers
    author: str
    nachrichtentyp: str
    signer_fingerprint: str
    test: bool
    attachments: tuple[Part, ...] = ()  # each checked against the SHA-256 the bundle records


Handler = Callable[[Delivery], Awaitable[None]]

IN_MEMORY: Final = ":memory:"
"""``seen_path`` for a record of handled copies that ends with the process."""


def default_seen_path(kennung: str, state_dir: Path = Path(".xbroker")) -> Path:
    """Where an agency remembers the copies it handled, unless told otherwise."""
    return state_dir / "agencies" / f"{kennung.replace(':', '_')}.sqlite3"


class _Seen:
    """Message ids already handed to the handler."""

    def __init__(self, path: Path | Literal[":memory:"]) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # An fsync per copy (FULL) blocked the agency's loop 1.4 ms per copy here against
        # 0.07 ms; a handled id survives the process dying either way.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS handled (uuid TEXT PRIMARY KEY, at REAL)")

    def __contains__(self, uuid: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM handled WHERE uuid=?", (uuid,)).fetchone() is not None
        )

    def add(self, uuid: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO handled VALUES (?, ?)", (uuid, datetime.now(UTC).timestamp())
        )

    def close(self) -> None:
        self._db.close()


class AgencyClient:
    """Consumes one agency's inbox (or test inbox)."""

    def __init__(
        self,
        amqp_urls: str | Sequence[str],
        kennung: str,
        signer: Signer,
        verifier: Verifier,
        handler: Handler,
        *,
        test: bool = False,
        prefetch: int = 16,
        confirm_timeout: float = 5.0,
        seen_path: Path | Literal[":memory:"] | None = None,
        receipt_retry: Backoff | None = None,
        keys: KeyRing | None = None,
        seal_limits: SealLimits | None = None,
    ) -> None:
        self.kennung = kennung
        self._urls = amqp_urls
        self._signer = signer
        self._verifier = verifier
        self._handler = handler
        self._test = test
        self._prefetch = prefetch
        self.confirm_timeout = confirm_timeout  # seconds; read at every publish
        self._seen = _Seen(default_seen_path(kennung) if seen_path is None else seen_path)
        self._receipt_retry = receipt_retry or Backoff(first=0.5, ceiling=5.0)
        self._keys = keys or KeyRing()
        # A sealed copy may be a bundle with attachments (XTA allows 60 MiB requests).
        self._seal_limits = seal_limits or SealLimits(64 * 1024 * 1024)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._receipts: publishing.Publisher | None = None
        self.rejected = 0
        self.receipt_retries = 0
        self.refused = 0  # sealed copies that did not open, sent back with a refusal
        self.start_retries = 0  # connections dropped because RabbitMQ refused the consume

    async def start(self, timeout: float = 30.0) -> None:
        """Connect and consume the inbox.

        RabbitMQ can refuse a consume of a quorum queue whose declaration is under way
        (an inbox the broker declares again after it was deleted: its record exists, its
        Raft member does not run yet) by closing the whole connection with INTERNAL_ERROR.
        The client then connects again, with growing waits, for up to ``timeout`` seconds
        before it gives up. An inbox that does not exist fails at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backoff = Backoff(first=0.2, ceiling=2.0)
        while True:
            try:
                await self._consume()
                return
            except aiormq.exceptions.ConnectionInternalError as exc:
                await self._drop_connection()
                delay = backoff.next_delay()
                if loop.time() + delay > deadline:
                    raise
                self.start_retries += 1
                log.warning("consuming %s refused (%s); again in %.1f s", self.kennung, exc, delay)
                await asyncio.sleep(delay)

    async def _consume(self) -> None:
        self._connection, self._channel = await publishing.connect(
            self._urls, f"xbroker-agency {self.kennung}"
        )
        self._receipts = publishing.Publisher(self._connection, topology.DELIVERY_RECEIPT_EXCHANGE)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._channel.get_queue(topology.agency_queue(self.kennung, test=self._test))
        await queue.consume(self._on_message)

    async def _drop_connection(self) -> None:
        connection = self._connection
        self._connection = self._channel = self._receipts = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    @property
    def receipt_channels_replaced(self) -> int:
        """How often a receipt channel was replaced after a confirm timed out."""
        return 0 if self._receipts is None else self._receipts.channels_replaced

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._seen.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        body, content_type = message.body, message.content_type
        if content_type == SEALED_CONTENT_TYPE:
            try:
                opened = unseal(body, self._keys, self._seal_limits)
            except UnsealError as exc:
                await self._refuse(message, exc)
                return
            body, content_type = opened.plaintext, opened.content_type
        try:
            bundle = Bundle.decode(body, content_type)
            verified = self._verifier.verify_now(parse_untrusted(bundle.message.content))
        except (SigningError, BundleError) as exc:
            self.rejected += 1
            log.warning("copy %s refused: %s", message.message_id, exc)
            await message.reject(requeue=False)
            return
        signed = verified.signed
        if isinstance(signed, etree._ElementTree):
            signed = signed.getroot()
        uuid = message.message_id or ""
        delivery = Delivery(
            uuid=uuid,
            body=bundle.message.content,
            signed=signed,
            author=str(headers.get(HEADER_AUTHOR, "")),
            nachrichtentyp=str(headers.get(HEADER_TYPE, "")),
            signer_fingerprint=verified.fingerprint,
            test=self._test,
            attachments=bundle.attachments,
        )
        if uuid not in self._seen:
            try:
                await self._handler(delivery)
            except Exception:
                log.exception("handler failed for %s; it will be redelivered", uuid)
                await message.nack(requeue=True)
                return
            self._seen.add(uuid)
        await self._confirm_then_ack(delivery, message)

    async def _confirm_then_ack(self, delivery: Delivery, message: AbstractIncomingMessage) -> None:
        """Publish the delivery receipt until RabbitMQ confirms it, then ack the copy.

        Gives up on the copy only when its channel is gone: RabbitMQ then delivers it
        again, and the handled copy is confirmed at that delivery.
        """
        receipt = self._receipt(delivery, message)
        body = self._signer.sign_built(build_receipt(receipt))
        backoff = Backoff(self._receipt_retry.first, self._receipt_retry.ceiling)
        while True:
            if not held(message):
                log.warning("copy %s returned to the queue before its receipt", delivery.uuid)
                return
            try:
                await self._publish_receipt(receipt.receipt_uuid, body, message)
                break
            except PublishError as exc:
                self.receipt_retries += 1
                delay = backoff.next_delay()
                log.warning(
                    "receipt for %s not confirmed (%s); again in %.1f s", delivery.uuid, exc, delay
                )
                await asyncio.sleep(delay)
        try:
            await message.ack()
        except Exception:  # the channel went in between: the copy comes back, seen
            log.warning("copy %s confirmed but not acked; it comes back", delivery.uuid)

    async def _refuse(self, message: AbstractIncomingMessage, error: UnsealError) -> None:
        """Send the sealed copy back with a signed refusal, then ack it; if the refusal
        is not confirmed, the copy goes back to the queue and is tried again."""
        assert self._receipts is not None
        headers = message.headers or {}
        receipt = Receipt(
            kind=ReceiptKind.FAILED,
            nachrichten_uuid=message.message_id or "",
            issuer=self.kennung,
            issued=datetime.now(UTC),
            nachrichtentyp=header_text(headers.get(HEADER_TYPE)),
            author=header_text(headers.get(HEADER_AUTHOR)),
            recipients=(self.kennung,),
            reason=DeliveryFailure.of_seal(error.reason),
            detail=error.detail,
        )
        log.warning("copy %s does not open: %s; refused", message.message_id, error)
        try:
            await self._receipts.publish(
                refusal_message(
                    self._signer.sign_built(build_receipt(receipt)),
                    message,
                    topology.agency_queue(self.kennung, test=self._test),
                ),
                topology.REFUSAL_ROUTING_KEY,
                self.confirm_timeout,
            )
        except PublishError:
            log.warning("refusal of %s not confirmed; the copy comes back", message.message_id)
            await message.nack(requeue=True)
            return
        self.refused += 1
        await message.ack()

    def _receipt(self, delivery: Delivery, message: AbstractIncomingMessage) -> Receipt:
        return Receipt(
            kind=ReceiptKind.DELIVERED,
            nachrichten_uuid=delivery.uuid,
            issuer=self.kennung,
            issued=datetime.now(UTC),
            digest=_sha256(delivery.body),
            nachrichtentyp=delivery.nachrichtentyp or None,
            author=delivery.author or None,
            recipients=(self.kennung,),
        )

    async def _publish_receipt(
        self, receipt_uuid: str, body: bytes, message: AbstractIncomingMessage
    ) -> None:
        assert self._receipts is not None
        headers = {}
        published = (message.headers or {}).get(HEADER_PUBLISHED)
        if isinstance(published, int | float):
            headers[HEADER_PUBLISHED] = published
        await self._receipts.publish(
            publishing.message(body, message_id=receipt_uuid, headers=headers),
            topology.DELIVERY_RECEIPT_ROUTING_KEY,
            self.confirm_timeout,
        )


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
