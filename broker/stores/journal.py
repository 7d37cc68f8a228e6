"""Where the service reports each state change of a message (metadata only).

The status store (the Laufzettel) and the audit trail subscribe through this
protocol; the service never knows which are attached. An event carries ids, codes,
agencies, times and the SHA-256 of the bytes received: never payload.

Writing in batches
------------------
One SQLite transaction and one locked append per event cost more than the checks of a
message (docs/performance.md, P2). `JournalBatch` collects events and writes them
together: one transaction in the status store and one locked append to the audit trail
per batch. A batch is written ``delay`` seconds after its first event (0: at the next
turn of the event loop, ``call_soon``), or at the next turn once it holds ``max_events``.

The worker uses a delay of a few milliseconds. What waits for the write is only the ack
of the ingress message: the copies and the receipt are already published, so the delay
adds nothing to the time a message takes to reach its agency or its author; it holds a
prefetch slot a little longer. A turn of the loop alone holds the events of one or two
messages at a few hundred messages per second, a few milliseconds hold several.

Durability rule: **the events of a message are written before its ingress message is
acked.** The worker adds them with `JournalBatch.add` and awaits
`JournalBatch.flushed` before the ack. The audit trail promises every state change of
every message (docs/audit.md); if the ack came first, a crash between the ack and the
write would leave a delivered message that nobody recorded and that RabbitMQ would
never hand out again. With the ack after the write, a crash before it returns the
message to the queue, and its next delivery records it. "Written" means handed to the
operating system: it survives the death of the process, as each single write did before
(SQLite WAL with ``synchronous=NORMAL``, unsynced audit lines); seals are still fsynced.

A journal that fails keeps its unwritten events and gets them again at the next write;
journals that succeeded are not written twice. The journals after a failed one are not
written in that flush: they keep their events and write them after it has written its
own, so a later journal never holds an event an earlier one lacks (the dedup store, last,
never completes a claim whose events are unwritten). Whoever awaited that write gets a
`StoreError` (the message is held, not acked without its record, and the write is
tried again when the worker retries it: `broker.worker.faults`).

`JournalBatch.record` stays what `Journal.record` always meant: written when it returns
(it writes whatever is pending along with it), for callers that ack right after.

Journals may write synchronously (the audit trail appends to a file) or asynchronously
(the stores, whose PostgreSQL implementation talks to a server); a batch awaits what
needs awaiting. What the service's handlers hold is a `Recorder`: ``await record(event)``.
Batches are written one after the other, in the order their events were added.

Off the event loop
------------------
A write to a file another process may hold locked blocks whoever writes: the SQLite
stores wait for the host's other workers' write lock (``BEGIN IMMEDIATE``; SQLite's busy
handler sleeps 1, 2, 5, 10 ms ... between tries, up to 13 ms measured), the audit trail
for its ``flock``. On the loop that wait held up every message in flight, the heartbeats
and the confirms (docs/performance.md, P11). A `ThreadJournal` (the SQLite stores on
connections of their own, the audit trail) is first asked to write on the loop without
waiting (``write_now``: the lock is tried, not waited for); the journals whose lock was
taken are handed to the batch's own thread, all of them in one hand-over, and wait there
while the loop goes on. Writing every batch from the thread was measured too, and lost:
each wake-up of the thread and each return of the GIL to it waits for a CPU, which on
busy cores delayed the acks by far more than the lock waits it saved. The thread is one
and batches are written one at a time, each journal in its turn (the dedup store, which
completes claims, after the others); asynchronous journals (PostgreSQL) are awaited on
the loop as before.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from broker.errors import StoreError

__all__ = [
    "BatchJournal",
    "EventKind",
    "Journal",
    "JournalBatch",
    "Journals",
    "Recorder",
    "StatusEvent",
    "ThreadJournal",
]

log = logging.getLogger("xbroker.journal")


class EventKind(StrEnum):
    RECEIVED = "received"  # taken by the HTTP API or XTA endpoint, else from the ingress queue
    ACCEPTED = "accepted"  # every check passed; copies published
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    QUEUED = "queued"  # a copy is in an agency's queue (one event per recipient)
    DELIVERED = "delivered"  # the agency confirmed receipt
    FAILED = "failed"  # a copy expired or could never be delivered


@dataclass(frozen=True, slots=True)
class StatusEvent:
    uuid: str
    kind: EventKind
    author: str | None = None
    agency: str | None = None  # for queued / delivered / failed
    nachrichtentyp: str | None = None
    standard: str | None = None
    digest: str | None = None
    reason: str | None = None
    recipients: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Journal(Protocol):
    """Where events are written; synchronously or not (then awaited)."""

    def record(self, event: StatusEvent) -> Awaitable[None] | None: ...


@runtime_checkable
class BatchJournal(Protocol):
    """A journal that writes many events at the cost of one (one transaction, one append)."""

    def record(self, event: StatusEvent) -> Awaitable[None] | None: ...

    def record_many(self, events: Sequence[StatusEvent]) -> Awaitable[None] | None: ...


@runtime_checkable
class ThreadJournal(Protocol):
    """A journal that writes a batch at once when nothing holds it up, and otherwise from
    another thread than the loop's. Each call writes all of the batch or none of it."""

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        """Write ``events`` if that needs no wait for a lock; False: nothing written."""
        ...

    def write_many(self, events: Sequence[StatusEvent]) -> None:
        """Write ``events``, waiting for locks as long as needed; blocks (any thread)."""
        ...


class Recorder(Protocol):
    """What a handler records its events with: written when ``record`` returns."""

    async def record(self, event: StatusEvent) -> None: ...


class Journals:
    """Fans one event out to every attached journal."""

    def __init__(self, journals: Sequence[Journal] = ()) -> None:
        self.journals: tuple[Journal, ...] = tuple(journals)

    async def record(self, event: StatusEvent) -> None:
        for journal in self.journals:
            await _done(journal.record(event))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        for journal in self.journals:
            await _write(journal, events)


class JournalBatch:
    """Writes events in batches to every attached journal.

    ``journals`` may hold `Journals`; their members are attached one by one, so that a
    failing member does not make the others write twice. ``delay``: seconds the first
    event of a batch waits for others (0: until the next loop turn); ``max_events``: a
    batch this large is written at the next loop turn without waiting longer.
    """

    def __init__(
        self, journals: Sequence[Journal], *, delay: float = 0.0, max_events: int = 1000
    ) -> None:
        self._sinks = tuple(_Sink(j) for j in _flatten(journals))
        self._delay = delay
        self._max_events = max_events
        self._scheduled: asyncio.Handle | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._writing = asyncio.Lock()  # one batch at a time, in order
        self._writes: set[asyncio.Task[None]] = set()
        self._thread: ThreadPoolExecutor | None = None  # made at the first threaded write
        # The thread's write under way, until its events are given back or let go.
        self._in_thread: asyncio.Future[list[Exception | None]] | None = None

    @property
    def pending(self) -> int:
        """Events not yet written by every journal."""
        return max((sink.unwritten for sink in self._sinks), default=0)

    def add(self, event: StatusEvent) -> None:
        """Queue ``event`` for the next batch."""
        for sink in self._sinks:
            sink.backlog.append(event)
        self._schedule(asyncio.get_running_loop())

    async def flushed(self) -> None:
        """Return once every event added so far is written; raise `StoreError` if a
        journal failed to write them (they stay pending)."""
        if not self.pending:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        await waiter

    async def record(self, event: StatusEvent) -> None:
        """Write ``event`` now, with whatever is pending: written when this returns."""
        for sink in self._sinks:
            sink.backlog.append(event)
        await self.flush()

    async def flush(self) -> None:
        """Write everything pending now; raise `StoreError` if a journal failed."""
        async with self._writing:
            if self._in_thread is not None:
                # A cancelled flush's write may still be under way in the thread; its
                # events go back or away when it ends. Taken before that, they would be
                # taken from under it.
                await asyncio.wait([self._in_thread])
            # Every journal writes the same events in one flush: all backlogs are taken
            # before the first write. Taken one by one, an event added while the status
            # store writes would reach the dedup store (completing its claim) in this
            # flush and the status store only in the next; a process killed in between
            # would leave a completed claim whose Laufzettel never shows the message.
            for sink in self._sinks:
                sink.take()
            # In the journals' order (the dedup store, which completes claims, last). Once
            # one waits in the thread, the later threaded ones follow it there, and an
            # asynchronous one waits for them. Once one fails, the journals after it keep
            # their events for a later flush, after the failed one has written its own: a
            # later journal never holds an event an earlier one lacks (a claim completed
            # whose events were never written would answer the redelivery as a duplicate).
            failure: Exception | None = None
            queued: list[_Sink] = []
            try:
                for sink in self._sinks:
                    if sink.threaded is not None:
                        try:  # with others queued before it, it is never written here
                            if queued or not sink.write_now():
                                queued.append(sink)
                        except Exception as exc:
                            failure = exc
                    else:
                        if queued:
                            failure = await _failure_of(self._write_threaded(queued))
                            queued = []
                        if failure is None:
                            failure = await _failure_of(sink.write())
                    if failure is not None:
                        break
                else:
                    if queued:
                        failure = await _failure_of(self._write_threaded(queued))
            finally:
                # The journals not reached (after a failure, or in a cancelled flush) keep
                # their events for the next flush; the thread's write gives back its own.
                for sink in self._sinks:
                    if sink not in queued:
                        sink.hold()
            if failure is not None:
                raise StoreError(f"journal write failed: {failure}") from failure

    async def _write_threaded(self, sinks: Sequence[_Sink]) -> None:
        """Write the taken events of ``sinks`` in the batch's thread, in one hand-over;
        raise the first failure."""
        if not sinks:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="journal")
        work = [(sink.threaded, sink.writing) for sink in sinks if sink.threaded]
        written = asyncio.get_running_loop().run_in_executor(self._thread, _write_each, work)

        def restore(done: asyncio.Future[list[Exception | None]]) -> None:
            # Also when the flush was cancelled meanwhile: what failed, and what followed a
            # failure unwritten, is written next time. Until now the events counted as
            # pending, so flushed() waited for them.
            lost = done.cancelled() or done.exception() is not None
            results = [] if lost else done.result()
            for index, sink in enumerate(sinks):
                if index < len(results) and results[index] is None:
                    sink.writing = []
                else:
                    sink.hold()
            self._in_thread = None

        written.add_done_callback(restore)
        self._in_thread = written
        failure = _first_failure(await asyncio.shield(written))
        if failure is not None:
            raise failure

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._scheduled
        full = self.pending >= self._max_events
        if waiting is not None and full and isinstance(waiting, asyncio.TimerHandle):
            waiting.cancel()
            waiting = self._scheduled = None
        if waiting is not None:
            return
        if full or self._delay <= 0:
            self._scheduled = loop.call_soon(self._flush_now)
        else:
            self._scheduled = loop.call_later(self._delay, self._flush_now)

    def _flush_now(self) -> None:
        self._scheduled = None
        waiters, self._waiters = self._waiters, []
        task = asyncio.get_running_loop().create_task(self._write_batch(waiters))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_batch(self, waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("journal.write_failed", exc_info=True)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class _Sink:
    """One journal, the events it has not written yet, and those being written."""

    __slots__ = ("backlog", "journal", "many", "threaded", "writing")

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.many = journal if isinstance(journal, BatchJournal) else None
        self.threaded = journal if isinstance(journal, ThreadJournal) else None
        self.backlog: list[StatusEvent] = []
        self.writing: list[StatusEvent] = []

    @property
    def unwritten(self) -> int:
        return len(self.writing) + len(self.backlog)

    def take(self) -> None:
        """Make the backlog the next write's events."""
        self.writing, self.backlog = self.backlog, []

    def hold(self) -> None:
        """Give the taken events back to the backlog's front, unwritten."""
        events, self.writing = self.writing, []
        self.backlog[:0] = events

    def write_now(self) -> bool:
        """Write a threaded journal's taken events on the loop if no lock is in the way;
        False when they must wait (in the thread). Other journals: True, written
        elsewhere. What fails goes back to the backlog's front."""
        if self.threaded is None or not self.writing:
            return True
        try:
            done = self.threaded.write_now(self.writing)
        except BaseException:
            events, self.writing = self.writing, []
            self.backlog[:0] = events
            raise
        if done:
            self.writing = []
        return done

    async def write(self) -> None:
        """Write the taken events; what is not written goes back to the backlog's front."""
        events, self.writing = self.writing, []
        if not events:
            return
        if self.many is not None:
            try:
                self.writing = events
                await _done(self.many.record_many(events))
            except BaseException:
                self.backlog[:0] = events
                raise
            finally:
                self.writing = []
            return
        for index, event in enumerate(events):
            try:
                self.writing = events[index:]
                await _done(self.journal.record(event))
            except BaseException:
                self.backlog[:0] = events[index:]
                raise
            finally:
                self.writing = []


def _write_each(work: Sequence[tuple[ThreadJournal, list[StatusEvent]]]) -> list[Exception | None]:
    """In the batch's thread: write each journal's events in turn, up to the first that
    fails; what each one tried raised (the journals after a failure are not tried)."""
    results: list[Exception | None] = []
    for journal, events in work:
        try:
            journal.write_many(events)
        except Exception as exc:
            results.append(exc)
            break
        results.append(None)
    return results


async def _failure_of(write: Awaitable[None]) -> Exception | None:
    try:
        await write
    except Exception as exc:
        return exc
    return None


def _first_failure(outcomes: Sequence[object]) -> Exception | None:
    """The first exception among ``outcomes``; one that is no `Exception` (a
    cancellation) is raised."""
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            return outcome
        if isinstance(outcome, BaseException):
            raise outcome
    return None


async def _write(journal: Journal, events: Sequence[StatusEvent]) -> None:
    if isinstance(journal, BatchJournal):
        await _done(journal.record_many(events))
    else:
        for event in events:
            await _done(journal.record(event))


async def _done(result: Awaitable[None] | None) -> None:
    """Await what an asynchronous journal returned; a synchronous one has written."""
    if inspect.isawaitable(result):
        await result


def _flatten(journals: Sequence[Journal]) -> list[Journal]:
    flat: list[Journal] = []
    for journal in journals:
        if isinstance(journal, Journals):
            flat.extend(_flatten(journal.journals))
        else:
            flat.append(journal)
    return flat
