"""The broker worker: its connection, topology, consumers and orderly stop.

It consumes four queues: the ingress (`broker.worker.ingress`: decide, deliver, answer), the
agencies' delivery receipts (`broker.worker.delivery_receipts`: verify, forward), their
refusals of sealed copies that do not open (`broker.worker.refusals`: verify, park) and the
dead letters (`broker.worker.failures`: tell the author). A task keeps the trust store's CRL
snapshot current (`broker.worker.reload.CrlWatcher`), so the pipeline never reads a file.
Stopping takes no new messages, lets those
in flight finish within a grace period and leaves the rest unacked, so RabbitMQ returns
them to their queues.

While a fault of its surroundings lasts (`broker.worker.faults`: a store, the disk, the
connection, a publish that is not confirmed) the worker consumes nothing: its consumers
are cancelled, the messages it already has are held, ``/readyz`` names the fault. When the
fault clears it consumes again by itself. A watch task measures the disk
(`broker.worker.disk`) and keeps consuming in line with the faults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractRobustConnection,
)

from broker.amqp import publishing, topology
from broker.amqp.copies import CopyExchanges
from broker.amqp.queue_stats import sample_queues, vhost_of
from broker.amqp.transactions import Transactions
from broker.errors import ConfigurationError, TransientError
from broker.logs import event
from broker.pipeline import Pipeline
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings, Settlement
from broker.stores.dedup import DedupStore
from broker.stores.journal import Journal, JournalBatch, Journals, Recorder
from broker.webhook.deliverer import WebhookDeliverer, webhook_agencies
from broker.worker.consuming import Consumption
from broker.worker.delivery_receipts import DeliveryReceipts
from broker.worker.disk import DiskWatch
from broker.worker.failures import Failures
from broker.worker.faults import Faults
from broker.worker.ingress import IngressConsumer
from broker.worker.offloop import OffLoop
from broker.worker.refusals import Refusals
from broker.worker.reload import CrlWatcher
from broker.worker.repair import Repair
from broker.worker.sealer import Sealer, check_keys
from broker.worker.unroutable import Unroutable
from monitoring.labels import Stage, WorkerFault
from monitoring.metrics import CertificateExpiry, Metrics
from routing import Directory
from sealing import KeyRing, SealLimits
from signing import Signer, Verifier
from xta_schemas import Catalog

__all__ = ["JOURNAL_DELAY", "BrokerService", "Lifecycle"]

log = logging.getLogger("xbroker.broker")

JOURNAL_DELAY = 0.005
"""Seconds a journal batch gathers events. Only acks wait for it (see broker.stores.journal)."""


class Lifecycle(StrEnum):
    UNOPENED = "unopened"
    RUNNING = "running"
    STOPPING = "stopping"
    CLOSED = "closed"


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
        sealer: Sealer | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        # What the stop closes after the dedup store: the stores opened for this service
        # alone (`broker.app.build_broker`), which nobody else would close.
        self._closing = closing
        # The dedup store listens too: the accepted event completes the message's claim,
        # in the same write as its events, after the confirms and before the ack. Settled
        # in transactions, a claim is completed after the commit, in a batch of its own.
        transactional = settings.settlement is Settlement.TRANSACTION
        self._transactions = (
            Transactions(settings.confirm_timeout_seconds) if transactional else None
        )
        self._completions = JournalBatch([dedup], delay=JOURNAL_DELAY) if transactional else None
        self._journal = JournalBatch(
            [journal or Journals()] + ([] if transactional else [dedup]), delay=JOURNAL_DELAY
        )
        # Handlers that ack right after recording use the batch's write-through record().
        self.journal: Recorder = self._journal
        self.directory = directory
        self.metrics = metrics
        self.dedup = self._dedup = dedup
        self._outbox = ReceiptOutbox(
            settings.broker_kennung,
            signer,
            metrics,
            settings.confirm_timeout_seconds,
            lambda author: topology.reads_receipts(self.directory, author),
        )
        self.faults = Faults(
            metrics.faults,
            self._on_health,
            retry_first=settings.retry_delay_seconds,
            retry_ceiling=settings.retry_delay_max_seconds,
        )
        self._repair = Repair(lambda: self.directory, metrics.faults, settings.delivery_limit)
        self._disk = DiskWatch(
            {settings.state_dir, settings.status_path, settings.audit_path},
            self.faults,
            metrics.faults,
            reserve_bytes=settings.disk_reserve_bytes,
            reserve_inodes=settings.disk_reserve_inodes,
        )
        self._offloop = OffLoop(settings.processing_wall_seconds)
        self._delivery_receipts = DeliveryReceipts(
            verifier,
            lambda: self.directory,
            self._outbox,
            metrics,
            self._journal,
            self.faults,
            self._repair,
            self._offloop,
        )
        self._failures = Failures(
            lambda: self.directory,
            self._outbox,
            metrics,
            self._journal,
            settings.expire_after_days,
            self.faults,
            self._repair,
        )
        self._refusals = Refusals(
            verifier, lambda: self.directory, settings.confirm_timeout_seconds
        )
        self._pipeline = Pipeline(
            catalog=catalog,
            verifier=verifier,
            directory=directory,
            limits=settings.parser_limits(),
            observe=self._observe_stage,
            budget=settings.processing_cpu_seconds,
        )
        self._sealer = sealer or Sealer(
            verifier.trust, KeyRing(), SealLimits(settings.max_message_bytes)
        )
        self._ingress = IngressConsumer(
            settings,
            lambda: self.directory,
            self._pipeline,
            dedup,
            self._outbox,
            metrics,
            self._journal,
            self.faults,
            self._repair,
            self._offloop,
            self._sealer,
            self._transactions,
            self._completions,
        )
        self._unroutable = Unroutable(self._repair, self.faults, settings.confirm_timeout_seconds)
        self._publish_certificates()
        self.state = Lifecycle.UNOPENED
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: topology.Exchanges | None = None
        self._consumption = Consumption(
            (
                (topology.INGRESS_QUEUE, self._ingress),
                (topology.DELIVERY_RECEIPT_QUEUE, self._delivery_receipts),
                (topology.FAILURE_QUEUE, self._failures),
                (topology.REFUSAL_QUEUE, self._refusals),
                (topology.UNROUTABLE_QUEUE, self._unroutable),
            ),
            self.faults,
            lambda: self.state is Lifecycle.RUNNING,
        )
        self._sampler: asyncio.Task[None] | None = None
        self._crls = CrlWatcher(verifier.trust) if verifier.trust.crl_folder else None
        self._watch: asyncio.Task[None] | None = None
        self.webhooks: WebhookDeliverer | None = None

    # lifecycle

    async def start(self) -> None:
        """Connect, declare, and consume (unless a fault holds the worker from the start).

        Cancelled part way (a SIGTERM during start-up), it closes what it opened.
        """
        try:
            await self._start()
        except BaseException:
            if self._connection is not None:
                await self._connection.close()
            self.state = Lifecycle.CLOSED
            raise

    async def _start(self) -> None:
        if webhook_agencies(self.directory):
            # Built before connecting: a missing webhook secret stops the start here.
            self.webhooks = WebhookDeliverer(
                self.settings,
                self.directory,
                self.metrics,
                outbox=self._outbox,
                journal=self.journal,
            )
        self._disk.check()
        self._connection, self._channel = await publishing.connect(
            self.settings.rabbitmq_urls, "xbroker-broker"
        )
        await self._channel.set_qos(prefetch_count=self.settings.prefetch)
        try:
            self._exchanges = await topology.declare_core(
                self._channel, self.settings.delivery_limit
            )
            await topology.declare_for_directory(
                self._channel,
                self._exchanges,
                self.directory,
                self.settings.delivery_limit,
                self._box_retention(),
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigurationError(
                f"RabbitMQ holds queues declared with other arguments than these settings: "
                f"{exc}. Queue arguments cannot change in place: keep the old value, or "
                f"drain and delete the queue (rabbitmqctl delete_queue NAME) so it is "
                f"declared anew."
            ) from exc
        self._outbox.bind(self._exchanges.receipts)
        self._ingress.bind(CopyExchanges(self._connection, topology.DELIVER_EXCHANGE))
        self._refusals.bind(self._exchanges.dead)
        self._repair.bind(self._channel, self._exchanges)
        own: dict[str, AbstractChannel] = {}
        if self._transactions is not None:
            # Acks belong to the channel a message came on: the ingress is consumed on
            # the channel its copies are published on, in transaction mode.
            ingress = await self._connection.channel(publisher_confirms=False)
            await ingress.set_qos(prefetch_count=self.settings.prefetch)
            own[topology.INGRESS_QUEUE] = ingress
        self._unroutable.bind(self._exchanges.deliver)
        self._consumption.bind(self._channel, own)
        self._connection.close_callbacks.add(self._on_connection_lost)
        self._connection.reconnect_callbacks.add(self._on_reconnected)
        if self.webhooks is not None:
            await self.webhooks.start(self._connection)
        if self._crls is not None:
            self._crls.start()
        if self.settings.rabbitmq_metrics_url is not None:
            self._sampler = asyncio.create_task(
                sample_queues(
                    self.settings.rabbitmq_metrics_url,
                    vhost_of(self.settings.rabbitmq_urls[0]),
                    lambda: self.directory,
                    self.metrics,
                    self.settings.queue_sample_seconds,
                ),
                name="queue-sampler",
            )
        self.state = Lifecycle.RUNNING
        await self._consumption.follow()
        self._watch = asyncio.create_task(self._watch_loop(), name="broker-watch")
        event(log, "broker.started", agencies=len(self.directory), paused=not self.faults.healthy)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages, let in-flight ones finish within ``grace``, then close.

        Messages not finished in time are never acked, so RabbitMQ returns them to the
        queue when the channel closes; messages held for a fault are given up at once.
        """
        if self.state is Lifecycle.CLOSED:
            return
        if self.state is Lifecycle.UNOPENED:
            self.state = Lifecycle.CLOSED
            await self._close_stores()
            return
        self.state = Lifecycle.STOPPING
        self.faults.stop()
        for task in (self._sampler, self._watch):
            if task is not None:
                task.cancel()
        if self._crls is not None:
            await self._crls.stop()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self._consumption.stop()
        if self._consumption.in_flight:
            _, pending = await asyncio.wait(set(self._consumption.in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            event(log, "broker.stopping", finished_in_time=not pending, returned=len(pending))
        if self.webhooks is not None:
            await self.webhooks.stop(grace)
        self._offloop.close()
        if self._connection is not None:
            await self._connection.close()
        try:
            await self._journal.flush()  # what unfinished messages recorded; they come back
            if self._completions is not None:
                await self._completions.flush()
        except TransientError:
            log.warning("journal.unwritten", exc_info=True)
        await self._close_stores()
        self.state = Lifecycle.CLOSED
        event(log, "broker.stopped")

    async def _close_stores(self) -> None:
        await self._dedup.close()
        if self._closing is not None:
            await self._closing()

    async def reload_directory(self, directory: Directory) -> None:
        """Switch to a new directory for the next messages.

        The pipeline reads the directory once per message, so every message is decided
        under exactly one directory version, even while one is being decided in the
        worker's thread; copies already published stay in their queues, which are
        never deleted by a reload. Queues of new agencies are declared before the switch.
        A directory in which a sealed agency has no valid encryption key is refused
        (`SealingKeyError`) before anything changes.
        """
        # A chain check per sealed agency: off the loop, as the directory was read.
        await asyncio.to_thread(
            check_keys, directory, self._pipeline.verifier.trust, datetime.now(UTC)
        )
        if self._channel is not None and self._exchanges is not None:
            await topology.declare_for_directory(
                self._channel,
                self._exchanges,
                directory,
                self.settings.delivery_limit,
                self._box_retention(),
            )
        self.directory = directory
        self._pipeline.directory = directory
        self._publish_certificates()
        event(log, "directory.reloaded", agencies=len(directory), source=str(directory.source))

    def _box_retention(self) -> topology.BoxRetention:
        return topology.BoxRetention(
            self.settings.box_max_age_seconds, self.settings.xta_box_segment_bytes
        )

    def readiness(self) -> Mapping[str, bool]:
        """One check per concern; a fault that holds the worker fails its own check."""
        connected = self._connection is not None and not self._connection.is_closed
        active = self.faults.active
        return {
            "rabbitmq": connected and WorkerFault.RABBITMQ not in active,
            "topology": self._exchanges is not None and WorkerFault.TOPOLOGY not in active,
            "consuming": self.state is Lifecycle.RUNNING and self._consumption.active,
            "standards": len(self._pipeline.catalog.standards) > 0,
            "store": WorkerFault.STORE not in active,
            "disk": WorkerFault.DISK not in active,
            "publish": WorkerFault.PUBLISH not in active,
            # No message given up on (broker.worker.offloop) is still being worked on.
            "deciding": self._offloop.abandoned == 0,
        }

    def not_ready_because(self) -> Mapping[str, str]:
        """What was last seen of each fault that holds the worker, for ``/readyz``."""
        return {fault.value: detail for fault, detail in self.faults.active.items()}

    # consuming, in line with the faults

    async def _on_health(self, healthy: bool) -> None:
        await self._consumption.follow()

    def _on_connection_lost(self, sender: object, exc: BaseException | None = None) -> None:
        if self.state is Lifecycle.RUNNING:
            self.faults.report(WorkerFault.RABBITMQ, f"connection lost: {exc or 'closed'}")

    def _on_reconnected(self, sender: object) -> None:
        self.faults.clear(WorkerFault.RABBITMQ)

    async def _watch_loop(self) -> None:
        """Measure the disk, and make sure consuming follows the faults (a consume that
        failed while the connection came back is tried again here)."""
        while True:
            await asyncio.sleep(self.settings.disk_check_seconds)
            try:
                self._disk.check()
            except OSError as exc:
                self.faults.report(WorkerFault.DISK, f"cannot measure free space: {exc}")
            await self._consumption.follow()

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

    def _observe_stage(self, stage: Stage, seconds: float) -> None:
        self.metrics.stage_duration.labels(stage=stage.value).observe(seconds)
