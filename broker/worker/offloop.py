"""The CPU work of messages, done off the worker's event loop and within a time budget.

The loop carries the AMQP heartbeats, the confirms of every message in flight, the
health endpoint and the metrics. Deciding a message (``Pipeline.process``) and
verifying an agency's receipt are CPU work; on the loop, one large message held up all
of that (a 502 KB message once kept a ``GET`` waiting 21.9 s). ``OffLoop`` runs that
work in a thread of its own, one piece at a time, while the loop goes on.

A thread, not a process pool, measured by ``bench.offload``: lxml releases the GIL
while it parses, canonicalizes and validates, and the Python between gives it up every
5 ms, so the loop's longest stall while a thread decides the largest message the limits
let through stays in the tens of milliseconds; a process pool keeps the loop freer
still but costs a pickled round trip per message on the worker's critical path and a
second copy of the catalog (tens of MB) per worker. What makes a thread enough is that
the parser's and the verifier's limits bound the work before it starts
(docs/security.md): no input makes libxml2 run for long.

The budget has two parts:

* ``Pipeline.process`` stops between its steps once the message has used more CPU
  time than its budget (``processing-limit``); every step is bounded by the limits.
* In case a step runs away all the same (C code no check can interrupt), ``OffLoop``
  gives up waiting after ``hard_limit`` seconds of wall time: the message is answered
  ``processing-limit`` and the next one is worked on in a fresh thread. The old thread
  cannot be stopped; it is left to finish, and its result is dropped. While such a
  thread still runs, readiness says so (``deciding``), and at most ``MAX_ABANDONED``
  are left running: past that, work waits for one of them, so a flood of runaway input
  costs the worker two cores at most, never more.

The hand-over is made for bursts: RabbitMQ delivers up to a prefetch of messages at
once, and a hand-over per message (an executor's submit, ``wrap_future``, ``wait_for``
and a wake-up of the loop for each result) cost the loop 83-183 µs of CPU per 2 KB
message (``bench.offload``). Here the loop appends a piece to a queue and wakes the
thread only if it sleeps; the thread works through the queue in order and hands its
results back in one wake-up of the loop for as many as are ready by then. The hard
limit is kept by one timer at a time, set to the deadline of the piece the thread is
working on (it tells the loop when it starts one by a timestamp, not a wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from broker.errors import Reason, Rejection
from broker.logs import event

__all__ = ["MAX_ABANDONED", "OffLoop"]

log = logging.getLogger("xbroker.broker")

T = TypeVar("T")

MAX_ABANDONED: Final = 2


@dataclass(frozen=True, slots=True)
class _Piece:
    work: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class _Outcome:
    piece: _Piece
    value: Any
    failed: bool  # value is the exception the work raised


class OffLoop:
    """One thread for the CPU work of one worker's messages, one piece at a time."""

    def __init__(self, hard_limit: float) -> None:
        if hard_limit <= 0:
            raise ValueError("the hard limit must be positive")
        self.hard_limit = hard_limit
        # Everything below is shared with the thread and guarded by this lock.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Piece] = deque()
        self._generation = 0  # a thread of an older generation was given up on
        self._running: tuple[_Piece, float] | None = None  # and its time.monotonic() start
        self._abandoned = 0
        self._outcomes: list[_Outcome] = []
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None  # the loop's alone

    @property
    def abandoned(self) -> int:
        """Pieces of work given up on that are still running."""
        with self._lock:
            return self._abandoned

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in the thread; its result, or ``Rejection(processing-limit)``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the off-loop thread is closed")
            if self._loop is None:
                self._loop = loop
                self._start_thread()
            self._queue.append(_Piece(work, future))
            self._wake.notify()
        if self._timer is None:
            self._timer = loop.call_later(self.hard_limit, self._watch)
        return await future

    def close(self) -> None:
        """Take no more work; what runs is left to finish (it holds no resource of ours)."""
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, deque()
            self._wake.notify_all()
        for piece in queued:
            piece.future.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_thread(self) -> None:
        """A thread for the current generation (called with the lock held)."""
        threading.Thread(
            target=self._serve,
            args=(self._generation,),
            name=f"xbroker-offloop-{self._generation}",
            daemon=True,
        ).start()

    def _serve(self, generation: int) -> None:
        """The thread: work through the queue until closed or given up on."""
        loop = self._loop
        assert loop is not None
        while True:
            with self._wake:
                while (
                    self._generation == generation
                    and not self._closed
                    and (not self._queue or self._abandoned >= MAX_ABANDONED)
                ):
                    self._wake.wait()
                if self._generation != generation or self._closed:
                    return
                piece = self._queue.popleft()
                self._running = (piece, time.monotonic())
            if piece.future.done():  # its handler was cancelled (a stop) while it waited
                value, failed = None, False
            else:
                try:
                    value, failed = piece.work(), False
                except BaseException as exc:  # the caller gets it, as from an executor
                    value, failed = exc, True
            with self._wake:
                if self._generation != generation:  # given up on while it ran
                    self._abandoned -= 1
                    self._wake.notify_all()  # the current thread may wait for room
                    return
                self._running = None
                self._outcomes.append(_Outcome(piece, value, failed))
                first = len(self._outcomes) == 1
            if first:  # later outcomes ride on the same wake-up of the loop
                # The loop may be gone (the worker stopped while this ran).
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        for outcome in outcomes:
            future = outcome.piece.future
            if future.done():
                continue
            if outcome.failed:
                future.set_exception(cast(BaseException, outcome.value))
            else:
                future.set_result(outcome.value)

    def _watch(self) -> None:
        """The timer: give up on the running piece past its deadline, else wait for it."""
        self._timer = None
        loop = self._loop
        assert loop is not None
        with self._lock:
            if self._closed:
                return
            running = self._running
            if running is None:
                if self._queue:  # the thread is about to start one, or waits for room
                    self._timer = loop.call_later(self.hard_limit, self._watch)
                return
            piece, started = running
            left = started + self.hard_limit - time.monotonic()
            if left > 0:
                self._timer = loop.call_later(left, self._watch)
                return
            # The thread cannot be stopped: it is left to finish, its result dropped,
            # and the queue goes on in a fresh thread.
            self._generation += 1
            self._abandoned += 1
            self._running = None
            running_now = self._abandoned
            self._start_thread()
            if self._queue:
                self._timer = loop.call_later(self.hard_limit, self._watch)
        event(log, "work.abandoned", logging.WARNING, running=running_now)
        if not piece.future.done():
            piece.future.set_exception(
                Rejection(
                    Reason.PROCESSING_LIMIT,
                    f"not done within {self.hard_limit:g} s; given up on",
                )
            )
