"""The ingress handler: one message from the ingress queue, decided, delivered, answered.

One message (docs/architecture.md): decide (pure pipeline) → claim in the dedup store → publish a
copy to every recipient and the signed accepted receipt to the author, all at once,
each confirmed → write the message's journal events (and the dedup completion) → ack.
A claim that finds the author's identity used before for other bytes is rejected
(``id-reused``): only the same bytes are a duplicate.
A crash before the ack redelivers the message; the dedup claim makes that harmless.
Permanent failures are answered with a signed rejection receipt and acked.

Failures that are not the message's own (a store that cannot be written, a publish that
is not confirmed, a missing queue) hold the message at this worker until the fault
clears (`broker.worker.faults`): it is never returned to the queue for them, so they do
not count against its delivery limit. A retry resumes where the attempt stopped (the
`_Attempt`): copies already confirmed are not published again, events already added are
not added twice. A missing inbox or receipt queue is declared again on the spot. A
message that fails by itself on a healthy worker goes back to the queue after a delay
that grows with its delivery count; the delivery limit dead-letters it in the end, and
its author is told ``failed``. A rejection that nobody can receive (the sender has no
receipt queue and no transport report) parks the message in ``xbroker.ingress.dead`` for
an operator, once.

The receipt is published together with the copies rather than after their confirms,
so a message waits for one round of confirms, not two. The ingress message is still
acked only when every copy *and* the receipt are confirmed. If any of them fails, the
attempt publishes what is missing again; after a crash, the redelivered message is
processed again from its pending claim (RETRY) and every copy and the receipt are
published again. What that repeats is absorbed downstream: agencies deduplicate copies
by message id, and the portal SDK drops a receipt it already holds. The author is never
told "accepted" for a message that is then lost.

Journal events are added to a `JournalBatch` and written together before the ack that
they belong to (the durability rule is in `broker.stores.journal`).

With ``settlement = "transaction"`` (`broker.amqp.transactions`) the copies are not
published one by one with confirms: they are staged, the receipt is confirmed, the
message's events are written, and then the copies and the ack go to RabbitMQ in one
transaction (many messages per commit). A worker that dies before the commit has
published none of them; one that dies after it has settled the message. The claim is
completed after the commit, in a batch of its own: a claim completed before it would
turn a redelivery after a lost commit into a duplicate, and drop its copies.

Sealed delivery (`broker.worker.sealer`): a submission sealed for the broker is opened
in memory first, off the loop with the pipeline, and what does not open is rejected like
any other message that can never succeed. The copy for a sealed agency is sealed for its
key; every other copy is the message as it arrived (or as it was opened). A sealed
agency without a valid key (its certificate revoked while the broker runs) is a failure
of the message, not of the worker: it is retried and in the end dead-lettered, and its
copy is never sent in clear instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from aio_pika import Message
from aio_pika.abc import AbstractIncomingMessage

from broker.amqp import publishing, topology
from broker.amqp.acks import settle
from broker.amqp.bundle import BundleError, message_of, with_message
from broker.amqp.copies import CopyExchanges
from broker.amqp.publishing import HEADER_AUTHOR, HEADER_PUBLISHED, HEADER_RECEIVED, HEADER_TYPE
from broker.amqp.transactions import CommitError, Disposition, Publish, Transactions
from broker.errors import PublishError, Reason, Rejection, TransientError, UnroutableError
from broker.logs import event
from broker.pipeline import Accepted, Decision, Pipeline, Rejected
from broker.receipts.document import Receipt
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings
from broker.stores.dedup import Claim, ClaimState, DedupStore
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.worker.faults import Faults
from broker.worker.offloop import OffLoop
from broker.worker.repair import Repair
from broker.worker.sealer import Sealer
from monitoring.labels import DeliveryOutcome, ReceiptKind, Sealing, Stage
from monitoring.metrics import Metrics
from routing import Agency, Directory, Recipient, XtaEndpoint
from sealing import SEALED_CONTENT_TYPE, SealingKeyError, UnsealError
from xta_schemas import Header
from xta_schemas.model import IdentitySource

__all__ = ["IngressConsumer"]

log = logging.getLogger("xbroker.broker")


class _Settle(Enum):
    ACK = "ack"  # handled: answered and recorded
    PARK = "park"  # nobody can be told of its rejection: dead-letter it for an operator


@dataclass(frozen=True, slots=True)
class _Content:
    """What the copies are made of: the message (or bundle) in clear, in memory."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class _Staged:
    """A copy waiting for the transaction that settles its message."""

    kennung: str
    publish: Publish
    sealed: bool


@dataclass(slots=True)
class _Attempt:
    """What has been done for one delivery of an ingress message so far."""

    decision: Accepted | Rejected | None = None
    content: _Content | None = None  # the message in clear (opened, if it was sealed)
    claim: Claim | None = None
    receipt: Receipt | None = None
    receipt_sent: bool = False
    confirmed: set[str] = field(default_factory=set)  # recipients whose copy is confirmed
    recorded: bool = False  # its outcome is added to the journal
    staged: dict[str, _Staged] = field(default_factory=dict)  # copies for the transaction
    accepted: StatusEvent | None = None  # completes the claim once the copies are out
    holds: tuple[str, str] | None = None  # (author, uuid) of the dedup claim it holds


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
        faults: Faults,
        repair: Repair,
        offloop: OffLoop,
        sealer: Sealer,
        transactions: Transactions | None = None,
        completions: JournalBatch | None = None,
    ) -> None:
        """``transactions``: settle in AMQP transactions, and complete claims in
        ``completions`` after the commit (else: confirms, claims completed by
        ``journal``)."""
        self._settings = settings
        self._directory = directory
        self._pipeline = pipeline
        self._offloop = offloop
        self._dedup = dedup
        self._outbox = outbox
        self._metrics = metrics
        self._journal = journal
        self._faults = faults
        self._repair = repair
        self._sealer = sealer
        self._transactions = transactions
        self._completions = completions
        if (transactions is None) != (completions is None):
            raise ValueError("transactions and completions go together")
        self._copies: CopyExchanges | None = None

    def bind(self, copies: CopyExchanges) -> None:
        """The delivery exchange (one channel per copy), once the topology is declared."""
        self._copies = copies

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        with self._metrics.track_message():
            if not _received_at_entry(message):
                self._journal.add(StatusEvent(message.message_id or "unknown", EventKind.RECEIVED))
            attempt = _Attempt()

            async def work() -> _Settle:
                settlement = await self._advance(message, attempt)
                # No ack before the message's events are written (broker.stores.journal).
                await self._journal.flushed()
                return settlement

            try:
                done, settlement = await self._faults.handle(message, work, self._requeue)
                if done and self._transactions is not None:
                    done = await self._commit(message, attempt, settlement)
            except BaseException:  # cancelled at a stop: RabbitMQ returns the message
                await self._abandon(attempt)
                raise
            if not done:
                # Given up or given back; RabbitMQ has it, or will at the stop. Its claim
                # is let go, so its next delivery, here or at another worker, is a RETRY
                # rather than BUSY.
                await self._abandon(attempt)
                return
            if self._transactions is not None:
                return
            if settlement is _Settle.PARK:
                await message.reject(requeue=False)
            else:
                await message.ack()

    async def _commit(
        self, message: AbstractIncomingMessage, attempt: _Attempt, settlement: _Settle | None
    ) -> bool:
        """Settle in a transaction with the staged copies; False if it was not committed
        (RabbitMQ then has the message again, unless the commit got through unseen)."""
        assert self._transactions is not None and self._completions is not None
        disposition = Disposition.DEAD_LETTER if settlement is _Settle.PARK else Disposition.ACK
        staged = tuple(attempt.staged.values())
        try:
            with self._metrics.time_stage(Stage.DELIVER):
                await self._transactions.settle(message, [s.publish for s in staged], disposition)
        except CommitError as exc:
            event(
                log, "message.uncommitted", logging.WARNING, uuid=message.message_id, error=str(exc)
            )
            await self._after_lost_commit(staged)
            return False
        for copy in staged:
            self._metrics.delivery(copy.kennung, DeliveryOutcome.DELIVERED)
            self._metrics.copy(copy.kennung, Sealing.SEALED if copy.sealed else Sealing.CLEAR)
        if attempt.accepted is not None:
            attempt.holds = None  # completed below; nothing to let go
            self._completions.add(attempt.accepted)
        return True

    async def _after_lost_commit(self, staged: tuple[_Staged, ...]) -> None:
        """A commit that failed may still have applied the ack and not every copy (a
        node lost during the commit applies it queue by queue), so the copies are
        published again, confirmed, until they are out or the worker stops. If the ack
        was not applied, the message comes back and its copies go out once more: a lost
        commit can repeat copies, never lose them."""
        copies = self._copies
        assert copies is not None, "bind() the delivery exchange first"
        timeout = self._settings.confirm_timeout_seconds
        pending, wait = list(staged), 0.5
        while pending:

            async def again(n: int, copy: _Staged) -> None:
                exchange = await copies.get(n)
                try:
                    await publishing.publish_confirmed(
                        exchange, copy.publish.message, copy.publish.routing_key, timeout
                    )
                except UnroutableError:
                    await self._repair.inbox(copy.kennung)
                    raise

            results = await asyncio.gather(
                *(again(n, c) for n, c in enumerate(pending)), return_exceptions=True
            )
            pending = [c for c, r in zip(pending, results, strict=True) if r is not None]
            if not pending:
                return
            if self._faults.stopping:
                event(log, "copies.unconfirmed", logging.ERROR, copies=len(pending))
                return
            await self._faults.sleep(wait)
            wait = min(wait * 2, 10.0)

    async def _requeue(self, message: AbstractIncomingMessage) -> None:
        """Give a message that failed by itself back to its queue."""
        if self._transactions is None:
            await settle(message, requeue=True)
            return
        try:
            await self._transactions.settle(message, (), Disposition.REQUEUE)
        except CommitError:
            log.debug("requeue not committed: RabbitMQ has the message", exc_info=True)

    async def _advance(self, message: AbstractIncomingMessage, attempt: _Attempt) -> _Settle:
        """Do what is left to do for the message; each step is done once per delivery."""
        if attempt.decision is None:
            attempt.decision, attempt.content = await self._decide(message, datetime.now(UTC))
        if isinstance(attempt.decision, Rejected):
            return await self._reject(message, attempt.decision, attempt)
        return await self._accept(message, attempt.decision, attempt)

    async def _decide(
        self, message: AbstractIncomingMessage, at: datetime
    ) -> tuple[Decision, _Content]:
        """The pipeline's decision, worked out off the loop (`broker.worker.offloop`), on
        the message (or a bundle's message part, which is read off the loop too); and the
        content in clear: a submission sealed for the broker is opened there first, in
        memory."""
        arrived = _Content(message.body, message.content_type or "application/xml")

        def decide() -> tuple[Decision, _Content]:
            content = arrived
            if content.content_type == SEALED_CONTENT_TYPE:
                try:
                    with self._metrics.time_stage(Stage.UNSEAL):
                        opened = self._sealer.open(message.body)
                except UnsealError as exc:
                    return _rejected(message, exc), content
                content = _Content(opened.plaintext, opened.content_type)
            body = _message_part(content)
            return self._pipeline.process(body, at=at, message_id=message.message_id), content

        try:
            return await self._offloop.run(decide)
        except Rejection as exc:  # given up on: the pipeline never got to say more
            return _rejected(message, exc), arrived

    async def _claim(self, author: str, uuid: str, digest: str) -> Claim:
        """Claim the message; while another live worker delivers it (BUSY), wait for it
        to finish (then DUPLICATE) or to be gone (then RETRY)."""
        wait = 0.02
        while True:
            claim = await self._dedup.claim(author, uuid, digest)
            if claim.state is not ClaimState.BUSY:
                return claim
            event(log, "message.busy", uuid=uuid, author=author, wait=wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 1.0)

    async def _abandon(self, attempt: _Attempt) -> None:
        """A delivery that ends without its settlement gives up the claim it holds."""
        if attempt.holds is None:
            return
        author, uuid = attempt.holds
        try:
            await self._dedup.abandon(author, uuid)
        except TransientError:
            # Nothing is lost: the claim names this process's store as its holder (for
            # PostgreSQL its server session, which an outage ends and the stop closes;
            # for SQLite the open store), and a claim whose holder is gone is a RETRY.
            log.warning("dedup.abandon_failed", exc_info=True)

    async def _accept(
        self, message: AbstractIncomingMessage, decision: Accepted, attempt: _Attempt
    ) -> _Settle:
        header = decision.header
        author = header.author.kennung
        if attempt.claim is None:
            attempt.claim = await self._claim(author, header.uuid, decision.digest)
            if attempt.claim.held:
                attempt.holds = (author, header.uuid)
        claim = attempt.claim
        if claim.state is ClaimState.REUSED:
            attempt.decision = Rejected(
                decision.digest,
                Reason.ID_REUSED,
                f"{author} sent other content under {header.uuid} before "
                f"(sha256 {claim.first_digest[:16]}…): a changed message needs an "
                "identity of its own",
                header=header,
                standard=decision.standard,
            )
            return await self._reject(
                message, attempt.decision, attempt, first_digest=claim.first_digest
            )
        if claim.state is ClaimState.DUPLICATE:
            if not attempt.recorded:
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
                attempt.recorded = True
            if not attempt.receipt_sent:
                attempt.receipt = attempt.receipt or self._outbox.receipt(
                    ReceiptKind.DUPLICATE,
                    header.uuid,
                    digest=decision.digest,
                    nachrichtentyp=header.nachrichtentyp,
                    standard=decision.standard,
                    author=author,
                    first_digest=claim.first_digest,
                )
                await self._send_receipt(author, attempt.receipt)
                attempt.receipt_sent = True
            return _Settle.ACK
        published = message.timestamp.timestamp() if message.timestamp else time.time()
        recipients = tuple(r.kennung for r in decision.recipients)
        if attempt.receipt is None:
            attempt.receipt = self._outbox.receipt(
                ReceiptKind.ACCEPTED,
                header.uuid,
                digest=decision.digest,
                nachrichtentyp=header.nachrichtentyp,
                standard=decision.standard,
                author=author,
                recipients=recipients,
                **_assumptions(header, decision.uncovered.notes()),
            )
        receipt = attempt.receipt
        assert attempt.content is not None, "decided before accepted"
        content = attempt.content
        if decision.covered is not None:
            content = _Content(
                with_message(content.body, content.content_type, decision.covered),
                content.content_type,
            )

        async def copies() -> None:
            # Copy n goes out on channel n (broker.amqp.copies); confirmed ones not again.
            with self._metrics.time_stage(Stage.DELIVER):
                await _all_confirmed(
                    *(
                        self._deliver(r, n, content, decision, published, attempt)
                        for n, r in enumerate(decision.recipients)
                        if r.kennung not in attempt.confirmed
                    )
                )

        async def accepted_receipt() -> None:
            if attempt.receipt_sent:
                return
            with self._metrics.time_stage(Stage.RECEIPT):
                await self._send_receipt(author, receipt)
            attempt.receipt_sent = True

        if self._transactions is None:
            await _all_confirmed(copies(), accepted_receipt())
        else:
            # The copies go out with the ack, in its transaction (`_commit`).
            self._stage(content, decision, published, attempt)
            await accepted_receipt()
        if attempt.recorded:
            return _Settle.ACK
        self._metrics.accept(decision.standard, header.nachrichtentyp)
        accepted = StatusEvent(
            header.uuid,
            EventKind.ACCEPTED,
            author=author,
            nachrichtentyp=header.nachrichtentyp,
            standard=decision.standard,
            digest=decision.digest,
            recipients=recipients,
        )
        self._journal.add(accepted)
        if self._transactions is not None:
            attempt.accepted = accepted
        attempt.recorded = True
        event(
            log,
            "message.accepted",
            uuid=header.uuid,
            nachrichtentyp=header.nachrichtentyp,
            author=author,
            recipients=list(recipients),
            retry=claim.state is ClaimState.RETRY,
        )
        return _Settle.ACK

    async def _send_receipt(self, author: str, receipt: Receipt) -> None:
        """Send to the author's receipt queue; declare that queue again if it is gone."""
        try:
            await self._outbox.send(author, receipt)
        except UnroutableError:
            await self._repair.receipt_queue(author)
            await self._outbox.send(author, receipt)

    async def _deliver(
        self,
        recipient: Recipient,
        copy: int,
        content: _Content,
        decision: Accepted,
        published: float,
        attempt: _Attempt,
    ) -> None:
        assert self._copies is not None, "bind() the delivery exchange first"
        exchange = await self._copies.get(copy)
        msg, key, agency = self._copy(recipient, content, decision, published)
        timeout = self._settings.confirm_timeout_seconds
        try:
            try:
                await publishing.publish_confirmed(exchange, msg, key, timeout)
            except UnroutableError:
                # Its inbox is gone: a fault of the topology, not of this message. Declare
                # it again and publish this copy alone again, not its siblings.
                await self._repair.inbox(recipient.kennung)
                await publishing.publish_confirmed(exchange, msg, key, timeout)
        except PublishError:
            self._metrics.delivery(recipient.kennung, DeliveryOutcome.FAILED)
            raise
        attempt.confirmed.add(recipient.kennung)
        self._metrics.delivery(recipient.kennung, DeliveryOutcome.DELIVERED)
        self._metrics.copy(recipient.kennung, Sealing.SEALED if agency.sealed else Sealing.CLEAR)
        self._queued(recipient, decision)

    def _stage(
        self, content: _Content, decision: Accepted, published: float, attempt: _Attempt
    ) -> None:
        """Make the copies not yet staged, for the transaction that settles the message;
        an inbox that is gone by then is caught by the exchange (`broker.worker.unroutable`)."""
        for recipient in decision.recipients:
            if recipient.kennung in attempt.staged:
                continue
            msg, key, agency = self._copy(recipient, content, decision, published)
            publish = Publish(topology.DELIVER_TX_EXCHANGE, key, msg)
            attempt.staged[recipient.kennung] = _Staged(recipient.kennung, publish, agency.sealed)
            self._queued(recipient, decision)

    def _queued(self, recipient: Recipient, decision: Accepted) -> None:
        self._journal.add(
            StatusEvent(
                decision.header.uuid,
                EventKind.QUEUED,
                author=decision.header.author.kennung,
                agency=recipient.kennung,
                nachrichtentyp=decision.header.nachrichtentyp,
            )
        )

    def _copy(
        self, recipient: Recipient, content: _Content, decision: Accepted, published: float
    ) -> tuple[Message, str, Agency]:
        """The copy for ``recipient`` (sealed for it, if it reads sealed), its routing
        key and the agency."""
        agency = self._directory().get(recipient.kennung)
        if agency is None:
            raise PublishError(f"{recipient.kennung} is not in the directory")
        try:
            # A bundle stays a bundle (sealed whole): its attachments travel with it.
            body, content_type = self._sealer.copy_for(
                agency, content.body, content.content_type, datetime.now(UTC)
            )
        except SealingKeyError as exc:
            # Never in clear instead: the message is retried, in the end dead-lettered.
            event(log, "copy.unsealable", logging.ERROR, uuid=decision.header.uuid, error=str(exc))
            self._metrics.delivery(recipient.kennung, DeliveryOutcome.FAILED)
            raise
        # A webhook agency's copy goes into its inbox too; the webhook deliverer pushes it.
        msg = publishing.message(
            body,
            message_id=decision.header.uuid,
            content_type=content_type,
            headers={
                HEADER_PUBLISHED: published,
                HEADER_TYPE: decision.header.nachrichtentyp,
                HEADER_AUTHOR: decision.header.author.kennung,
            },
            # An unfetched copy expires into the dead-letter queues; the failure consumer
            # tells the author. Per message, so a changed setting needs no queue redeclare.
            expiration=self._settings.expire_after_days * 86400,
        )
        return msg, topology.agency_routing_key(recipient.kennung, test=recipient.test), agency

    async def _reject(
        self,
        message: AbstractIncomingMessage,
        decision: Rejected,
        attempt: _Attempt,
        first_digest: str | None = None,
    ) -> _Settle:
        header = decision.header
        target = self._rejection_target(message, decision)
        uuid = header.uuid if header else (message.message_id or "unknown")
        if not attempt.recorded:
            self._metrics.reject(decision.reason)
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
            attempt.recorded = True
        if target is None:
            # Nobody can be told (no receipt queue, no transport report): the message is
            # parked in xbroker.ingress.dead, once, where an operator sees it.
            event(log, "receipt.undeliverable", logging.WARNING, uuid=uuid)
            self._metrics.faults.undeliverable.inc()
            return _Settle.PARK
        if not attempt.receipt_sent:
            attempt.receipt = attempt.receipt or self._outbox.receipt(
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
            )
            # An XTA author is sent nothing: its transport report holds the rejection.
            await self._send_receipt(target, attempt.receipt)
            attempt.receipt_sent = True
        return _Settle.ACK

    def _rejection_target(self, message: AbstractIncomingMessage, decision: Rejected) -> str | None:
        """Who learns of a rejection: the signed author, else the sender's reply-to; only a
        party with a receipt queue, or one that speaks XTA (its transport report), learns."""
        header = decision.header
        directory = self._directory()

        def reachable(kennung: str | None) -> bool:
            agency = directory.get(kennung) if kennung else None
            return agency is not None and (
                topology.has_receipt_queue(agency) or isinstance(agency.endpoint, XtaEndpoint)
            )

        if (
            header is not None
            and decision.reason is not Reason.SIGNER_NOT_AUTHOR
            and reachable(header.author.kennung)
        ):
            return header.author.kennung
        if reachable(message.reply_to):
            return message.reply_to
        if header is not None and reachable(header.author.kennung):
            return header.author.kennung
        return None


def _received_at_entry(message: AbstractIncomingMessage) -> bool:
    """Whether the endpoint that took the submission (HTTP API, XTA) recorded its received
    event: one event per fact. A sender that set the header itself hides only the received
    line of its own message; every decision about it is recorded all the same."""
    return bool((message.headers or {}).get(HEADER_RECEIVED))


def _rejected(message: AbstractIncomingMessage, exc: Rejection) -> Rejected:
    """A rejection decided outside the pipeline, for the bytes as they arrived."""
    return Rejected(hashlib.sha256(message.body).hexdigest(), exc.reason, exc.detail)


def _message_part(content: _Content) -> bytes:
    """What the pipeline checks: the message, or a bundle's message part. A broken
    bundle goes to the pipeline as it is, which rejects it as malformed XML."""
    try:
        return message_of(content.body, content.content_type)
    except BundleError:
        return content.body


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
