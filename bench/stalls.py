"""The event loop's longest stall of a process's own making, on a busy machine too.

A task wakes every 2 ms. Between two wake-ups it takes the wall time passed, less the
time the process's threads spent runnable but waiting for a CPU (the kernel's
``run_delay``, ``/proc/self/task/*/schedstat``): what is left is time the loop could
have run and did not, because the process's own work held it up (a thread holding the
GIL, a long callback), not because other work on the machine had the CPUs. Linux only;
elsewhere nothing is subtracted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

__all__ = ["LoopStalls"]

_TICK: Final = 0.002
_TASKS: Final = Path("/proc/self/task")


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
