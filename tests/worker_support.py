"""Test helpers for a worker over the stores of the test's choosing (one that fails, a
database shared by several hosts), the portal, and one agency that records the uuids it
handles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from prometheus_client import CollectorRegistry

from broker.app import Parts, load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.sdk.agency import AgencyClient, Delivery
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from broker.stores.dedup import DedupStore
from broker.stores.journal import EventKind, Journal
from broker.stores.status import StatusStore
from broker.worker.service import BrokerService
from monitoring.metrics import Metrics
from signing import parse_untrusted
from tests.world import agency_client
from xta_schemas.samples import with_fresh_header

__all__ = ["AGENCY", "OneAgency", "event_kinds", "one_agency", "worker", "worker_settings"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "submissions" / "anmeldung-hamburg.xml"
AGENCY = "psw:02000000"  # the one agency SAMPLE goes to


def worker_settings(
    amqp_url: str, state_dir: Path, database_url: str | None, **overrides: object
) -> Settings:
    """The example settings with this database and the development PKI made."""
    settings = load_settings(
        EXAMPLES / "xbroker.toml",
        amqp_url=amqp_url,
        state_dir=state_dir,
        metrics_port=0,
        database_url=database_url,
        **overrides,
    )
    ensure_dev_pki(settings)
    return settings


@dataclass
class OneAgency:
    """The worker, the portal and the agency of SAMPLE; nothing started."""

    settings: Settings
    parts: Parts
    registry: CollectorRegistry
    broker: BrokerService
    portal: Portal
    agency: AgencyClient
    handled: list[str] = field(default_factory=list)  # uuids, in the order handled

    def sample(self) -> etree._Element:
        """SAMPLE with a new nachrichtenUUID and creation time."""
        root = parse_untrusted(SAMPLE.read_bytes())
        standard, _ = self.parts.catalog.identify(root)
        return with_fresh_header(root, standard)

    async def close(self) -> None:
        await self.portal.close()
        await self.agency.close()
        await self.broker.stop()


def worker(
    parts: Parts, registry: CollectorRegistry, *, dedup: DedupStore, journal: Journal
) -> BrokerService:
    """The broker worker writing to ``dedup`` and ``journal``, its metrics on ``registry``."""
    settings = parts.settings
    return BrokerService(
        settings,
        catalog=parts.catalog,
        directory=parts.directory,
        verifier=parts.verifier(),
        signer=party_signer(settings, settings.broker_kennung),
        metrics=Metrics(registry),
        dedup=dedup,
        journal=journal,
    )


def one_agency(settings: Settings, *, dedup: DedupStore, journal: Journal) -> OneAgency:
    """The worker writing to ``dedup`` and ``journal``, the portal and the agency."""
    parts = load_parts(settings)
    registry = CollectorRegistry()
    broker = worker(parts, registry, dedup=dedup, journal=journal)
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.uuid)

    amqp_url = settings.amqp_url
    agency = agency_client(
        amqp_url, settings, parts, AGENCY, handle, settings.state_dir / "seen.sqlite3"
    )
    portal = Portal(
        amqp_url,
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
    )
    return OneAgency(settings, parts, registry, broker, portal, agency, handled)


async def event_kinds(store: StatusStore, uuid: str) -> list[EventKind]:
    """The kinds of ``uuid``'s events, in the order written."""
    return [e.kind for e in (await store.timeline(uuid)).events]
