"""Verify an enveloped XML-DSig signature and say what exactly was signed.

The order is: shape and algorithms (``structure``), then the signer's chain against our
own trust store (``trust``), then the cryptography on the parsed tree (``enveloped``)
with exactly the leaf we validated. The result carries the signed data: the document
without its ds:Signature, as the canonical bytes the digest covers and as a tree.
Everything downstream reads only that, so unsigned content can never reach routing or
schema validation.

The caller says what time it is (``at``) and the trust store holds a CRL snapshot, so
``verify`` reads neither the clock nor a file. ``verify_now`` does both, for callers
outside the broker's pipeline that keep no task of their own to refresh the CRLs.

A sender's certificate is decoded and parsed once (``certcache``), and the trust store
keeps its chain validation until the certificate leaves its validity or the CRL snapshot
is replaced, so the work per message is the floor: two canonicalizations, one digest, one
public-key verification, and the checks around them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from signing.certcache import CertificateCache
from signing.enveloped import SignedContent, verify_enveloped
from signing.policy import VerificationPolicy
from signing.reference import needs_reference, verify_with_signxml
from signing.structure import inspect_signature
from signing.trust import TrustStore, utc_time
from signing.uncovered import NOTHING_UNCOVERED, Uncovered, uncovered

__all__ = ["Verified", "Verifier"]


@dataclass(frozen=True)
class Verified:
    """A verified document: what was signed, and by whom.

    ``signed`` is the document without its signature; ``signed_data`` the canonical bytes
    of it that the reference digest covers. ``uncovered`` counts what the document holds
    beyond them (comments, processing instructions outside the root), which is never
    to be delivered (``signing.uncovered.covered_only``).
    """

    content: SignedContent
    certificate: x509.Certificate
    fingerprint: str
    subject_kennung: str | None
    uncovered: Uncovered = NOTHING_UNCOVERED

    @property
    def signed(self) -> etree._Element:
        """Parsed on first use: a caller done with the received tree drops it first."""
        return self.content.tree

    @property
    def signed_data(self) -> bytes:
        return self.content.canonical


class Verifier:
    """Verifies signed documents against one trust store and one policy. Thread-safe."""

    def __init__(
        self,
        trust: TrustStore,
        policy: VerificationPolicy = VerificationPolicy(),  # noqa: B008 (frozen, immutable)
        certificates: CertificateCache | None = None,
    ) -> None:
        self.trust = trust
        self.policy = policy
        self.certificates = CertificateCache() if certificates is None else certificates

    def verify(self, root: etree._Element, *, at: datetime, parse_signed: bool = True) -> Verified:
        """Verify ``root`` (from ``parse_untrusted``) as of time ``at``.

        Raises ``SignatureError`` whose ``reason`` is the reject reason, or ``XmlError``
        for signed data that does not parse. ``root`` is left unchanged. With
        ``parse_signed=False`` the signed tree is parsed on first use of
        ``Verified.signed`` (which may then raise ``XmlError``), so that the caller can
        drop ``root`` first.
        """
        when = utc_time(at)
        shape = inspect_signature(root, self.policy, self.certificates)
        signer = shape.certificates
        self.trust.validate(
            signer.leaf,
            signer.intermediates,
            at=when,
            missing_crl=self.policy.missing_crl,
            stale_crl=self.policy.stale_crl,
        )
        if needs_reference(root, shape.signature):
            content = verify_with_signxml(root, signer.leaf, self.policy, when)
        else:
            content = verify_enveloped(
                root, shape.signature, shape.method, signer.public_key, self.policy
            )
        if parse_signed:
            content.tree  # noqa: B018 (parsed now: any error is this call's)
        return Verified(
            content=content,
            certificate=signer.leaf,
            fingerprint=signer.fingerprint,
            subject_kennung=signer.subject_kennung,
            uncovered=uncovered(root),
        )

    def verify_now(self, root: etree._Element) -> Verified:
        """``verify`` as of the clock, by the CRL folder as it is now.

        For long-running callers outside the broker's pipeline (the SDKs), which keep no
        task of their own to refresh the CRLs: the folder is looked at no more often
        than its ``refresh_seconds``, and read again if it changed.
        """
        self.trust.refresh_crls(time.monotonic())
        return self.verify(root, at=datetime.now(UTC))
