"""Deduplication: a nachrichtenUUID is delivered once, and a pending claim is delivered again.

Every test runs against both stores: the SQLite file of one host and the PostgreSQL
database of several. "Another worker" is another `Stores` on the same state, with its
own connections and its own holder, as another broker process has.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from broker.stores.dedup import ClaimState, DedupStore
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.stores.sqlite.files import Holder, _started
from tests.polling import eventually
from tests.postgres_fixtures import Backend

AUTHOR = "osi:hh-portal"
UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
DIGEST = "ab" * 32
WINDOW_DAYS = 1 / 24


@pytest.fixture
def store(backend: Backend) -> DedupStore:
    return backend.stores(dedup_window_days=WINDOW_DAYS).dedup()


def _other(backend: Backend) -> DedupStore:
    """The store as another worker process sees it."""
    return backend.stores(dedup_window_days=WINDOW_DAYS).dedup()


def _accepted(uuid: str = UUID, author: str = AUTHOR) -> StatusEvent:
    return StatusEvent(uuid, EventKind.ACCEPTED, author=author, digest=DIGEST)


async def test_a_first_claim_is_new(store: DedupStore) -> None:
    claim = await store.claim(AUTHOR, UUID, DIGEST)

    assert claim.state is ClaimState.NEW
    assert claim.first_digest == DIGEST


async def test_a_claim_being_delivered_is_busy_for_another_worker(
    store: DedupStore, backend: Backend
) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)

    assert (await _other(backend).claim(AUTHOR, UUID, DIGEST)).state is ClaimState.BUSY


async def test_a_claim_being_delivered_is_busy_for_its_own_worker_too(store: DedupStore) -> None:
    # The same message twice in one worker's prefetch: the second waits for the first.
    await store.claim(AUTHOR, UUID, DIGEST)

    assert (await store.claim(AUTHOR, UUID, DIGEST)).state is ClaimState.BUSY


async def test_a_claim_whose_worker_is_gone_is_delivered_again(
    store: DedupStore, backend: Backend
) -> None:
    first = await store.claim(AUTHOR, UUID, DIGEST)
    await store.close()  # its worker stopped (or died) mid-delivery

    claim = await _other(backend).claim(AUTHOR, UUID, DIGEST)

    assert claim.state is ClaimState.RETRY
    assert claim.first_seen == first.first_seen


async def test_an_abandoned_claim_is_delivered_again(store: DedupStore, backend: Backend) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.abandon(AUTHOR, UUID)  # given up: the message went back to its queue

    assert (await _other(backend).claim(AUTHOR, UUID, DIGEST)).state is ClaimState.RETRY


async def test_a_retried_claim_is_held_by_its_new_worker(
    store: DedupStore, backend: Backend
) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.abandon(AUTHOR, UUID)
    await _other(backend).claim(AUTHOR, UUID, DIGEST)

    assert (await store.claim(AUTHOR, UUID, DIGEST)).state is ClaimState.BUSY


async def test_a_completed_claim_is_a_duplicate(store: DedupStore) -> None:
    first = await store.claim(AUTHOR, UUID, DIGEST)
    await store.complete(AUTHOR, UUID)

    claim = await store.claim(AUTHOR, UUID, DIGEST)

    assert claim.state is ClaimState.DUPLICATE
    assert claim.first_seen == first.first_seen


async def test_other_bytes_under_a_claimed_uuid_are_a_reused_identity(store: DedupStore) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)

    claim = await store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.REUSED
    assert claim.first_digest == DIGEST


async def test_other_bytes_under_a_delivered_uuid_are_a_reused_identity(
    store: DedupStore,
) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.complete(AUTHOR, UUID)

    claim = await store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.REUSED
    assert (await store.claim(AUTHOR, UUID, DIGEST)).state is ClaimState.DUPLICATE


async def test_the_same_uuid_from_another_author_is_new(store: DedupStore) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.complete(AUTHOR, UUID)

    assert (await store.claim("osi:other-portal", UUID, DIGEST)).state is ClaimState.NEW


async def test_a_claim_older_than_the_window_is_new_again(backend: Backend) -> None:
    store = backend.stores(dedup_window_days=0.05 / 86400).dedup()
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.complete(AUTHOR, UUID)
    await asyncio.sleep(0.1)

    claim = await store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.NEW
    assert (await store.claim(AUTHOR, UUID, "cd" * 32)).state is ClaimState.BUSY


async def test_pruning_forgets_claims_older_than_the_window(backend: Backend) -> None:
    store = backend.stores(dedup_window_days=0.05 / 86400).dedup()
    await store.claim(AUTHOR, UUID, DIGEST)
    await store.complete(AUTHOR, UUID)
    await asyncio.sleep(0.1)
    await store.claim(AUTHOR, "fresh", DIGEST)

    assert await store.prune() == 1
    assert await store.prune() == 0


async def test_an_accepted_event_completes_the_claim(store: DedupStore) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)

    await store.record(_accepted())

    assert (await store.claim(AUTHOR, UUID, DIGEST)).state is ClaimState.DUPLICATE


async def test_events_other_than_accepted_complete_nothing(
    store: DedupStore, backend: Backend
) -> None:
    await store.claim(AUTHOR, UUID, DIGEST)

    await store.record_many(
        [
            StatusEvent(UUID, kind, author=AUTHOR)
            for kind in EventKind
            if kind is not EventKind.ACCEPTED
        ]
    )

    assert (await _other(backend).claim(AUTHOR, UUID, DIGEST)).state is ClaimState.BUSY


async def test_a_batch_completes_every_accepted_message_in_it(store: DedupStore) -> None:
    uuids = [f"{UUID[:-3]}{n:03d}" for n in range(5)]
    for uuid in uuids:
        await store.claim(AUTHOR, uuid, DIGEST)

    await store.record_many([_accepted(uuid) for uuid in uuids])

    states = {(await store.claim(AUTHOR, u, DIGEST)).state for u in uuids}
    assert states == {ClaimState.DUPLICATE}


async def test_two_workers_claiming_at_the_same_moment_get_one_claim(backend: Backend) -> None:
    # Many rounds, each a fresh message claimed by both workers in the same loop turn:
    # every round exactly one of them may deliver, the other is told to wait.
    first, second = _other(backend), _other(backend)
    for n in range(40):
        uuid = f"{UUID[:-3]}{n:03d}"
        claims = await asyncio.gather(
            first.claim(AUTHOR, uuid, DIGEST), second.claim(AUTHOR, uuid, DIGEST)
        )
        assert sorted(c.state for c in claims) == [ClaimState.BUSY, ClaimState.NEW], n


async def test_the_claim_stays_pending_until_the_journal_batch_is_written(
    store: DedupStore, backend: Backend
) -> None:
    # What a worker killed before its write leaves behind: the redelivery delivers again.
    batch = JournalBatch([store], delay=3600.0)  # written when flushed, not before
    await store.claim(AUTHOR, UUID, DIGEST)
    other = _other(backend)

    batch.add(_accepted())
    before = (await other.claim(AUTHOR, UUID, DIGEST)).state
    await batch.flush()

    assert before is ClaimState.BUSY
    assert (await other.claim(AUTHOR, UUID, DIGEST)).state is ClaimState.DUPLICATE


async def test_a_holder_whose_process_died_is_gone_before_its_parent_reaps_it() -> None:
    # A worker killed by a signal stays a zombie until its parent (a supervisor, the
    # test harness) collects its exit status; its claims must be free at once.
    # Popen, not asyncio's subprocesses: their watcher would reap the child at once.
    child = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    try:
        name = f"{child.pid}:{_started(child.pid)}:token"
        assert Holder.alive(name)
        os.kill(child.pid, signal.SIGKILL)  # not waited for: a zombie, its pid still taken
        await eventually(
            lambda: Holder.alive(name), until=lambda alive: not alive, what="the holder gone"
        )
        assert await asyncio.to_thread(os.path.exists, f"/proc/{child.pid}")  # unreaped
    finally:
        child.kill()
        child.wait()
