"""Watching the free space of the file systems that hold a worker's state.

Every store and the audit trail write to the state dir (or wherever ``status_db`` and
``audit_file`` point). Waiting for the first "no space left on device" means meeting it
in the middle of a message; so the worker measures free space (bytes and inodes) at start
and then every ``disk_check_seconds``, publishes it (``xbroker_state_disk_*``: the
StateDiskLow alert warns well before the reserve is reached), and below
``disk_reserve_bytes`` or ``disk_reserve_inodes`` reports the `WorkerFault.DISK` fault: the
worker stops taking messages until space returns, and says why on ``/readyz``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from broker.worker.faults import Faults
from monitoring.faults import DiskSpace, FaultMetrics
from monitoring.labels import WorkerFault

__all__ = ["DiskWatch", "disk_space"]


def disk_space(paths: Iterable[Path]) -> DiskSpace:
    """The space of the fullest file system among those holding ``paths``."""
    spaces = []
    seen: set[int] = set()
    for path in paths:
        existing = _existing(path)
        device = os.stat(existing).st_dev
        if device in seen:
            continue
        seen.add(device)
        vfs = os.statvfs(existing)
        spaces.append(
            DiskSpace(
                free_bytes=vfs.f_bavail * vfs.f_frsize,
                size_bytes=vfs.f_blocks * vfs.f_frsize,
                free_inodes=vfs.f_favail,
                inodes=vfs.f_files,
            )
        )
    if not spaces:
        raise ValueError("no path to measure")
    return min(spaces, key=lambda space: (space.free_ratio, space.free_bytes))


class DiskWatch:
    """Measures, publishes, and reports or clears `WorkerFault.DISK`."""

    def __init__(
        self,
        paths: Iterable[Path],
        faults: Faults,
        metrics: FaultMetrics,
        *,
        reserve_bytes: int,
        reserve_inodes: int,
    ) -> None:
        self._paths = tuple(paths)
        self._faults = faults
        self._metrics = metrics
        self._reserve_bytes = reserve_bytes
        self._reserve_inodes = reserve_inodes

    def check(self) -> DiskSpace:
        space = disk_space(self._paths)
        self._metrics.set_disk(space)
        short = []
        if space.free_bytes < self._reserve_bytes:
            short.append(f"{space.free_bytes} bytes free, reserve {self._reserve_bytes}")
        if space.inodes and space.free_inodes < self._reserve_inodes:
            short.append(f"{space.free_inodes} inodes free, reserve {self._reserve_inodes}")
        if short:
            self._faults.report(WorkerFault.DISK, "; ".join(short))
        else:
            self._faults.clear(WorkerFault.DISK)
        return space


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a store file not created yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
