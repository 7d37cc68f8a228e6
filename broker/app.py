"""Builds the parts of a running broker from the settings, once, at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from broker.errors import ConfigurationError, Reason
from broker.settings import Settings
from broker.stores.audit import AuditTrail
from broker.stores.backend import Stores
from broker.stores.journal import JournalBatch, Journals
from broker.stores.status import StatusStore
from broker.worker.sealer import Sealer, check_keys
from broker.worker.service import BrokerService
from monitoring.metrics import Metrics
from routing import CertificateFiles, Directory, DirectoryError
from sealing import KeyRing, SealLimits
from signing import Signer, SigningError, TrustStore, Verifier
from signing.keyfiles import encryption_paths, party_paths
from xta_schemas import Catalog, StandardsError

__all__ = [
    "Parts",
    "Records",
    "build_broker",
    "load_parts",
    "open_records",
    "party_keys",
    "party_signer",
]

log = logging.getLogger("xbroker")


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything loaded from disk that the broker and the example clients share."""

    settings: Settings
    catalog: Catalog
    directory: Directory
    trust: TrustStore
    broker_keys: KeyRing = field(default_factory=KeyRing)  # opens what is sealed for it
    # The certificate files the directory was loaded from: a reload reads only changed ones.
    certificates: CertificateFiles = field(default_factory=CertificateFiles)

    def verifier(self) -> Verifier:
        return Verifier(self.trust)

    def sealer(self) -> Sealer:
        return Sealer(self.trust, self.broker_keys, SealLimits(self.settings.max_message_bytes))


def load_parts(settings: Settings) -> Parts:
    try:
        catalog = Catalog.load(settings.standard_dirs)
    except StandardsError as exc:
        raise ConfigurationError(f"standards: {exc}") from exc
    certificates = CertificateFiles()
    try:
        directory = Directory.load(
            settings.directory, settings.party_certificate_dir, certificates=certificates
        )
    except DirectoryError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not settings.trust_dir.is_dir():
        raise ConfigurationError(
            f"no trust store at {settings.trust_dir}: run `xbroker pki init` for a development "
            "PKI, or set pki_dir to a folder holding trust/ (CA certificates) and crl/"
        )
    try:
        # The CRL folder is always passed: a missing CRL is then handled by the policy
        # (refused by default), never silently ignored.
        trust = TrustStore.from_dirs(settings.trust_dir, settings.crl_dir)
    except SigningError as exc:
        raise ConfigurationError(f"trust store: {exc}") from exc
    # A sealed agency without a valid key is found now, not at its first message.
    check_keys(directory, trust, datetime.now(UTC))
    broker_keys = party_keys(settings, settings.broker_kennung)
    return Parts(settings, catalog, directory, trust, broker_keys, certificates)


def party_signer(settings: Settings, kennung: str) -> Signer:
    """The signer of one party of the development PKI (portal, broker, agencies)."""
    cert, key = party_paths(settings.pki, kennung)
    if not cert.is_file() or not key.is_file():
        raise ConfigurationError(
            f"no key and certificate for {kennung} under {settings.pki}: run `xbroker pki init`"
        )
    try:
        return Signer.from_files(key, cert)
    except SigningError as exc:
        raise ConfigurationError(f"{kennung}: {exc}") from exc


def party_keys(settings: Settings, kennung: str) -> KeyRing:
    """Every encryption key one party holds under the PKI folder (``<file-id>.enc*.key``):
    what opens the copies sealed for it. Empty when it holds none."""
    return KeyRing.from_files(key for _, key in encryption_paths(settings.pki, kennung))


@dataclass(frozen=True, slots=True)
class Records:
    """Where the broker writes what happened: the Laufzettel and the audit trail, and
    the stores of the process (`broker.stores.backend`)."""

    stores: Stores
    audit: AuditTrail

    @property
    def status(self) -> StatusStore:
        return self.stores.status()

    def journal(self) -> Journals:
        return Journals([self.status, self.audit])

    def recorder(self) -> JournalBatch:
        """The journal for the HTTP API and the XTA endpoint: each event written when its
        ``record`` returns, off the loop, together with those recorded meanwhile."""
        return JournalBatch([self.journal()])

    async def close(self) -> None:
        self.audit.close()
        await self.stores.close()


def open_records(settings: Settings) -> Records:
    """The status store and the audit trail, sealed with the broker's key."""
    return Records(
        stores=Stores(settings),
        audit=AuditTrail(
            settings.audit_path,
            issuer=settings.broker_kennung,
            sign=party_signer(settings, settings.broker_kennung).sign,
            seal_every=settings.audit_seal_every,
            seal_seconds=settings.audit_seal_seconds,
        ),
    )


def build_broker(
    parts: Parts,
    registry: CollectorRegistry | None = None,
    dedup_path: Path | None = None,
    records: Records | None = None,
) -> BrokerService:
    """The broker worker; it journals to ``records`` (default: those in the state dir,
    opened for it alone, and closed when it stops)."""
    settings = parts.settings
    owned = records is None
    records = records or open_records(settings)
    metrics = Metrics(registry or CollectorRegistry(), reasons=Reason)
    dedup = records.stores.dedup(dedup_path)
    service = BrokerService(
        settings,
        catalog=parts.catalog,
        directory=parts.directory,
        verifier=parts.verifier(),
        sealer=parts.sealer(),
        signer=party_signer(settings, settings.broker_kennung),
        metrics=metrics,
        dedup=dedup,
        journal=records.journal(),
        closing=records.close if owned else None,
    )
    metrics.follow_readiness(service.readiness)
    return service
