"""The agency SDK: receive, verify end to end, hand over, acknowledge, confirm receipt.

    async def handle(delivery: Delivery) -> None:
        ...  # store it in the agency's own system; raise to have it redelivered

    client = AgencyClient(url, "psw:02000000", signer, verifier, handle)
    await client.start()

A copy whose signature does not verify is never handed over: it is rejected and lands in
the agency's dead-letter queue. After the handler returns, the SDK sends a delivery
receipt signed by the agency, which the broker forwards to the author, then acks.
Handled message ids are remembered (optionally in SQLite), so a redelivered copy is
acknowledged again without reaching the handler twice.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from lxml import etree

from broker.amqp import publishing, topology
from broker.amqp.bundle import Bundle, BundleError, Part
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE
from broker.receipts.document import Receipt, build_receipt
from monitoring.labels import ReceiptKind
from signing import Signer, SigningError, Verifier, parse_untrusted

__all__ = ["AgencyClient", "Delivery", "Handler"]

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


class _Seen:
    """Message ids already handed to the handler."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path or ":memory:", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
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
        amqp_url: str,
        kennung: str,
        signer: Signer,
        verifier: Verifier,
        handler: Handler,
        *,
        test: bool = False,
        prefetch: int = 16,
        confirm_timeout: float = 5.0,
        seen_path: Path | None = None,
    ) -> None:
        self.kennung = kennung
        self._url = amqp_url
        self._signer = signer
        self._verifier = verifier
        self._handler = handler
        self._test = test
        self._prefetch = prefetch
        self._confirm_timeout = confirm_timeout
        self._seen = _Seen(seen_path)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self.rejected = 0

    async def start(self) -> None:
        self._connection, self._channel = await publishing.connect(
            self._url, f"xbroker-agency {self.kennung}"
        )
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._channel.get_queue(topology.agency_queue(self.kennung, test=self._test))
        await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._seen.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        try:
            bundle = Bundle.decode(message.body, message.content_type)
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
        await self._confirm(delivery, message)
        await message.ack()

    async def _confirm(self, delivery: Delivery, message: AbstractIncomingMessage) -> None:
        assert self._channel is not None
        receipt = Receipt(
            kind=ReceiptKind.DELIVERED,
            nachrichten_uuid=delivery.uuid,
            issuer=self.kennung,
            issued=datetime.now(UTC),
            digest=_sha256(delivery.body),
            nachrichtentyp=delivery.nachrichtentyp or None,
            author=delivery.author or None,
            recipients=(self.kennung,),
        )
        body = self._signer.sign(build_receipt(receipt))
        exchange = await self._channel.get_exchange(
            topology.DELIVERY_RECEIPT_EXCHANGE, ensure=False
        )
        headers = {}
        published = (message.headers or {}).get(HEADER_PUBLISHED)
        if isinstance(published, int | float):
            headers[HEADER_PUBLISHED] = published
        await publishing.publish_confirmed(
            exchange,
            publishing.message(body, message_id=receipt.receipt_uuid, headers=headers),
            topology.DELIVERY_RECEIPT_ROUTING_KEY,
            self._confirm_timeout,
        )


def _sha256(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()
