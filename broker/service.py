"""The broker worker: consumes the ingress queue, runs the pipeline, delivers, answers.

One message, in order (DESIGN.md): decide (pure pipeline) → deduplicate → publish a copy
to every recipient (confirmed, mandatory) → publish the signed receipt to the author →
ack. A crash before the ack redelivers the message; the dedup claim makes that harmless.
Permanent failures are answered with a signed rejection receipt and acked; transient
ones are requeued (the queue's delivery limit dead-letters a message that never works).

Delivery receipts from agencies arrive on their own queue; the broker verifies that the
registered agency signed one before forwarding it, unchanged, to the author.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from lxml import etree

from broker import publishing, topology
from broker.dedup import ClaimState, DedupStore
from broker.errors import ConfigurationError, PublishError, Reason, TransientError
from broker.journal import EventKind, Journal, Journals, StatusEvent
from broker.logs import event
from broker.pipeline import Accepted, Pipeline, Rejected
from broker.queue_stats import QueueStats, read_queue_stats, vhost_of
from broker.receipts import Kind, Receipt, build_receipt, read_receipt
from broker.settings import Settings
from broker.webhook import WebhookDeliverer, webhook_agencies
from monitoring.metrics import CertificateExpiry, Metrics
from routing import Directory, Recipient
from signing import ParserLimits, Signer, SigningError, Verifier, parse_untrusted
from xta_schemas import Catalog

__all__ = ["BrokerService", "Lifecycle"]

log = logging.getLogger("xbroker.broker")

# Headers the broker adds to an agency's copy (metadata the agency SDK echoes back).
HEADER_PUBLISHED = "x-xbroker-published"  # author's publish time (Unix seconds)
HEADER_TYPE = "x-xbroker-nachrichtentyp"
HEADER_AUTHOR = "x-xbroker-author"


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
        self.journal: Journal = journal or Journals()
        self.directory = directory
        self.metrics = metrics
        self._signer = signer
        self._verifier = verifier
        self._dedup = dedup
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
        ingress = await self._channel.get_queue(topology.INGRESS_QUEUE)
        receipts = await self._channel.get_queue(topology.DELIVERY_RECEIPT_QUEUE)
        failures = await self._channel.get_queue(topology.FAILURE_QUEUE)
        self._consumers = _Consumers(
            ingress=ingress,
            ingress_tag=await ingress.consume(self._track(self._on_ingress)),
            receipts=receipts,
            receipts_tag=await receipts.consume(self._track(self._on_delivery_receipt)),
            failures=failures,
            failures_tag=await failures.consume(self._track(self._on_failure)),
        )
        if self.webhooks is not None:
            await self.webhooks.start(self._connection)
        self._sampler = asyncio.create_task(self._sample_queues(), name="queue-sampler")
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
            self.journal.record(StatusEvent(message.message_id or "unknown", EventKind.RECEIVED))
            try:
                decision = self._pipeline.process(message.body)
                if isinstance(decision, Rejected):
                    await self._reject(message, decision)
                else:
                    await self._accept(message, decision)
            except TransientError as exc:
                event(
                    log, "message.retry", logging.WARNING, uuid=message.message_id, error=str(exc)
                )
                await _settle(message, requeue=True)
                return
            except Exception:
                # A bug, not the sender's fault: requeue; the delivery limit dead-letters
                # a message that fails every time, so it is kept, not lost or looped.
                log.exception(
                    "message.error", extra={"xbroker_facts": {"uuid": message.message_id}}
                )
                await _settle(message, requeue=True)
                return
            await message.ack()

    async def _accept(self, message: AbstractIncomingMessage, decision: Accepted) -> None:
        header = decision.header
        author = header.author.kennung
        claim = self._dedup.claim(author, header.uuid, decision.digest)
        if claim.state is ClaimState.DUPLICATE:
            self.metrics.duplicate(header.nachrichtentyp)
            self.journal.record(
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
                Receipt(
                    kind=Kind.DUPLICATE,
                    nachrichten_uuid=header.uuid,
                    issuer=self.settings.broker_kennung,
                    issued=datetime.now(UTC),
                    digest=decision.digest,
                    nachrichtentyp=header.nachrichtentyp,
                    standard=decision.standard,
                    author=author,
                    first_digest=claim.first_digest,
                ),
            )
            return
        published = message.timestamp.timestamp() if message.timestamp else time.time()
        with self.metrics.time_stage("deliver"):
            await asyncio.gather(
                *(self._deliver(r, message.body, decision, published) for r in decision.recipients)
            )
        with self.metrics.time_stage("receipt"):
            await self._send_receipt(
                author,
                Receipt(
                    kind=Kind.ACCEPTED,
                    nachrichten_uuid=header.uuid,
                    issuer=self.settings.broker_kennung,
                    issued=datetime.now(UTC),
                    digest=decision.digest,
                    nachrichtentyp=header.nachrichtentyp,
                    standard=decision.standard,
                    author=author,
                    recipients=tuple(r.kennung for r in decision.recipients),
                ),
            )
        self._dedup.complete(author, header.uuid)
        self.metrics.accept(decision.standard, header.nachrichtentyp)
        self.journal.record(
            StatusEvent(
                header.uuid,
                EventKind.ACCEPTED,
                author=author,
                nachrichtentyp=header.nachrichtentyp,
                standard=decision.standard,
                digest=decision.digest,
                recipients=tuple(r.kennung for r in decision.recipients),
            )
        )
        event(
            log,
            "message.accepted",
            uuid=header.uuid,
            nachrichtentyp=header.nachrichtentyp,
            author=author,
            recipients=[r.kennung for r in decision.recipients],
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
        self.journal.record(
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
        self.journal.record(
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
            Receipt(
                kind=Kind.REJECTED,
                nachrichten_uuid=uuid,
                issuer=self.settings.broker_kennung,
                issued=datetime.now(UTC),
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
        body = self._signer.sign(build_receipt(receipt))
        await self._forward_receipt(author, body, receipt.receipt_uuid)
        self.metrics.receipt(receipt.kind.value)

    async def _forward_receipt(self, author: str, body: bytes, receipt_uuid: str) -> None:
        assert self._exchanges is not None
        await publishing.publish_confirmed(
            self._exchanges.receipts,
            publishing.message(body, message_id=receipt_uuid),
            author,
            self.settings.confirm_timeout_seconds,
        )

    # delivery receipts from agencies

    async def _on_delivery_receipt(self, message: AbstractIncomingMessage) -> None:
        try:
            root = parse_untrusted(message.body)
            verified = self._verifier.verify(root)
            signed = verified.signed
            if isinstance(signed, etree._ElementTree):
                signed = signed.getroot()
            receipt = read_receipt(signed)
            if receipt.kind is not Kind.DELIVERED:
                raise ValueError(f"agencies send delivered receipts, not {receipt.kind}")
            if not self.directory.certificate_registered(receipt.issuer, verified.fingerprint):
                raise ValueError(f"not signed by a certificate registered for {receipt.issuer}")
            if receipt.author is None or receipt.author not in self.directory:
                raise ValueError(f"unknown author {receipt.author}")
        except (SigningError, ValueError) as exc:
            event(log, "receipt.invalid", logging.WARNING, error=str(exc))
            await message.reject(requeue=False)  # dead-lettered for an operator to inspect
            return
        try:
            await self._forward_receipt(receipt.author, message.body, receipt.receipt_uuid)
        except PublishError as exc:
            event(log, "receipt.retry", logging.WARNING, error=str(exc))
            await _settle(message, requeue=True)
            return
        self.metrics.receipt("delivered")
        self.journal.record(
            StatusEvent(
                receipt.nachrichten_uuid,
                EventKind.DELIVERED,
                author=receipt.author,
                agency=receipt.issuer,
                nachrichtentyp=receipt.nachrichtentyp,
                digest=receipt.digest,
            )
        )
        published = (message.headers or {}).get(HEADER_PUBLISHED)
        if isinstance(published, int | float) and receipt.nachrichtentyp:
            self.metrics.observe_end_to_end(receipt.nachrichtentyp, time.time() - published)
        event(
            log,
            "message.delivered",
            uuid=receipt.nachrichten_uuid,
            nachrichtentyp=receipt.nachrichtentyp,
            agency=receipt.issuer,
            author=receipt.author,
        )
        await message.ack()

    # copies that expired or could never be delivered

    async def _on_failure(self, message: AbstractIncomingMessage) -> None:
        """A dead-lettered copy (or ingress message): tell its author, keep it parked."""
        failure = _death_of(message)
        uuid = message.message_id or "unknown"
        headers = message.headers or {}
        author = _text(headers.get(HEADER_AUTHOR)) or message.reply_to
        reason = Reason.EXPIRED if failure.why == "expired" else Reason.UNDELIVERABLE
        detail = failure.describe(self.settings.expire_after_days)
        if failure.agency:
            self.metrics.delivery(failure.agency, "dead_lettered")
        self.journal.record(
            StatusEvent(
                uuid,
                EventKind.FAILED,
                author=author,
                agency=failure.agency,
                nachrichtentyp=_text(headers.get(HEADER_TYPE)),
                reason=reason.value,
            )
        )
        event(
            log,
            "message.failed",
            logging.WARNING,
            uuid=uuid,
            agency=failure.agency,
            reason=reason.value,
            why=failure.why,
        )
        if author is None or author not in self.directory:
            await message.ack()  # nobody to tell; the copy stays in its .dead queue
            return
        try:
            await self._send_receipt(
                author,
                Receipt(
                    kind=Kind.FAILED,
                    nachrichten_uuid=uuid,
                    issuer=self.settings.broker_kennung,
                    issued=datetime.now(UTC),
                    nachrichtentyp=_text(headers.get(HEADER_TYPE)),
                    author=author,
                    recipients=(failure.agency,) if failure.agency else (),
                    reason=reason.value,
                    detail=detail,
                ),
            )
        except PublishError as exc:
            event(log, "receipt.retry", logging.WARNING, uuid=uuid, error=str(exc))
            await _settle(message, requeue=True)
            return
        await message.ack()

    async def _sample_queues(self) -> None:
        """Depth, consumers and dead letters of every agency inbox, for the gauges."""
        url = self.settings.rabbitmq_metrics_url
        if url is None:
            return
        vhost = vhost_of(self.settings.amqp_url)
        while True:
            try:
                stats = await read_queue_stats(url, vhost)
                for agency in self.directory:
                    if not topology.has_inbox(agency):
                        continue
                    name = topology.agency_queue(agency.kennung)
                    inbox = stats.get(name, QueueStats(0, 0))
                    self.metrics.set_queue(
                        agency.kennung,
                        messages=inbox.messages,
                        consumers=inbox.consumers,
                        dead_letters=stats.get(f"{name}.dead", QueueStats(0, 0)).messages,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # sampling must never take the worker down
                event(log, "queues.sample_failed", logging.WARNING, error=str(exc))
            await asyncio.sleep(self.settings.queue_sample_seconds)

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


@dataclass(frozen=True, slots=True)
class _Death:
    why: str  # RabbitMQ's x-death reason: expired, rejected, delivery_limit, maxlen
    queue: str
    agency: str | None

    def describe(self, expire_after_days: float) -> str:
        where = f"the copy for {self.agency}" if self.agency else "the message"
        if self.why == "expired":
            return f"{where} was not fetched within {expire_after_days:g} days"
        if self.why == "rejected":
            return f"{where} was refused by its receiver"
        if self.why == "delivery_limit":
            return f"{where} failed on every delivery attempt"
        return f"{where} could not be delivered ({self.why})"


def _death_of(message: AbstractIncomingMessage) -> _Death:
    deaths = (message.headers or {}).get("x-death")
    latest = deaths[0] if isinstance(deaths, list) and deaths else {}
    why = _text(latest.get("reason")) if isinstance(latest, dict) else None
    queue = (_text(latest.get("queue")) if isinstance(latest, dict) else None) or ""
    agency = None
    if queue.startswith("agency.") and queue.endswith((".inbox", ".test")):
        agency = queue.removeprefix("agency.").rsplit(".", 1)[0]
    return _Death(why or "unknown", queue, agency)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


async def _settle(message: AbstractIncomingMessage, *, requeue: bool) -> None:
    try:
        await message.nack(requeue=requeue)
    except Exception:  # the channel is gone: RabbitMQ requeues it by itself
        log.debug("nack failed", exc_info=True)
