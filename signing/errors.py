"""Errors of the signing package.

Error tree::

    SigningError                  root of everything this package raises on purpose
    ├── XmlError                  input is not acceptable XML (code ``malformed-xml``)
    ├── SignatureError            signature or trust check failed; ``code`` says why
    └── PkiError                  the development PKI cannot be created or changed

``XmlError`` and ``SignatureError`` carry the reject codes of ``broker.errors.Reason`` as
plain strings, so this package need not import the service; the pipeline maps them with
``Reason(exc.code)``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "SIGNATURE_CODES",
    "PkiError",
    "SignatureError",
    "SigningError",
    "XmlError",
]

MALFORMED_XML: Final = "malformed-xml"

# Every code a SignatureError may carry; each is a value of broker.errors.Reason.
SIGNATURE_CODES: Final = frozenset(
    {
        "signature-missing",
        "signature-invalid",
        "digest-mismatch",
        "algorithm-not-allowed",
        "certificate-untrusted",
        "certificate-expired",
        "certificate-revoked",
        "signature-wrapping",
    }
)


class SigningError(Exception):
    """Root of every error the signing package raises on purpose."""


class XmlError(SigningError, ValueError):
    """The input is not XML we are willing to process: syntax, DOCTYPE, size or depth."""

    code: str = MALFORMED_XML

    def __init__(self, detail: str) -> None:
        super().__init__(f"{MALFORMED_XML}: {detail}")
        self.detail = detail


class SignatureError(SigningError):
    """The signature or the signer's certificate is not acceptable; ``code`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in SIGNATURE_CODES:
            raise ValueError(f"unknown signature error code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class PkiError(SigningError):
    """The development PKI cannot be created, read or changed as asked."""
