"""The worker acks an ingress message only once the message's journal events are written.

A write that fails is a fault of the store, not of the message: the worker holds the
message (it never goes back to the queue, so its delivery limit is untouched), retries,
and acks it once its events are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from broker.errors import StoreError
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.status import StatusStore
from tests.polling import eventually
from tests.postgres_fixtures import Backend
from tests.worker_support import event_kinds, one_agency, worker_settings

pytestmark = pytest.mark.rabbitmq


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
    settings = worker_settings(amqp_url, tmp_path, backend.settings.database_url)
    stores = backend.stores()
    store = stores.status()
    world = one_agency(settings, dedup=stores.dedup(), journal=FailsOnAccepted(store))

    async def until(kind: EventKind, uuid: str) -> None:
        await eventually(
            lambda: event_kinds(store, uuid),
            until=lambda seen: kind in seen,
            what=f"{kind} for {uuid}",
            timeout=60,
        )

    await world.broker.start()
    await world.portal.start()
    try:
        uuid = await world.portal.submit(world.sample())
        await until(EventKind.ACCEPTED, uuid)
        # The agency starts late, so that its delivered receipt cannot be the write that
        # meets the failure: the failure must reach the ingress message's own write.
        await world.agency.start()
        await until(EventKind.DELIVERED, uuid)
    finally:
        await world.close()

    # Taken once from the ingress queue: held through the failed write, not returned.
    # Its events were written at the retry, and the copy reached the agency once.
    seen = await event_kinds(store, uuid)
    assert seen.count(EventKind.RECEIVED) == 1
    assert seen.count(EventKind.ACCEPTED) == 1
    assert world.handled == [uuid]
    registry = world.registry
    assert registry.get_sample_value("xbroker_faults_total", {"fault": "store"}) == 1
    assert registry.get_sample_value("xbroker_fault_active", {"fault": "store"}) == 0
