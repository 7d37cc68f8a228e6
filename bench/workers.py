"""Worker processes under test: ``xbroker run`` or the bare relay, started and stopped.

Each worker is a separate OS process, as in production, so "one per core" really uses the
cores, and its memory can be read from ``/proc/<pid>/status`` (VmRSS now, VmHWM the peak
the kernel recorded). A pool counts as started once RabbitMQ reports its consumers on
the queue they consume.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aio_pika.abc import AbstractChannel

from bench.launch import EventLoop

__all__ = [
    "Memory",
    "WorkerPool",
    "broker_command",
    "floor_command",
    "memory_of",
    "py_spy",
    "relay_command",
]

_STOP_GRACE_SECONDS = 15.0


def _launch(loop: EventLoop, module: str, *, launcher: bool = False) -> list[str]:
    if loop == "asyncio" and not launcher:
        return [sys.executable, "-m", module]
    return [sys.executable, "-m", "bench.launch", loop, module]


def broker_command(
    settings_file: Path, loop: EventLoop = "asyncio", *, watched: bool = False
) -> list[str]:
    """``xbroker --config FILE run`` (on uvloop through ``bench.launch`` if asked; there
    too when ``watched``, so that ``BENCH_STALL_LOG`` in its environment is followed)."""
    return [
        *_launch(loop, "broker.cli", launcher=watched),
        *("--config", str(settings_file), "run", "--log-level", "WARNING"),
    ]


def relay_command(
    amqp_url: str,
    prefetch: int,
    loop: EventLoop = "asyncio",
    publishes: int = 1,
    settle: str = "confirm",
) -> list[str]:
    """``python -m bench.relay``; ``settle`` is a `bench.relay.Settle` value."""
    return [*_launch(loop, "bench.relay"), amqp_url, str(prefetch), str(publishes), settle]


def floor_command(
    role: str, amqp_url: str, prefetch: int, loop: EventLoop = "asyncio"
) -> list[str]:
    """``python -m bench.floor ROLE``: a hop of RabbitMQ's round trip alone."""
    return [*_launch(loop, "bench.floor"), role, amqp_url, str(prefetch)]


@dataclass(frozen=True, slots=True)
class Memory:
    rss_bytes: int
    peak_rss_bytes: int


def memory_of(pid: int) -> Memory:
    """Current and peak resident set size of a process, from /proc."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return Memory(values.get("VmRSS", 0), values.get("VmHWM", 0))


def py_spy() -> str | None:
    """The py-spy executable: next to this interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@dataclass
class WorkerPool:
    """``count`` processes running ``command``; use ``async with`` to stop them for sure."""

    command: Sequence[str]
    count: int
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def __aenter__(self) -> WorkerPool:
        self.start()
        return self

    def start(self) -> None:
        """Start the processes (Popen returns once they are forked: nothing waits here)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            log = (self.log_dir / f"worker-{index}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    list(self.command),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                )
            )
            log.close()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def wait_consuming(self, channel: AbstractChannel, queue: str, timeout: float) -> None:
        """Wait until RabbitMQ shows this pool's consumers on ``queue``."""
        deadline = time.monotonic() + timeout
        while True:
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"worker {process.pid} exited {process.returncode}:\n" + self._tail(index)
                    )
            declared = await channel.declare_queue(queue, passive=True)
            if (declared.declaration_result.consumer_count or 0) >= self.count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} consumers not on {queue} within {timeout} s")
            await asyncio.sleep(0.05)

    def _tail(self, index: int, lines: int = 20) -> str:
        """The end of a worker's log: the run folder is removed, so the error must travel."""
        try:
            text = (self.log_dir / f"worker-{index}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM every worker, wait for the graceful stop, kill what does not stop."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for process in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.to_thread(process.wait, remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(process.wait, 5)
        self.processes.clear()
