"""The one error tree of xbroker, and the vocabularies of what becomes of a message.

This is the bottom module: it imports only the standard library, so that every package
(``signing``, ``xta_schemas``, ``routing`` as much as the broker) can raise into the same
tree and name the same reasons.

Error tree (the module that defines each class in brackets)::

    XBrokerError
    ├── ConfigurationError            settings, directory or standards cannot be loaded
    ├── Rejection                     a message that can never succeed; .reason, .detail
    │   ├── XmlError                  [signing] not acceptable XML (malformed-xml); ValueError
    │   ├── SignatureError            [signing] signature or trust check failed
    │   │   └── RevocationUnknown     [signing] no current CRL for the issuer
    │   ├── MessageError              [xta_schemas] does not fit the standards; .issues
    │   └── RouteError                [routing] no valid route
    ├── SigningError                  [signing] root of that package
    │   ├── XmlError, SignatureError  (also Rejection, above)
    │   └── PkiError                  the development PKI cannot be created or changed
    ├── StandardsError                [xta_schemas] root of that package
    │   ├── StandardLoadError         a standard cannot be loaded (manifest, XSD, reference)
    │   └── MessageError              (also Rejection, above)
    ├── RoutingError                  [routing] root of that package
    │   ├── DirectoryError            the directory file cannot be loaded
    │   └── RouteError                (also Rejection, above)
    ├── SealingError                  [sealing] root of that package
    │   ├── UnsealError               a sealed message (JWE) does not open; also Rejection
    │   │                             (seal-key-unknown, seal-invalid) and ValueError
    │   └── SealingKeyError           a party has no usable encryption key; also
    │                                 ConfigurationError
    ├── AuditError                    [broker.stores.audit] the trail cannot be written
    ├── BundleError                   [broker.amqp.bundle] not the bundle it claims; ValueError
    ├── XtaFault                      an XTA request refused; .fault (a Fault), .detail
    ├── DevNodeError                  [broker.devnode] the local RabbitMQ node cannot be had
    │   ├── RabbitMQNotInstalledError also FileNotFoundError
    │   ├── NodeStartError            also TimeoutError
    │   └── RabbitmqctlError
    ├── DevDatabaseError              [broker.devdb] the local PostgreSQL cluster cannot be had
    │   ├── PostgresNotInstalledError also FileNotFoundError
    │   └── ClusterStartError         also TimeoutError
    └── TransientError                worth retrying later (RabbitMQ, webhook, store)
        ├── PublishError              a confirmed publish was nacked, returned or timed out;
        │   │                         also ConnectionError
        │   ├── UnroutableError       returned: no queue is bound for it (a topology fault)
        │   └── ConfirmTimeoutError   no confirm within its deadline: its fate is unknown
        └── StoreError                a store cannot be read or written now (I/O, full disk,
                                      an unwritable file, a database that does not answer);
                                      also OSError

A `TransientError` is a fault of the worker's surroundings, not of the message: the worker
holds the message, stops taking others and retries once the fault has cleared
(`broker.worker.faults`); it never counts against a queue's delivery limit.

Every reason a sender can read in a rejection receipt is a member of `Reason`; a
`Rejection` carries one. What becomes of a copy after it was accepted (it expired
unfetched, or could not be delivered) is no rejection: those outcomes are the
`DeliveryFailure` of a ``failed`` receipt. Why the XTA endpoint refused a request is a
`Fault`, carried by an `XtaFault` and answered as a SOAP fault. The value of each member
is the stable, machine-readable code in receipts, faults, the status store and metrics;
never rename a value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigurationError",
    "ConfirmTimeoutError",
    "DeliveryFailure",
    "Fault",
    "PublishError",
    "Reason",
    "Rejection",
    "StoreError",
    "TransientError",
    "UnroutableError",
    "XBrokerError",
    "XtaFault",
]


class Reason(StrEnum):
    """Why a message was rejected. The value is the code in receipts and metrics."""

    # parsing
    MALFORMED_XML = "malformed-xml"
    # limits on the work one message may cause (docs/security.md)
    TOO_MANY_ELEMENTS = "too-many-elements"
    TOO_MANY_ATTRIBUTES = "too-many-attributes"
    TOO_MANY_NAMESPACES = "too-many-namespaces"
    TEXT_TOO_LONG = "text-too-long"
    TOO_MANY_CERTIFICATES = "too-many-certificates"
    SIGNED_INFO_TOO_LARGE = "signed-info-too-large"
    PROCESSING_LIMIT = "processing-limit"
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
    # identity: the author used this message's identity before, for other content
    ID_REUSED = "id-reused"
    # sealed submissions (JWE for the broker's key)
    SEAL_KEY_UNKNOWN = "seal-key-unknown"  # sealed for a key the receiver does not hold
    SEAL_INVALID = "seal-invalid"  # corrupted, malformed, too large or not our profile


class DeliveryFailure(StrEnum):
    """Why an accepted message's copy never reached its agency (a ``failed`` receipt)."""

    UNDELIVERABLE = "undeliverable"  # refused, failed every attempt, or the webhook gave up
    EXPIRED = "expired"  # not fetched within expire_after_days
    # the agency could not open its sealed copy (its SDK or webhook receiver said so)
    COPY_SEAL_KEY_UNKNOWN = "copy-seal-key-unknown"  # sealed for a key it does not hold
    COPY_SEAL_INVALID = "copy-seal-invalid"  # corrupted or malformed on the way

    @classmethod
    def of_seal(cls, reason: Reason) -> DeliveryFailure:
        """What the author is told when a recipient could not open its copy for ``reason``
        (one of the seal reasons)."""
        if reason is Reason.SEAL_KEY_UNKNOWN:
            return cls.COPY_SEAL_KEY_UNKNOWN
        if reason is Reason.SEAL_INVALID:
            return cls.COPY_SEAL_INVALID
        raise ValueError(f"{reason.value} is not a reason a seal fails for")


class Fault(StrEnum):
    """Why the XTA endpoint refused a request. The value is the name of the fault's
    detail element (the exceptions of the XTA 2 WSDL, plus ``MessageTooLargeException``)."""

    PERMISSION_DENIED = "PermissionDeniedException"  # no or another party's identity
    INVALID_MESSAGE_ID = "InvalidMessageIDException"  # no such message for the caller
    SYNTAX_ERROR = "SyntaxErrorException"  # not SOAP 1.2, not MTOM, not XML
    PARAMETER_NOT_VALID = "ParameterIsNotValidException"  # well-formed, but disagrees
    TOO_LARGE = "MessageTooLargeException"  # a part or the request over its limit
    TECHNICAL_PROBLEM = "XTAWSTechnicalProblemException"  # try again later

    @property
    def sender(self) -> bool:
        """The caller's fault (SOAP ``Sender``), not the server's (``Receiver``)."""
        return self is not Fault.TECHNICAL_PROBLEM

    @property
    def code(self) -> str:
        """The fault's code in its ErrorCode (``urn:xbroker:xta:codeliste:fehler``), made
        from the member's name: never rename a member either."""
        return self.name.lower().replace("_", "-")


class XBrokerError(Exception):
    """Root of every error xbroker raises on purpose."""


class ConfigurationError(XBrokerError):
    """Settings, the directory or a standard cannot be loaded."""


class Rejection(XBrokerError):
    """A message that can never succeed. It is answered with a rejection receipt.

    ``reason`` must be a `Reason` member: a code typed as a string would surface as a
    crash in the worker rather than as a rejection, so it is refused at once.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        if not isinstance(reason, Reason):
            raise TypeError(f"a rejection needs a Reason member, not {reason!r}")
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class XtaFault(XBrokerError):
    """An XTA request refused; answered as a SOAP 1.2 fault. ``detail`` is shown to the
    caller: it names the caller's own data only, never another party's."""

    def __init__(self, fault: Fault, detail: str) -> None:
        if not isinstance(fault, Fault):
            raise TypeError(f"an XTA fault needs a Fault member, not {fault!r}")
        super().__init__(f"{fault.value}: {detail}")
        self.fault = fault
        self.detail = detail


class TransientError(XBrokerError):
    """A failure worth retrying once the fault has cleared; never the message's own."""


class PublishError(TransientError, ConnectionError):
    """A confirmed publish was nacked, returned as unroutable, or timed out."""


class UnroutableError(PublishError):
    """RabbitMQ returned a mandatory publish: no queue is bound to its routing key."""


class ConfirmTimeoutError(PublishError):
    """No confirm came within the publish's deadline: it may or may not have been taken."""


class StoreError(TransientError, OSError):
    """A store cannot be read or written now; the write is retried once it can.

    Every store (SQLite here, a database server elsewhere) maps its own failures to this
    error at its boundary, so the worker treats them alike without knowing the store.
    """
