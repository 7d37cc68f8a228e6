"""Signing certificates read once: parsed, split into leaf and intermediates, fingerprinted.

A sender signs thousands of messages with the same certificate, and every message carries
it in KeyInfo as base64 text. Decoding, parsing and hashing it again for each message is
pure waste, so the result is kept keyed by that exact text (all X509Certificate elements,
in document order). The key is the text itself, not a hash of it, so two different
certificates can never share an entry. Nothing here says whether a certificate is
trusted: that is the trust store's job, and it is asked on every verification.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from broker.errors import Reason
from signing.certs import fingerprint, subject_kennung
from signing.errors import SignatureError

__all__ = ["CertificateCache", "SignerCertificates", "read_certificates"]

_DEFAULT_SIZE: Final = 1024
# Real certificate chains are a few KB of base64; anything larger is parsed every time
# rather than kept, so no sender can make the cache hold megabytes per entry.
_MAX_CACHED_CHARS: Final = 64 * 1024


@dataclass(frozen=True)
class SignerCertificates:
    """The certificates of one KeyInfo: the signer's own (leaf) and the intermediates."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    fingerprint: str
    subject_kennung: str | None
    public_key: CertificatePublicKeyTypes


def _split_leaf(
    certs: list[x509.Certificate],
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    # XML-DSig implies no order in X509Data: the leaf is the one that issued no other.
    # One pass to count who issued whom, one to pick: linear, however many there are.
    issued = Counter(c.issuer for c in certs)
    leaves = [c for c in certs if issued[c.subject] == (1 if c.issuer == c.subject else 0)]
    leaf = leaves[0] if len(leaves) == 1 else certs[0]
    return leaf, tuple(c for c in certs if c is not leaf)


def read_certificates(texts: tuple[str, ...]) -> SignerCertificates:
    """Decode and parse the base64 texts of X509Certificate elements; raise ``SignatureError``."""
    if not texts:
        raise SignatureError(Reason.SIGNATURE_INVALID, "KeyInfo must carry the X.509 certificate")
    try:
        certs = [_load(text) for text in texts]
        leaf, intermediates = _split_leaf(certs)
        return SignerCertificates(
            leaf=leaf,
            intermediates=intermediates,
            fingerprint=fingerprint(leaf),
            subject_kennung=subject_kennung(leaf),
            public_key=leaf.public_key(),
        )
    except (
        binascii.Error,
        ValueError,
        UnsupportedAlgorithm,
        x509.DuplicateExtension,
        x509.InvalidVersion,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise SignatureError(
            Reason.SIGNATURE_INVALID, f"unreadable X509Certificate: {exc}"
        ) from exc


def _load(text: str) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    # cryptography parses some fields only when asked: ask now for every one the trust
    # store reads, so a damaged certificate is refused here and not half-way through.
    _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.extensions, cert.serial_number, cert.public_key())
    return cert


class CertificateCache:
    """Parsed KeyInfo certificates by their exact text, least recently used out. Thread-safe.

    Unreadable certificates are not cached: they fail fast anyway, and caching them would
    let a sender fill the cache with garbage. Neither are oversized texts (see above).
    """

    def __init__(self, size: int = _DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("the certificate cache needs room for at least one entry")
        self._size = size
        self._entries: OrderedDict[tuple[str, ...], SignerCertificates] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, texts: tuple[str, ...]) -> SignerCertificates:
        """The parsed certificates of ``texts``, read once and then served from the cache."""
        with self._lock:
            found = self._entries.get(texts)
            if found is not None:
                self._entries.move_to_end(texts)
                return found
        found = read_certificates(texts)
        if sum(map(len, texts)) > _MAX_CACHED_CHARS:
            return found
        with self._lock:
            self._entries[texts] = found
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return found
