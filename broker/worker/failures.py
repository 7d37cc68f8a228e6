"""Copies that expired or could never be delivered: the author is told, nothing is lost.

RabbitMQ dead-letters an agency's copy when it expires unfetched, when the agency
refuses it, or when it fails on every delivery attempt; the same happens to an ingress
message that fails by itself on every attempt (`broker.worker.faults`). Each dead letter
reaches both its ``.dead`` queue (parked for an operator) and ``xbroker.failures``, where
this handler sends the author a signed ``failed`` receipt: for a copy it names the
agency, for a message that failed as a whole it names no recipient, which the portal SDK
takes as final. It reads only headers, never the body.

An author without a receipt queue cannot be told: the dead letter is counted
(``xbroker_receipts_undeliverable_total``) and stays parked in its ``.dead`` queue, the
one place an operator looks. The same holds for an ingress message the broker parked
itself because nobody could receive its rejection: that is counted when it is parked.

A sealed copy its agency could not open arrives the same way, published by the broker
after it verified the agency's signed refusal (`broker.worker.refusals`); its headers
say why (``x-xbroker-refusal``), and the author is told that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from broker.amqp import topology
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_TYPE, header_text
from broker.amqp.refusal import HEADER_REFUSAL, HEADER_REFUSAL_DETAIL, HEADER_REFUSED_FROM
from broker.errors import DeliveryFailure, UnroutableError
from broker.logs import event
from broker.receipts.document import Receipt
from broker.receipts.outbox import ReceiptOutbox
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.worker.faults import Faults
from broker.worker.repair import Repair
from monitoring.labels import DeliveryOutcome, ReceiptKind
from monitoring.metrics import Metrics
from routing import Directory, XtaEndpoint

__all__ = ["Death", "Failures", "death_of", "failed_event", "failed_receipt", "not_fetched"]

log = logging.getLogger("xbroker.broker")


@dataclass(frozen=True, slots=True)
class Death:
    why: str  # RabbitMQ's x-death reason: expired, rejected, delivery_limit, maxlen; or
    # "refused" for a sealed copy its agency could not open (a verified refusal)

    @property
    def failure(self) -> DeliveryFailure:
        """What the author is told: expired unfetched, the refusal's reason, or
        undeliverable for any other why."""
        if self.refusal is not None:
            return self.refusal
        return DeliveryFailure.EXPIRED if self.why == "expired" else DeliveryFailure.UNDELIVERABLE

    queue: str
    agency: str | None
    refusal: DeliveryFailure | None = None
    refusal_detail: str = ""

    @property
    def parked_rejection(self) -> bool:
        """An ingress message the broker dead-lettered because nobody could be told of
        its rejection (`broker.worker.ingress`)."""
        return self.queue == topology.INGRESS_QUEUE and self.why == "rejected"

    def describe(self, expire_after_days: float) -> str:
        where = f"the copy for {self.agency}" if self.agency else "the message"
        if self.refusal is not None:
            return f"{where} does not open there: {self.refusal_detail}"
        if self.why == "expired":
            return not_fetched(self.agency, expire_after_days)
        if self.why == "rejected":
            return f"{where} was refused by its receiver"
        if self.why == "delivery_limit":
            return f"{where} failed on every delivery attempt"
        return f"{where} could not be delivered ({self.why})"


def _agency_of(queue: str) -> str | None:
    if queue.startswith("agency.") and queue.endswith((".inbox", ".test")):
        return queue.removeprefix("agency.").rsplit(".", 1)[0]
    return None


def death_of(message: AbstractIncomingMessage) -> Death:
    """Why and where RabbitMQ dead-lettered the message (its latest x-death entry), or
    why its agency refused it (a copy the broker parked on a verified refusal)."""
    headers = message.headers or {}
    refusal = header_text(headers.get(HEADER_REFUSAL))
    if refusal in {f.value for f in DeliveryFailure}:
        queue = header_text(headers.get(HEADER_REFUSED_FROM)) or ""
        detail = header_text(headers.get(HEADER_REFUSAL_DETAIL)) or ""
        return Death("refused", queue, _agency_of(queue), DeliveryFailure(refusal), detail)
    deaths = headers.get("x-death")
    latest = deaths[0] if isinstance(deaths, list) and deaths else {}
    why = header_text(latest.get("reason")) if isinstance(latest, dict) else None
    queue = (header_text(latest.get("queue")) if isinstance(latest, dict) else None) or ""
    agency = _agency_of(queue)
    if queue == topology.UNROUTABLE_QUEUE and isinstance(latest, dict):
        # A copy no inbox took: its routing key at publication names the agency.
        keys = latest.get("routing-keys")
        first = header_text(keys[0]) if isinstance(keys, list) and keys else None
        named = topology.agency_of_routing_key(first or "")
        agency = named[0] if named else None
    return Death(why or "unknown", queue, agency)


class Failures:
    def __init__(
        self,
        directory: Callable[[], Directory],
        outbox: ReceiptOutbox,
        metrics: Metrics,
        journal: JournalBatch,
        expire_after_days: float,
        faults: Faults,
        repair: Repair,
    ) -> None:
        self._expire_after_days = expire_after_days
        self._directory = directory
        self._outbox = outbox
        self._metrics = metrics
        self._journal = journal
        self._faults = faults
        self._repair = repair

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        failure = death_of(message)
        uuid = message.message_id or "unknown"
        headers = message.headers or {}
        author = header_text(headers.get(HEADER_AUTHOR)) or message.reply_to
        nachrichtentyp = header_text(headers.get(HEADER_TYPE))
        reason = failure.failure
        if failure.parked_rejection:
            event(log, "message.parked", logging.WARNING, uuid=uuid, queue=failure.queue)
            await message.ack()  # it stays in xbroker.ingress.dead; its rejection is recorded
            return
        event(
            log,
            "message.failed",
            logging.WARNING,
            uuid=uuid,
            nachrichtentyp=nachrichtentyp,
            agency=failure.agency,
            reason=reason.value,
            why=failure.why,
        )
        done = {"told": False, "recorded": False}

        async def work() -> None:
            if not done["told"]:
                agency = self._directory().get(author) if author else None
                if agency is not None and topology.has_receipt_queue(agency):
                    assert author is not None
                    await self._tell(author, uuid, nachrichtentyp, failure, reason)
                elif agency is None or not isinstance(agency.endpoint, XtaEndpoint):
                    # Nobody to tell (an XTA author reads it in its transport report);
                    # the dead letter stays in its .dead queue.
                    event(log, "receipt.undeliverable", logging.WARNING, uuid=uuid)
                    self._metrics.faults.undeliverable.inc()
                done["told"] = True
            if not done["recorded"]:
                self._journal.add(
                    failed_event(
                        uuid,
                        author=author,
                        agency=failure.agency,
                        nachrichtentyp=nachrichtentyp,
                        reason=reason,
                    )
                )
                done["recorded"] = True
            await self._journal.flushed()  # no ack before the event is written

        handled, _ = await self._faults.handle(message, work)
        if not handled:
            return
        if failure.agency:
            self._metrics.delivery(failure.agency, DeliveryOutcome.DEAD_LETTERED)
        await message.ack()

    async def _tell(
        self,
        author: str,
        uuid: str,
        nachrichtentyp: str | None,
        failure: Death,
        reason: DeliveryFailure,
    ) -> None:
        receipt = failed_receipt(
            self._outbox,
            uuid,
            author=author,
            agency=failure.agency,
            nachrichtentyp=nachrichtentyp,
            reason=reason,
            detail=failure.describe(self._expire_after_days),
        )
        try:
            await self._outbox.send(author, receipt)
        except UnroutableError:
            await self._repair.receipt_queue(author)
            await self._outbox.send(author, receipt)


def not_fetched(agency: str | None, expire_after_days: float) -> str:
    """Why a copy expired, as its failed receipt says it (AMQP inbox or XTA box alike)."""
    where = f"the copy for {agency}" if agency else "the message"
    return f"{where} was not fetched within {expire_after_days:g} days"


def failed_event(
    uuid: str,
    *,
    author: str | None,
    agency: str | None,
    nachrichtentyp: str | None,
    reason: DeliveryFailure,
) -> StatusEvent:
    """The Laufzettel's ``failed`` event for a copy that never reached ``agency``."""
    return StatusEvent(
        uuid,
        EventKind.FAILED,
        author=author,
        agency=agency,
        nachrichtentyp=nachrichtentyp,
        reason=reason.value,
    )


def failed_receipt(
    outbox: ReceiptOutbox,
    uuid: str,
    *,
    author: str,
    agency: str | None,
    nachrichtentyp: str | None,
    reason: DeliveryFailure,
    detail: str,
) -> Receipt:
    """The ``failed`` receipt for a copy that never reached ``agency``."""
    return outbox.receipt(
        ReceiptKind.FAILED,
        uuid,
        nachrichtentyp=nachrichtentyp,
        author=author,
        recipients=(agency,) if agency else (),
        reason=reason,
        detail=detail,
    )
