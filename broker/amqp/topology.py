"""RabbitMQ topology: names and declarations of exchanges and queues.

::

    xbroker.ingress (direct) ──"submit"──► xbroker.ingress (quorum)
    xbroker.deliver (direct) ──"inbox.<kennung>"──► agency.<kennung>.inbox (quorum)
                             ──"test.<kennung>"───► agency.<kennung>.test  (quorum)
                             ──"inbox.<kennung>"──► agency.<kennung>.inbox (stream: the
                                                    XTA message box of an XTA agency)
    xbroker.deliver.tx (direct): the same bindings; what it cannot route goes to its
                       alternate exchange xbroker.unroutable (fanout) ──► xbroker.unroutable
                       (quorum), where the broker declares the missing queue again and
                       publishes the copy once more (`broker.worker.unroutable`)
    xbroker.receipts (direct) ──"<kennung>"──► receipts.<kennung> (quorum; none for an
                                               author that speaks XTA)
    xbroker.delivery-receipts (direct) ──"delivered"──► xbroker.delivery-receipts (quorum)
                                       ──"refused"────► xbroker.refusals (quorum: an
                                                        agency's sealed copy that does
                                                        not open, `broker.amqp.refusal`)
    xbroker.dead (direct): dead letters of every queue above → <queue>.dead
                           and, for agency inboxes and the ingress queue, also
                           → xbroker.failures (the broker turns each into a `failed`
                             receipt for the author; the copy stays parked in .dead)

An XTA agency's inbox is a stream instead (`broker.xta.box`, docs/xta.md): its copies
are read by offset, any number of times, until the agency closes them; a stream keeps
them until they age out (``x-max-age``, `BoxRetention`), so nothing there is
dead-lettered: the XTA endpoint expires a copy nobody closed (`broker.xta.upkeep`).

Copies settled in AMQP transactions (`broker.amqp.transactions`) go to
``xbroker.deliver.tx``: a transaction has no per-publish return a worker could act on
before its ack is committed with the copy, so a copy whose inbox is gone is kept by the
alternate exchange instead of dropped. ``xbroker.deliver`` keeps no alternate exchange,
so that it stays as earlier versions declared it.

Every work queue is a quorum queue with a delivery limit and at-least-once dead
lettering, so a message that keeps failing ends in its ``.dead`` queue instead of
looping or vanishing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType
from pamqp.common import FieldValue

from broker.errors import ConfigurationError
from routing import Agency, Directory, XtaEndpoint

__all__ = [
    "DEAD_EXCHANGE",
    "DELIVERY_RECEIPT_EXCHANGE",
    "DELIVERY_RECEIPT_QUEUE",
    "DELIVER_EXCHANGE",
    "DELIVER_TX_EXCHANGE",
    "FAILURE_QUEUE",
    "INGRESS_EXCHANGE",
    "INGRESS_QUEUE",
    "INGRESS_ROUTING_KEY",
    "RECEIPT_EXCHANGE",
    "REFUSAL_QUEUE",
    "REFUSAL_ROUTING_KEY",
    "UNROUTABLE_QUEUE",
    "BoxRetention",
    "Exchanges",
    "agency_of_routing_key",
    "agency_queue",
    "agency_routing_key",
    "declare_agency_queues",
    "declare_box",
    "declare_core",
    "declare_for_directory",
    "declare_receipt_queue",
    "has_inbox",
    "has_receipt_queue",
    "reads_receipts",
    "receipt_queue",
]

INGRESS_EXCHANGE = "xbroker.ingress"
INGRESS_QUEUE = "xbroker.ingress"
INGRESS_ROUTING_KEY = "submit"
DELIVER_EXCHANGE = "xbroker.deliver"
DELIVER_TX_EXCHANGE = "xbroker.deliver.tx"
UNROUTABLE_EXCHANGE = "xbroker.unroutable"
UNROUTABLE_QUEUE = "xbroker.unroutable"
RECEIPT_EXCHANGE = "xbroker.receipts"
DELIVERY_RECEIPT_EXCHANGE = "xbroker.delivery-receipts"
DELIVERY_RECEIPT_QUEUE = "xbroker.delivery-receipts"
DELIVERY_RECEIPT_ROUTING_KEY = "delivered"
REFUSAL_QUEUE = "xbroker.refusals"
REFUSAL_ROUTING_KEY = "refused"
DEAD_EXCHANGE = "xbroker.dead"
FAILURE_QUEUE = "xbroker.failures"


def agency_queue(kennung: str, *, test: bool = False) -> str:
    return f"agency.{kennung}.{'test' if test else 'inbox'}"


def agency_routing_key(kennung: str, *, test: bool = False) -> str:
    return f"{'test' if test else 'inbox'}.{kennung}"


def agency_of_routing_key(routing_key: str) -> tuple[str, bool] | None:
    """The agency (and whether its test inbox) an ``agency_routing_key`` names."""
    prefix, dot, kennung = routing_key.partition(".")
    if not dot or not kennung or prefix not in ("inbox", "test"):
        return None
    return kennung, prefix == "test"


def receipt_queue(kennung: str) -> str:
    return f"receipts.{kennung}"


@dataclass(frozen=True, slots=True)
class Exchanges:
    ingress: AbstractExchange
    deliver: AbstractExchange
    deliver_tx: AbstractExchange
    receipts: AbstractExchange
    delivery_receipts: AbstractExchange
    dead: AbstractExchange


async def declare_core(channel: AbstractChannel, delivery_limit: int) -> Exchanges:
    """Declare the exchanges and the broker's own queues. Idempotent."""

    async def exchange(name: str) -> AbstractExchange:
        return await channel.declare_exchange(name, ExchangeType.DIRECT, durable=True)

    ingress = await exchange(INGRESS_EXCHANGE)
    deliver = await exchange(DELIVER_EXCHANGE)
    unroutable = await channel.declare_exchange(
        UNROUTABLE_EXCHANGE, ExchangeType.FANOUT, durable=True
    )
    deliver_tx = await channel.declare_exchange(
        DELIVER_TX_EXCHANGE,
        ExchangeType.DIRECT,
        durable=True,
        arguments={"alternate-exchange": UNROUTABLE_EXCHANGE},
    )
    receipts = await exchange(RECEIPT_EXCHANGE)
    delivery_receipts = await exchange(DELIVERY_RECEIPT_EXCHANGE)
    dead = await exchange(DEAD_EXCHANGE)
    await _work_queue(channel, INGRESS_QUEUE, ingress, INGRESS_ROUTING_KEY, dead, delivery_limit)
    failures = await _failure_queue(channel, dead, delivery_limit)
    await failures.bind(dead, routing_key=INGRESS_QUEUE)
    await _work_queue(channel, UNROUTABLE_QUEUE, unroutable, "", dead, delivery_limit)
    await failures.bind(dead, routing_key=UNROUTABLE_QUEUE)
    await _work_queue(
        channel,
        DELIVERY_RECEIPT_QUEUE,
        delivery_receipts,
        DELIVERY_RECEIPT_ROUTING_KEY,
        dead,
        delivery_limit,
    )
    await _work_queue(
        channel, REFUSAL_QUEUE, delivery_receipts, REFUSAL_ROUTING_KEY, dead, delivery_limit
    )
    return Exchanges(ingress, deliver, deliver_tx, receipts, delivery_receipts, dead)


async def declare_agency_queues(
    channel: AbstractChannel,
    exchanges: Exchanges,
    kennung: str,
    *,
    test: bool,
    delivery_limit: int,
) -> None:
    """The inbox (and test inbox) of one agency."""
    failures = await _failure_queue(channel, exchanges.dead, delivery_limit)
    for is_test in (False, True) if test else (False,):
        await failures.bind(exchanges.dead, routing_key=agency_queue(kennung, test=is_test))
        queue = await _work_queue(
            channel,
            agency_queue(kennung, test=is_test),
            None,
            "",
            exchanges.dead,
            delivery_limit,
        )
        await _bind_inbox(queue, exchanges, agency_routing_key(kennung, test=is_test))


@dataclass(frozen=True, slots=True)
class BoxRetention:
    """How a message box's stream keeps what it holds (docs/xta.md, "Payload retention").

    RabbitMQ drops a stream's data a whole segment at a time: a segment once every entry
    in it is older than ``max_age_seconds``, and only when a new segment is started
    (3.10 looks at nothing in between). The defaults are the settings' defaults
    (``Settings.box_max_age_seconds``, ``xta_box_segment_bytes``).
    """

    max_age_seconds: float = 15 * 86400
    segment_bytes: int = 1024 * 1024

    def arguments(self) -> dict[str, FieldValue]:
        return {
            "x-queue-type": "stream",
            # Rounded up: a box never keeps a copy shorter than it was asked to.
            "x-max-age": f"{math.ceil(self.max_age_seconds)}s",
            "x-stream-max-segment-size-bytes": self.segment_bytes,
        }


async def declare_box(
    channel: AbstractChannel, exchanges: Exchanges, kennung: str, retention: BoxRetention
) -> AbstractQueue:
    """The message box of an XTA agency: a stream in the place of its inbox."""
    try:
        queue = await channel.declare_queue(
            agency_queue(kennung), durable=True, arguments=retention.arguments()
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"the message box {agency_queue(kennung)} exists with other arguments than "
            f"{retention.arguments()}: queue arguments cannot change in place; after a "
            "change of xta_box_max_age_days, expire_after_days or xta_box_segment_bytes "
            "the box must be declared anew (docs/xta.md, Settings)"
        ) from exc
    await _bind_inbox(queue, exchanges, agency_routing_key(kennung))
    return queue


async def _bind_inbox(queue: AbstractQueue, exchanges: Exchanges, routing_key: str) -> None:
    """An inbox takes copies from both delivery exchanges (confirmed and transactional)."""
    for exchange in (exchanges.deliver, exchanges.deliver_tx):
        await queue.bind(exchange, routing_key=routing_key)


async def declare_receipt_queue(
    channel: AbstractChannel, exchanges: Exchanges, kennung: str, delivery_limit: int
) -> None:
    """Where an author's receipts wait for it."""
    await _work_queue(
        channel, receipt_queue(kennung), exchanges.receipts, kennung, exchanges.dead, delivery_limit
    )


def has_inbox(agency: Agency) -> bool:
    """Agencies that receive anything get an inbox; pure senders (a portal) do not."""
    return bool(agency.accepts or agency.notify)


def has_receipt_queue(agency: Agency) -> bool:
    """Authors get a receipt queue, except those that speak XTA: they read nothing over
    AMQP and follow their messages through GetTransportReport (docs/xta.md)."""
    return bool(agency.may_send) and not isinstance(agency.endpoint, XtaEndpoint)


def reads_receipts(directory: Directory, kennung: str) -> bool:
    """Whether receipts for ``kennung`` go to its receipt queue. A party the directory
    does not know counts as reading them: its receipt is returned unroutable, loudly."""
    agency = directory.get(kennung)
    return agency is None or has_receipt_queue(agency)


async def declare_for_directory(
    channel: AbstractChannel,
    exchanges: Exchanges,
    directory: Directory,
    delivery_limit: int,
    box: BoxRetention | None = None,
) -> None:
    """An inbox for every agency that receives (a webhook agency's is drained by the
    webhook deliverer; an XTA agency's is its message box), a receipt queue for every
    author that reads receipts over AMQP."""
    for agency in directory:
        if has_inbox(agency) and isinstance(agency.endpoint, XtaEndpoint):
            await declare_box(channel, exchanges, agency.kennung, box or BoxRetention())
        elif has_inbox(agency):
            await declare_agency_queues(
                channel,
                exchanges,
                agency.kennung,
                test=agency.endpoint.test,
                delivery_limit=delivery_limit,
            )
        if has_receipt_queue(agency):
            await declare_receipt_queue(channel, exchanges, agency.kennung, delivery_limit)


async def _failure_queue(
    channel: AbstractChannel, dead: AbstractExchange, delivery_limit: int
) -> AbstractQueue:
    # Bound (by the callers) to the dead-letter keys of the queues it watches; its own
    # dead letters go to xbroker.failures.dead only, so a notice that cannot be
    # processed never loops back into itself.
    return await _work_queue(channel, FAILURE_QUEUE, None, "", dead, delivery_limit)


async def _work_queue(
    channel: AbstractChannel,
    name: str,
    exchange: AbstractExchange | None,
    routing_key: str,
    dead: AbstractExchange,
    delivery_limit: int,
) -> AbstractQueue:
    dead_queue = await channel.declare_queue(
        f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead, routing_key=name)
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    if exchange is not None:
        await queue.bind(exchange, routing_key=routing_key)
    return queue
