"""The event loop's longest stall of a process's own making, on a busy machine too.

A task wakes every 2 ms. Between two wake-ups it takes the wall time passed, less the
time the process's threads spent runnable but waiting for a CPU (the kernel's
``run_delay``, ``/proc/self/task/*/schedstat``): what is left is time the loop could
have run and did not, because the process's own work held it up (a thread holding the
GIL, a long callback), not because other work on the machine had the CPUs. Linux only;
elsewhere nothing is subtracted.

`LoopStalls` watches the benchmark's own loop. `StallLog` runs inside a worker process
(``bench.launch`` starts it when ``BENCH_STALL_LOG`` names a folder) and writes every
stall of the loop over a millisecond, with the time it ended, to ``<folder>/<pid>``;
`stalls_within` reads them back for the span of one offered load. There only the loop
thread's own wait for a CPU is subtracted, read from one file per tick: the watcher runs
beside the broker through the whole latency run and must cost it little.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "STALL_LOG_ENV",
    "LoopStalls",
    "StallLog",
    "Stalls",
    "stalls_within",
    "watch_stalls",
]

STALL_LOG_ENV: Final = "BENCH_STALL_LOG"

_TICK: Final = 0.002
_LOGGED: Final = 0.001  # stalls shorter than this are not written down
_TASKS: Final = Path("/proc/self/task")
_THREAD: Final = Path("/proc/thread-self/schedstat")


def _waits() -> dict[str, int]:
    """Nanoseconds each of this process's threads has spent runnable but waiting for a
    CPU, by thread id."""
    waits: dict[str, int] = {}
    if not _TASKS.is_dir():
        return waits
    for task in _TASKS.iterdir():
        try:
            waits[task.name] = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waits


def _waited_between(before: dict[str, int], after: dict[str, int]) -> float:
    """Seconds waited for a CPU between two readings, thread by thread: a thread that
    ended meanwhile takes nothing away (its total would otherwise vanish from a sum and
    read as a stall), a thread that started meanwhile counts whole."""
    return sum(total - before.get(tid, 0) for tid, total in after.items()) / 1e9


class LoopStalls:
    """``async with LoopStalls() as stalls: ...``; then ``stalls.worst`` in seconds."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last = (time.perf_counter(), _waits())

    def _tick(self) -> None:
        wall, waits = self._last
        now, now_waits = time.perf_counter(), _waits()
        self.worst = max(self.worst, (now - wall) - _waited_between(waits, now_waits) - _TICK)
        self._last = (now, now_waits)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            self._tick()

    async def __aenter__(self) -> LoopStalls:
        self._last = (time.perf_counter(), _waits())
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._tick()  # a block that never yielded held the loop from start to end


def _thread_waited() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU."""
    try:
        return int(_THREAD.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class StallLog:
    """Inside a worker: write each stall of its loop over a millisecond to ``folder/<pid>``
    as ``<time.perf_counter() at its end> <seconds>``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / str(os.getpid())

    async def watch(self) -> None:
        with self.path.open("a", buffering=1) as out:
            await watch_stalls(lambda at, stall: out.write(f"{at:.6f} {stall:.6f}\n"))


async def watch_stalls(found: Callable[[float, float], object]) -> None:
    """Tell ``found(at, seconds)`` each stall of this loop over a millisecond, less the
    loop thread's own wait for a CPU; ``at`` is ``time.perf_counter()`` at its end."""
    last, waited = time.perf_counter(), _thread_waited()
    while True:
        await asyncio.sleep(_TICK)
        now, now_waited = time.perf_counter(), _thread_waited()
        stall = (now - last) - (now_waited - waited) - _TICK
        if stall >= _LOGGED:
            found(now, stall)
        last, waited = now, now_waited


@dataclass(frozen=True, slots=True)
class Stalls:
    """The stalls of the workers' loops within one span of time."""

    worst_ms: float = 0.0
    over_5ms: int = 0  # how many stalls of 5 ms or more, in all workers together
    over_1ms: int = 0


def stalls_within(folder: Path, start: float, end: float) -> Stalls:
    """The stalls every worker logged in ``folder`` that ended between ``start`` and
    ``end`` (``time.perf_counter``: one clock for every process of the machine)."""
    found = [s for at, s in _logged(folder.glob("*")) if start <= at <= end]
    return Stalls(
        worst_ms=max(found, default=0.0) * 1000,
        over_5ms=sum(1 for s in found if s >= 0.005),
        over_1ms=len(found),
    )


def _logged(files: Iterable[Path]) -> Iterable[tuple[float, float]]:
    for file in files:
        for line in file.read_text().splitlines():
            at, _, stall = line.partition(" ")
            try:
                yield float(at), float(stall)
            except ValueError:
                continue  # a line the worker was writing as it stopped
