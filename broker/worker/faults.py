"""Faults of a worker's surroundings: hold the messages, pause, retry, resume by itself.

A message can fail for two kinds of reason, and they are treated apart:

* **A fault of the surroundings** (`TransientError`: a store that cannot be written, a
  full disk, a publish RabbitMQ did not confirm, a lost connection, a missing queue).
  It is not the message's fault, and every message would meet it. The message is *held*:
  it stays unacked with this worker, so it never goes back to its queue and never counts
  against the queue's delivery limit (RabbitMQ 3.10 counts every return, a nack as much as
  a closed channel: measured). The worker stops taking new messages (its consumers are
  cancelled; those already prefetched meet the fault too and are held as well), reports
  the fault on ``/readyz`` and in ``xbroker_fault_active``, and lets one held message at
  a time try again, with growing waits (`broker.amqp.backoff.Backoff`). The first try that
  succeeds ends the fault: the other held messages go on, and consuming resumes. Nothing
  is dead-lettered and no author is told ``failed`` for a fault of the worker.
* **A failure of the message itself** (any other exception, on a worker with no fault):
  it goes back to its queue after a delay that grows with its delivery count, so that
  its attempts are spread out; the queue's delivery limit then dead-letters it, and its
  author gets one ``failed`` receipt (`broker.worker.failures`).

A held message is given up, without being settled, when its channel is lost (RabbitMQ
has already put it back, and it will be delivered again) or when the worker stops.

Faults that the worker watches rather than meets (low disk space, a lost connection)
are reported and cleared by their watchers (`report`, `clear`); faults met by messages
clear when a held message gets through (`succeeded`). When every held message has been
given up (their channel was lost with the connection), none is left to try: once the
watched faults have cleared and the next try is due, the faults met by messages clear
too, and the next message taken tries for them. Without that, a worker whose node was
lost in the middle of a publish stayed paused for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage

from broker.amqp.acks import held, settle
from broker.amqp.backoff import Backoff
from broker.errors import PublishError, StoreError, TransientError, UnroutableError
from broker.logs import event
from monitoring.faults import FaultMetrics
from monitoring.labels import WorkerFault

__all__ = ["Faults", "fault_of", "retry_delay"]

log = logging.getLogger("xbroker.broker")

T = TypeVar("T")

WATCHED = frozenset({WorkerFault.DISK, WorkerFault.RABBITMQ})
"""Faults that their watchers clear; a message that gets through does not clear them."""


Requeue = Callable[[AbstractIncomingMessage], Awaitable[None]]


async def _nack(message: AbstractIncomingMessage) -> None:
    await settle(message, requeue=True)


def retry_delay(delivery_count: int, first: float, ceiling: float) -> float:
    """How long a message that failed by itself waits before it goes back to its queue."""
    return min(ceiling, first * 2.0 ** min(delivery_count, 30))


def fault_of(exc: TransientError) -> WorkerFault:
    """Which fault a transient error is a symptom of."""
    if isinstance(exc, UnroutableError):
        return WorkerFault.TOPOLOGY
    if isinstance(exc, PublishError):
        return WorkerFault.PUBLISH
    if isinstance(exc, StoreError):
        return WorkerFault.STORE
    return WorkerFault.PUBLISH if isinstance(exc.__cause__, ConnectionError) else WorkerFault.STORE


class Faults:
    """The faults one worker is under, and the gate its held messages wait at.

    ``on_change(healthy)`` is called (as a task) whenever the worker turns faulty or
    healthy, so that it can stop and resume consuming.
    """

    def __init__(
        self,
        metrics: FaultMetrics,
        on_change: Callable[[bool], Coroutine[Any, Any, None]] | None = None,
        *,
        backoff: Backoff | None = None,
        retry_first: float = 1.0,
        retry_ceiling: float = 30.0,
    ) -> None:
        self.metrics = metrics
        self._on_change = on_change
        self._backoff = backoff or Backoff(first=0.5, ceiling=10.0)
        self._retry = (retry_first, retry_ceiling)
        self._active: dict[WorkerFault, str] = {}
        self._cleared_at: dict[WorkerFault, float] = {}
        self._changed = asyncio.Event()
        self._next_try = 0.0
        self._trying: AbstractIncomingMessage | None = None  # the held message trying now
        self._stopping = False
        self._held = 0
        self._untested: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # state

    @property
    def healthy(self) -> bool:
        return not self._active

    @property
    def active(self) -> dict[WorkerFault, str]:
        """Each fault that holds the worker, with what was last seen of it."""
        return dict(self._active)

    @property
    def stopping(self) -> bool:
        """Whether the worker stops."""
        return self._stopping

    @property
    def held(self) -> int:
        """Messages held until a fault clears."""
        return self._held

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the worker stops."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await self._wait(left)

    def stop(self) -> None:
        """The worker stops: every held message is given up."""
        self._stopping = True
        self._wake()

    # watchers

    def report(self, fault: WorkerFault, detail: str) -> None:
        """``fault`` holds the worker (again); ``detail`` says what was seen."""
        if self._stopping:
            return
        began = fault not in self._active
        self._active[fault] = detail
        if began:
            self.metrics.began(fault)
            event(log, "fault.began", logging.WARNING, fault=fault.value, detail=detail)
            if len(self._active) == 1:
                self._notify(healthy=False)

    def clear(self, fault: WorkerFault) -> None:
        """``fault`` no longer holds the worker."""
        if self._active.pop(fault, None) is None:
            return
        self._cleared_at[fault] = asyncio.get_running_loop().time()
        self.metrics.ended(fault)
        event(log, "fault.cleared", fault=fault.value)
        if not self._active:
            self._backoff.reset()
            self._notify(healthy=True)
        self._wake()

    # messages

    async def attempt(
        self, message: AbstractIncomingMessage, work: Callable[[], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """Run ``work`` for ``message`` until it gets through a fault of the surroundings.

        Returns ``(True, result)``; or ``(False, None)`` when the message had to be given
        up (its channel is gone, or the worker stops): it must then be left unsettled.
        Errors other than `TransientError` are the message's own and pass through.
        """
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                result = await work()
            except TransientError as exc:
                if self._straggler(exc, started):
                    continue
                if await self._hold(exc, message):
                    continue
                return False, None
            except BaseException:
                if self._trying is message:
                    self._trying = None
                    self._wake()
                raise
            self.succeeded(message)
            return True, result

    async def handle(
        self,
        message: AbstractIncomingMessage,
        work: Callable[[], Awaitable[T]],
        requeue: Requeue = _nack,
    ) -> tuple[bool, T | None]:
        """`attempt`, and a message that fails by itself is given back (`give_back`):
        ``(True, result)`` when the message is to be settled with the result, ``(False,
        None)`` when it was given up or given back."""
        try:
            return await self.attempt(message, work)
        except Exception:
            await self.give_back(message, requeue)
            return False, None

    async def give_back(self, message: AbstractIncomingMessage, requeue: Requeue = _nack) -> None:
        """Return a message that failed by itself to its queue, after a delay that grows
        with its delivery count; the queue's delivery limit dead-letters it in the end.
        ``requeue`` settles it (a channel in transaction mode settles in its commits)."""
        count = (message.headers or {}).get("x-delivery-count")
        delay = retry_delay(count if isinstance(count, int) else 0, *self._retry)
        log.exception(
            "message.error",
            extra={"xbroker_facts": {"uuid": message.message_id, "retry_in": round(delay, 3)}},
        )
        self.metrics.message_retries.inc()
        await self.sleep(delay)
        if held(message):
            await requeue(message)

    def succeeded(self, message: AbstractIncomingMessage | None = None) -> None:
        """A message got through: the faults that messages meet have cleared."""
        if self._trying is not None and self._trying is message:
            self._trying = None
        for fault in [f for f in self._active if f not in WATCHED]:
            self.clear(fault)

    def _straggler(self, exc: TransientError, started: float) -> bool:
        """A try that began while its fault lasted and failed after the fault cleared (a
        publish that waited out its confirm timeout): tried again at once, without
        raising the fault again."""
        fault = fault_of(exc)
        return fault not in self._active and started < self._cleared_at.get(fault, float("-inf"))

    async def _hold(self, exc: TransientError, message: AbstractIncomingMessage) -> bool:
        """Wait until ``message`` may try again; False once it has to be given up."""
        loop = asyncio.get_running_loop()
        self.report(fault_of(exc), str(exc))
        if self._trying is message or self._next_try <= loop.time():
            # The try failed (or this is the first failure): the next one waits longer.
            self._trying = None
            self._next_try = loop.time() + self._backoff.next_delay()
        self._held += 1
        self.metrics.held.set(self._held)
        try:
            while not self._stopping and held(message):
                if not self._active.keys() - WATCHED:
                    return True  # another message got through
                now = loop.time()
                if self._trying is None and now >= self._next_try:
                    self._trying = message
                    return True
                wait = self._next_try - now if self._trying is None else 1.0
                await self._wait(min(wait, 1.0))
            event(log, "message.given_up", uuid=message.message_id, stopping=self._stopping)
            if not self._stopping and self._untested is None:
                self._untested = loop.create_task(self._clear_untested())
            return False
        finally:
            self._held -= 1
            self.metrics.held.set(self._held)

    async def _clear_untested(self) -> None:
        """Clear the faults met by messages once no held message is left to try for
        them, the watched faults are gone and the next try is due."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping and not self._held and self._active.keys() - WATCHED:
                waiting = self._trying is not None or loop.time() < self._next_try
                if waiting or self._active.keys() & WATCHED:
                    await self._wait(min(max(self._next_try - loop.time(), 0.05), 1.0))
                    continue
                event(log, "fault.untested", faults=",".join(sorted(f.value for f in self._active)))
                for fault in [f for f in self._active if f not in WATCHED]:
                    self.clear(fault)
        finally:
            self._untested = None

    # plumbing

    async def _wait(self, seconds: float) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), max(seconds, 0.01))

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _notify(self, *, healthy: bool) -> None:
        if self._on_change is None:
            return
        task = asyncio.get_running_loop().create_task(self._on_change(healthy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
