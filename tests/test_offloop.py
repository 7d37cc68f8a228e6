"""The worker's CPU work off its event loop: one piece at a time in a thread of its own,
given up on past the hard limit, and the next piece worked on in a fresh thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from broker.errors import Reason, Rejection
from broker.worker.offloop import MAX_ABANDONED, OffLoop
from tests.polling import eventually

DEADLINE = 30.0  # far longer than anything here should take


def _blocked(gate: threading.Event, started: threading.Event | None = None) -> Callable[[], str]:
    """Work that runs until ``gate`` opens, standing in for C code nothing can stop."""

    def work() -> str:
        if started is not None:
            started.set()
        gate.wait(DEADLINE)
        return "finished late"

    return work


async def test_work_runs_in_a_thread_other_than_the_loops() -> None:
    offloop = OffLoop(hard_limit=DEADLINE)

    ident = await offloop.run(threading.get_ident)

    offloop.close()
    assert ident != threading.get_ident()


async def test_the_loop_goes_on_while_work_runs() -> None:
    offloop = OffLoop(hard_limit=DEADLINE)
    gate, started = threading.Event(), threading.Event()
    work = asyncio.create_task(offloop.run(_blocked(gate, started)))
    await eventually(started.is_set, what="the work started")

    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0.01)
        ticks += 1
    gate.set()

    assert (ticks, await work) == (5, "finished late")
    offloop.close()


async def test_an_error_of_the_work_reaches_the_caller() -> None:
    offloop = OffLoop(hard_limit=DEADLINE)

    def fails() -> None:
        raise ValueError("broken input")

    with pytest.raises(ValueError, match="broken input"):
        await offloop.run(fails)
    offloop.close()


async def test_work_past_the_hard_limit_is_given_up_on_with_processing_limit() -> None:
    offloop = OffLoop(hard_limit=0.2)
    gate = threading.Event()

    with pytest.raises(Rejection) as caught:
        await offloop.run(_blocked(gate))

    assert caught.value.reason is Reason.PROCESSING_LIMIT
    assert offloop.abandoned == 1
    gate.set()
    await eventually(lambda: offloop.abandoned == 0, what="the abandoned threads ended")
    offloop.close()


async def test_the_next_work_runs_in_a_fresh_thread_while_the_old_one_still_runs() -> None:
    offloop = OffLoop(hard_limit=0.2)
    gate = threading.Event()
    with pytest.raises(Rejection):
        await offloop.run(_blocked(gate))

    answer = await offloop.run(lambda: "next")

    assert (answer, offloop.abandoned) == ("next", 1)
    gate.set()
    await eventually(lambda: offloop.abandoned == 0, what="the abandoned threads ended")
    offloop.close()


async def test_past_the_most_abandoned_threads_work_waits_for_one_to_end() -> None:
    offloop = OffLoop(hard_limit=0.2)
    gates = [threading.Event() for _ in range(MAX_ABANDONED)]
    for gate in gates:
        with pytest.raises(Rejection):
            await offloop.run(_blocked(gate))
    waiting = asyncio.create_task(offloop.run(lambda: "after"))
    await asyncio.sleep(0.3)
    assert not waiting.done()

    gates[0].set()

    assert await asyncio.wait_for(waiting, DEADLINE) == "after"
    for gate in gates:
        gate.set()
    await eventually(lambda: offloop.abandoned == 0, what="the abandoned threads ended")
    offloop.close()


async def test_a_burst_handed_over_at_once_is_worked_through_in_order() -> None:
    offloop = OffLoop(hard_limit=DEADLINE)
    order: list[int] = []

    def work(n: int) -> Callable[[], int]:
        def piece() -> int:
            order.append(n)
            return n * n

        return piece

    results = await asyncio.gather(*(offloop.run(work(n)) for n in range(64)))

    assert results == [n * n for n in range(64)]
    assert order == list(range(64))
    offloop.close()


async def test_work_queued_behind_a_runaway_piece_is_done_in_the_fresh_thread() -> None:
    offloop = OffLoop(hard_limit=0.2)
    gate = threading.Event()
    runaway = asyncio.create_task(offloop.run(_blocked(gate)))
    behind = [asyncio.create_task(offloop.run(threading.get_ident)) for _ in range(3)]

    with pytest.raises(Rejection):
        await runaway
    idents = await asyncio.gather(*behind)

    assert len(set(idents)) == 1 and offloop.abandoned == 1
    gate.set()
    await eventually(lambda: offloop.abandoned == 0, what="the abandoned thread ended")
    offloop.close()


async def test_work_queued_at_close_is_cancelled() -> None:
    offloop = OffLoop(hard_limit=DEADLINE)
    gate, started = threading.Event(), threading.Event()
    running = asyncio.create_task(offloop.run(_blocked(gate, started)))
    await eventually(started.is_set, what="the work started")
    queued = asyncio.create_task(offloop.run(lambda: "never"))
    await asyncio.sleep(0)

    offloop.close()
    gate.set()

    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await running == "finished late"
