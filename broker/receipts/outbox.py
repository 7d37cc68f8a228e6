"""Receipts on their way to authors: signed by the broker, or forwarded unchanged.

Every receipt an author receives goes through here, so the receipt queue, the confirm
timeout and the receipt counter live in one place. So does the one exception: an author
that speaks XTA has no receipt queue (`broker.amqp.topology.has_receipt_queue`) and is
sent nothing; what a receipt would tell it is in its transport report (docs/xta.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractExchange

from broker.amqp import publishing
from broker.receipts.document import Receipt, build_receipt
from monitoring.labels import ReceiptKind
from monitoring.metrics import Metrics
from signing import Signer

__all__ = ["ReceiptOutbox"]


class ReceiptOutbox:
    """``reads_receipts(author)``: whether the author has a receipt queue to send to."""

    def __init__(
        self,
        issuer: str,
        signer: Signer,
        metrics: Metrics,
        confirm_timeout: float,
        reads_receipts: Callable[[str], bool],
    ) -> None:
        self.issuer = issuer
        self._signer = signer
        self._metrics = metrics
        self._confirm_timeout = confirm_timeout
        self._reads_receipts = reads_receipts
        self._exchange: AbstractExchange | None = None

    def bind(self, exchange: AbstractExchange) -> None:
        """The receipts exchange, once the topology is declared."""
        self._exchange = exchange

    def receipt(self, kind: ReceiptKind, nachrichten_uuid: str, **fields: Any) -> Receipt:
        """A receipt issued by the broker, now."""
        return Receipt(
            kind=kind,
            nachrichten_uuid=nachrichten_uuid,
            issuer=self.issuer,
            issued=datetime.now(UTC),
            **fields,
        )

    async def send(self, author: str, receipt: Receipt) -> None:
        """Sign as the broker and publish to the author's receipt queue (confirmed)."""
        if not self._reads_receipts(author):
            return
        body = self._signer.sign_built(build_receipt(receipt))
        await self.forward(author, body, receipt.receipt_uuid, receipt.kind)

    async def forward(self, author: str, body: bytes, receipt_uuid: str, kind: ReceiptKind) -> None:
        """Publish signed receipt bytes, unchanged, to the author's receipt queue."""
        assert self._exchange is not None, "bind() the receipts exchange first"
        if not self._reads_receipts(author):
            return
        await publishing.publish_confirmed(
            self._exchange,
            publishing.message(body, message_id=receipt_uuid),
            author,
            self._confirm_timeout,
        )
        self._metrics.receipt(kind)
