"""Waiting for something observable, with a deadline: the one way the tests poll.

A test that must wait asks `eventually` for a condition it can observe (a receipt held,
a counter moved, a queue's depth) rather than sleeping for a time that is long enough on
an idle machine. The deadline is generous, because on a busy machine things are slow,
not wrong; a condition that is never met fails with what was awaited and what was last
seen.

To show that something does *not* happen, make it observable too: send a marker after
the thing that must not arrive, through the same path, and wait for the marker.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

__all__ = ["TIMEOUT", "eventually"]

T = TypeVar("T")

TIMEOUT = 30.0
"""Seconds to wait by default: far beyond what anything takes on an idle machine."""


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    until: Callable[[T], object] = bool,
    timeout: float = TIMEOUT,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    progressing: bool = False,
) -> T:
    """Call ``check`` (plain or async) until ``until`` holds for its value (by default:
    until the value is true), and return that value.

    ``what`` names the awaited condition for the failure message, which also shows the
    last value seen. Exceptions of the ``ignoring`` types count as "not yet" (a server
    still starting); any other propagates at once. Raises AssertionError when
    ``timeout`` seconds pass.

    With ``progressing``, ``timeout`` counts from the last time the value changed: a
    count that moves slowly (a long run on a busy machine) is waited for as long as it
    moves, and one that stops moving fails after ``timeout`` seconds, as a lost message
    would make it.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            value = cast(T, await result if inspect.isawaitable(result) else result)
        except ignoring as exc:
            last = exc
        else:
            if until(value):
                return value
            if progressing and value != last:
                deadline = time.monotonic() + timeout
            last = value
        if time.monotonic() >= deadline:
            within = f"{timeout:g} s without progress" if progressing else f"{timeout:g} s"
            raise AssertionError(f"not {what} within {within}; last seen: {last!r}")
        await asyncio.sleep(interval)
