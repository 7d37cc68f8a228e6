"""SQLite files shared by the workers of one host, who holds a claim in them, and the
connection whose transactions never wait for a lock on the event loop."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import ClassVar, Final, Literal, TypeVar

from broker.stores.sqlite.guard import StoreGuard, rollback

__all__ = ["BUSY", "Holder", "WriteConnection", "open_shared"]

T = TypeVar("T")


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


class _Busy(Enum):
    BUSY = "busy"


BUSY: Final = _Busy.BUSY
"""What `WriteConnection.transaction` returns without ``wait`` when the lock is taken."""


class WriteConnection:
    """A connection of its own to a shared file, for transactions that must not hold up
    the event loop with a wait for another process's write lock.

    ``transaction(work, wait=False)`` (on the loop) tries the file's write lock and gives
    up at once (`BUSY`) when another process, or this connection's other user, holds it;
    ``wait=True`` (from a thread) waits for it as SQLite's busy handler does; `run` does
    the one and, when busy, the other in a thread. Every use is guarded
    (`broker.stores.sqlite.guard`).
    """

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self._guard = StoreGuard(path)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # opened at the first use

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one transaction: on the loop when the lock is free, else in a thread."""
        done = self.transaction(work, wait=False)
        if done is BUSY:
            return await asyncio.to_thread(self._waited, work)
        return done

    def _waited(self, work: Callable[[sqlite3.Connection], T]) -> T:
        done = self.transaction(work, wait=True)
        assert done is not BUSY  # a waiting transaction waits
        return done

    def transaction(
        self, work: Callable[[sqlite3.Connection], T], *, wait: bool
    ) -> T | Literal[_Busy.BUSY]:
        """``work`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``: all of it or nothing; its
        result. `BUSY` (nothing done) when ``wait`` is off and the lock is taken."""
        if not self._lock.acquire(blocking=wait):
            return BUSY
        try:
            with self._guard:
                if self._db is None:
                    self._db = open_shared(self._guard.path, timeout=self._timeout)
                if wait:
                    return _commit(self._db, work)
                return self._try(self._db, work)
        finally:
            self._lock.release()

    def _try(
        self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]
    ) -> T | Literal[_Busy.BUSY]:
        db.execute("PRAGMA busy_timeout=0")
        try:
            return _commit(db, work)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # any kind of busy
                raise
            return BUSY  # rolled back: the transaction waits in a thread
        finally:
            db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._guard.close(self._db)
                self._db = None


def _commit(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    return result


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
    """The process's start time in clock ticks since boot ("" when it does not exist, or
    has ended and waits only for its parent to collect its exit status: a worker that
    died is dead to its claims, however long its parent takes to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] in ("Z", "X") else fields[19]
