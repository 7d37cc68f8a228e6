"""A streaming standby of a local cluster, and its promotion: failover on one machine.

Made with ``pg_basebackup -R`` from a running cluster (`ensure_cluster`) into another
checkout root's layout, it follows the primary read-only until promoted. With both
servers in one URL and ``target_session_attrs=read-write``, a client that loses the
primary finds the promoted standby at its next connection: what docs/scaling.md
promises an operator, shown by ``tests/test_postgres_failover.py``. Development and
tests only; a deployment's replication is the database operator's.
"""

from __future__ import annotations

from pathlib import Path

from broker.devdb.cluster import (
    ROLE,
    START_TIMEOUT_SECONDS,
    ClusterInfo,
    _as_owner,
    _bin_dir,
    _ClusterLayout,
    _give_to_owner,
    _info,
    _running_pid,
    _start,
    _State,
    _write_state,
)
from broker.devdb.errors import ClusterStartError
from broker.devlocal import free_port, locked

__all__ = ["promote", "start_standby"]


def start_standby(
    primary: ClusterInfo, root: Path, *, timeout: float = START_TIMEOUT_SECONDS
) -> ClusterInfo:
    """Copy ``primary`` into ``root``'s layout and start it as its streaming standby."""
    layout = _ClusterLayout.of(root)
    bin_dir = _bin_dir()
    with locked(layout.lock_file):
        if layout.data.exists():
            raise ClusterStartError(f"{layout.data} exists: a standby starts from an empty folder")
        for folder in (layout.socket_dir, layout.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
            _give_to_owner(folder)
        _give_to_owner(layout.base)
        _as_owner(
            [
                str(bin_dir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                ROLE,
                "-D",
                str(layout.data),
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ],
            layout,
            timeout=timeout,
            env={"PGPASSWORD": primary.password},
        )
        # The copy carries the primary's port and socket folder: `_start` writes its own.
        state = _State(free_port(), primary.password, created=True)
        _write_state(layout, state)
        state = _start(layout, state, bin_dir, timeout)
        pid = _running_pid(layout)
        if pid is None:
            raise ClusterStartError(f"the standby answered but left no pid; see {layout.log_file}")
        return _info(layout, state, pid, bin_dir)


def promote(standby: ClusterInfo, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Make the standby a primary that takes writes (``pg_ctl promote``, waited for)."""
    layout = _ClusterLayout.at(standby.base)
    _as_owner(
        [
            str(standby.bin_dir / "pg_ctl"),
            "promote",
            "-D",
            str(standby.data_dir),
            "-w",
            "-t",
            str(int(timeout)),
        ],
        layout,
        timeout=timeout + 15,
    )
