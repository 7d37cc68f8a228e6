"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from broker.commands.signals import StopSignal
from broker.errors import ConfigurationError, TransientError
from broker.settings import Settings, load_settings

__all__ = ["run_async", "settings_from", "wait_for_signal"]

T = TypeVar("T")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine; configuration errors become a message and exit code 2, a fault
    that stops it from starting (an unwritable store, RabbitMQ unreachable) exit code 1."""
    try:
        return asyncio.run(_guard(main))
    except ConfigurationError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return 2
    except (TransientError, ConnectionError) as exc:
        print(f"xbroker: cannot start: {exc}", file=sys.stderr)
        return 1


async def _guard(main: Callable[[], Awaitable[int]]) -> int:
    return await main()


async def wait_for_signal() -> signal.Signals:
    """Block until SIGINT or SIGTERM arrives; return which. Later signals, during the
    stop that follows, are ignored (see `broker.commands.signals`)."""
    stop = StopSignal.install()
    stop.attach()
    return await stop.wait()
