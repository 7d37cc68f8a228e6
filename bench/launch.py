"""Start a worker module on a chosen event loop: ``python -m bench.launch LOOP MODULE ARGS``.

The benchmark measures candidate optimisations before anyone changes the broker for
them. An event loop is one: ``uvloop`` installs uvloop's policy, then runs ``MODULE``
as ``python -m MODULE ARGS`` would (``asyncio`` runs it unchanged), so the broker's own
code is the same in both measurements. With ``BENCH_STALL_LOG`` set to a folder, every
event loop the module makes also runs `bench.stalls.StallLog`.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bench.stalls import STALL_LOG_ENV, StallLog

__all__ = ["LOOPS", "EventLoop", "main"]

EventLoop = Literal["asyncio", "uvloop"]
LOOPS: tuple[EventLoop, ...] = ("asyncio", "uvloop")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in LOOPS:
        print(f"usage: python -m bench.launch {{{','.join(LOOPS)}}} MODULE [ARGS...]")
        return 2
    loop, module, rest = args[0], args[1], args[2:]
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    folder = os.environ.get(STALL_LOG_ENV)
    if folder:
        _watch_stalls(Path(folder))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _watch_stalls(folder: Path) -> None:
    """Make every new event loop of this process log its stalls to ``folder``."""
    base: Any = type(asyncio.get_event_loop_policy())
    watches: set[asyncio.Task[None]] = set()

    class Watched(base):  # type: ignore[misc]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop: asyncio.AbstractEventLoop = super().new_event_loop()

            def start() -> None:
                task = loop.create_task(StallLog(folder).watch())
                watches.add(task)
                task.add_done_callback(watches.discard)

            loop.call_soon(start)
            return loop

    asyncio.set_event_loop_policy(Watched())


if __name__ == "__main__":
    sys.exit(main())
