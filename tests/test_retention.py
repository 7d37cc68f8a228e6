"""Pruning by age: claims past the dedup window and events past the status retention go,
the rest stays; on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.stores.dedup import ClaimState
from broker.stores.journal import EventKind, StatusEvent
from broker.worker.retention import Retention
from tests.postgres_fixtures import Backend

UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
PORTAL = "osi:hh-portal"


async def test_a_round_deletes_what_is_older_than_the_settings_keep(backend: Backend) -> None:
    stores = backend.stores(dedup_window_days=30.0)
    status, dedup = stores.status(), stores.dedup()
    now = datetime.now(UTC)
    await status.record_many(
        [
            StatusEvent("old", EventKind.RECEIVED, author=PORTAL, at=now - timedelta(days=40)),
            StatusEvent("old", EventKind.ACCEPTED, author=PORTAL, at=now - timedelta(days=39)),
            StatusEvent(UUID, EventKind.RECEIVED, author=PORTAL, at=now - timedelta(days=2)),
        ]
    )
    await dedup.claim(PORTAL, UUID, "ab" * 32)
    retention = Retention(dedup, status, keep_events=timedelta(days=30))

    pruned = await retention.prune(now)

    assert pruned.events == 2
    assert (await status.timeline("old")).events == ()
    assert len((await status.timeline(UUID)).events) == 1
    # The claim is within its window: kept, and a later claim still sees it.
    assert pruned.claims == 0
    assert (await dedup.claim(PORTAL, UUID, "ab" * 32)).state is ClaimState.BUSY


async def test_claims_past_the_window_are_pruned(backend: Backend) -> None:
    stores = backend.stores(dedup_window_days=1e-9)  # every claim is past it at once
    status, dedup = stores.status(), stores.dedup()
    await dedup.claim(PORTAL, UUID, "ab" * 32)
    await dedup.complete(PORTAL, UUID)

    pruned = await Retention(dedup, status, keep_events=timedelta(days=30)).prune()

    assert pruned.claims == 1
