"""The trust store: CA certificates, chain validation and revocation.

Chains are built and checked with ``cryptography.x509.verification`` (validity periods,
basic constraints, key usage, signature algorithms). End-entity certificates of agencies
sign documents, not TLS sessions: they need keyUsage digitalSignature, must not be CAs,
and need no extended key usage. An encryption certificate (``KeyPurpose.ENCRYPTION``,
what a message is sealed for) needs keyEncipherment (RSA) or keyAgreement (EC) instead:
a party's two keys are kept apart, so a key that signs never decrypts.

Revocation is checked against a CRL snapshot (`signing.crl.CrlIndex`) the store holds;
``validate`` reads neither files nor the clock: the caller says what time it is. The
snapshot is replaced whole by ``use_crls``. ``refresh_crls`` and ``reload_crls`` read
the store's CRL folder for that, for callers outside the broker's pipeline (the SDKs,
the HTTP API); the broker's worker reads the folder from a task of its own
(`broker.worker.reload`).

A sender signs every message with the same certificate, so the whole verdict is cached,
keyed by the certificates themselves (their DER bytes: ``x509.Certificate`` hashes and
compares by them), leaf and intermediates. A chain is reused while every certificate of
it is within its validity period. A GOOD revocation status is reused only while the CRL
snapshot is the same and its CRLs are not past their nextUpdate; any other status is
looked up again on every call.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
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

from broker.errors import Reason
from signing.certs import load_certificates
from signing.crl import CrlFolder, CrlIndex, RevocationStatus
from signing.errors import RevocationUnknown, SignatureError, SigningError
from signing.policy import CrlRule

__all__ = ["KeyPurpose", "TrustStore", "TrustedChain", "utc_time"]

_CACHE_SIZE = 4096


class KeyPurpose(StrEnum):
    """What an end-entity certificate is validated for."""

    SIGNATURE = "signature"  # keyUsage digitalSignature
    ENCRYPTION = "encryption"  # keyUsage keyEncipherment or keyAgreement


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


@dataclass(frozen=True)
class _Verdict:
    """A GOOD (or NOT_CHECKED) revocation verdict and what it depends on."""

    revocation: RevocationStatus
    crls: CrlIndex | None  # the snapshot it was found in
    good_until: datetime | None


_CacheKey = tuple[KeyPurpose | x509.Certificate, ...]


def _require_digital_signature(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not ku.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature")


def _require_encipherment(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not (ku.key_encipherment or ku.key_agreement):
        raise ValueError("keyUsage lacks keyEncipherment and keyAgreement")


def _forbid_ca(_policy: Policy, _cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is not None and bc.ca:
        raise ValueError("a CA certificate cannot sign documents")


def _end_entity_policy(purpose: KeyPurpose) -> ExtensionPolicy:
    usage = _require_digital_signature if purpose is KeyPurpose.SIGNATURE else _require_encipherment
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, usage)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _forbid_ca)
    )


def utc_time(at: datetime) -> datetime:
    """``at`` in UTC; a naive time is taken as UTC, as signxml does."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _within(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


class TrustStore:
    """CA certificates (trust anchors) and, optionally, the CRLs of a folder.

    Without a folder, revocation is NOT_CHECKED; with one, the folder is read once here
    and then only by ``refresh_crls``, ``reload_crls`` or whoever calls ``use_crls``.
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crl_folder: CrlFolder | None = None,
    ) -> None:
        if not anchors:
            raise SigningError("a trust store needs at least one CA certificate")
        self.anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._store = Store(list(self.anchors))
        self.crl_folder = crl_folder
        self._crls = crl_folder.read() if crl_folder is not None else None
        self._ee_policies = {purpose: _end_entity_policy(purpose) for purpose in KeyPurpose}
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca()
        self._cache: OrderedDict[_CacheKey, _Cached] = OrderedDict()
        self._verdicts: OrderedDict[_CacheKey, _Verdict] = OrderedDict()
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
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        at: datetime,
        purpose: KeyPurpose = KeyPurpose.SIGNATURE,
    ) -> list[x509.Certificate]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policies[purpose])
            .build_client_verifier()
        )
        return verifier.verify(leaf, intermediates).chain

    def _explain(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        at: datetime,
        error: VerificationError,
        purpose: KeyPurpose,
    ) -> SignatureError:
        issuers = [*intermediates, *self.anchors]
        if not _within(leaf, at):
            inside = (
                leaf.not_valid_before_utc
                + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
            )
            try:
                self._build(leaf, intermediates, inside, purpose)
            except VerificationError:
                return SignatureError(Reason.CERTIFICATE_UNTRUSTED, f"no trusted chain: {error}")
            return SignatureError(
                Reason.CERTIFICATE_EXPIRED,
                f"certificate valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
                f"until {leaf.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}",
            )
        for issuer in issuers:
            if issuer.subject == leaf.issuer and not _within(issuer, at):
                return SignatureError(
                    Reason.CERTIFICATE_EXPIRED,
                    f"issuer {issuer.subject.rfc4514_string()} is not valid at {at:%Y-%m-%d}",
                )
        return SignatureError(Reason.CERTIFICATE_UNTRUSTED, f"no trusted chain: {error}")

    def _chain(
        self,
        key: _CacheKey,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        at: datetime,
        purpose: KeyPurpose,
    ) -> tuple[x509.Certificate, ...]:
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None and cached.valid_from <= at <= cached.valid_until:
            return cached.chain
        try:
            chain = tuple(self._build(leaf, intermediates, at, purpose))
        except VerificationError as exc:
            raise self._explain(leaf, intermediates, at, exc, purpose) from exc
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

    def _revocation(
        self, chain: tuple[x509.Certificate, ...], index: CrlIndex | None, at: datetime
    ) -> tuple[RevocationStatus, datetime | None]:
        if index is None:
            return RevocationStatus.NOT_CHECKED, None
        worst = RevocationStatus.GOOD
        good_until: datetime | None = None
        for cert, issuer in itertools.pairwise(chain):
            status, next_update = index.lookup(cert, issuer, at)
            if status is RevocationStatus.REVOKED:
                return status, None
            if status is not RevocationStatus.GOOD and worst is RevocationStatus.GOOD:
                worst = status
            if next_update is not None and (good_until is None or next_update < good_until):
                good_until = next_update
        return worst, good_until

    def _cached_verdict(
        self, key: _CacheKey, crls: CrlIndex | None, at: datetime
    ) -> _Verdict | None:
        with self._lock:
            verdict = self._verdicts.get(key)
        if verdict is None or verdict.crls is not crls:
            return None
        if verdict.good_until is not None and at > verdict.good_until:
            return None
        return verdict

    def _remember(self, key: _CacheKey, verdict: _Verdict) -> None:
        with self._lock:
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > _CACHE_SIZE:
                self._verdicts.popitem(last=False)

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime,
        missing_crl: CrlRule = CrlRule.REJECT,
        stale_crl: CrlRule = CrlRule.REJECT,
        purpose: KeyPurpose = KeyPurpose.SIGNATURE,
    ) -> TrustedChain:
        """Validate ``leaf`` for ``purpose`` up to a trust anchor at time ``at``, by the
        CRL snapshot held.

        Raises ``SignatureError`` with ``certificate-untrusted``, ``certificate-expired``
        or ``certificate-revoked``; ``RevocationUnknown`` (``certificate-untrusted``) where
        the issuer's CRL is missing or out of date and the rule says reject.
        """
        when = utc_time(at)
        key: _CacheKey = (purpose, leaf, *intermediates)
        chain = self._chain(key, leaf, list(intermediates), when, purpose)
        crls = self._crls  # one snapshot for the whole decision, whoever swaps it meanwhile
        verdict = self._cached_verdict(key, crls, when)
        if verdict is not None:
            return TrustedChain(chain=chain, revocation=verdict.revocation)
        status, good_until = self._revocation(chain, crls, when)
        if status in (RevocationStatus.GOOD, RevocationStatus.NOT_CHECKED):
            self._remember(key, _Verdict(status, crls, good_until))
        if status is RevocationStatus.REVOKED:
            raise SignatureError(
                Reason.CERTIFICATE_REVOKED, f"certificate serial {leaf.serial_number:x} is revoked"
            )
        if status is RevocationStatus.NO_CRL and missing_crl is CrlRule.REJECT:
            raise RevocationUnknown("no valid CRL for the issuer")
        if status is RevocationStatus.STALE and stale_crl is CrlRule.REJECT:
            raise RevocationUnknown("the issuer's CRL is out of date")
        return TrustedChain(chain=chain, revocation=status)

    @property
    def crls(self) -> CrlIndex | None:
        """The CRL snapshot revocation is checked against; None: revocation not checked."""
        return self._crls

    def use_crls(self, crls: CrlIndex) -> None:
        """Check revocation against ``crls`` from now on (a snapshot, replaced whole)."""
        self._crls = crls

    def refresh_crls(self, now_monotonic: float | None = None) -> bool:
        """Read the CRL folder again if it changed; True if a new snapshot is in use.

        I/O, for callers outside the pipeline. Given ``now_monotonic``, the folder is
        looked at no more often than its ``refresh_seconds``.
        """
        if self.crl_folder is None:
            return False
        fresh = self.crl_folder.poll(now_monotonic)
        if fresh is None:
            return False
        self.use_crls(fresh)
        return True

    def reload_crls(self) -> None:
        """Read the CRL folder now, changed or not, and use what it holds."""
        if self.crl_folder is not None:
            self.use_crls(self.crl_folder.read())
