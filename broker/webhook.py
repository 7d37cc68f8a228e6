"""Webhook delivery: push each copy in a webhook agency's inbox to its HTTPS endpoint.

The broker publishes a webhook agency's copy into its inbox queue like any other (same
routing, same confirms), so nothing is lost while an endpoint is down. This deliverer
consumes those inboxes, one consumer per queue, and POSTs each copy with Standard
Webhooks headers (`broker.webhook_signature`):

- **2xx**: delivered. The agency has no AMQP identity to send a delivery receipt with,
  so the broker issues the ``delivered`` receipt itself, signed by the broker, naming
  the agency as the recipient that took it, then acks.
- **410 Gone**: the agency has retired the endpoint. The copy goes back to the inbox,
  the deliverer stops consuming that agency's queues (messages wait there), logs an
  error and raises ``xbroker_webhook_endpoint_disabled``; `enable` resumes.
- **anything else** (other status, timeout, connection error): the copy is republished
  into a delay queue (`broker.webhook_queues`) that returns it to the inbox later, and
  acked, so one failing message never holds up the others. After the last delay of the
  schedule the copy is parked in the inbox's ``.dead`` queue and the author gets a
  ``failed`` receipt.

Each step publishes with confirms before it acks: a crash in between pushes a copy
again, and the receiver deduplicates by ``webhook-id`` (the nachrichtenUUID).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    HeadersType,
)

from broker import publishing, topology
from broker.acks import settle
from broker.errors import ConfigurationError, Reason, TransientError
from broker.journal import EventKind, Journal, Journals, StatusEvent
from broker.logs import event
from broker.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE, header_text
from broker.receipts import Kind, Receipt
from broker.settings import Settings
from broker.webhook_push import Pusher, PushResult
from broker.webhook_queues import (
    HEADER_ATTEMPT,
    HEADER_LAST_ERROR,
    RetrySchedule,
    declare_delay_queues,
    delay_queue,
)
from broker.webhook_signature import WebhookSecret
from monitoring.metrics import Metrics
from routing import Agency, Directory, WebhookEndpoint

__all__ = ["SendReceipt", "WebhookDeliverer", "webhook_agencies"]

log = logging.getLogger("xbroker.webhook")

SendReceipt = Callable[[str, Receipt], Awaitable[None]]


def webhook_agencies(directory: Directory) -> list[Agency]:
    """Agencies that receive messages through a webhook."""
    return [
        a for a in directory if isinstance(a.endpoint, WebhookEndpoint) and topology.has_inbox(a)
    ]


@dataclass(slots=True)
class _Target:
    """One queue the deliverer consumes and the URL its copies go to."""

    kennung: str
    test: bool
    url: str
    secret: WebhookSecret
    queue: AbstractQueue | None = None
    tag: str | None = None

    @property
    def inbox(self) -> str:
        return topology.agency_queue(self.kennung, test=self.test)


class WebhookDeliverer:
    """Pushes the copies in every webhook agency's inbox to its endpoint."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        metrics: Metrics,
        *,
        send_receipt: SendReceipt,
        journal: Journal | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.schedule = RetrySchedule(tuple(settings.webhook_retry_seconds))
        self._send_receipt = send_receipt
        self._journal: Journal = journal or Journals()
        self._targets = _targets(directory, os.environ if secrets is None else secrets)
        self._disabled: set[str] = set()
        self._channel: AbstractChannel | None = None
        self._deliver: AbstractExchange | None = None
        self._pusher: Pusher | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

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

    async def _consume(self, target: _Target) -> None:
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

    async def _cancel(self, target: _Target) -> None:
        if target.queue is None or target.tag is None:
            return
        queue, tag = target.queue, target.tag
        target.tag = None
        try:
            await queue.cancel(tag)
        except Exception:  # the connection may already be gone
            log.debug("cancel failed", exc_info=True)

    async def _on_message(self, target: _Target, message: AbstractIncomingMessage) -> None:
        try:
            if target.kennung in self._disabled:
                # Prefetched before the consumer was cancelled: back to the inbox.
                await self._republish(target, message, topology.DELIVER_EXCHANGE)
            else:
                result = await self._push(target, message)
                self.metrics.webhook_attempt(target.kennung, result.outcome)
                if result.delivered:
                    await self._delivered(target, message)
                elif result.gone:
                    await self._disable(target, message)
                else:
                    await self._retry(target, message, result)
        except TransientError as exc:
            event(log, "webhook.requeue", logging.WARNING, uuid=message.message_id, error=str(exc))
            await settle(message, requeue=True)
            return
        await message.ack()

    # one push

    async def _push(self, target: _Target, message: AbstractIncomingMessage) -> PushResult:
        assert self._pusher is not None
        headers = _headers(message)
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

    async def _delivered(self, target: _Target, message: AbstractIncomingMessage) -> None:
        headers = _headers(message)
        uuid = message.message_id or ""
        author = header_text(headers.get(HEADER_AUTHOR))
        nachrichtentyp = header_text(headers.get(HEADER_TYPE))
        digest = hashlib.sha256(message.body).hexdigest()
        if author is not None:
            await self._send_receipt(
                author,
                Receipt(
                    kind=Kind.DELIVERED,
                    nachrichten_uuid=uuid,
                    issuer=self.settings.broker_kennung,
                    issued=datetime.now(UTC),
                    digest=digest,
                    nachrichtentyp=nachrichtentyp,
                    author=author,
                    recipients=(target.kennung,),
                ),
            )
        self._journal.record(
            StatusEvent(
                uuid,
                EventKind.DELIVERED,
                author=author,
                agency=target.kennung,
                nachrichtentyp=nachrichtentyp,
                digest=digest,
            )
        )
        published = headers.get(HEADER_PUBLISHED)
        if isinstance(published, int | float) and nachrichtentyp:
            self.metrics.observe_end_to_end(nachrichtentyp, time.time() - published)
        event(
            log,
            "message.delivered",
            uuid=uuid,
            agency=target.kennung,
            author=author,
            nachrichtentyp=nachrichtentyp,
        )

    async def _retry(
        self, target: _Target, message: AbstractIncomingMessage, result: PushResult
    ) -> None:
        failures = _int(_headers(message).get(HEADER_ATTEMPT)) + 1
        delay = self.schedule.delay_after(failures)
        if delay is None:
            await self._give_up(target, message, failures, result)
            return
        await self._republish(
            target,
            message,
            "",
            routing_key=delay_queue(target.kennung, delay, test=target.test),
            extra={HEADER_ATTEMPT: failures, HEADER_LAST_ERROR: result.error},
        )
        event(
            log,
            "webhook.retry",
            logging.WARNING,
            uuid=message.message_id,
            agency=target.kennung,
            failures=failures,
            delay_seconds=delay,
            error=result.error,
        )

    async def _give_up(
        self,
        target: _Target,
        message: AbstractIncomingMessage,
        failures: int,
        result: PushResult,
    ) -> None:
        # Straight into the inbox's .dead queue (not through xbroker.dead, whose other
        # bindings react to dead letters): the receipt is issued here, once.
        await self._republish(
            target,
            message,
            "",
            routing_key=f"{target.inbox}.dead",
            extra={HEADER_ATTEMPT: failures, HEADER_LAST_ERROR: result.error},
        )
        headers = _headers(message)
        uuid = message.message_id or ""
        author = header_text(headers.get(HEADER_AUTHOR))
        nachrichtentyp = header_text(headers.get(HEADER_TYPE))
        detail = (
            f"webhook of {target.kennung} did not accept the message in {failures} attempts "
            f"over {self.schedule.total_seconds:g} s; last: {result.error}"
        )
        if author is not None:
            await self._send_receipt(
                author,
                Receipt(
                    kind=Kind.FAILED,
                    nachrichten_uuid=uuid,
                    issuer=self.settings.broker_kennung,
                    issued=datetime.now(UTC),
                    digest=hashlib.sha256(message.body).hexdigest(),
                    nachrichtentyp=nachrichtentyp,
                    author=author,
                    recipients=(target.kennung,),
                    reason=Reason.UNDELIVERABLE.value,
                    detail=detail,
                ),
            )
        self._journal.record(
            StatusEvent(
                uuid,
                EventKind.FAILED,
                author=author,
                agency=target.kennung,
                nachrichtentyp=nachrichtentyp,
                reason=Reason.UNDELIVERABLE.value,
            )
        )
        self.metrics.delivery(target.kennung, "dead_lettered")
        event(log, "webhook.failed", logging.ERROR, uuid=uuid, agency=target.kennung, error=detail)

    async def _disable(self, target: _Target, message: AbstractIncomingMessage) -> None:
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
        target: _Target,
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
            for k, v in _headers(message).items()
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


def _targets(directory: Directory, secrets: Mapping[str, str]) -> list[_Target]:
    targets: list[_Target] = []
    for agency in webhook_agencies(directory):
        endpoint = agency.endpoint
        assert isinstance(endpoint, WebhookEndpoint)
        text = secrets.get(endpoint.secret_env)
        if not text:
            raise ConfigurationError(
                f"{agency.kennung}: webhook secret variable {endpoint.secret_env} is not set"
            )
        try:
            secret = WebhookSecret(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{agency.kennung}: {endpoint.secret_env}: {exc}") from exc
        targets.append(_Target(agency.kennung, False, endpoint.url, secret))
        if endpoint.test_url is not None:
            targets.append(_Target(agency.kennung, True, endpoint.test_url, secret))
    return targets


def _headers(message: AbstractIncomingMessage) -> HeadersType:
    return dict(message.headers or {})


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
