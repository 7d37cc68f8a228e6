"""The bounded label values of xbroker's metrics.

A label whose values come from traffic (a message id, a free-text error) makes one
time series per message and ruins Prometheus. Every label value that monitoring can
know in advance is a member of one of these enums, and `Metrics` refuses anything
else. Reject reasons and agency ids are bounded elsewhere: by the `Reason` enum of
the broker and by the agency directory.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeliveryOutcome", "ReceiptKind", "Sealing", "Stage", "WebhookOutcome", "WorkerFault"]


class Stage(StrEnum):
    """A timed step of the path of one message (docs/architecture.md, "The path of one message")."""

    UNSEAL = "unseal"  # a submission sealed for the broker, opened in memory
    PARSE = "parse"
    VERIFY = "verify"
    IDENTIFY = "identify"
    VALIDATE = "validate"
    ROUTE = "route"
    DELIVER = "deliver"
    RECEIPT = "receipt"


class DeliveryOutcome(StrEnum):
    """What became of one recipient's copy of a message."""

    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    RETURNED = "returned"


class Sealing(StrEnum):
    """How an agency's copy waits in its queue: sealed for its key (JWE), or in clear."""

    SEALED = "sealed"
    CLEAR = "clear"


class ReceiptKind(StrEnum):
    """The kinds of signed receipt xbroker sends to an author (``art`` of a receipt).

    The one vocabulary of receipt kinds: the receipt documents, the SDKs and the metrics
    all use it. It lives here, below the broker, so that `Metrics` can start every
    receipt counter at zero without importing the broker.
    """

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookOutcome(StrEnum):
    """How one attempt to push a message to an agency's webhook ended."""

    SUCCESS = "success"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"


class WorkerFault(StrEnum):
    """A fault of a worker's surroundings that makes it hold its messages and pause."""

    STORE = "store"  # a store cannot be written or read (I/O error, unwritable file)
    DISK = "disk"  # the state dir's file system has less free space than the reserve
    RABBITMQ = "rabbitmq"  # the connection to RabbitMQ is lost
    PUBLISH = "publish"  # RabbitMQ did not confirm a publish in time, or refused it
    TOPOLOGY = "topology"  # a queue is missing and could not be declared again
