"""The journal batch: the events of one loop turn are written together, before the ack."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from broker.errors import StoreError, TransientError
from broker.stores.dedup import ClaimState, DedupStore
from broker.stores.journal import EventKind, JournalBatch, Journals, StatusEvent
from tests.polling import eventually
from tests.postgres_fixtures import Backend


class Batches:
    """A journal that keeps each batch it is given; fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failing = False

    def record(self, event: StatusEvent) -> None:
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        if self.failing:
            raise OSError("disk full")
        self.batches.append([e.uuid for e in events])

    @property
    def written(self) -> list[str]:
        return [uuid for batch in self.batches for uuid in batch]


class OneByOne:
    """A journal with ``record`` only."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def record(self, event: StatusEvent) -> None:
        self.written.append(event.uuid)


def _event(uuid: str, kind: EventKind = EventKind.RECEIVED) -> StatusEvent:
    return StatusEvent(uuid, kind, author="osi:hh-portal")


async def test_events_added_in_one_loop_turn_are_written_as_one_batch() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    for uuid in ("a", "b", "c"):
        batch.add(_event(uuid))
    await batch.flushed()

    assert journal.batches == [["a", "b", "c"]]


async def test_an_added_event_is_written_after_this_loop_turn_without_being_asked() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    batch.add(_event("a"))
    assert journal.written == []

    await eventually(lambda: journal.written == ["a"], what="the event written")


async def test_events_of_concurrent_messages_share_a_batch() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    async def message(uuid: str) -> None:
        batch.add(_event(uuid, EventKind.RECEIVED))
        await asyncio.sleep(0)  # a confirm arrives
        batch.add(_event(uuid, EventKind.ACCEPTED))
        await batch.flushed()

    await asyncio.gather(*(message(uuid) for uuid in "abcd"))

    assert len(journal.batches) <= 2  # not one per event, nor one per message
    assert sorted(journal.written) == sorted("abcd" * 2)


async def test_flushed_returns_at_once_when_everything_is_written() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    await batch.flushed()

    assert journal.batches == []
    assert batch.pending == 0


async def test_a_failed_write_reaches_whoever_waits_as_a_transient_error() -> None:
    journal = Batches()
    batch = JournalBatch([journal])
    journal.failing = True

    batch.add(_event("a"))

    with pytest.raises(TransientError):
        await batch.flushed()


async def test_a_failed_journal_gets_its_events_again_and_the_others_are_not_written_twice() -> (
    None
):
    healthy, failing = Batches(), Batches()
    batch = JournalBatch([Journals([healthy, failing])])
    failing.failing = True
    batch.add(_event("a"))
    with pytest.raises(TransientError):
        await batch.flushed()

    failing.failing = False
    batch.add(_event("b"))
    await batch.flushed()

    assert healthy.written == ["a", "b"]
    assert failing.written == ["a", "b"]
    assert batch.pending == 0


async def test_record_writes_at_once_after_what_was_pending() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    batch.add(_event("a"))
    await batch.record(_event("b"))

    assert journal.batches == [["a", "b"]]


class Slow:
    """An asynchronous journal (as a database is) that takes a while for each batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.writing = 0
        self.overlapped = False

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        self.writing += 1
        self.overlapped = self.overlapped or self.writing > 1
        await asyncio.sleep(0.01)
        self.batches.append([e.uuid for e in events])
        self.writing -= 1


async def test_batches_to_an_asynchronous_journal_are_written_one_after_the_other() -> None:
    journal = Slow()
    batch = JournalBatch([journal])

    batch.add(_event("a"))
    await asyncio.sleep(0)  # "a" is being written
    batch.add(_event("b"))
    await batch.record(_event("c"))
    await batch.flushed()

    assert not journal.overlapped
    assert [uuid for b in journal.batches for uuid in b] == ["a", "b", "c"]


class Held:
    """An asynchronous journal whose writes wait until ``go`` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        self.started.set()
        await self.go.wait()
        self.batches.append([e.uuid for e in events])


async def test_an_event_added_during_a_write_reaches_every_journal_in_the_same_flush() -> None:
    # The status store first, the dedup store (which completes claims) after it: an event
    # added while the first writes must not reach the second before the first.
    first, second = Held(), Batches()
    batch = JournalBatch([first, second])

    batch.add(_event("a"))
    await asyncio.wait_for(first.started.wait(), 10)  # "a" is being written
    batch.add(_event("b"))
    waiting = asyncio.create_task(batch.flushed())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing is written yet
    first.go.set()
    await waiting

    assert first.batches == second.batches == [["a"], ["b"]]


async def test_a_journal_without_record_many_gets_the_events_one_by_one() -> None:
    journal = OneByOne()
    batch = JournalBatch([journal])

    batch.add(_event("a"))
    batch.add(_event("b"))
    await batch.flushed()

    assert journal.written == ["a", "b"]


async def test_flush_writes_what_is_pending_without_a_loop_turn() -> None:
    journal = Batches()
    batch = JournalBatch([journal])

    batch.add(_event("a"))
    await batch.flush()

    assert journal.written == ["a"]


async def test_a_batch_reaches_the_status_store_in_order(backend: Backend) -> None:
    store = backend.stores().status()
    batch = JournalBatch([store])

    for kind in (EventKind.RECEIVED, EventKind.QUEUED, EventKind.ACCEPTED):
        batch.add(_event("u1", kind))
    await batch.flushed()

    assert [e.kind for e in (await store.timeline("u1")).events] == [
        EventKind.RECEIVED,
        EventKind.QUEUED,
        EventKind.ACCEPTED,
    ]


async def test_with_a_delay_events_added_within_it_share_one_batch() -> None:
    journal = Batches()
    # Long enough that no stall of a busy machine between the two adds outlasts it.
    batch = JournalBatch([journal], delay=0.5)

    batch.add(_event("a"))
    await asyncio.sleep(0)  # without the delay, "a" would be written now
    batch.add(_event("b"))
    assert journal.written == []
    await batch.flushed()

    assert journal.batches == [["a", "b"]]


async def test_a_full_batch_is_written_at_the_next_turn_without_waiting_for_the_delay() -> None:
    journal = Batches()
    batch = JournalBatch([journal], delay=60.0, max_events=2)

    batch.add(_event("a"))
    batch.add(_event("b"))

    await eventually(lambda: journal.batches == [["a", "b"]], what="the full batch", timeout=10)


class FailsOnce:
    """A status journal whose first write fails (a full disk, a lost server)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.failed = False

    def record(self, event: StatusEvent) -> None:
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        if not self.failed:
            self.failed = True
            raise OSError("disk full")
        self.written.extend(e.uuid for e in events)


class FailsOnceInThread(FailsOnce):
    """The same, written from the batch's thread (as a status store whose lock is held)."""

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        return False

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        self.record_many(events)


def _completions(dedup: DedupStore) -> list[str]:
    """The uuids of every completion ``dedup`` writes as a journal, once per write."""
    completed: list[str] = []

    def counted(name: str) -> None:
        write = getattr(dedup, name, None)
        if write is None:
            return

        def wrapper(events: Sequence[StatusEvent]) -> object:
            result = write(events)
            if result is not False:  # write_now: False is nothing written
                completed.extend(e.uuid for e in events)
            return result

        async def awaited(events: Sequence[StatusEvent]) -> None:
            await write(events)
            completed.extend(e.uuid for e in events)

        setattr(dedup, name, awaited if asyncio.iscoroutinefunction(write) else wrapper)

    for name in ("record_many", "write_now", "write_many"):
        counted(name)
    return completed


@pytest.mark.parametrize("status", [FailsOnce, FailsOnceInThread], ids=["loop", "thread"])
async def test_a_claim_is_not_completed_in_the_flush_whose_status_write_failed(
    backend: Backend, status: type[FailsOnce]
) -> None:
    # A worker killed after such a flush would leave a completed claim without its events:
    # the redelivery answered as a duplicate, the Laufzettel never showing it accepted.
    dedup = backend.stores().dedup()
    completed = _completions(dedup)
    laufzettel = status()
    batch = JournalBatch([laufzettel, dedup], delay=3600.0)  # written when flushed
    await dedup.claim("osi:hh-portal", "u1", "ab" * 32)
    other = backend.stores().dedup()

    batch.add(_event("u1", EventKind.ACCEPTED))
    with pytest.raises(StoreError):
        await batch.flush()

    assert (await other.claim("osi:hh-portal", "u1", "ab" * 32)).state is ClaimState.BUSY
    assert completed == []
    assert batch.pending == 1

    await batch.flush()

    assert (await other.claim("osi:hh-portal", "u1", "ab" * 32)).state is ClaimState.DUPLICATE
    assert laufzettel.written == ["u1"]
    assert completed == ["u1"]
    assert batch.pending == 0
