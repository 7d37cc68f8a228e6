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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar

from broker.errors import Reason, Rejection
from broker.logs import event

__all__ = ["MAX_ABANDONED", "OffLoop"]

log = logging.getLogger("xbroker.broker")

T = TypeVar("T")

MAX_ABANDONED: Final = 2


class OffLoop:
    """One thread for the CPU work of one worker's messages, one piece at a time."""

    def __init__(self, hard_limit: float) -> None:
        if hard_limit <= 0:
            raise ValueError("the hard limit must be positive")
        self.hard_limit = hard_limit
        self._executor = self._new_executor()
        self._turn = asyncio.Lock()
        self._abandoned: set[Future[Any]] = set()
        self._abandoned_lock = threading.Lock()
        self._room = asyncio.Condition()

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, thread_name_prefix="xbroker-offloop")

    @property
    def abandoned(self) -> int:
        """Pieces of work given up on that are still running."""
        with self._abandoned_lock:
            return len(self._abandoned)

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in the thread; its result, or ``Rejection(processing-limit)``."""
        loop = asyncio.get_running_loop()
        async with self._turn:
            async with self._room:
                await self._room.wait_for(lambda: self.abandoned < MAX_ABANDONED)
            future = self._executor.submit(work)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), self.hard_limit)
            except TimeoutError:
                self._abandon(future, loop)
                raise Rejection(
                    Reason.PROCESSING_LIMIT,
                    f"not done within {self.hard_limit:g} s; given up on",
                ) from None

    def _abandon(self, future: Future[T], loop: asyncio.AbstractEventLoop) -> None:
        old, self._executor = self._executor, self._new_executor()
        old.shutdown(wait=False)
        with self._abandoned_lock:
            self._abandoned.add(future)
        event(log, "work.abandoned", logging.WARNING, running=self.abandoned)

        def finished(done: Future[T]) -> None:
            with self._abandoned_lock:
                self._abandoned.discard(done)
            # Runs in the old thread, which may outlive the loop (the worker stopped).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: loop.create_task(self._wake()))

        future.add_done_callback(finished)

    async def _wake(self) -> None:
        async with self._room:
            self._room.notify_all()

    def close(self) -> None:
        """Take no more work; what runs is left to finish (it holds no resource of ours)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
