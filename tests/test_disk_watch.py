"""The worker measures the free space of its state and pauses below the reserve."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from broker.worker.disk import DiskWatch, disk_space
from broker.worker.faults import Faults
from monitoring.faults import FaultMetrics
from monitoring.labels import WorkerFault


def watch(faults: Faults, state: Path, *, reserve_bytes: int, reserve_inodes: int = 0) -> DiskWatch:
    """A watch of ``state`` (its status store not created yet) reporting to ``faults``."""
    return DiskWatch(
        [state, state / "status.sqlite3"],
        faults,
        faults.metrics,
        reserve_bytes=reserve_bytes,
        reserve_inodes=reserve_inodes,
    )


def worker() -> tuple[Faults, CollectorRegistry]:
    registry = CollectorRegistry()
    return Faults(FaultMetrics(registry)), registry


async def test_free_space_is_published_for_the_alert(tmp_path: Path) -> None:
    faults, registry = worker()
    space = watch(faults, tmp_path, reserve_bytes=0).check()
    assert registry.get_sample_value("xbroker_state_disk_free_bytes") == space.free_bytes
    assert registry.get_sample_value("xbroker_state_disk_size_bytes") == space.size_bytes
    assert 0 < space.free_bytes <= space.size_bytes


async def test_less_free_space_than_the_reserve_is_a_disk_fault_until_space_returns(
    tmp_path: Path,
) -> None:
    faults, _ = worker()
    free = disk_space([tmp_path]).free_bytes

    watch(faults, tmp_path, reserve_bytes=free * 2).check()
    assert "bytes free" in faults.active[WorkerFault.DISK]

    watch(faults, tmp_path, reserve_bytes=0).check()  # as if space had returned
    assert faults.healthy


async def test_too_few_free_inodes_is_a_disk_fault_too(tmp_path: Path) -> None:
    faults, _ = worker()
    inodes = disk_space([tmp_path]).free_inodes
    watch(faults, tmp_path, reserve_bytes=0, reserve_inodes=inodes * 2 + 1).check()
    assert "inodes free" in faults.active[WorkerFault.DISK]
