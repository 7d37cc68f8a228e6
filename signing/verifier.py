"""Verify an enveloped XML-DSig signature and say what exactly was signed.

The order is: shape and algorithms (``structure``), then the signer's chain against our
own trust store (``trust``), then the cryptography (signxml, told to use exactly the leaf
we validated). The result carries the signed data as signxml returns it, re-parsed from
its canonical form: the document without its ds:Signature. Everything downstream reads
only that, so unsigned content can never reach routing or schema validation.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree
from signxml.exceptions import (
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    InvalidSignature,
    SignXMLException,
)
from signxml.verifier import SignatureConfiguration, XMLVerifier

from signing.certs import fingerprint, subject_kennung
from signing.errors import SignatureError
from signing.policy import VerificationPolicy
from signing.structure import inspect_signature
from signing.trust import TrustStore, utc_time

__all__ = ["Verified", "Verifier"]


@dataclass(frozen=True)
class Verified:
    """A verified document: what was signed, and by whom."""

    signed: etree._Element
    certificate: x509.Certificate
    fingerprint: str
    subject_kennung: str | None


def _map_signxml_error(exc: Exception) -> SignatureError:
    if isinstance(exc, InvalidDigest):
        return SignatureError("digest-mismatch", str(exc))
    if isinstance(exc, InvalidCertificate):
        return SignatureError("certificate-expired", str(exc))
    if isinstance(exc, InvalidInput) and "forbidden by configuration" in str(exc):
        return SignatureError("algorithm-not-allowed", str(exc))
    return SignatureError("signature-invalid", str(exc) or type(exc).__name__)


class Verifier:
    """Verifies signed documents against one trust store and one policy. Thread-safe."""

    def __init__(
        self,
        trust: TrustStore,
        policy: VerificationPolicy = VerificationPolicy(),  # noqa: B008 (frozen, immutable)
    ) -> None:
        self.trust = trust
        self.policy = policy

    def _config(self, at: datetime) -> SignatureConfiguration:
        return SignatureConfiguration(
            require_x509=True,
            location="./",
            expect_references=1,
            signature_methods=self.policy.signature_methods,
            digest_algorithms=self.policy.digest_algorithms,
            verification_time=at,
        )

    def verify(self, root: etree._Element, *, at: datetime | None = None) -> Verified:
        """Verify ``root`` (from ``parse_untrusted``) at time ``at`` (default: now).

        Raises ``SignatureError`` whose ``code`` is the reject reason.
        """
        when = utc_time(at)
        shape = inspect_signature(root, self.policy)
        self.trust.validate(
            shape.leaf,
            shape.intermediates,
            at=when,
            missing_crl=self.policy.missing_crl,
            stale_crl=self.policy.stale_crl,
        )
        try:
            # One XMLVerifier per call: it keeps per-call state on itself.
            result = XMLVerifier().verify(
                root, x509_cert=shape.leaf, expect_config=self._config(when)
            )
        except (SignXMLException, InvalidSignature, etree.LxmlError, binascii.Error) as exc:
            raise _map_signxml_error(exc) from exc
        except ValueError as exc:
            raise SignatureError("signature-invalid", str(exc)) from exc
        if isinstance(result, list) or result.signed_xml is None:
            raise SignatureError("signature-invalid", "the signed data is not one XML document")
        return Verified(
            signed=result.signed_xml,
            certificate=shape.leaf,
            fingerprint=fingerprint(shape.leaf),
            subject_kennung=subject_kennung(shape.leaf),
        )
