"""The state dir fails for 20 s: full, or its files unwritable. Nothing is lost.

Both workers share one state dir (dedup and status stores, the audit trail), as workers
on one host do. During the fault they hold their messages, say so on ``/readyz`` and
consume nothing; afterwards they resume by themselves. No message is dead-lettered, no
author is told ``failed``, and the audit trail still verifies.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.harness import Vhost, fault_run
from tests.faults.scenario import with_fault
from tests.tools import unavailable

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(900)]


@contextmanager
def filled(folder: Path) -> Iterator[int]:
    """Fill the file system of ``folder`` to the last byte; free it again on exit."""
    filler = folder / "filler"
    written = 0
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * size
            while True:
                try:
                    written += out.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    try:
        yield written
    finally:
        filler.unlink()


@contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """``chattr +i`` (no write, not even by root, not even through an open file) until exit."""
    names = [str(p) for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *names], check=True, capture_output=True)
    os.sync()  # written-back pages of a mapped file fault again at their next write
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=False, capture_output=True)


def state_files(state: Path) -> list[Path]:
    return [state, *sorted(state.glob("*.sqlite3*")), state / "audit.jsonl"]


async def test_a_full_state_disk_for_20_s_loses_and_duplicates_nothing(
    node_vhost: Vhost, small_disk: Path, tmp_path: Path
) -> None:
    async with fault_run(
        [node_vhost.url], tmp_path, state_dir=small_disk, disk_reserve_bytes=1 << 20
    ) as run:
        paused = await with_fault(run, lambda: filled(small_disk))

        await run.assert_promise(node_vhost.queues)
        assert paused, "no worker reported the full disk on /readyz"
        assert "disk" in {e["fault"] for e in run.fault_events("fault.began")}


@pytest.fixture
def immutable_flag(tmp_path: Path) -> None:
    """``chattr +i`` works here (root, a file system with the flag), else skip."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        unavailable("unwritable files", "making them unwritable for root needs chattr, as root")
    probe = tmp_path / "probe"
    probe.touch()
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        unavailable("unwritable files", f"the file system of {tmp_path} has no immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], check=True)


@pytest.mark.usefixtures("immutable_flag")
async def test_unwritable_state_files_for_20_s_lose_and_duplicate_nothing(
    node_vhost: Vhost, tmp_path: Path
) -> None:
    async with fault_run([node_vhost.url], tmp_path) as run:
        state = run.settings.state_dir
        paused = await with_fault(run, lambda: immutable(state_files(state)))

        await run.assert_promise(node_vhost.queues)  # no worker died (SIGBUS) on the way
        assert paused, "no worker reported the unwritable files on /readyz"
        assert "store" in {e["fault"] for e in run.fault_events("fault.began")}
