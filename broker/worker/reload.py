"""Reload the directory on SIGHUP or when its file changes, without a restart.

A file that does not load is reported and ignored: the broker keeps routing with the
directory it has, so a typo never takes the service down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from broker.logs import event
from routing import Directory, DirectoryError

__all__ = ["DirectoryWatcher"]

log = logging.getLogger("xbroker.directory")


class DirectoryWatcher:
    """Polls the directory file's modification time and listens for SIGHUP."""

    def __init__(
        self,
        path: Path,
        certificate_dir: Path,
        apply: Callable[[Directory], Awaitable[None]],
        *,
        interval: float = 2.0,
    ) -> None:
        self._path = path
        self._certificate_dir = certificate_dir
        self._apply = apply
        self._interval = interval
        self._stamp = self._current_stamp()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.failures = 0

    def start(self, *, sighup: bool = True) -> None:
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        self._task = asyncio.create_task(self._run(), name="directory-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    async def reload(self) -> bool:
        """Load the file now and apply it; False (and the old directory kept) if invalid."""
        self._stamp = self._current_stamp()
        try:
            directory = Directory.load(self._path, self._certificate_dir)
        except DirectoryError as exc:
            self.failures += 1
            event(log, "directory.invalid", logging.ERROR, error=str(exc))
            return False
        await self._apply(directory)
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            forced = self._wake.is_set()
            self._wake.clear()
            if forced or self._current_stamp() != self._stamp:
                await self.reload()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)
