"""The ingress handler: one message from the ingress queue, decided, delivered, answered.

One message (docs/architecture.md): decide (pure pipeline) → claim in the dedup store → publish a
copy to every recipient and the signed accepted receipt to the author, all at once,
each confirmed → write the message's journal events (and the dedup completion) → ack.
A claim that finds the author's identity used before for other bytes is rejected
(``id-reused``): only the same bytes are a duplicate.
A crash before the ack redelivers the message; the dedup claim makes that harmless.
Permanent failures are answered with a signed rejection receipt and acked; transient
ones are requeued (the queue's delivery limit dead-letters a message that never works).

The receipt is published together with the copies rather than after their confirms,
so a message waits for one round of confirms, not two. The ingress message is still
acked only when every copy *and* the receipt are confirmed. If any of them fails, the
message is requeued and processed again from its pending claim (RETRY): every copy and
the receipt are published again. So a failed copy may follow an accepted receipt the
author already holds, and a failed receipt may follow copies already queued; the
redelivery repairs both, and what it repeats is absorbed downstream: agencies
deduplicate copies by message id, and the portal SDK drops a receipt it already holds.
The author is never told "accepted" for a message that is then lost.

Journal events are added to a `JournalBatch` and written together before the ack that
they belong to (the durability rule is in `broker.stores.journal`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from broker.amqp import publishing, topology
from broker.amqp.acks import settle
from broker.amqp.bundle import BundleError, message_of, with_message
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_RECEIVED, HEADER_TYPE
from broker.errors import PublishError, Reason, Rejection, TransientError
from broker.logs import event
from broker.pipeline import Accepted, Decision, Pipeline, Rejected
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings
from broker.stores.dedup import ClaimState, DedupStore
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.worker.offloop import OffLoop
from monitoring.labels import DeliveryOutcome, ReceiptKind, Stage
from monitoring.metrics import Metrics
from routing import Directory, Recipient
from xta_schemas import Header
from xta_schemas.model import IdentitySource

__all__ = ["IngressConsumer"]

log = logging.getLogger("xbroker.broker")


class IngressConsumer:
    """Consumer of ``xbroker.ingress``; one per worker."""

    def __init__(
        self,
        settings: Settings,
        directory: Callable[[], Directory],
        pipeline: Pipeline,
        dedup: DedupStore,
        outbox: ReceiptOutbox,
        metrics: Metrics,
        journal: JournalBatch,
        offloop: OffLoop,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._pipeline = pipeline
        self._offloop = offloop
        self._dedup = dedup
        self._outbox = outbox
        self._metrics = metrics
        self._journal = journal
        self._exchange: AbstractExchange | None = None

    def bind(self, deliver: AbstractExchange) -> None:
        """The delivery exchange, once the topology is declared."""
        self._exchange = deliver

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        with self._metrics.track_message():
            if not _received_at_entry(message):
                self._journal.add(StatusEvent(message.message_id or "unknown", EventKind.RECEIVED))
            try:
                decision = await self._decide(message, datetime.now(UTC))
                if isinstance(decision, Rejected):
                    await self._reject(message, decision)
                else:
                    await self._accept(message, decision)
                # No ack before the message's events are written (broker.stores.journal).
                await self._journal.flushed()
            except TransientError as exc:
                event(
                    log, "message.retry", logging.WARNING, uuid=message.message_id, error=str(exc)
                )
                await settle(message, requeue=True)
                return
            except Exception:
                # A bug, not the sender's fault: requeue; the delivery limit dead-letters
                # a message that fails every time, so it is kept, not lost or looped.
                log.exception(
                    "message.error", extra={"xbroker_facts": {"uuid": message.message_id}}
                )
                await settle(message, requeue=True)
                return
            await message.ack()

    async def _decide(self, message: AbstractIncomingMessage, at: datetime) -> Decision:
        """The pipeline's decision, worked out off the loop (`broker.worker.offloop`), on
        the message (or a bundle's message part, which is read off the loop too)."""

        def decide() -> Decision:
            body = _message_part(message)
            return self._pipeline.process(body, at=at, message_id=message.message_id)

        try:
            return await self._offloop.run(decide)
        except Rejection as exc:  # given up on: the pipeline never got to say more
            return Rejected(hashlib.sha256(message.body).hexdigest(), exc.reason, exc.detail)

    async def _accept(self, message: AbstractIncomingMessage, decision: Accepted) -> None:
        header = decision.header
        author = header.author.kennung
        claim = self._dedup.claim(author, header.uuid, decision.digest)
        if claim.state is ClaimState.REUSED:
            await self._reject(
                message,
                Rejected(
                    decision.digest,
                    Reason.ID_REUSED,
                    f"{author} sent other content under {header.uuid} before "
                    f"(sha256 {claim.first_digest[:16]}…): a changed message needs an "
                    "identity of its own",
                    header=header,
                    standard=decision.standard,
                ),
                first_digest=claim.first_digest,
            )
            return
        if claim.state is ClaimState.DUPLICATE:
            self._metrics.duplicate(header.nachrichtentyp)
            self._journal.add(
                StatusEvent(
                    header.uuid,
                    EventKind.DUPLICATE,
                    author=author,
                    nachrichtentyp=header.nachrichtentyp,
                    digest=decision.digest,
                )
            )
            event(
                log,
                "message.duplicate",
                uuid=header.uuid,
                nachrichtentyp=header.nachrichtentyp,
                author=author,
            )
            await self._outbox.send(
                author,
                self._outbox.receipt(
                    ReceiptKind.DUPLICATE,
                    header.uuid,
                    digest=decision.digest,
                    nachrichtentyp=header.nachrichtentyp,
                    standard=decision.standard,
                    author=author,
                    first_digest=claim.first_digest,
                ),
            )
            return
        published = message.timestamp.timestamp() if message.timestamp else time.time()
        recipients = tuple(r.kennung for r in decision.recipients)
        receipt = self._outbox.receipt(
            ReceiptKind.ACCEPTED,
            header.uuid,
            digest=decision.digest,
            nachrichtentyp=header.nachrichtentyp,
            standard=decision.standard,
            author=author,
            recipients=recipients,
            **_assumptions(header, decision.uncovered.notes()),
        )
        body = (
            message.body
            if decision.covered is None
            else with_message(message.body, message.content_type, decision.covered)
        )

        async def copies() -> None:
            with self._metrics.time_stage(Stage.DELIVER):
                await _all_confirmed(
                    *(
                        self._deliver(r, message, body, decision, published)
                        for r in decision.recipients
                    )
                )

        async def accepted_receipt() -> None:
            with self._metrics.time_stage(Stage.RECEIPT):
                await self._outbox.send(author, receipt)

        await _all_confirmed(copies(), accepted_receipt())
        self._metrics.accept(decision.standard, header.nachrichtentyp)
        self._journal.add(
            StatusEvent(
                header.uuid,
                EventKind.ACCEPTED,
                author=author,
                nachrichtentyp=header.nachrichtentyp,
                standard=decision.standard,
                digest=decision.digest,
                recipients=recipients,
            )
        )
        event(
            log,
            "message.accepted",
            uuid=header.uuid,
            nachrichtentyp=header.nachrichtentyp,
            author=author,
            recipients=list(recipients),
            retry=claim.state is ClaimState.RETRY,
        )

    async def _deliver(
        self,
        recipient: Recipient,
        message: AbstractIncomingMessage,
        body: bytes,
        decision: Accepted,
        published: float,
    ) -> None:
        assert self._exchange is not None, "bind() the delivery exchange first"
        agency = self._directory().get(recipient.kennung)
        if agency is None:
            raise PublishError(f"{recipient.kennung} is not in the directory")
        # A webhook agency's copy goes into its inbox too; the webhook deliverer pushes it.
        msg = publishing.message(
            body,  # a bundle stays a bundle: its attachments travel with it
            message_id=decision.header.uuid,
            content_type=message.content_type or "application/xml",
            headers={
                HEADER_PUBLISHED: published,
                HEADER_TYPE: decision.header.nachrichtentyp,
                HEADER_AUTHOR: decision.header.author.kennung,
            },
            # An unfetched copy expires into the dead-letter queues; the failure consumer
            # tells the author. Per message, so a changed setting needs no queue redeclare.
            expiration=self._settings.expire_after_days * 86400,
        )
        try:
            await publishing.publish_confirmed(
                self._exchange,
                msg,
                topology.agency_routing_key(recipient.kennung, test=recipient.test),
                self._settings.confirm_timeout_seconds,
            )
        except PublishError:
            self._metrics.delivery(recipient.kennung, DeliveryOutcome.FAILED)
            raise
        self._metrics.delivery(recipient.kennung, DeliveryOutcome.DELIVERED)
        self._journal.add(
            StatusEvent(
                decision.header.uuid,
                EventKind.QUEUED,
                author=decision.header.author.kennung,
                agency=recipient.kennung,
                nachrichtentyp=decision.header.nachrichtentyp,
            )
        )

    async def _reject(
        self,
        message: AbstractIncomingMessage,
        decision: Rejected,
        first_digest: str | None = None,
    ) -> None:
        header = decision.header
        self._metrics.reject(decision.reason)
        target = self._rejection_target(message, decision)
        uuid = header.uuid if header else (message.message_id or "unknown")
        event(
            log,
            "message.rejected",
            uuid=uuid,
            reason=decision.reason.value,
            nachrichtentyp=header.nachrichtentyp if header else None,
            author=target,
        )
        self._journal.add(
            StatusEvent(
                uuid,
                EventKind.REJECTED,
                author=target,
                nachrichtentyp=header.nachrichtentyp if header else None,
                standard=decision.standard,
                digest=decision.digest,
                reason=decision.reason.value,
            )
        )
        if target is None:
            event(log, "receipt.undeliverable", logging.WARNING, uuid=uuid)
            return
        await self._outbox.send(
            target,
            self._outbox.receipt(
                ReceiptKind.REJECTED,
                uuid,
                digest=decision.digest,
                nachrichtentyp=header.nachrichtentyp if header else None,
                standard=decision.standard,
                author=header.author.kennung if header else None,
                reason=decision.reason,
                detail=decision.detail,
                issues=decision.issues,
                first_digest=first_digest,
                **(_assumptions(header) if header else {}),
            ),
        )

    def _rejection_target(self, message: AbstractIncomingMessage, decision: Rejected) -> str | None:
        """Who learns of a rejection: the signed author, else the sender's reply-to."""
        header = decision.header
        if (
            header is not None
            and decision.reason is not Reason.SIGNER_NOT_AUTHOR
            and header.author.kennung in self._directory()
        ):
            return header.author.kennung
        if message.reply_to and message.reply_to in self._directory():
            return message.reply_to
        if header is not None and header.author.kennung in self._directory():
            return header.author.kennung
        return None


def _received_at_entry(message: AbstractIncomingMessage) -> bool:
    """Whether the endpoint that took the submission (HTTP API, XTA) recorded its received
    event: one event per fact. A sender that set the header itself hides only the received
    line of its own message; every decision about it is recorded all the same."""
    return bool((message.headers or {}).get(HEADER_RECEIVED))


def _message_part(message: AbstractIncomingMessage) -> bytes:
    """What the pipeline checks: the message, or a bundle's message part. A broken
    bundle goes to the pipeline as it is, which rejects it as malformed XML."""
    try:
        return message_of(message.body, message.content_type)
    except BundleError:
        return message.body


def _assumptions(header: Header, removed: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a receipt says the broker assigned or assumed in reading ``header``, and
    what it ``removed`` from the message before delivering it."""
    assigned = header.identity is not IdentitySource.MESSAGE
    return {
        "identity_assigned": header.identity.value if assigned else None,
        "notes": header.notes() + removed,
    }


async def _all_confirmed(*publishes: Awaitable[None]) -> None:
    """Run ``publishes`` together; once all have settled, raise the first failure.

    Waiting for all (rather than failing at the first) means that when the message is
    requeued, none of its publishes is still in flight from this attempt.
    """
    results = await asyncio.gather(*publishes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
