"""What the webhook deliverer does with one copy once its endpoint has answered.

`broker.webhook.deliverer` owns the consumers and their lifecycle; this module owns the outcomes
that publish and report but leave the consumers alone: a 2xx (`Outcomes.delivered`),
a failure that is retried later (`Outcomes.retry`) until the schedule runs out
(`Outcomes.give_up`), and a sealed copy the receiver cannot open (`Outcomes.refused`:
a 422 that says so; retrying cannot help). A 410 Gone stops consumers, so it stays with
the deliverer.
Every step republishes with confirms before the caller acks the original.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aio_pika.abc import AbstractIncomingMessage

from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_TYPE, header_text
from broker.amqp.refusal import HEADER_REFUSAL
from broker.errors import DeliveryFailure
from broker.logs import event
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings
from broker.stores.journal import EventKind, Recorder, StatusEvent
from broker.webhook.push import PushResult
from broker.webhook.queues import HEADER_ATTEMPT, HEADER_LAST_ERROR, RetrySchedule, delay_queue
from broker.webhook.targets import WebhookTarget, message_headers
from monitoring.labels import DeliveryOutcome, ReceiptKind
from monitoring.metrics import Metrics

__all__ = ["Outcomes", "Republish"]

log = logging.getLogger("xbroker.webhook")


class Republish(Protocol):
    """Publish a copy again (confirmed) before the original is acked."""

    async def __call__(
        self,
        target: WebhookTarget,
        message: AbstractIncomingMessage,
        exchange_name: str,
        *,
        routing_key: str | None = None,
        extra: Mapping[str, str | int] | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Receipts, journal entries, metrics and republishing for one answered push."""

    settings: Settings
    metrics: Metrics
    schedule: RetrySchedule
    outbox: ReceiptOutbox
    journal: Recorder
    republish: Republish

    async def delivered(self, target: WebhookTarget, message: AbstractIncomingMessage) -> None:
        """2xx: the broker issues the ``delivered`` receipt on the agency's behalf."""
        headers = message_headers(message)
        uuid = message.message_id or ""
        author = header_text(headers.get(HEADER_AUTHOR))
        nachrichtentyp = header_text(headers.get(HEADER_TYPE))
        digest = hashlib.sha256(message.body).hexdigest()
        if author is not None:
            await self.outbox.send(
                author,
                self.outbox.receipt(
                    ReceiptKind.DELIVERED,
                    uuid,
                    digest=digest,
                    nachrichtentyp=nachrichtentyp,
                    author=author,
                    recipients=(target.kennung,),
                ),
            )
        await self.journal.record(
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

    async def retry(
        self, target: WebhookTarget, message: AbstractIncomingMessage, result: PushResult
    ) -> None:
        """Not accepted: into the next delay queue, or `give_up` after the last delay."""
        failures = _int(message_headers(message).get(HEADER_ATTEMPT)) + 1
        delay = self.schedule.delay_after(failures)
        if delay is None:
            await self.give_up(target, message, failures, result)
            return
        await self.republish(
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

    async def give_up(
        self,
        target: WebhookTarget,
        message: AbstractIncomingMessage,
        failures: int,
        result: PushResult,
    ) -> None:
        """Park the copy in the inbox's ``.dead`` queue; the author gets ``failed``."""
        detail = (
            f"webhook of {target.kennung} did not accept the message in {failures} attempts "
            f"over {self.schedule.total_seconds:g} s; last: {result.error}"
        )
        await self._park(
            target,
            message,
            DeliveryFailure.UNDELIVERABLE,
            detail,
            {HEADER_ATTEMPT: failures, HEADER_LAST_ERROR: result.error},
        )

    async def refused(
        self, target: WebhookTarget, message: AbstractIncomingMessage, refusal: DeliveryFailure
    ) -> None:
        """The receiver cannot open its sealed copy: parked at once, the author told why."""
        detail = f"the webhook of {target.kennung} cannot open its sealed copy ({refusal.value})"
        await self._park(target, message, refusal, detail, {HEADER_REFUSAL: refusal.value})

    async def _park(
        self,
        target: WebhookTarget,
        message: AbstractIncomingMessage,
        reason: DeliveryFailure,
        detail: str,
        extra: Mapping[str, str | int],
    ) -> None:
        # Straight into the inbox's .dead queue (not through xbroker.dead, whose other
        # bindings react to dead letters): the receipt is issued here, once.
        await self.republish(target, message, "", routing_key=f"{target.inbox}.dead", extra=extra)
        headers = message_headers(message)
        uuid = message.message_id or ""
        author = header_text(headers.get(HEADER_AUTHOR))
        nachrichtentyp = header_text(headers.get(HEADER_TYPE))
        if author is not None:
            await self.outbox.send(
                author,
                self.outbox.receipt(
                    ReceiptKind.FAILED,
                    uuid,
                    digest=hashlib.sha256(message.body).hexdigest(),
                    nachrichtentyp=nachrichtentyp,
                    author=author,
                    recipients=(target.kennung,),
                    reason=reason,
                    detail=detail,
                ),
            )
        await self.journal.record(
            StatusEvent(
                uuid,
                EventKind.FAILED,
                author=author,
                agency=target.kennung,
                nachrichtentyp=nachrichtentyp,
                reason=reason.value,
            )
        )
        self.metrics.delivery(target.kennung, DeliveryOutcome.DEAD_LETTERED)
        event(log, "webhook.failed", logging.ERROR, uuid=uuid, agency=target.kennung, error=detail)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
