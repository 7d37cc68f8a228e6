"""A refusal: an agency's signed word that its sealed copy does not open, and the copy.

An agency's SDK that cannot open a sealed copy (`sealing`) may neither hand it over nor
drop it. It publishes a refusal to ``xbroker.delivery-receipts`` with the routing key
``refused`` (the one exchange an agency may write to) and acks the copy once that is
confirmed. The refusal's body is a bundle (`broker.amqp.bundle`) of two parts:

    message     the agency's signed ``failed`` receipt: reason copy-seal-key-unknown or
                copy-seal-invalid, and why (which key the copy names, what failed)
    attachment  the sealed copy, byte for byte as the agency received it

and its headers are the copy's, plus ``x-xbroker-refused-from``: the queue it came from.
The broker (`broker.worker.refusals`) verifies the receipt and parks the copy, still
sealed, in that queue's ``.dead`` queue with the reason in ``x-xbroker-refusal`` and
``x-xbroker-refusal-detail``; the failures consumer tells the author from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from broker.amqp import publishing
from broker.amqp.bundle import Bundle, BundleError, Part
from broker.amqp.publishing import header_text

__all__ = [
    "HEADER_REFUSAL",
    "HEADER_REFUSAL_DETAIL",
    "HEADER_REFUSED_FROM",
    "Refusal",
    "read_refusal",
    "refusal_message",
]

HEADER_REFUSED_FROM = "x-xbroker-refused-from"
HEADER_REFUSAL = "x-xbroker-refusal"  # on the parked copy: the DeliveryFailure code
HEADER_REFUSAL_DETAIL = "x-xbroker-refusal-detail"
_COPY = "copy"


@dataclass(frozen=True, slots=True)
class Refusal:
    signed_receipt: bytes
    copy: bytes
    copy_content_type: str
    queue: str


def refusal_message(
    signed_receipt: bytes, copy: AbstractIncomingMessage, queue: str
) -> aio_pika.Message:
    """The refusal of ``copy``, taken from ``queue``, with the agency's signed receipt."""
    body, content_type = Bundle(
        Part(signed_receipt, "refusal", "application/xml"),
        (Part(copy.body, _COPY, copy.content_type or "application/octet-stream"),),
    ).encode(plain_if_alone=False)
    headers = {
        key: value
        for key, value in (copy.headers or {}).items()
        if isinstance(value, str | int | float) and not key.startswith("x-death")
    }
    headers[HEADER_REFUSED_FROM] = queue
    return publishing.message(
        body,
        message_id=copy.message_id or "",
        headers=headers,
        content_type=content_type,
    )


def read_refusal(message: AbstractIncomingMessage) -> Refusal:
    """The parts of a refusal; BundleError if it is not one."""
    bundle = Bundle.decode(message.body, message.content_type)
    if len(bundle.attachments) != 1 or bundle.attachments[0].content_id != _COPY:
        raise BundleError("a refusal carries exactly one part: the copy")
    copy = bundle.attachments[0]
    queue = header_text((message.headers or {}).get(HEADER_REFUSED_FROM))
    if queue is None:
        raise BundleError(f"a refusal names the queue of its copy ({HEADER_REFUSED_FROM})")
    return Refusal(bundle.message.content, copy.content, copy.content_type, queue)
