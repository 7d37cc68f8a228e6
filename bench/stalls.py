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

__all__ = ["LoopStalls", "waiting_for_cpu"]

_TICK: Final = 0.002
_TASKS: Final = Path("/proc/self/task")


def waiting_for_cpu() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU."""
    total = 0
    if not _TASKS.is_dir():
        return 0.0
    for task in _TASKS.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


class LoopStalls:
    """``async with LoopStalls() as stalls: ...``; then ``stalls.worst`` in seconds."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last = (time.perf_counter(), waiting_for_cpu())

    def _tick(self) -> None:
        wall, waited = self._last
        now, now_waited = time.perf_counter(), waiting_for_cpu()
        self.worst = max(self.worst, (now - wall) - (now_waited - waited) - _TICK)
        self._last = (now, now_waited)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            self._tick()

    async def __aenter__(self) -> LoopStalls:
        self._last = (time.perf_counter(), waiting_for_cpu())
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._tick()  # a block that never yielded held the loop from start to end
