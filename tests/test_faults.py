"""Specification of the fault gate: what a worker does with a message that meets a fault.

A fault of the surroundings holds the message (it is never settled for it), one held
message at a time tries again with growing waits, and the first that gets through ends
the fault for all; a message whose channel is gone, or held when the worker stops, is
given up unsettled. Errors that are not transient are the message's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aio_pika.exceptions import ChannelInvalidStateError
from prometheus_client import CollectorRegistry

from broker.amqp.backoff import Backoff
from broker.errors import PublishError, StoreError, TransientError, UnroutableError
from broker.worker.faults import Faults, fault_of, retry_delay
from monitoring.faults import FaultMetrics
from monitoring.labels import WorkerFault
from tests.polling import eventually


class Message:
    """What the gate reads of a consumed message: its id and whether its channel lives."""

    def __init__(self, uuid: str = "m") -> None:
        self.message_id = uuid
        self.headers: dict[str, object] = {}
        self.open = True

    @property
    def channel(self) -> object:
        if not self.open:
            raise ChannelInvalidStateError
        return object()


def gate(changes: list[bool] | None = None) -> tuple[Faults, CollectorRegistry]:
    registry = CollectorRegistry()

    async def on_change(healthy: bool) -> None:
        if changes is not None:
            changes.append(healthy)

    return Faults(FaultMetrics(registry), on_change, backoff=Backoff(0.05, 0.2)), registry


def failing(times: int, exc: Callable[[], Exception]) -> Callable[[], object]:
    calls = {"n": 0}

    async def work() -> int:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc()
        return calls["n"]

    return work


async def test_a_healthy_worker_runs_the_work_once() -> None:
    faults, _ = gate()
    done, result = await faults.attempt(Message(), failing(0, lambda: StoreError("x")))  # type: ignore[arg-type]
    assert (done, result) == (True, 1)


async def test_a_transient_failure_holds_the_message_until_a_try_gets_through() -> None:
    changes: list[bool] = []
    faults, registry = gate(changes)

    done, result = await faults.attempt(
        Message(),  # type: ignore[arg-type]
        failing(3, lambda: StoreError("disk I/O error")),
    )
    await asyncio.sleep(0)

    assert (done, result) == (True, 4)
    assert faults.healthy
    assert changes == [False, True]
    assert registry.get_sample_value("xbroker_faults_total", {"fault": "store"}) == 1
    assert registry.get_sample_value("xbroker_fault_active", {"fault": "store"}) == 0


async def test_while_a_fault_lasts_one_held_message_tries_at_a_time() -> None:
    faults, _ = gate()
    trying = {"now": 0, "most_while_faulty": 0, "tries": 0}
    broken_for = 8  # tries

    async def work() -> None:
        trying["now"] += 1
        if not faults.healthy:
            trying["most_while_faulty"] = max(trying["most_while_faulty"], trying["now"])
        trying["tries"] += 1
        await asyncio.sleep(0.01)
        trying["now"] -= 1
        if trying["tries"] <= broken_for:
            raise PublishError("no confirm within 5.0 s")

    results = await asyncio.gather(*(faults.attempt(Message(str(n)), work) for n in range(5)))  # type: ignore[arg-type]

    assert all(done for done, _ in results)
    assert trying["most_while_faulty"] == 1
    assert faults.healthy


async def test_a_try_begun_during_a_fault_failing_after_it_cleared_does_not_raise_it_again() -> (
    None
):
    faults, registry = gate()
    faults.report(WorkerFault.PUBLISH, "no confirm within 5.0 s")
    begun, release = asyncio.Event(), asyncio.Event()
    tries = {"n": 0}

    async def slow_confirm() -> str:
        tries["n"] += 1
        if tries["n"] == 1:
            begun.set()
            await release.wait()
            raise PublishError("no confirm within 5.0 s")  # its confirm timed out
        return "confirmed"

    attempt = asyncio.ensure_future(faults.attempt(Message(), slow_confirm))  # type: ignore[arg-type]
    await begun.wait()
    faults.succeeded()  # another message got through meanwhile
    release.set()

    assert await attempt == (True, "confirmed")
    assert faults.healthy
    assert registry.get_sample_value("xbroker_faults_total", {"fault": "publish"}) == 1


async def test_a_held_message_whose_channel_is_gone_is_given_up_unsettled() -> None:
    faults, _ = gate()
    message = Message()

    async def work() -> None:
        message.open = False  # the connection dropped while it was held
        raise PublishError("connection lost while publishing")

    assert await faults.attempt(message, work) == (False, None)  # type: ignore[arg-type]


async def test_a_fault_with_every_held_message_given_up_clears_once_connected_again() -> None:
    changes: list[bool] = []
    faults, _ = gate(changes)
    message = Message()

    async def work() -> None:
        message.open = False  # the node went away in the middle of the publish
        faults.report(WorkerFault.RABBITMQ, "connection lost")
        raise PublishError("connection lost while publishing")

    assert await faults.attempt(message, work) == (False, None)  # type: ignore[arg-type]
    await eventually(lambda: faults.held == 0, what="the message given up")
    assert set(faults.active) == {WorkerFault.PUBLISH, WorkerFault.RABBITMQ}

    faults.clear(WorkerFault.RABBITMQ)  # connected to another node

    await eventually(lambda: faults.healthy, what="the publish fault cleared")
    await eventually(lambda: changes == [False, True], what="paused, then resumed")


async def test_held_messages_are_given_up_when_the_worker_stops() -> None:
    faults, _ = gate()
    attempt = asyncio.ensure_future(
        faults.attempt(Message(), failing(10**6, lambda: StoreError("x")))  # type: ignore[arg-type]
    )
    await eventually(lambda: faults.held, what="the message held")
    faults.stop()
    assert await attempt == (False, None)


async def test_an_error_that_is_not_transient_is_the_messages_own() -> None:
    faults, _ = gate()
    with pytest.raises(ValueError):
        await faults.attempt(Message(), failing(1, lambda: ValueError("bug")))  # type: ignore[arg-type]
    assert faults.healthy


async def test_a_watched_fault_is_cleared_by_its_watcher_not_by_a_message() -> None:
    faults, _ = gate()
    faults.report(WorkerFault.DISK, "1024 bytes free")
    await faults.attempt(Message(), failing(0, lambda: StoreError("x")))  # type: ignore[arg-type]
    assert set(faults.active) == {WorkerFault.DISK}
    faults.clear(WorkerFault.DISK)
    assert faults.healthy


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (StoreError("disk I/O error"), WorkerFault.STORE),
        (PublishError("no confirm within 5.0 s"), WorkerFault.PUBLISH),
        (UnroutableError("unroutable"), WorkerFault.TOPOLOGY),
        (TransientError("something else"), WorkerFault.STORE),
    ],
)
def test_each_transient_error_names_its_fault(error: TransientError, fault: WorkerFault) -> None:
    assert fault_of(error) is fault


def test_a_message_failing_by_itself_waits_longer_at_each_attempt_up_to_a_ceiling() -> None:
    delays = [retry_delay(n, 1.0, 30.0) for n in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
