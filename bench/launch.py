"""Start a worker module on a chosen event loop: ``python -m bench.launch LOOP MODULE ARGS``.

The benchmark measures candidate optimisations before anyone changes the broker for
them. An event loop is one: ``uvloop`` installs uvloop's policy, then runs ``MODULE``
as ``python -m MODULE ARGS`` would (``asyncio`` runs it unchanged), so the broker's own
code is the same in both measurements.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
from collections.abc import Sequence
from typing import Literal

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
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
