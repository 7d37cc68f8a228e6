"""The portal SDK: sign and publish submissions, collect and verify their receipts.

    async with Portal(urls, kennung, signer, verifier) as portal:
        uuid = await portal.submit(xml_bytes)
        state = await portal.wait_final(uuid, timeout=30)

Receipts are correlated by nachrichtenUUID. A submission is final when it was rejected,
failed as a whole, or reported a duplicate, or when every recipient named in the
``accepted`` receipt has sent its ``delivered`` receipt (or the broker reported ``failed``
for it). ``Portal(urls, ...)`` takes one AMQP URL or every node of a cluster.

The portal holds the receipts of its submissions in memory until they are final, and
then those of the last ``keep_final`` final submissions (default 100,000): a portal that
runs for months does not grow with every message it ever sent. A state forgotten so
reads as empty again; a portal that must answer for older submissions records what
``on_receipt`` hands it in a store of its own.

With ``seal_for`` (the broker's encryption key, `sealing.RecipientKey`), each signed
submission is sealed for the broker (JWE, ``application/jose``) before it is published:
the ingress queue then holds nothing readable, and only the broker opens it, in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from lxml import etree

from broker.amqp import publishing, topology
from broker.receipts.document import Receipt, read_receipt
from monitoring.labels import ReceiptKind
from sealing import SEALED_CONTENT_TYPE, RecipientKey, seal
from signing import Signer, SigningError, Verifier, parse_untrusted
from xta_schemas import Catalog
from xta_schemas.catalog import any_nachrichten_uuid

__all__ = ["Portal", "SubmissionState"]

log = logging.getLogger("xbroker.portal")

ReceiptCallback = Callable[[Receipt], Awaitable[None] | None]


@dataclass(slots=True)
class SubmissionState:
    uuid: str
    receipts: list[Receipt] = field(default_factory=list)

    @property
    def recipients(self) -> tuple[str, ...]:
        for r in self.receipts:
            if r.kind is ReceiptKind.ACCEPTED:
                return r.recipients
        return ()

    @property
    def final(self) -> bool:
        """Rejected; or failed as a whole (a ``failed`` receipt naming no recipient: the
        broker could never handle the message and parked it); or accepted and answered by
        every recipient (delivered or failed); or reported a duplicate of a message this
        portal did not see accepted."""
        kinds = {r.kind for r in self.receipts}
        if ReceiptKind.REJECTED in kinds:
            return True
        if any(r.kind is ReceiptKind.FAILED and not r.recipients for r in self.receipts):
            return True
        if ReceiptKind.ACCEPTED not in kinds:
            return ReceiptKind.DUPLICATE in kinds
        # A delivered receipt names the agency as issuer (AMQP: the agency signs) or as
        # recipient (webhook: the broker signs on the agency's 2xx answer).
        answered = {r.issuer for r in self.receipts if r.kind is ReceiptKind.DELIVERED}
        answered |= {
            x
            for r in self.receipts
            if r.kind in (ReceiptKind.DELIVERED, ReceiptKind.FAILED)
            for x in r.recipients
        }
        return set(self.recipients) <= answered

    def add(self, receipt: Receipt) -> bool:
        """Record a receipt; False if the same statement arrived before (a redelivery
        after a crash repeats receipts, the state does not change)."""
        key = (receipt.kind, receipt.issuer, receipt.recipients)
        if any((r.kind, r.issuer, r.recipients) == key for r in self.receipts):
            return False
        self.receipts.append(receipt)
        return True


class Portal:
    """Publishes signed submissions as one author and receives that author's receipts."""

    def __init__(
        self,
        amqp_urls: str | Sequence[str],
        kennung: str,
        signer: Signer,
        verifier: Verifier,
        *,
        confirm_timeout: float = 5.0,
        on_receipt: ReceiptCallback | None = None,
        catalog: Catalog | None = None,
        seal_for: RecipientKey | None = None,
        keep_final: int = 100_000,
    ) -> None:
        self.kennung = kennung
        self._urls = amqp_urls
        self._signer = signer
        self._verifier = verifier
        self._confirm_timeout = confirm_timeout
        self._on_receipt = on_receipt
        self._catalog = catalog
        self._seal_for = seal_for
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None  # receipts are consumed here
        self._publisher: publishing.Publisher | None = None
        self._states: dict[str, SubmissionState] = {}
        self._final: dict[str, None] = {}  # final submissions, oldest first
        self._keep_final = keep_final
        self._changed = asyncio.Condition()
        self.invalid_receipts = 0

    async def __aenter__(self) -> Portal:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, *, receive: bool = True) -> None:
        self._connection, self._channel = await publishing.connect(
            self._urls, f"xbroker-portal {self.kennung}"
        )
        self._publisher = publishing.Publisher(self._connection, topology.INGRESS_EXCHANGE)
        if receive:
            queue = await self._channel.get_queue(topology.receipt_queue(self.kennung))
            await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def submit(
        self,
        document: bytes | etree._Element,
        *,
        sign: bool = True,
        message_id: str | None = None,
    ) -> str:
        """Sign (unless already signed) and publish; return the message's identity.

        The identity is the one the message states (its nachrichtenUUID). Where its
        standard has none (xdomea), the message travels under ``message_id`` (default: a
        new UUID), from which the broker assigns it one: publishing again with the same
        ``message_id`` is the same message. A message whose header cannot be read, or
        states an identity longer than an AMQP message id may be (255 bytes), is
        published all the same, under an identity assigned so; the broker answers with a
        signed rejection that says why.
        """
        body = self._signer.sign(document) if sign else _bytes(document)
        uuid = self._identity_of(body, message_id)
        content_type = "application/xml"
        if self._seal_for is not None:
            body, content_type = seal(body, self._seal_for), SEALED_CONTENT_TYPE
        assert self._publisher is not None, "start() the portal first"
        await self._publisher.publish(
            publishing.message(
                body, message_id=uuid, reply_to=self.kennung, content_type=content_type
            ),
            topology.INGRESS_ROUTING_KEY,
            self._confirm_timeout,
        )
        return uuid

    def state(self, uuid: str) -> SubmissionState:
        """The receipts of ``uuid`` so far (empty if none came, or it was forgotten)."""
        return self._states.get(uuid) or SubmissionState(uuid)

    async def wait_final(self, uuid: str, timeout: float) -> SubmissionState:
        """Wait until the submission reached a final state; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.state(uuid).final)
        return self.state(uuid)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            verified = self._verifier.verify_now(parse_untrusted(message.body))
            signed = verified.signed
            if isinstance(signed, etree._ElementTree):
                signed = signed.getroot()
            receipt = read_receipt(signed)
            if verified.subject_kennung not in (None, receipt.issuer):
                raise ValueError(
                    f"receipt of {receipt.issuer} signed by {verified.subject_kennung}"
                )
        except (SigningError, ValueError) as exc:
            self.invalid_receipts += 1
            log.warning("invalid receipt dropped: %s", exc)
            await message.reject(requeue=False)
            return
        async with self._changed:
            new = self._record(receipt)
            self._changed.notify_all()
        if new and self._on_receipt is not None:
            result = self._on_receipt(receipt)
            if result is not None:
                await result
        await message.ack()

    def _record(self, receipt: Receipt) -> bool:
        """Add ``receipt`` to its submission's state; False if it held it already. Past
        ``keep_final`` final submissions, the oldest final one is forgotten."""
        uuid = receipt.nachrichten_uuid
        state = self._states.get(uuid)
        if state is None:
            state = self._states[uuid] = SubmissionState(uuid)
        new = state.add(receipt)
        if state.final and uuid not in self._final:
            self._final[uuid] = None
            while len(self._final) > self._keep_final:
                oldest = next(iter(self._final))
                del self._final[oldest]
                del self._states[oldest]
        return new

    def _identity_of(self, body: bytes, message_id: str | None) -> str:
        root = parse_untrusted(body)
        if self._catalog is not None:
            stated = self._catalog.stated_identity(root)
        else:
            stated = any_nachrichten_uuid(root)
        return publishing.travelling_identity(stated, message_id)


def _bytes(document: bytes | etree._Element) -> bytes:
    if isinstance(document, bytes):
        return document
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")
