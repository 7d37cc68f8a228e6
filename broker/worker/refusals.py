"""Refusals from agencies: a sealed copy that does not open, parked and reported.

An agency's SDK that cannot open its sealed copy sends it back with a signed refusal
(`broker.amqp.refusal`). A refusal counts only if it verifies against the trust store,
is a ``failed`` receipt with a seal reason (copy-seal-key-unknown, copy-seal-invalid)
for the copy's message, signed with a certificate the directory registers for the agency
that issues it, and names one of that agency's own queues. Then the copy, still sealed,
is published into ``xbroker.dead`` as the dead letter of that queue, with the reason in
its headers: it is parked in the queue's ``.dead`` queue, and the failures consumer
(`broker.worker.failures`) sends the author a signed ``failed`` receipt that says why.
Anything else is dead-lettered to ``xbroker.refusals.dead`` for an operator: never
dropped, never reported on an unverified word.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from lxml import etree

from broker.amqp import publishing, topology
from broker.amqp.acks import settle
from broker.amqp.bundle import BundleError
from broker.amqp.refusal import (
    HEADER_REFUSAL,
    HEADER_REFUSAL_DETAIL,
    HEADER_REFUSED_FROM,
    Refusal,
    read_refusal,
)
from broker.errors import DeliveryFailure, PublishError
from broker.logs import event
from broker.receipts.document import Receipt, read_receipt
from monitoring.labels import ReceiptKind
from routing import Directory
from signing import SigningError, Verifier, parse_untrusted

__all__ = ["Refusals"]

log = logging.getLogger("xbroker.broker")

_SEAL_FAILURES = frozenset(
    {DeliveryFailure.COPY_SEAL_KEY_UNKNOWN, DeliveryFailure.COPY_SEAL_INVALID}
)
_MAX_DETAIL = 500


class Refusals:
    def __init__(
        self,
        verifier: Verifier,
        directory: Callable[[], Directory],
        confirm_timeout: float,
    ) -> None:
        self._verifier = verifier
        self._directory = directory
        self._confirm_timeout = confirm_timeout
        self._dead: AbstractExchange | None = None

    def bind(self, dead: AbstractExchange) -> None:
        """The dead-letter exchange, once the topology is declared."""
        self._dead = dead

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        assert self._dead is not None, "bind() the dead-letter exchange first"
        try:
            refusal = read_refusal(message)
            receipt = self._verified(refusal, message.message_id or "")
        except (SigningError, BundleError, ValueError) as exc:
            event(log, "refusal.invalid", logging.WARNING, error=str(exc))
            await message.reject(requeue=False)  # kept in xbroker.refusals.dead
            return
        assert isinstance(receipt.reason, DeliveryFailure)
        headers = {
            key: value
            for key, value in (message.headers or {}).items()
            if isinstance(value, str | int | float)
        }
        headers[HEADER_REFUSAL] = receipt.reason.value
        headers[HEADER_REFUSAL_DETAIL] = (receipt.detail or "")[:_MAX_DETAIL]
        headers[HEADER_REFUSED_FROM] = refusal.queue
        try:
            await publishing.publish_confirmed(
                self._dead,
                publishing.message(
                    refusal.copy,
                    message_id=receipt.nachrichten_uuid,
                    headers=headers,
                    content_type=refusal.copy_content_type,
                ),
                refusal.queue,
                self._confirm_timeout,
            )
        except PublishError as exc:
            event(log, "refusal.retry", logging.WARNING, error=str(exc))
            await settle(message, requeue=True)
            return
        event(
            log,
            "copy.refused",
            logging.WARNING,
            uuid=receipt.nachrichten_uuid,
            agency=receipt.issuer,
            reason=receipt.reason.value,
        )
        await message.ack()

    def _verified(self, refusal: Refusal, uuid: str) -> Receipt:
        verified = self._verifier.verify(
            parse_untrusted(refusal.signed_receipt), at=datetime.now(UTC)
        )
        signed = verified.signed
        if isinstance(signed, etree._ElementTree):
            signed = signed.getroot()
        receipt = read_receipt(signed)
        if receipt.kind is not ReceiptKind.FAILED or receipt.reason not in _SEAL_FAILURES:
            raise ValueError(
                f"a refusal is a failed receipt with a seal reason, not {receipt.kind}"
            )
        if receipt.nachrichten_uuid != uuid:
            raise ValueError(f"the refusal is about {receipt.nachrichten_uuid}, the copy {uuid}")
        if not self._directory().certificate_registered(receipt.issuer, verified.fingerprint):
            raise ValueError(f"not signed by a certificate registered for {receipt.issuer}")
        own = {topology.agency_queue(receipt.issuer, test=test) for test in (False, True)}
        if refusal.queue not in own:
            raise ValueError(f"{receipt.issuer} refused a copy of another queue: {refusal.queue}")
        return receipt
