"""A round of work every few seconds, as a task of the worker's loop that never dies.

The worker's watches (copies left waiting, retention) each run one round, sleep, and run
again. A round that fails is logged and tried again at the next; an exception that
ended the task would stop the watch for good without a word until the worker stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from broker.logs import event

__all__ = ["Periodic"]


class Periodic:
    """Runs ``round`` now and then every ``interval`` seconds until stopped."""

    def __init__(
        self,
        name: str,
        round: Callable[[], Awaitable[object]],
        interval: float,
        log: logging.Logger,
    ) -> None:
        self._name = name
        self._round = round
        self._interval = interval
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except Exception as exc:  # a watch must never take the worker down
                event(self._log, f"{self._name}.failed", logging.WARNING, error=str(exc))
            await asyncio.sleep(self._interval)
