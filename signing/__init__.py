"""Signatures and trust: the hardened parser, signing, verification, trust store, dev PKI.

Knows nothing of AMQP or routing. See ``signing.errors`` for the error tree.
"""

from signing.certs import fingerprint, load_certificate, load_certificates, subject_kennung
from signing.crl import RevocationStatus
from signing.errors import (
    LimitError,
    PkiError,
    RevocationUnknown,
    SignatureError,
    SigningError,
    XmlError,
)
from signing.parser import parse_untrusted
from signing.policy import CrlRule, VerificationPolicy
from signing.shape import ParserLimits
from signing.signer import Signer
from signing.trust import KeyPurpose, TrustedChain, TrustStore
from signing.verifier import Verified, Verifier

__all__ = [
    "CrlRule",
    "KeyPurpose",
    "LimitError",
    "ParserLimits",
    "PkiError",
    "RevocationStatus",
    "RevocationUnknown",
    "SignatureError",
    "Signer",
    "SigningError",
    "TrustStore",
    "TrustedChain",
    "VerificationPolicy",
    "Verified",
    "Verifier",
    "XmlError",
    "fingerprint",
    "load_certificate",
    "load_certificates",
    "parse_untrusted",
    "subject_kennung",
]
