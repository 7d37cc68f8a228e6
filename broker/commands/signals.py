"""SIGTERM and SIGINT from the first moment of a command to its last.

A process manager may send SIGTERM at any time: while the settings and standards load,
while the worker connects, while it stops. Python's default is to die on the spot
(exit -15), and asyncio's signal handlers exist only while a loop runs. So a command
takes the signals over as its first step (`StopSignal.install`): a signal asks it to
stop, once; the start-up checks `StopSignal.requested` between its steps, an awaited
step is raced against the signal (`StopSignal.until`), and signals that come later,
during the stop itself, are noted and change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from types import FrameType
from typing import TypeVar, cast

from broker.logs import event

__all__ = ["SIGNALS", "StopSignal"]

log = logging.getLogger("xbroker")

T = TypeVar("T")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """The first SIGTERM or SIGINT the process received, and a way to wait for one."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._future: asyncio.Future[signal.Signals] | None = None

    @classmethod
    def install(cls) -> StopSignal:
        """Take SIGTERM and SIGINT over now, before anything else happens; the process's
        one instance (a second call returns it, with any signal received meanwhile)."""
        global _installed
        if _installed is None:
            _installed = cls()
        for sig in SIGNALS:
            signal.signal(sig, _installed._on_signal)
        return _installed

    @property
    def requested(self) -> bool:
        return self.received is not None

    def attach(self) -> None:
        """Hand the signals to the running loop, so that awaiting code wakes for them."""
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        if self.received is not None:
            self._future.set_result(self.received)
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._note, sig)

    def detach(self) -> None:
        """Back to the plain handlers (the loop ends; the process may still stop)."""
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._on_signal)

    async def wait(self) -> signal.Signals:
        """Until a signal arrives (at once if one already has)."""
        assert self._future is not None, "attach() first"
        return await asyncio.shield(self._future)

    async def until(self, step: Awaitable[T]) -> tuple[bool, T | None]:
        """Run ``step`` unless a signal comes first: ``(True, result)``, or ``(False,
        None)`` when the signal won and ``step`` was cancelled."""
        task = asyncio.ensure_future(step)
        if self._future is None or self.requested:
            task.cancel()
        else:
            waiters = {
                cast("asyncio.Future[object]", task),
                cast("asyncio.Future[object]", self._future),
            }
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and not task.cancelled():
            return True, task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False, None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._note(signal.Signals(signum))

    def _note(self, sig: signal.Signals) -> None:
        if self.received is not None:
            event(log, "signal.ignored", signal=sig.name, stopping_for=self.received.name)
            return
        self.received = sig
        if self._future is not None and not self._future.done():
            self._future.set_result(sig)


_installed: StopSignal | None = None
