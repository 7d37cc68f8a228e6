"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from broker.errors import ConfigurationError
from broker.settings import Settings, load_settings

__all__ = ["run_async", "settings_from", "wait_for_signal"]

T = TypeVar("T")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine; configuration errors become a message and exit code 2."""
    try:
        return asyncio.run(_guard(main))
    except ConfigurationError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return 2


async def _guard(main: Callable[[], Awaitable[int]]) -> int:
    return await main()


async def wait_for_signal() -> signal.Signals:
    """Block until SIGINT or SIGTERM arrives; return which."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
