"""Journal batches write at once when no lock is in the way, and otherwise wait for other
processes' locks in their own thread, never on the loop."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.errors import StoreError
from broker.stores.audit import AuditTrail
from broker.stores.dedup import ClaimState
from broker.stores.journal import EventKind, JournalBatch, StatusEvent
from broker.stores.sqlite import SqliteDedupStore, SqliteStatusStore

AUTHOR = "osi:hh-portal"
DEADLINE = 30.0  # for a write once nothing holds it up: generous on a busy machine


@contextmanager
def other_worker_writing(path: Path) -> Iterator[None]:
    """Hold the SQLite file's write lock, as another worker's transaction does."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


@contextmanager
def other_worker_appending(trail: Path) -> Iterator[None]:
    """Hold the audit trail's lock, as another worker's append does."""
    fd = os.open(f"{trail}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def loop_turns(count: int) -> None:
    """``count`` turns of the loop, each a little apart: what a stalled loop cannot do."""
    for _ in range(count):
        await asyncio.sleep(0.005)


async def test_a_status_write_waiting_for_another_workers_lock_leaves_the_loop_running(
    tmp_path: Path,
) -> None:
    store = SqliteStatusStore(tmp_path / "status.sqlite3")
    batch = JournalBatch([store])
    try:
        with other_worker_writing(store.path):
            batch.add(StatusEvent("u1", EventKind.RECEIVED, author=AUTHOR))
            written = asyncio.create_task(batch.flushed())
            await loop_turns(20)
            # On the loop, the write would have held it until SQLite gave up (busy_timeout).
            assert not written.done()
        await asyncio.wait_for(written, DEADLINE)
        assert [e.kind for e in (await store.timeline("u1")).events] == [EventKind.RECEIVED]
    finally:
        await store.close()


async def test_a_claim_completion_waits_for_the_lock_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "dedup.sqlite3"
    dedup = SqliteDedupStore(path, window_seconds=3600)
    batch = JournalBatch([dedup])
    try:
        await dedup.claim(AUTHOR, "u1", "d1")
        with other_worker_writing(path):
            batch.add(StatusEvent("u1", EventKind.ACCEPTED, author=AUTHOR))
            written = asyncio.create_task(batch.flushed())
            await loop_turns(20)
            assert not written.done()
        await asyncio.wait_for(written, DEADLINE)
        assert (await dedup.claim(AUTHOR, "u1", "d1")).state is ClaimState.DUPLICATE
    finally:
        await dedup.close()


async def test_an_audit_append_waiting_for_another_workers_lock_leaves_the_loop_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer="broker")
    batch = JournalBatch([trail])
    try:
        with other_worker_appending(path):
            batch.add(StatusEvent("u1", EventKind.RECEIVED, author=AUTHOR))
            written = asyncio.create_task(batch.flushed())
            await loop_turns(20)
            assert not written.done()
        await asyncio.wait_for(written, DEADLINE)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["event"]["uuid"] for line in lines if line["type"] == "event"] == ["u1"]
    finally:
        trail.close()


class Failing:
    """A threaded journal that fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = True
        self.written: list[str] = []

    def record(self, event: StatusEvent) -> None:
        self.write_many((event,))

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        return False  # always by the thread

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        if self.failing:
            raise StoreError("status.sqlite3: database or disk is full")
        self.written.extend(e.uuid for e in events)


async def test_a_threaded_journal_that_fails_keeps_its_events_and_the_others_write_once(
    tmp_path: Path,
) -> None:
    failing, store = Failing(), SqliteStatusStore(tmp_path / "status.sqlite3")
    batch = JournalBatch([failing, store])
    try:
        batch.add(StatusEvent("u1", EventKind.RECEIVED, author=AUTHOR))
        with pytest.raises(StoreError):
            await asyncio.wait_for(batch.flushed(), DEADLINE)
        assert batch.pending == 1

        failing.failing = False
        batch.add(StatusEvent("u2", EventKind.RECEIVED, author=AUTHOR))
        await asyncio.wait_for(batch.flushed(), DEADLINE)

        assert failing.written == ["u1", "u2"]
        assert len((await store.timeline("u1")).events) == 1  # not written twice
        assert batch.pending == 0
    finally:
        await store.close()


class Gate:
    """A threaded journal whose first write waits until ``open`` is set."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def record(self, event: StatusEvent) -> None:
        self.write_many((event,))

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        return False  # always by the thread

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        self.entered.set()
        assert self.open.wait(DEADLINE)
        self.batches.append([e.uuid for e in events])


async def test_records_made_while_a_write_is_under_way_are_written_together() -> None:
    journal = Gate()
    batch = JournalBatch([journal])

    first = asyncio.create_task(batch.record(StatusEvent("a", EventKind.RECEIVED)))
    assert await asyncio.to_thread(journal.entered.wait, DEADLINE)
    rest = [
        asyncio.create_task(batch.record(StatusEvent(uuid, EventKind.RECEIVED)))
        for uuid in ("b", "c", "d")
    ]
    await loop_turns(5)
    assert not any(task.done() for task in (first, *rest))
    journal.open.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), DEADLINE)

    assert journal.batches == [["a"], ["b", "c", "d"]]


class Where:
    """A threaded journal that notes the thread of each write; ``free``: no lock in the way."""

    def __init__(self, *, free: bool) -> None:
        self.free = free
        self.threads: list[int] = []

    def record(self, event: StatusEvent) -> None:
        self.write_many((event,))

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        if self.free:
            self.threads.append(threading.get_ident())
        return self.free

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        self.threads.append(threading.get_ident())


async def test_a_journal_whose_lock_is_free_is_written_on_the_loop_the_others_in_the_thread() -> (
    None
):
    free, held = Where(free=True), Where(free=False)
    batch = JournalBatch([free, held])

    batch.add(StatusEvent("u1", EventKind.RECEIVED))
    await asyncio.wait_for(batch.flushed(), DEADLINE)

    loop_thread = threading.get_ident()
    assert free.threads == [loop_thread]
    assert len(held.threads) == 1 and held.threads[0] != loop_thread


async def test_the_audit_trail_leaves_a_batch_that_brings_a_seal_due_to_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer="broker", sign=lambda _doc: b"<seal/>", seal_every=2)
    try:
        assert trail.write_now([StatusEvent("u1", EventKind.RECEIVED)])
        # The second event brings the seal due: a signature and an fsync, not on the loop.
        assert not trail.write_now([StatusEvent("u2", EventKind.RECEIVED)])
        trail.write_many([StatusEvent("u2", EventKind.RECEIVED)])
        kinds = [json.loads(line)["type"] for line in path.read_text().splitlines()]
        assert kinds == ["event", "event", "seal"]
    finally:
        trail.close()


async def test_the_status_store_writes_at_once_when_no_other_worker_holds_the_lock(
    tmp_path: Path,
) -> None:
    store = SqliteStatusStore(tmp_path / "status.sqlite3")
    try:
        assert store.write_now([StatusEvent("u1", EventKind.RECEIVED)])
        with other_worker_writing(store.path):
            assert not store.write_now([StatusEvent("u2", EventKind.RECEIVED)])
        assert [e.uuid for e in (await store.timeline("u1")).events] == ["u1"]
        assert not (await store.timeline("u2")).events  # nothing half-written
    finally:
        await store.close()


async def test_a_claim_waiting_for_another_workers_lock_leaves_the_loop_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dedup.sqlite3"
    dedup = SqliteDedupStore(path, window_seconds=3600)
    try:
        await dedup.claim(AUTHOR, "u0", "d0")  # the file exists, as in a running worker
        with other_worker_writing(path):
            claimed = asyncio.create_task(dedup.claim(AUTHOR, "u1", "d1"))
            await loop_turns(20)
            assert not claimed.done()
        assert (await asyncio.wait_for(claimed, DEADLINE)).state is ClaimState.NEW
        assert (await dedup.claim(AUTHOR, "u1", "d1")).state is ClaimState.BUSY  # held by us
    finally:
        await dedup.close()


async def test_a_journal_after_one_that_waits_is_written_after_it_in_the_thread() -> None:
    held, free = Where(free=False), Where(free=True)  # as status store, then dedup store
    order: list[str] = []
    held.write_many = lambda events: order.append("held")  # type: ignore[method-assign]
    free.write_many = lambda events: order.append("free")  # type: ignore[method-assign]
    batch = JournalBatch([held, free])

    batch.add(StatusEvent("u1", EventKind.ACCEPTED))
    await asyncio.wait_for(batch.flushed(), DEADLINE)

    # The dedup store completes a claim only once the events before it are written.
    assert order == ["held", "free"]
    assert free.threads == []  # not tried on the loop ahead of the one that waits


class GateFailing(Gate):
    """A threaded journal whose first write waits until ``open`` is set, then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        if not self.failed:
            self.failed = True
            self.entered.set()
            assert self.open.wait(DEADLINE)
            raise StoreError("status.sqlite3: database or disk is full")
        self.batches.append([e.uuid for e in events])


async def test_a_flush_after_a_cancelled_one_waits_for_its_write_in_the_thread() -> None:
    journal = GateFailing()
    batch = JournalBatch([journal])
    first = asyncio.create_task(batch.record(StatusEvent("a", EventKind.RECEIVED)))
    assert await asyncio.to_thread(journal.entered.wait, DEADLINE)
    first.cancel()  # the caller went away; the thread still writes "a"
    with pytest.raises(asyncio.CancelledError):
        await first

    second = asyncio.create_task(batch.record(StatusEvent("b", EventKind.RECEIVED)))
    await loop_turns(5)
    assert not second.done()  # not taking "b" from under the write of "a"
    journal.open.set()
    await asyncio.wait_for(second, DEADLINE)

    assert journal.batches == [["a", "b"]]  # "a" failed, came back, written with "b"
    assert batch.pending == 0
