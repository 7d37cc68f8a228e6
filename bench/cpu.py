"""CPU time of the processes of a measurement, from /proc: who spends a round trip's CPU.

On a machine whose cores every process shares, a round trip is bounded by the CPU all
its processes spend on a message together. ``CpuClock`` reads each process's user and
system time before and after a phase; divided by the messages of the phase, it says
where the cores went. RabbitMQ is found as the checkout's local node (the ``beam.smp``
whose environment names the node); against another node it is not measured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from broker import devnode

__all__ = ["CpuClock", "cpu_seconds", "rabbitmq_pid"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def rabbitmq_pid() -> int | None:
    """The local node's Erlang VM, if this checkout's node runs here."""
    try:
        node = devnode.node_status()
    except devnode.DevNodeError:
        return None
    if node is None:
        return None
    wanted = f"RABBITMQ_NODENAME={node.nodename}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if b"beam" not in command.split(b"\0", 1)[0]:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


class CpuClock:
    """CPU seconds per named group of processes between ``start`` and ``stop``."""

    def __init__(self, groups: Mapping[str, list[int]]) -> None:
        self._groups = {name: list(pids) for name, pids in groups.items() if pids}
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {n: sum(cpu_seconds(p) for p in pids) for n, pids in self._groups.items()}

    def start(self) -> None:
        self._before = self._now()

    def stop(self, messages: int) -> dict[str, float]:
        """Milliseconds of CPU per message for each group, and their ``total``."""
        after = self._now()
        per = {
            name: (after[name] - self._before[name]) * 1000 / max(1, messages)
            for name in self._groups
        }
        return per | {"total": sum(per.values())}
