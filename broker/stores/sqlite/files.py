"""SQLite files shared by the workers of one host, who holds a claim in them, and the
connection that writes from a thread."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from broker.stores.sqlite.guard import StoreGuard, rollback

__all__ = ["Holder", "WriteConnection", "open_shared"]


def open_shared(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to an SQLite file that the workers of one host share (WAL mode).

    Switching to WAL, or opening a WAL file another process is just checkpointing as it
    closes, can fail with "database is locked" without SQLite's busy handler being asked;
    workers starting together, or one starting as another stops, then failed at start.
    So the switch is retried here, at start only, for up to ``timeout`` seconds. Its
    faults are `StoreError`s, as every later use is (`broker.stores.sqlite.guard`).
    """
    with StoreGuard(path):
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    db.close()
                    raise
                time.sleep(0.02)
        db.execute("PRAGMA synchronous=NORMAL")
    return db


class WriteConnection:
    """A connection of its own to a shared file, for writes that must not hold up the
    event loop (`broker.stores.journal`).

    ``transaction(write, wait=False)`` (on the loop) tries the file's write lock and
    gives up at once when another process, or this connection's other user, holds it;
    ``wait=True`` (from a thread) waits for it as SQLite's busy handler does. The loop
    keeps its own connection for claims and reads. Every use is guarded
    (`broker.stores.sqlite.guard`).
    """

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self._guard = StoreGuard(path)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # opened at the first write

    def transaction(self, write: Callable[[sqlite3.Connection], object], *, wait: bool) -> bool:
        """Run ``write`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``: all of it or nothing.
        False (nothing written) when ``wait`` is off and the lock is taken."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            with self._guard:
                if self._db is None:
                    self._db = open_shared(self._guard.path, timeout=self._timeout)
                if wait:
                    _commit(self._db, write)
                    return True
                return self._try(self._db, write)
        finally:
            self._lock.release()

    def _try(self, db: sqlite3.Connection, write: Callable[[sqlite3.Connection], object]) -> bool:
        db.execute("PRAGMA busy_timeout=0")
        try:
            _commit(db, write)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # any kind of busy
                raise
            return False  # rolled back: the waiting write goes to the thread
        finally:
            db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        return True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._guard.close(self._db)
                self._db = None


def _commit(db: sqlite3.Connection, write: Callable[[sqlite3.Connection], object]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        write(db)
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise


class Holder:
    """One open store of one process on this host, as it names itself in a claim.

    ``<pid>:<process start time>:<token>``: the start time tells a live process from a
    later one that got the same pid, the token one open store from another in the same
    process (tests run two "workers" in one process). A holder is alive while its process
    runs and, within this process, while its store is open.
    """

    _open: ClassVar[set[str]] = set()  # tokens of this process's open stores

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self.name = f"{os.getpid()}:{_started(os.getpid())}:{self.token}"
        Holder._open.add(self.token)

    def close(self) -> None:
        Holder._open.discard(self.token)

    @staticmethod
    def alive(name: str | None) -> bool:
        if not name:
            return False
        try:
            pid_text, started, token = name.split(":")
            pid = int(pid_text)
        except ValueError:
            return False
        if pid == os.getpid():
            return started == _started(pid) and token in Holder._open
        return started == _started(pid)


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat.rsplit(")", 1)[1].split()[19]
