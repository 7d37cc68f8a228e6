"""Sealed delivery in the worker: each copy sealed for its agency, submissions opened.

A copy for an agency marked ``sealed`` leaves the worker as a JWE for that agency's
encryption key (`sealing`), made after the message was verified, validated and routed
in clear, in memory. The key is the newest of the agency's encryption certificates that
is valid now: trusted, within its validity, not revoked by the CRL snapshot the trust
store holds. During a rotation both keys are valid and the new one is used; the agency
opens what was sealed for either with the keys it holds.

A submission sealed for the broker is opened with the broker's key ring before the
pipeline sees it; what does not open is rejected (``seal-key-unknown``,
``seal-invalid``).

A sealed agency without a valid key is a configuration error: `key_problems` finds it
at start, at every directory reload, and in ``xbroker doctor``. Should a key become
invalid while the worker runs (its certificate revoked or expired), no copy is sent in
clear instead: `SealingKeyError` makes the message wait and be retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from threading import Lock

from cryptography import x509

from routing import Agency, Directory, RegisteredCertificate
from sealing import (
    SEALED_CONTENT_TYPE,
    KeyRing,
    Opened,
    RecipientKey,
    SealingKeyError,
    SealLimits,
    seal,
    unseal,
)
from signing import KeyPurpose, SignatureError, TrustStore

__all__ = ["Sealer", "check_keys", "key_problems"]


class Sealer:
    """Seals copies for agencies and opens submissions for the broker. Thread-safe."""

    def __init__(self, trust: TrustStore, keys: KeyRing, limits: SealLimits) -> None:
        self._trust = trust
        self.keys = keys
        self.limits = limits
        self._recipients: dict[x509.Certificate, RecipientKey] = {}
        self._lock = Lock()

    def recipient_key(self, agency: Agency, at: datetime) -> RecipientKey:
        """The key ``agency``'s copies are sealed for at ``at``: its newest valid one."""
        valid, problems = _valid_certificates(agency.encryption, self._trust, at)
        if not valid:
            raise SealingKeyError(_no_key(agency, problems))
        # Of two issued within the same second, the one listed later is the newer.
        newest = max(reversed(valid), key=lambda c: c.not_valid_before_utc)
        with self._lock:
            key = self._recipients.get(newest)
        if key is None:
            key = RecipientKey.from_certificate(newest)
            with self._lock:
                self._recipients[newest] = key
        return key

    def copy_for(
        self, agency: Agency, content: bytes, content_type: str, at: datetime
    ) -> tuple[bytes, str]:
        """The body and content type of ``agency``'s copy: sealed if it is sealed."""
        if not agency.sealed:
            return content, content_type
        key = self.recipient_key(agency, at)
        return seal(content, key, content_type=content_type), SEALED_CONTENT_TYPE

    def open(self, sealed: bytes) -> Opened:
        """A submission sealed for the broker, opened in memory; UnsealError if it does
        not open."""
        return unseal(sealed, self.keys, self.limits)


def _valid_certificates(
    certificates: Iterable[RegisteredCertificate], trust: TrustStore, at: datetime
) -> tuple[list[x509.Certificate], list[str]]:
    valid: list[x509.Certificate] = []
    problems: list[str] = []
    for registered in certificates:
        cert = registered.certificate
        if cert is None:  # the directory loads encryption certificates from files only
            continue
        try:
            trust.validate(cert, at=at, purpose=KeyPurpose.ENCRYPTION)
        except SignatureError as exc:
            problems.append(f"{registered.source}: {exc}")
            continue
        valid.append(cert)
    return valid, problems


def _no_key(agency: Agency, problems: list[str]) -> str:
    why = "; ".join(problems) if problems else "it registers no encryption certificate"
    return f"{agency.kennung} is sealed but has no valid encryption key: {why}"


def key_problems(directory: Directory, trust: TrustStore, at: datetime) -> list[str]:
    """One line for every sealed agency that has no valid encryption key at ``at``."""
    problems = []
    for agency in directory:
        if not agency.sealed:
            continue
        valid, why = _valid_certificates(agency.encryption, trust, at)
        if not valid:
            problems.append(_no_key(agency, why))
    return problems


def check_keys(directory: Directory, trust: TrustStore, at: datetime) -> None:
    """Refuse a directory in which a sealed agency has no valid encryption key."""
    problems = key_problems(directory, trust, at)
    if problems:
        raise SealingKeyError("sealed delivery is impossible: " + "; ".join(problems))
