"""Webhook delivery: push each copy in a webhook agency's inbox to its HTTPS endpoint.

The broker publishes a webhook agency's copy into its inbox queue like any other (same
routing, same confirms), so nothing is lost while an endpoint is down. This deliverer
consumes those inboxes, one consumer per queue, and POSTs each copy with Standard
Webhooks headers (`broker.webhook.signature`):

- **2xx**: delivered. The agency has no AMQP identity to send a delivery receipt with,
  so the broker issues the ``delivered`` receipt itself, signed by the broker, naming
  the agency as the recipient that took it, then acks.
- **422 with ``xbroker-refusal``** for a sealed copy: the receiver cannot open it (sealed
  for a key it does not hold, or altered). Retrying cannot help: the copy is parked in
  the inbox's ``.dead`` queue at once and the author gets a ``failed`` receipt with that
  reason (``copy-seal-key-unknown``, ``copy-seal-invalid``).
- **410 Gone**: the agency has retired the endpoint. The copy goes back to the inbox,
  the deliverer stops consuming that agency's queues (messages wait there), logs an
  error and raises ``xbroker_webhook_endpoint_disabled``; `enable` resumes.
- **anything else** (other status, timeout, connection error): the copy is republished
  into a delay queue (`broker.webhook.queues`) that returns it to the inbox later, and
  acked, so one failing message never holds up the others. After the last delay of the
  schedule the copy is parked in the inbox's ``.dead`` queue and the author gets a
  ``failed`` receipt.

Each step publishes with confirms before it acks: a crash in between pushes a copy
again, and the receiver deduplicates by ``webhook-id`` (the nachrichtenUUID).

This module runs the consumers and handles the 410 (which stops them); the outcomes
that leave the consumers alone live in `broker.webhook.outcomes`, the inboxes and their
secrets in `broker.webhook.targets`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    HeadersType,
)

from broker.amqp import publishing, topology
from broker.amqp.acks import settle
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_TYPE
from broker.errors import TransientError
from broker.logs import event
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings
from broker.stores.journal import Journals, Recorder
from broker.webhook.outcomes import Outcomes
from broker.webhook.push import Pusher, PushResult
from broker.webhook.queues import RetrySchedule, declare_delay_queues
from broker.webhook.targets import (
    WebhookTarget,
    message_headers,
    webhook_agencies,
    webhook_targets,
)
from monitoring.metrics import Metrics
from routing import Directory
from sealing import SEALED_CONTENT_TYPE

__all__ = ["WebhookDeliverer", "webhook_agencies"]

log = logging.getLogger("xbroker.webhook")


class WebhookDeliverer:
    """Pushes the copies in every webhook agency's inbox to its endpoint."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        metrics: Metrics,
        *,
        outbox: ReceiptOutbox,
        journal: Recorder | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.schedule = RetrySchedule(tuple(settings.webhook_retry_seconds))
        self._journal: Recorder = journal or Journals()
        self._targets = webhook_targets(directory, os.environ if secrets is None else secrets)
        self._disabled: set[str] = set()
        self._channel: AbstractChannel | None = None
        self._deliver: AbstractExchange | None = None
        self._pusher: Pusher | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._outcomes = Outcomes(
            settings, metrics, self.schedule, outbox, self._journal, self._republish
        )

    @property
    def disabled(self) -> frozenset[str]:
        """Agencies whose endpoint answered 410 Gone and is no longer pushed to."""
        return frozenset(self._disabled)

    async def start(self, connection: AbstractConnection) -> None:
        """Declare the delay queues and start one consumer per webhook inbox."""
        self._pusher = Pusher(self.settings)
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self.settings.webhook_prefetch)
        self._deliver = await self._channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)
        for target in self._targets:
            await declare_delay_queues(
                self._channel, target.kennung, test=target.test, delays=self.schedule.delays
            )
            self.metrics.set_webhook_disabled(target.kennung, False)
            await self._consume(target)
        event(log, "webhook.started", endpoints=len(self._targets))

    async def stop(self, grace: float | None = None) -> None:
        """Stop consuming, let pushes in flight finish within ``grace``, close."""
        for target in self._targets:
            await self._cancel(target)
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        if self._pusher is not None:
            await self._pusher.close()

    async def enable(self, kennung: str) -> None:
        """Resume pushing to an endpoint disabled by a 410 (the operator fixed it)."""
        if kennung not in self._disabled:
            return
        self._disabled.discard(kennung)
        self.metrics.set_webhook_disabled(kennung, False)
        for target in self._targets:
            if target.kennung == kennung:
                await self._consume(target)
        event(log, "webhook.enabled", agency=kennung)

    # consuming

    async def _consume(self, target: WebhookTarget) -> None:
        assert self._channel is not None
        target.queue = await self._channel.get_queue(target.inbox)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await self._on_message(target, message)
            finally:
                self._in_flight.discard(task)

        target.tag = await target.queue.consume(on_message)

    async def _cancel(self, target: WebhookTarget) -> None:
        if target.queue is None or target.tag is None:
            return
        queue, tag = target.queue, target.tag
        target.tag = None
        try:
            await queue.cancel(tag)
        except Exception:  # the connection may already be gone
            log.debug("cancel failed", exc_info=True)

    async def _on_message(self, target: WebhookTarget, message: AbstractIncomingMessage) -> None:
        try:
            if target.kennung in self._disabled:
                # Prefetched before the consumer was cancelled: back to the inbox.
                await self._republish(target, message, topology.DELIVER_EXCHANGE)
            else:
                result = await self._push(target, message)
                self.metrics.webhook_attempt(target.kennung, result.outcome)
                if result.delivered:
                    await self._outcomes.delivered(target, message)
                elif result.refusal is not None and message.content_type == SEALED_CONTENT_TYPE:
                    await self._outcomes.refused(target, message, result.refusal)
                elif result.gone:
                    await self._disable(target, message)
                else:
                    await self._outcomes.retry(target, message, result)
        except TransientError as exc:
            event(log, "webhook.requeue", logging.WARNING, uuid=message.message_id, error=str(exc))
            await settle(message, requeue=True)
            return
        await message.ack()

    # one push

    async def _push(self, target: WebhookTarget, message: AbstractIncomingMessage) -> PushResult:
        assert self._pusher is not None
        headers = message_headers(message)
        return await self._pusher.push(
            target.url,
            target.secret,
            message.message_id or "",
            message.body,
            content_type=message.content_type or "application/xml",
            headers={
                "xbroker-nachrichtentyp": str(headers.get(HEADER_TYPE, "")),
                "xbroker-author": str(headers.get(HEADER_AUTHOR, "")),
            },
        )

    async def _disable(self, target: WebhookTarget, message: AbstractIncomingMessage) -> None:
        await self._republish(target, message, topology.DELIVER_EXCHANGE)
        if target.kennung in self._disabled:
            return
        self._disabled.add(target.kennung)
        self.metrics.set_webhook_disabled(target.kennung, True)
        for other in self._targets:
            if other.kennung == target.kennung:
                await self._cancel(other)
        event(
            log,
            "webhook.disabled",
            logging.ERROR,
            agency=target.kennung,
            url=target.url,
            reason="the endpoint answered 410 Gone; its messages stay queued",
        )

    async def _republish(
        self,
        target: WebhookTarget,
        message: AbstractIncomingMessage,
        exchange_name: str,
        *,
        routing_key: str | None = None,
        extra: Mapping[str, str | int] | None = None,
    ) -> None:
        """Publish this copy again (confirmed) before the original is acked."""
        assert self._channel is not None and self._deliver is not None
        exchange = self._deliver if exchange_name else self._channel.default_exchange
        key = routing_key or topology.agency_routing_key(target.kennung, test=target.test)
        headers: HeadersType = {
            k: v
            for k, v in message_headers(message).items()
            if k != "x-death" and not k.startswith("x-first-death")
        }
        headers.update(extra or {})
        copy = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=message.timestamp,
        )
        await publishing.publish_confirmed(
            exchange, copy, key, self.settings.confirm_timeout_seconds
        )
