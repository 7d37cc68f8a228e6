"""Certificate revocation lists read from a folder, checked against their issuers.

A CRL counts only if its signature verifies with the public key of the certificate that
issued the certificate in question, so a CRL dropped into the folder by anyone else is
ignored.

Reading and checking are apart: `CrlFolder` does the I/O (it reads the folder, and reads
it again when its listing changes: names, sizes, mtimes) and yields a `CrlIndex`, an
immutable snapshot of the CRLs it found. The trust store checks against a snapshot
only, so verification never touches the file system; who owns the folder decides when
to look at it again (the broker's worker from a task of its own, `broker.worker.reload`).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

__all__ = ["CrlFolder", "CrlIndex", "RevocationStatus"]


class RevocationStatus(StrEnum):
    """What the CRLs say about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    NO_CRL = "no-crl"
    STALE = "stale"
    NOT_CHECKED = "not-checked"


def _load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    try:
        data = path.read_bytes()
    except OSError:
        return []
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return [
                x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + block)
                for block in data.split(b"-----BEGIN X509 CRL-----")[1:]
            ]
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        # An unreadable file must not stop the others from counting.
        return []


class CrlIndex:
    """A snapshot: the CRLs of one folder listing, by issuer name.

    Its CRLs never change; which CRL signatures verified is remembered, checked lazily,
    once per CRL and issuer.
    """

    def __init__(self, crls: list[x509.CertificateRevocationList]) -> None:
        self._by_issuer: dict[bytes, list[x509.CertificateRevocationList]] = {}
        for crl in crls:
            self._by_issuer.setdefault(crl.issuer.public_bytes(), []).append(crl)
        self._checked: dict[tuple[int, bytes], bool] = {}
        self._lock = threading.Lock()

    def _signed_by(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = (id(crl), issuer.fingerprint(hashes.SHA256()))
        with self._lock:
            known = self._checked.get(key)
        if known is None:
            public_key = issuer.public_key()
            try:
                known = crl.is_signature_valid(public_key)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                known = False
            with self._lock:
                self._checked[key] = known
        return known

    def lookup(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> tuple[RevocationStatus, datetime | None]:
        """The status of ``cert`` by the newest valid CRL of ``issuer``, and its nextUpdate.

        A GOOD status holds until that nextUpdate (None: the CRL names none) as long as
        the folder does not change; after it the CRL is STALE.
        """
        candidates = [
            crl
            for crl in self._by_issuer.get(issuer.subject.public_bytes(), [])
            if self._signed_by(crl, issuer)
        ]
        if not candidates:
            return RevocationStatus.NO_CRL, None
        newest = max(candidates, key=lambda crl: crl.last_update_utc)
        next_update = newest.next_update_utc
        if newest.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return RevocationStatus.REVOKED, next_update
        if next_update is not None and next_update < at:
            return RevocationStatus.STALE, next_update
        return RevocationStatus.GOOD, next_update

    def status(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> RevocationStatus:
        """Revocation status of ``cert`` according to the newest valid CRL of ``issuer``."""
        return self.lookup(cert, issuer, at)[0]


class CrlFolder:
    """A folder of CRL files (PEM, possibly several per file, or DER): the I/O side."""

    def __init__(self, path: Path, refresh_seconds: float = 1.0) -> None:
        self.path = path
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._listing: tuple[tuple[str, int, int], ...] | None = None
        self._checked_at = float("-inf")

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return ()
        listing = []
        for entry in entries:
            if entry.is_file():
                stat = entry.stat()
                listing.append((entry.name, stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(listing))

    def _load(self, listing: tuple[tuple[str, int, int], ...]) -> CrlIndex:
        crls = [crl for name, _, _ in listing for crl in _load_crls(self.path / name)]
        self._listing = listing
        return CrlIndex(crls)

    def read(self) -> CrlIndex:
        """Read the folder now: a snapshot of every CRL in it."""
        with self._lock:
            return self._load(self._scan())

    def poll(self, now_monotonic: float | None = None) -> CrlIndex | None:
        """A new snapshot if the folder changed since it was last read, else None.

        Given ``now_monotonic``, the folder is looked at only if ``refresh_seconds``
        passed since the last look; without it, it is looked at now.
        """
        with self._lock:
            if now_monotonic is not None:
                if now_monotonic - self._checked_at < self._refresh_seconds:
                    return None
                self._checked_at = now_monotonic
            listing = self._scan()
            return None if listing == self._listing else self._load(listing)
