"""What a signature must look like to be accepted: a frozen policy with secure defaults.

The algorithm choices follow BSI TR-02102-1: RSA (PKCS#1 v1.5 or PSS) with at least
2048 bits, ECDSA on P-256 or P-384, hashes of the SHA-2 family; SHA-1 and MD5 never.
Only enveloped signatures over the whole document are accepted, because anything less
lets unsigned content travel next to signed content (signature wrapping).

Canonicalization is exclusive C14N 1.0, for SignedInfo and for the document, by default.
Inclusive c14n renders every namespace in scope on every element, which libxml2 does in
time growing with the square of those namespaces per element: a sender could make the
check of any signature, even one that will fail, cost minutes (docs/security.md).
Exclusive c14n renders only what an element uses and is what the signers we know of
write. A policy may still allow inclusive methods; the parser's namespace limits then
bound their cost.

The limits on a signature's size (certificates in KeyInfo, bytes of SignedInfo) are
checked before anything is decoded, parsed or canonicalized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

__all__ = ["CrlRule", "VerificationPolicy"]


class CrlRule(StrEnum):
    """What to do when the CRL of a certificate's issuer is missing or stale."""

    REJECT = "reject"
    ACCEPT = "accept"


@dataclass(frozen=True)
class VerificationPolicy:
    """Settings of ``Verifier``; the defaults are the secure choice."""

    signature_methods: frozenset[SignatureMethod] = field(
        default_factory=lambda: frozenset(
            {
                SignatureMethod.RSA_SHA256,
                SignatureMethod.RSA_SHA384,
                SignatureMethod.RSA_SHA512,
                SignatureMethod.SHA256_RSA_MGF1,
                SignatureMethod.SHA384_RSA_MGF1,
                SignatureMethod.SHA512_RSA_MGF1,
                SignatureMethod.ECDSA_SHA256,
                SignatureMethod.ECDSA_SHA384,
                SignatureMethod.ECDSA_SHA512,
            }
        )
    )
    digest_algorithms: frozenset[DigestAlgorithm] = field(
        default_factory=lambda: frozenset(
            {DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
        )
    )
    c14n_methods: frozenset[CanonicalizationMethod] = field(
        default_factory=lambda: frozenset(
            {CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0}
        )
    )
    min_rsa_bits: int = 2048
    ec_curves: frozenset[str] = frozenset({"secp256r1", "secp384r1"})
    missing_crl: CrlRule = CrlRule.REJECT
    stale_crl: CrlRule = CrlRule.REJECT
    # The signer's certificate and its intermediates; real chains have two or three.
    max_certificates: int = 8
    # SignedInfo of one reference is under 2 KB; its size is estimated before c14n.
    max_signed_info_bytes: int = 16 * 1024

    # The URIs as they appear in documents, computed once per policy: the structural
    # check looks them up for every message.
    @cached_property
    def signature_method_uris(self) -> Mapping[str, SignatureMethod]:
        """The allowed signature methods by their algorithm URI."""
        return {method.value: method for method in self.signature_methods}

    @cached_property
    def digest_uris(self) -> frozenset[str]:
        """The algorithm URIs of the allowed digests."""
        return frozenset(algorithm.value for algorithm in self.digest_algorithms)

    @cached_property
    def c14n_uris(self) -> frozenset[str]:
        """The algorithm URIs of the allowed canonicalizations."""
        return frozenset(method.value for method in self.c14n_methods)
