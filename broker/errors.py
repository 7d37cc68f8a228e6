"""Errors of the xbroker service and the reasons a message can be rejected.

Error tree::

    XBrokerError
    ├── ConfigurationError        settings, directory or standards cannot be loaded
    ├── Rejection                 a message that can never succeed; carries a Reason
    └── TransientError            worth retrying later (RabbitMQ, webhook, store)
        └── PublishError          a confirmed publish was nacked, returned or timed out

Every reason a sender can read in a rejection receipt is a member of `Reason`.
Its value is the stable, machine-readable code; never rename a value.
The lower packages (`signing`, `xta_schemas`, `routing`) raise their own errors
carrying the same codes as strings, so they need not import the service; the
pipeline maps them with ``Reason(exc.code)``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigurationError",
    "PublishError",
    "Reason",
    "Rejection",
    "TransientError",
    "XBrokerError",
]


class Reason(StrEnum):
    """Why a message was rejected. The value is the code in receipts and metrics."""

    # parsing
    MALFORMED_XML = "malformed-xml"
    # signature and trust
    SIGNATURE_MISSING = "signature-missing"
    SIGNATURE_INVALID = "signature-invalid"
    DIGEST_MISMATCH = "digest-mismatch"
    ALGORITHM_NOT_ALLOWED = "algorithm-not-allowed"
    CERTIFICATE_UNTRUSTED = "certificate-untrusted"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_REVOKED = "certificate-revoked"
    SIGNER_NOT_AUTHOR = "signer-not-author"
    SIGNATURE_WRAPPING = "signature-wrapping"
    # standards
    UNKNOWN_MESSAGE_TYPE = "unknown-message-type"
    UNSUPPORTED_VERSION = "unsupported-version"
    SCHEMA_INVALID = "schema-invalid"
    HEADER_INVALID = "header-invalid"
    # routing and authorization
    AUTHOR_UNKNOWN = "author-unknown"
    AUTHOR_NOT_AUTHORIZED = "author-not-authorized"
    READER_DOES_NOT_ACCEPT = "reader-does-not-accept"
    NO_ROUTE = "no-route"
    # delivery
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"


class XBrokerError(Exception):
    """Root of every error xbroker raises on purpose."""


class ConfigurationError(XBrokerError):
    """Settings, the directory or a standard cannot be loaded."""


class Rejection(XBrokerError):
    """A message that can never succeed. It is answered with a rejection receipt."""

    def __init__(self, reason: Reason, detail: str, report: tuple[str, ...] = ()) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.report = report


class TransientError(XBrokerError):
    """A failure worth retrying: the message goes back to its queue."""


class PublishError(TransientError, ConnectionError):
    """A confirmed publish was nacked, returned as unroutable, or timed out."""
