"""Delivery receipts from agencies: verified, then forwarded unchanged to the author.

A receipt counts only if it verifies against the trust store, says ``delivered``, and
was signed with a certificate the directory registers for the agency that issues it.
Anything else is dead-lettered for an operator, never forwarded. The verification is
CPU work and runs off the loop, within the worker's budget (`broker.worker.offloop`).
A receipt that cannot be forwarded or recorded for now is held until the fault clears
(`broker.worker.faults`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage
from lxml import etree

from broker.amqp import topology
from broker.amqp.publishing import HEADER_PUBLISHED
from broker.errors import Rejection, UnroutableError
from broker.logs import event
from broker.receipts.document import Receipt, read_receipt
from broker.receipts.outbox import ReceiptOutbox
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.worker.faults import Faults
from broker.worker.offloop import OffLoop
from broker.worker.repair import Repair
from monitoring.labels import ReceiptKind
from monitoring.metrics import Metrics
from routing import Directory
from signing import SigningError, Verifier, parse_untrusted

__all__ = ["DeliveryReceipts"]

log = logging.getLogger("xbroker.broker")


class DeliveryReceipts:
    def __init__(
        self,
        verifier: Verifier,
        directory: Callable[[], Directory],
        outbox: ReceiptOutbox,
        metrics: Metrics,
        journal: JournalBatch,
        faults: Faults,
        repair: Repair,
        offloop: OffLoop,
    ) -> None:
        self._faults = faults
        self._repair = repair
        self._offloop = offloop
        self._verifier = verifier
        self._directory = directory
        self._outbox = outbox
        self._metrics = metrics
        self._journal = journal

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        body = message.body
        try:
            receipt = await self._offloop.run(lambda: self._verified(body))
        except (SigningError, ValueError, Rejection) as exc:
            event(log, "receipt.invalid", logging.WARNING, error=str(exc))
            await message.reject(requeue=False)  # dead-lettered for an operator to inspect
            return
        author = receipt.author
        assert author is not None
        done = {"forwarded": False, "recorded": False}

        async def work() -> None:
            if not done["forwarded"]:
                await self._forward(author, message.body, receipt)
                done["forwarded"] = True
            if not done["recorded"]:
                self._journal.add(
                    StatusEvent(
                        receipt.nachrichten_uuid,
                        EventKind.DELIVERED,
                        author=author,
                        agency=receipt.issuer,
                        nachrichtentyp=receipt.nachrichtentyp,
                        digest=receipt.digest,
                    )
                )
                done["recorded"] = True
            await self._journal.flushed()  # no ack before the event is written

        handled, _ = await self._faults.handle(message, work)
        if not handled:
            return
        published = (message.headers or {}).get(HEADER_PUBLISHED)
        if isinstance(published, int | float) and receipt.nachrichtentyp:
            self._metrics.observe_end_to_end(receipt.nachrichtentyp, time.time() - published)
        event(
            log,
            "message.delivered",
            uuid=receipt.nachrichten_uuid,
            nachrichtentyp=receipt.nachrichtentyp,
            agency=receipt.issuer,
            author=receipt.author,
        )
        await message.ack()

    async def _forward(self, author: str, body: bytes, receipt: Receipt) -> None:
        try:
            await self._outbox.forward(author, body, receipt.receipt_uuid, ReceiptKind.DELIVERED)
        except UnroutableError:
            await self._repair.receipt_queue(author)
            await self._outbox.forward(author, body, receipt.receipt_uuid, ReceiptKind.DELIVERED)

    def _verified(self, body: bytes) -> Receipt:
        verified = self._verifier.verify(parse_untrusted(body), at=datetime.now(UTC))
        signed = verified.signed
        if isinstance(signed, etree._ElementTree):
            signed = signed.getroot()
        receipt = read_receipt(signed)
        directory = self._directory()
        if receipt.kind is not ReceiptKind.DELIVERED:
            raise ValueError(f"agencies send delivered receipts, not {receipt.kind}")
        if not directory.certificate_registered(receipt.issuer, verified.fingerprint):
            raise ValueError(f"not signed by a certificate registered for {receipt.issuer}")
        author = directory.get(receipt.author) if receipt.author else None
        if author is None:
            raise ValueError(f"unknown author {receipt.author}")
        if not topology.has_receipt_queue(author):
            raise ValueError(f"{receipt.author} sends nothing and receives no receipts")
        return receipt
