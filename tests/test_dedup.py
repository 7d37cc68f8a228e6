"""Deduplication: a nachrichtenUUID is delivered once, and a pending claim is delivered again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.stores.dedup import ClaimState, DedupStore
from broker.stores.journal import EventKind, JournalBatch, StatusEvent

AUTHOR = "osi:hh-portal"
UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
DIGEST = "ab" * 32
WINDOW = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> DedupStore:
    return DedupStore(tmp_path / "dedup.sqlite3", window_seconds=WINDOW)


def _accepted(uuid: str = UUID, author: str = AUTHOR) -> StatusEvent:
    return StatusEvent(uuid, EventKind.ACCEPTED, author=author, digest=DIGEST)


def test_a_first_claim_is_new(store: DedupStore) -> None:
    claim = store.claim(AUTHOR, UUID, DIGEST)

    assert claim.state is ClaimState.NEW
    assert claim.first_digest == DIGEST


def test_a_claim_never_completed_is_delivered_again(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)

    assert store.claim(AUTHOR, UUID, DIGEST).state is ClaimState.RETRY


def test_a_completed_claim_is_a_duplicate(store: DedupStore) -> None:
    first = store.claim(AUTHOR, UUID, DIGEST)
    store.complete(AUTHOR, UUID)

    claim = store.claim(AUTHOR, UUID, DIGEST)

    assert claim.state is ClaimState.DUPLICATE
    assert claim.first_seen == first.first_seen


def test_other_bytes_under_a_claimed_uuid_are_a_reused_identity(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)

    claim = store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.REUSED
    assert claim.first_digest == DIGEST


def test_other_bytes_under_a_delivered_uuid_are_a_reused_identity(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)
    store.complete(AUTHOR, UUID)

    claim = store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.REUSED
    assert store.claim(AUTHOR, UUID, DIGEST).state is ClaimState.DUPLICATE


def test_the_same_uuid_from_another_author_is_new(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)
    store.complete(AUTHOR, UUID)

    assert store.claim("osi:other-portal", UUID, DIGEST).state is ClaimState.NEW


def test_a_claim_older_than_the_window_is_new_again(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "dedup.sqlite3", window_seconds=0.05)
    store.claim(AUTHOR, UUID, DIGEST)
    store.complete(AUTHOR, UUID)
    time.sleep(0.1)

    claim = store.claim(AUTHOR, UUID, "cd" * 32)

    assert claim.state is ClaimState.NEW
    assert store.claim(AUTHOR, UUID, "cd" * 32).state is ClaimState.RETRY


def test_an_accepted_event_completes_the_claim(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)

    store.record(_accepted())

    assert store.claim(AUTHOR, UUID, DIGEST).state is ClaimState.DUPLICATE


def test_events_other_than_accepted_complete_nothing(store: DedupStore) -> None:
    store.claim(AUTHOR, UUID, DIGEST)

    store.record_many(
        [
            StatusEvent(UUID, kind, author=AUTHOR)
            for kind in EventKind
            if kind is not EventKind.ACCEPTED
        ]
    )

    assert store.claim(AUTHOR, UUID, DIGEST).state is ClaimState.RETRY


def test_a_batch_completes_every_accepted_message_in_it(store: DedupStore) -> None:
    uuids = [f"{UUID[:-3]}{n:03d}" for n in range(5)]
    for uuid in uuids:
        store.claim(AUTHOR, uuid, DIGEST)

    store.record_many([_accepted(uuid) for uuid in uuids])

    assert {store.claim(AUTHOR, u, DIGEST).state for u in uuids} == {ClaimState.DUPLICATE}


def test_another_worker_on_the_same_file_sees_a_pending_claim_as_retry(
    store: DedupStore, tmp_path: Path
) -> None:
    store.claim(AUTHOR, UUID, DIGEST)

    other = DedupStore(tmp_path / "dedup.sqlite3", window_seconds=WINDOW)

    assert other.claim(AUTHOR, UUID, DIGEST).state is ClaimState.RETRY


async def test_the_claim_stays_pending_until_the_journal_batch_is_written(
    store: DedupStore, tmp_path: Path
) -> None:
    # What a worker killed before its write leaves behind: the redelivery delivers again.
    batch = JournalBatch([store])
    store.claim(AUTHOR, UUID, DIGEST)
    other = DedupStore(tmp_path / "dedup.sqlite3", window_seconds=WINDOW)

    batch.add(_accepted())
    before = other.claim(AUTHOR, UUID, DIGEST).state
    await batch.flushed()

    assert before is ClaimState.RETRY
    assert other.claim(AUTHOR, UUID, DIGEST).state is ClaimState.DUPLICATE
