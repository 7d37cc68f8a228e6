"""Errors of the signing package, in the one tree of `broker.errors` (drawn there).

Error tree::

    SigningError                  root of everything this package raises on purpose
    ├── XmlError                  input is not acceptable XML (Reason.MALFORMED_XML)
    │   └── LimitError            it passes a limit of its shape; ``reason`` names the limit
    ├── SignatureError            signature or trust check failed; ``reason`` says why
    │   └── RevocationUnknown     no CRL, or none current, for the issuer: revocation unknown
    └── PkiError                  the development PKI cannot be created or changed

``XmlError`` and ``SignatureError`` are also `broker.errors.Rejection`: they carry the
`Reason` a rejection receipt gives the sender.
"""

from __future__ import annotations

from broker.errors import Reason, Rejection, XBrokerError

__all__ = [
    "LimitError",
    "PkiError",
    "RevocationUnknown",
    "SignatureError",
    "SigningError",
    "XmlError",
]


class SigningError(XBrokerError):
    """Root of every error the signing package raises on purpose."""


class XmlError(SigningError, Rejection, ValueError):
    """The input is not XML we are willing to process: syntax, DOCTYPE, size or depth."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.MALFORMED_XML, detail)


class LimitError(XmlError):
    """The input passes a limit on its shape, set before the work that shape would cost."""

    def __init__(self, reason: Reason, detail: str) -> None:
        Rejection.__init__(self, reason, detail)


class SignatureError(SigningError, Rejection):
    """The signature or the signer's certificate is not acceptable; ``reason`` says why."""


class RevocationUnknown(SignatureError):
    """The issuer's CRL is missing or out of date, so whether the certificate is revoked
    is unknown (``certificate-untrusted``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.CERTIFICATE_UNTRUSTED, detail)


class PkiError(SigningError):
    """The development PKI cannot be created, read or changed as asked."""
