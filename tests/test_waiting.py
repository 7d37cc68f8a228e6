"""Mail an agency leaves unfetched beyond warn_after_days is reported, once per copy.

On both stores: on PostgreSQL the watch of any host sees the copies every host queued.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from broker.logs import configure_logging
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.status import StatusStore
from broker.worker.waiting import WaitingWatch
from monitoring.metrics import Metrics
from tests.postgres_fixtures import Backend

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def _queued(store: StatusStore, uuid: str, agency: str, days_ago: float) -> None:
    await store.record(
        StatusEvent(
            uuid, EventKind.QUEUED, author="osi:p", agency=agency, at=NOW - timedelta(days=days_ago)
        )
    )


@pytest.fixture
async def store(backend: Backend) -> StatusStore:
    store = backend.stores().status()
    await _queued(store, "u1", "psw:1", days_ago=5)  # late
    await _queued(store, "u2", "psw:1", days_ago=4)  # late
    await _queued(store, "u2", "psw:2", days_ago=4)  # confirmed below
    await store.record(
        StatusEvent("u2", EventKind.DELIVERED, agency="psw:2", at=NOW - timedelta(days=3))
    )
    await _queued(store, "u3", "psw:2", days_ago=1)  # not late yet
    await _queued(store, "u4", "psw:3", days_ago=6)  # failed below
    await store.record(StatusEvent("u4", EventKind.FAILED, agency="psw:3", at=NOW))
    return store


async def test_only_unconfirmed_copies_older_than_the_period_wait(store: StatusStore) -> None:
    waiting = await store.waiting(NOW - timedelta(days=3))

    assert sorted((w.uuid, w.agency) for w in waiting) == [("u1", "psw:1"), ("u2", "psw:1")]


async def test_the_gauge_counts_waiting_copies_per_agency(store: StatusStore) -> None:
    registry = CollectorRegistry()
    watch = WaitingWatch(store, Metrics(registry), warn_after=timedelta(days=3))

    await watch.check(NOW)

    assert registry.get_sample_value("xbroker_agency_copies_waiting", {"agency": "psw:1"}) == 2
    assert registry.get_sample_value("xbroker_agency_copies_waiting", {"agency": "psw:2"}) is None


async def test_each_late_copy_is_warned_about_once(store: StatusStore) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", stream)
        watch = WaitingWatch(store, Metrics(CollectorRegistry()), warn_after=timedelta(days=3))
        await watch.check(NOW)
        await watch.check(NOW)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)

    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    warned = sorted((e["uuid"], e["agency"]) for e in events if e["event"] == "message.waiting")
    assert warned == [("u1", "psw:1"), ("u2", "psw:1")]
