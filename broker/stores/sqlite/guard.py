"""How the faults of the host's shared SQLite files reach the worker.

The status and deduplication stores are SQLite files in WAL mode under the state dir;
every worker on the host opens the same files (`broker.stores.sqlite.files`). This
module guards every use: a failure of SQLite (a full disk, an unwritable file, an I/O
error) leaves the store as a `StoreError`, which the worker understands as a fault of
its surroundings (`broker.worker.faults`), never as the fault of the message it was
handling.

Why every use is checked first
------------------------------
In WAL mode SQLite maps the ``-shm`` file into memory and writes to it on every
transaction, reads included. When that file becomes unwritable under a running process
(``chattr +i`` on ext4 was measured here: a write through the mapping after the kernel
cleaned the page), the kernel answers the write with SIGBUS and the process dies on
the spot, without a log line. SQLite cannot report it as an error, and a signal handler
cannot resume after it. The rollback-journal modes never map a file and fail cleanly
(``disk I/O error``), but cost an fsync per transaction: 60-280 transactions per second
measured here against 25,000-28,000 in WAL mode, far below what one worker needs. So
WAL stays, and before each use the store checks that its files (and its folder) are
writable; when they are not, it raises `StoreError` without touching SQLite. The check
costs four ``access()`` calls, microseconds; what remains is a window of one
transaction between the check and the write. A connection is closed only when its files
are writable: closing checkpoints the WAL through the same mapping.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from types import TracebackType

from broker.errors import StoreError
from broker.logs import event

__all__ = ["StoreGuard", "left_open", "rollback"]

log = logging.getLogger("xbroker.stores")


def rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction, unless SQLite already did (it does on a full disk)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:  # the error that led here says more
            log.debug("rollback failed", exc_info=True)


class StoreGuard:
    """``with guard:`` around every use of one SQLite file.

    On entry it checks that the file, its ``-wal`` and ``-shm`` companions and its folder
    can be written (see the module docstring for why); on exit it turns SQLite's errors
    into `StoreError`.
    """

    __slots__ = ("_files", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))

    def writable(self) -> str | None:
        """None when every file can be written; else what cannot."""
        folder = self.path.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable"
        for file in self._files:
            # A companion that does not exist yet is created in the (writable) folder.
            if not os.access(file, os.W_OK) and os.path.lexists(file):
                return f"{file} is not writable"
        return None

    def __enter__(self) -> None:
        problem = self.writable()
        if problem is not None:
            raise StoreError(f"{self.path.name}: {problem}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Only what the surroundings cause: I/O, a full disk, an unwritable or locked
        # file, a damaged page. A violated constraint or a misused API is a bug and
        # stays what it is.
        if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
            raise StoreError(f"{self.path.name}: {exc}") from exc

    def close(self, db: sqlite3.Connection) -> bool:
        """Close ``db`` if its files can be written; False (and left open) otherwise."""
        problem = self.writable()
        if problem is not None:
            event(log, "store.left_open", logging.WARNING, problem=problem)
            _LEFT_OPEN.append(db)
            return False
        db.close()
        return True


_LEFT_OPEN: list[sqlite3.Connection] = []
"""Connections whose files were unwritable at close (see `left_open`)."""


def left_open() -> int:
    """How many connections could not be closed safely in this process.

    They must never be closed, not even by the interpreter's own teardown, which would
    checkpoint through the unwritable mapping; a process holding any ends with
    ``os._exit`` (`broker.commands.run`).
    """
    return len(_LEFT_OPEN)
