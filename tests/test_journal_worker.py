"""The worker acks an ingress message only once the message's journal events are written.

A write that fails is a fault of the store, not of the message: the worker holds the
message (it never goes back to the queue, so its delivery limit is untouched), retries,
and acks it once its events are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from broker.app import load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.errors import StoreError
from broker.sdk.agency import Delivery
from broker.sdk.portal import Portal
from broker.settings import load_settings
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.status import StatusStore
from broker.worker.service import BrokerService
from monitoring.metrics import Metrics
from signing import parse_untrusted
from tests.polling import eventually
from tests.postgres_fixtures import Backend
from tests.world import agency_client
from xta_schemas.samples import with_fresh_header

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "submissions" / "anmeldung-hamburg.xml"
AGENCY = "psw:02000000"


class FailsOnAccepted:
    """The status store, except that the first write holding an accepted event fails."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self.failed = False

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        if not self.failed and any(e.kind is EventKind.ACCEPTED for e in events):
            self.failed = True
            raise StoreError("disk I/O error")
        await self.store.record_many(events)


async def test_a_message_whose_events_cannot_be_written_is_held_and_acked_once_written(
    amqp_url: str, tmp_path: Path, backend: Backend
) -> None:
    settings = load_settings(
        EXAMPLES / "xbroker.toml",
        amqp_url=amqp_url,
        state_dir=tmp_path,
        metrics_port=0,
        database_url=backend.settings.database_url,
    )
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    stores = backend.stores()
    store = stores.status()
    registry = CollectorRegistry()
    broker = BrokerService(
        settings,
        catalog=parts.catalog,
        directory=parts.directory,
        verifier=parts.verifier(),
        signer=party_signer(settings, settings.broker_kennung),
        metrics=Metrics(registry),
        dedup=stores.dedup(),
        journal=FailsOnAccepted(store),
    )
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.uuid)

    agency = agency_client(amqp_url, settings, parts, AGENCY, handle, tmp_path / "seen.sqlite3")
    portal = Portal(
        amqp_url,
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
    )
    root = parse_untrusted(SAMPLE.read_bytes())
    standard, _ = parts.catalog.identify(root)

    async def kinds(uuid: str) -> list[EventKind]:
        return [e.kind for e in (await store.timeline(uuid)).events]

    async def until(kind: EventKind, uuid: str) -> None:
        await eventually(
            lambda: kinds(uuid),
            until=lambda seen: kind in seen,
            what=f"{kind} for {uuid}",
            timeout=60,
        )

    await broker.start()
    await portal.start()
    try:
        uuid = await portal.submit(with_fresh_header(root, standard))
        await until(EventKind.ACCEPTED, uuid)
        # The agency starts late, so that its delivered receipt cannot be the write that
        # meets the failure: the failure must reach the ingress message's own write.
        await agency.start()
        await until(EventKind.DELIVERED, uuid)
    finally:
        await portal.close()
        await agency.close()
        await broker.stop()

    # Taken once from the ingress queue: held through the failed write, not returned.
    # Its events were written at the retry, and the copy reached the agency once.
    seen = await kinds(uuid)
    assert seen.count(EventKind.RECEIVED) == 1
    assert seen.count(EventKind.ACCEPTED) == 1
    assert handled == [uuid]
    assert registry.get_sample_value("xbroker_faults_total", {"fault": "store"}) == 1
    assert registry.get_sample_value("xbroker_fault_active", {"fault": "store"}) == 0
