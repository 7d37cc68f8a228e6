"""The trust store: CA certificates, chain validation and revocation.

Chains are built and checked with ``cryptography.x509.verification`` (validity periods,
basic constraints, key usage, signature algorithms). End-entity certificates of agencies
sign documents, not TLS sessions: they need keyUsage digitalSignature, must not be CAs,
and need no extended key usage. Successful chain checks are cached per certificate
fingerprint (plus intermediates) for as long as every certificate of the chain is within
its validity period; revocation is looked up on every call against the current CRLs,
which are cheap to consult and may change at any moment.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from signing.certs import fingerprint, load_certificates
from signing.crl import CrlFolder, RevocationStatus
from signing.errors import SignatureError, SigningError
from signing.policy import CrlRule

__all__ = ["TrustStore", "TrustedChain", "utc_time"]

_CACHE_SIZE = 4096


@dataclass(frozen=True)
class TrustedChain:
    """A validated chain, leaf first and trust anchor last, and its revocation status."""

    chain: tuple[x509.Certificate, ...]
    revocation: RevocationStatus


@dataclass(frozen=True)
class _Cached:
    chain: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime


def _require_digital_signature(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not ku.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature")


def _forbid_ca(_policy: Policy, _cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is not None and bc.ca:
        raise ValueError("a CA certificate cannot sign documents")


def _end_entity_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _forbid_ca)
    )


def utc_time(at: datetime | None) -> datetime:
    """``at`` in UTC, now if None; a naive time is taken as UTC, as signxml does."""
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _within(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


class TrustStore:
    """CA certificates (trust anchors) and, optionally, a folder of CRLs."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crl_folder: CrlFolder | None = None,
    ) -> None:
        if not anchors:
            raise SigningError("a trust store needs at least one CA certificate")
        self.anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._store = Store(list(self.anchors))
        self._crls = crl_folder
        self._ee_policy = _end_entity_policy()
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca()
        self._cache: OrderedDict[tuple[str, ...], _Cached] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_dirs(cls, ca_dir: Path, crl_dir: Path | None = None) -> TrustStore:
        """Load every certificate in ``ca_dir`` (PEM files, several per file allowed)."""
        if not ca_dir.is_dir():
            raise SigningError(f"trust store folder {ca_dir} does not exist")
        anchors = [
            cert
            for path in sorted(ca_dir.iterdir())
            if path.is_file() and path.suffix.lower() in {".pem", ".crt", ".cer"}
            for cert in load_certificates(path)
        ]
        crl_folder = CrlFolder(crl_dir) if crl_dir is not None else None
        return cls(anchors, crl_folder)

    def _build(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> list[x509.Certificate]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        return verifier.verify(leaf, intermediates).chain

    def _explain(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        at: datetime,
        error: VerificationError,
    ) -> SignatureError:
        issuers = [*intermediates, *self.anchors]
        if not _within(leaf, at):
            inside = (
                leaf.not_valid_before_utc
                + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
            )
            try:
                self._build(leaf, intermediates, inside)
            except VerificationError:
                return SignatureError("certificate-untrusted", f"no trusted chain: {error}")
            return SignatureError(
                "certificate-expired",
                f"certificate valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
                f"until {leaf.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}",
            )
        for issuer in issuers:
            if issuer.subject == leaf.issuer and not _within(issuer, at):
                return SignatureError(
                    "certificate-expired",
                    f"issuer {issuer.subject.rfc4514_string()} is not valid at {at:%Y-%m-%d}",
                )
        return SignatureError("certificate-untrusted", f"no trusted chain: {error}")

    def _chain(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> tuple[x509.Certificate, ...]:
        key = (fingerprint(leaf), *(fingerprint(c) for c in intermediates))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None and cached.valid_from <= at <= cached.valid_until:
            return cached.chain
        try:
            chain = tuple(self._build(leaf, intermediates, at))
        except VerificationError as exc:
            raise self._explain(leaf, intermediates, at, exc) from exc
        entry = _Cached(
            chain=chain,
            valid_from=max(c.not_valid_before_utc for c in chain),
            valid_until=min(c.not_valid_after_utc for c in chain),
        )
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return chain

    def _revocation(self, chain: tuple[x509.Certificate, ...], at: datetime) -> RevocationStatus:
        if self._crls is None:
            return RevocationStatus.NOT_CHECKED
        index = self._crls.index(time.monotonic())
        worst = RevocationStatus.GOOD
        for cert, issuer in itertools.pairwise(chain):
            status = index.status(cert, issuer, at)
            if status is RevocationStatus.REVOKED:
                return status
            if status is not RevocationStatus.GOOD and worst is RevocationStatus.GOOD:
                worst = status
        return worst

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime | None = None,
        missing_crl: CrlRule = CrlRule.REJECT,
        stale_crl: CrlRule = CrlRule.REJECT,
    ) -> TrustedChain:
        """Validate ``leaf`` up to a trust anchor at time ``at`` (default: now).

        Raises ``SignatureError`` with ``certificate-untrusted``, ``certificate-expired``
        or ``certificate-revoked``.
        """
        when = utc_time(at)
        chain = self._chain(leaf, list(intermediates), when)
        status = self._revocation(chain, when)
        if status is RevocationStatus.REVOKED:
            raise SignatureError(
                "certificate-revoked", f"certificate serial {leaf.serial_number:x} is revoked"
            )
        if status is RevocationStatus.NO_CRL and missing_crl is CrlRule.REJECT:
            raise SignatureError("certificate-untrusted", "no valid CRL for the issuer")
        if status is RevocationStatus.STALE and stale_crl is CrlRule.REJECT:
            raise SignatureError("certificate-untrusted", "the issuer's CRL is out of date")
        return TrustedChain(chain=chain, revocation=status)

    def reload_crls(self) -> None:
        """Read the CRL folder again on the next validation, without waiting."""
        if self._crls is not None:
            self._crls.reload()
