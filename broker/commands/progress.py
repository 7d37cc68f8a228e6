"""A one-line progress bar for bulk CLI work, e.g. ``xbroker publish DIR``.

It redraws one line with a carriage return, so it belongs on a terminal: `wanted` says
whether to draw at all (a TTY, or asked for). It writes to the stream it is given,
stderr in the CLI, so stdout stays clean for results and ``--json``. No dependency:
a bar of ``=`` is all an operator needs to see that a run of thousands moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "wanted"]


def wanted(stream: TextIO, *, forced: bool = False) -> bool:
    """Draw a bar when asked to, or when ``stream`` is a terminal."""
    if forced:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """``label  done/total [=====>     ]  42 %  17/s``, redrawn at most every ``interval``.

    Redrawing is throttled because a terminal that scrolls thousands of redraws per
    second slows the run it reports on. The last state is always drawn by `close`.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        label: str = "",
        width: int = 30,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(total, 0)
        self.done = 0
        self._stream = stream
        self._label = label
        self._width = width
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more items done; redraw if the last redraw is old enough."""
        self.done = min(self.done + count, self.total)
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def line(self, now: float | None = None) -> str:
        """The bar as text, without the carriage return."""
        now = self._clock() if now is None else now
        share = self.done / self.total if self.total else 1.0
        filled = int(share * self._width)
        head = ">" if filled < self._width else ""
        bar = ("=" * filled + head).ljust(self._width)
        elapsed = now - self._started
        rate = f"  {self.done / elapsed:.0f}/s" if elapsed > 0 and self.done else ""
        label = f"{self._label}  " if self._label else ""
        return f"{label}{self.done}/{self.total} [{bar}] {share:4.0%}{rate}"

    def _draw(self, now: float) -> None:
        self._stream.write("\r" + self.line(now))
        self._stream.flush()
        self._drawn_at = now
