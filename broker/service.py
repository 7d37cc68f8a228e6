"""The broker worker: consumes the ingress queue, runs the pipeline, delivers, answers.

One message (DESIGN.md): decide (pure pipeline) → claim in the dedup store → publish a
copy to every recipient and the signed accepted receipt to the author, all at once,
each confirmed → write the message's journal events (and the dedup completion) → ack.
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

Journal events are added to a `JournalBatch` and written together, once per loop turn,
before the ack that they belong to (the durability rule is in `broker.journal`).

Delivery receipts from agencies arrive on their own queue; the broker verifies that the
registered agency signed one before forwarding it, unchanged, to the author.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from broker import publishing, topology
from broker.acks import settle
from broker.dedup import ClaimState, DedupStore
from broker.delivery_receipts import DeliveryReceipts
from broker.errors import ConfigurationError, PublishError, Reason, TransientError
from broker.failures import Failures
from broker.journal import EventKind, Journal, JournalBatch, Journals, StatusEvent
from broker.logs import event
from broker.outbox import ReceiptOutbox
from broker.pipeline import Accepted, Pipeline, Rejected
from broker.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE
from broker.queue_stats import sample_queues, vhost_of
from broker.receipts import Kind, Receipt
from broker.settings import Settings
from broker.webhook import WebhookDeliverer, webhook_agencies
from monitoring.metrics import CertificateExpiry, Metrics
from routing import Directory, Recipient
from signing import ParserLimits, Signer, Verifier
from xta_schemas import Catalog

__all__ = ["JOURNAL_DELAY", "BrokerService", "Lifecycle"]

log = logging.getLogger("xbroker.broker")

JOURNAL_DELAY = 0.005
"""Seconds a journal batch gathers events. Only acks wait for it (see broker.journal)."""


class Lifecycle(StrEnum):
    UNOPENED = "unopened"
    RUNNING = "running"
    STOPPING = "stopping"
    CLOSED = "closed"


@dataclass(slots=True)
class _Consumers:
    ingress: AbstractQueue
    ingress_tag: str
    receipts: AbstractQueue
    receipts_tag: str
    failures: AbstractQueue
    failures_tag: str

    def all(self) -> tuple[tuple[AbstractQueue, str], ...]:
        return (
            (self.ingress, self.ingress_tag),
            (self.receipts, self.receipts_tag),
            (self.failures, self.failures_tag),
        )


class BrokerService:
    """One broker worker. Any number may consume the same ingress queue."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog,
        directory: Directory,
        verifier: Verifier,
        signer: Signer,
        metrics: Metrics,
        dedup: DedupStore,
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        # The dedup store listens too: the accepted event completes the message's claim,
        # in the same write as its events, after the confirms and before the ack.
        self._journal = JournalBatch([journal or Journals(), dedup], delay=JOURNAL_DELAY)
        # Handlers that ack right after recording use the batch's write-through record().
        self.journal: Journal = self._journal
        self.directory = directory
        self.metrics = metrics
        self._dedup = dedup
        self._outbox = ReceiptOutbox(
            settings.broker_kennung, signer, metrics, settings.confirm_timeout_seconds
        )
        self._delivery_receipts = DeliveryReceipts(
            verifier, lambda: self.directory, self._outbox, metrics, self._journal
        )
        self._failures = Failures(
            lambda: self.directory,
            self._outbox,
            metrics,
            self._journal,
            settings.expire_after_days,
        )
        self._pipeline = Pipeline(
            catalog=catalog,
            verifier=verifier,
            directory=directory,
            limits=ParserLimits(
                max_bytes=settings.max_message_bytes, max_depth=settings.max_xml_depth
            ),
            observe=self._observe_stage,
        )
        self._publish_certificates()
        self.state = Lifecycle.UNOPENED
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: topology.Exchanges | None = None
        self._consumers: _Consumers | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sampler: asyncio.Task[None] | None = None
        self.webhooks: WebhookDeliverer | None = None

    # lifecycle

    async def start(self) -> None:
        if webhook_agencies(self.directory):
            # Built before connecting: a missing webhook secret stops the start here.
            self.webhooks = WebhookDeliverer(
                self.settings,
                self.directory,
                self.metrics,
                send_receipt=self._send_receipt,
                journal=self.journal,
            )
        self._connection = await aio_pika.connect_robust(
            self.settings.amqp_url, client_properties={"connection_name": "xbroker-broker"}
        )
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        await self._channel.set_qos(prefetch_count=self.settings.prefetch)
        try:
            self._exchanges = await topology.declare_core(
                self._channel, self.settings.delivery_limit
            )
            await topology.declare_for_directory(
                self._channel, self._exchanges, self.directory, self.settings.delivery_limit
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await self._connection.close()
            raise ConfigurationError(
                f"RabbitMQ holds queues declared with other arguments than these settings: "
                f"{exc}. Queue arguments cannot change in place: keep the old value, or "
                f"drain and delete the queue (rabbitmqctl delete_queue NAME) so it is "
                f"declared anew."
            ) from exc
        self._outbox.bind(self._exchanges.receipts)
        ingress = await self._channel.get_queue(topology.INGRESS_QUEUE)
        receipts = await self._channel.get_queue(topology.DELIVERY_RECEIPT_QUEUE)
        failures = await self._channel.get_queue(topology.FAILURE_QUEUE)
        self._consumers = _Consumers(
            ingress=ingress,
            ingress_tag=await ingress.consume(self._track(self._on_ingress)),
            receipts=receipts,
            receipts_tag=await receipts.consume(self._track(self._delivery_receipts)),
            failures=failures,
            failures_tag=await failures.consume(self._track(self._failures)),
        )
        if self.webhooks is not None:
            await self.webhooks.start(self._connection)
        if self.settings.rabbitmq_metrics_url is not None:
            self._sampler = asyncio.create_task(
                sample_queues(
                    self.settings.rabbitmq_metrics_url,
                    vhost_of(self.settings.amqp_url),
                    lambda: self.directory,
                    self.metrics,
                    self.settings.queue_sample_seconds,
                ),
                name="queue-sampler",
            )
        self.state = Lifecycle.RUNNING
        event(log, "broker.started", agencies=len(self.directory))

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages, let in-flight ones finish within ``grace``, then close.

        Messages not finished in time are never acked, so RabbitMQ returns them to the
        queue when the channel closes.
        """
        if self.state in (Lifecycle.CLOSED, Lifecycle.UNOPENED):
            self.state = Lifecycle.CLOSED
            return
        self.state = Lifecycle.STOPPING
        if self._sampler is not None:
            self._sampler.cancel()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self._consumers is not None:
            for queue, tag in self._consumers.all():
                try:
                    await queue.cancel(tag)
                except Exception:  # the connection may already be gone
                    log.debug("cancel failed", exc_info=True)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            event(log, "broker.stopping", finished_in_time=not pending, returned=len(pending))
        if self.webhooks is not None:
            await self.webhooks.stop(grace)
        if self._connection is not None:
            await self._connection.close()
        try:
            self._journal.flush()  # what unfinished messages recorded; they come back
        except TransientError:
            log.warning("journal.unwritten", exc_info=True)
        self._dedup.close()
        self.state = Lifecycle.CLOSED
        event(log, "broker.stopped")

    async def reload_directory(self, directory: Directory) -> None:
        """Switch to a new directory between two messages.

        The pipeline runs synchronously, so every message is decided under exactly one
        directory version; copies already published stay in their queues, which are
        never deleted by a reload. Queues of new agencies are declared before the switch.
        """
        if self._channel is not None and self._exchanges is not None:
            await topology.declare_for_directory(
                self._channel, self._exchanges, directory, self.settings.delivery_limit
            )
        self.directory = directory
        self._pipeline.directory = directory
        self._publish_certificates()
        event(log, "directory.reloaded", agencies=len(directory), source=str(directory.source))

    def readiness(self) -> Mapping[str, bool]:
        connected = self._connection is not None and not self._connection.is_closed
        return {
            "rabbitmq": connected,
            "topology": self._exchanges is not None,
            "consuming": self.state is Lifecycle.RUNNING,
            "standards": len(self._pipeline.catalog.standards) > 0,
        }

    # ingress

    def _track(
        self, handler: Callable[[AbstractIncomingMessage], Awaitable[None]]
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """Wrap a consumer so that stop() can wait for the messages it is handling."""

        async def run(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await handler(message)
            finally:
                self._in_flight.discard(task)

        return run

    async def _on_ingress(self, message: AbstractIncomingMessage) -> None:
        with self.metrics.track_message():
            self._journal.add(StatusEvent(message.message_id or "unknown", EventKind.RECEIVED))
            try:
                decision = self._pipeline.process(message.body)
                if isinstance(decision, Rejected):
                    await self._reject(message, decision)
                else:
                    await self._accept(message, decision)
                # No ack before the message's events are written (broker.journal).
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

    async def _accept(self, message: AbstractIncomingMessage, decision: Accepted) -> None:
        header = decision.header
        author = header.author.kennung
        claim = self._dedup.claim(author, header.uuid, decision.digest)
        if claim.state is ClaimState.DUPLICATE:
            self.metrics.duplicate(header.nachrichtentyp)
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
            await self._send_receipt(
                author,
                self._outbox.receipt(
                    Kind.DUPLICATE,
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
            Kind.ACCEPTED,
            header.uuid,
            digest=decision.digest,
            nachrichtentyp=header.nachrichtentyp,
            standard=decision.standard,
            author=author,
            recipients=recipients,
        )

        async def copies() -> None:
            with self.metrics.time_stage("deliver"):
                await _all_confirmed(
                    *(
                        self._deliver(r, message.body, decision, published)
                        for r in decision.recipients
                    )
                )

        async def accepted_receipt() -> None:
            with self.metrics.time_stage("receipt"):
                await self._send_receipt(author, receipt)

        await _all_confirmed(copies(), accepted_receipt())
        self.metrics.accept(decision.standard, header.nachrichtentyp)
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
        self, recipient: Recipient, body: bytes, decision: Accepted, published: float
    ) -> None:
        assert self._exchanges is not None
        agency = self.directory.get(recipient.kennung)
        if agency is None:
            raise PublishError(f"{recipient.kennung} is not in the directory")
        # A webhook agency's copy goes into its inbox too; the webhook deliverer pushes it.
        msg = publishing.message(
            body,
            message_id=decision.header.uuid,
            headers={
                HEADER_PUBLISHED: published,
                HEADER_TYPE: decision.header.nachrichtentyp,
                HEADER_AUTHOR: decision.header.author.kennung,
            },
            # An unfetched copy expires into the dead-letter queues; the failure consumer
            # tells the author. Per message, so a changed setting needs no queue redeclare.
            expiration=self.settings.expire_after_days * 86400,
        )
        try:
            await publishing.publish_confirmed(
                self._exchanges.deliver,
                msg,
                topology.agency_routing_key(recipient.kennung, test=recipient.test),
                self.settings.confirm_timeout_seconds,
            )
        except PublishError:
            self.metrics.delivery(recipient.kennung, "failed")
            raise
        self.metrics.delivery(recipient.kennung, "delivered")
        self._journal.add(
            StatusEvent(
                decision.header.uuid,
                EventKind.QUEUED,
                author=decision.header.author.kennung,
                agency=recipient.kennung,
                nachrichtentyp=decision.header.nachrichtentyp,
            )
        )

    async def _reject(self, message: AbstractIncomingMessage, decision: Rejected) -> None:
        header = decision.header
        self.metrics.reject(decision.reason.value)
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
        await self._send_receipt(
            target,
            self._outbox.receipt(
                Kind.REJECTED,
                uuid,
                digest=decision.digest,
                nachrichtentyp=header.nachrichtentyp if header else None,
                standard=decision.standard,
                author=header.author.kennung if header else None,
                reason=decision.reason.value,
                detail=decision.detail,
                issues=decision.issues,
            ),
        )

    def _rejection_target(self, message: AbstractIncomingMessage, decision: Rejected) -> str | None:
        """Who learns of a rejection: the signed author, else the sender's reply-to."""
        header = decision.header
        if (
            header is not None
            and decision.reason is not Reason.SIGNER_NOT_AUTHOR
            and header.author.kennung in self.directory
        ):
            return header.author.kennung
        if message.reply_to and message.reply_to in self.directory:
            return message.reply_to
        if header is not None and header.author.kennung in self.directory:
            return header.author.kennung
        return None

    async def _send_receipt(self, author: str, receipt: Receipt) -> None:
        await self._outbox.send(author, receipt)

    def _publish_certificates(self) -> None:
        self.metrics.set_certificates(
            CertificateExpiry(
                kennung=agency.kennung,
                serial=str(c.certificate.serial_number),
                not_after=c.not_after,
            )
            for agency in self.directory
            for c in agency.certificates
            if c.certificate is not None and c.not_after is not None
        )

    def _observe_stage(self, stage: str, seconds: float) -> None:
        self.metrics.stage_duration.labels(stage=stage).observe(seconds)


async def _all_confirmed(*publishes: Awaitable[None]) -> None:
    """Run ``publishes`` together; once all have settled, raise the first failure.

    Waiting for all (rather than failing at the first) means that when the message is
    requeued, none of its publishes is still in flight from this attempt.
    """
    results = await asyncio.gather(*publishes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
