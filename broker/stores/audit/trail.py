"""The audit trail: append-only, hash-chained, sealed by the broker's signature.

One JSON object per line (docs/audit.md says why a file of lines and not SQLite). Every
line is written in one canonical encoding and carries the SHA-256 of itself without
that field, and the hash of the line before (``prev``), so changing, deleting, inserting
or reordering a line breaks the chain exactly there, and `verify_trail` names the line.

Four kinds of line::

    event       a StatusEvent (metadata only: ids, codes, agencies, times, digests)
    seal        the broker's XML signature over (seq, prev): whoever rewrites the chain
                after the fact cannot forge it, and it vouches for every line before it
    checkpoint  first line after pruning: a signed statement of the seq and hash of the
                last pruned line, so the rest still verifies without the pruned part
    repair      the file ended in an incomplete line, which was cut off (how many bytes)

Several processes on one host may append to the same file: each append holds an
exclusive ``flock`` on ``<file>.lock`` and reads the chain head from the file's tail.
`AuditTrail.record_many` appends a batch of events under one lock, with one open and
one write (the worker's `broker.stores.journal.JournalBatch` writes this way), so workers take
the lock once per batch rather than once per event. A seal that falls due is written
after the batch that reaches ``seal_every``. A journal batch appends at once when the
lock is free (`AuditTrail.write_now`) and otherwise from its own thread (`write_many`,
which also writes the seals: a signature and an fsync), so waiting for another
process's lock never holds up the event loop; within the process a thread lock keeps one
append at a time (``flock`` does not: it belongs to the open file, which the process's
threads share).

A full disk or an unwritable file
---------------------------------
An append is all or nothing: when a write fails (no space left, an unwritable file),
what it wrote is cut off again before the lock is released, and the failure leaves as
`StoreError`, so the worker holds its messages and retries once the fault has cleared
(their events are still pending in its journal batch). A process killed in the middle of
a write leaves an incomplete last line; whoever appends next, or opens the trail, cuts it
off and says so in a ``repair`` entry: the incomplete line was never part of the chain
(nothing chains onto it), so the chain stays whole. A complete last line that is not an
entry is not a torn write but damage, and stops appends until an operator has looked
(`xbroker audit verify` names it).

A seal that cannot be written at shutdown (a full disk) is not lost: the next process to
open the trail finds entries after the last seal and seals them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from broker.errors import StoreError, XBrokerError
from broker.logs import event
from broker.stores.journal import StatusEvent
from broker.stores.status import event_dict

__all__ = [
    "GENESIS",
    "SEAL_NS",
    "AuditError",
    "AuditTrail",
    "SealSigner",
    "canonical",
    "entry_hash",
    "seal_document",
]

log = logging.getLogger("xbroker.audit")

GENESIS = "0" * 64
SEAL_NS = "urn:xbroker:audit:1"
_S = f"{{{SEAL_NS}}}"

SealSigner = Callable[[etree._Element], bytes]
"""Signs a seal document (``Signer.sign`` of the broker)."""

_Fields = dict[str, Any] | Callable[[int, str, str], dict[str, Any]]
"""What an entry holds beside seq, prev, at, type: fixed, or made from (seq, prev, at)."""


class AuditError(XBrokerError):
    """The trail cannot be appended to or pruned (unreadable head, no signer)."""


def canonical(entry: dict[str, Any]) -> bytes:
    """The one encoding of an entry: sorted keys, no spaces, ASCII only."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 over the canonical entry without its own ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def seal_document(kind: str, seq: int, head: str, at: str, issuer: str) -> etree._Element:
    """What a seal or checkpoint signs: position and hash of the chain head it vouches for."""
    root = etree.Element(f"{_S}siegel", nsmap={"s": SEAL_NS})
    root.set("art", kind)
    for name, value in (("folge", str(seq)), ("kette", head), ("zeitpunkt", at)):
        etree.SubElement(root, f"{_S}{name}").text = value
    etree.SubElement(root, f"{_S}aussteller").text = issuer
    return root


@dataclass(slots=True)
class _Head:
    seq: int
    hash: str
    size: int
    inode: int
    kind: str  # of the last entry: event, seal, checkpoint, repair; "none" in an empty file


class AuditTrail:
    """Appends events to the trail and seals it every ``seal_every`` entries or
    ``seal_seconds``, whichever comes first. Attach it to the broker as a journal."""

    def __init__(
        self,
        path: Path,
        *,
        issuer: str,
        sign: SealSigner | None = None,
        seal_every: int = 100,
        seal_seconds: float = 60.0,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.issuer = issuer
        self._sign = sign
        self._seal_every = seal_every
        self._seal_seconds = seal_seconds
        try:
            self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"{path.name}.lock: {exc.strerror}") from exc
        self._head: _Head | None = None
        self._mutex = threading.RLock()  # the head and the seal counters, across threads
        self._unsealed = 0
        self._last_seal = time.monotonic()
        self._open_tail()

    def record(self, event: StatusEvent) -> None:
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Append ``events`` under one lock and one write, then seal if a seal is due."""
        if not events:
            return
        with self._mutex:
            self._append(_entries(events))
            self._unsealed += len(events)
            if not self._seal_due():
                return
            try:
                self.seal()
            except Exception:
                # The events are written; raising would make the caller write them again.
                # The seal stays due and is tried after the next append.
                log.exception("audit.seal_failed")

    write_many = record_many  # from any thread (`broker.stores.journal.ThreadJournal`)

    def write_now(self, events: Sequence[StatusEvent]) -> bool:
        """Append ``events`` if no other process or thread is appending and no seal (a
        signature and an fsync) falls due with them; False: nothing written."""
        if not events:
            return True
        if not self._mutex.acquire(blocking=False):
            return False
        try:
            if self._seal_due(len(events)):
                return False
            try:
                self._append(_entries(events), wait=False)
            except BlockingIOError:
                return False
            self._unsealed += len(events)
            return True
        finally:
            self._mutex.release()

    def _seal_due(self, adding: int = 0) -> bool:
        if self._sign is None:
            return False
        due = time.monotonic() - self._last_seal >= self._seal_seconds
        return due or self._unsealed + adding >= self._seal_every

    def seal(self, *, force: bool = False) -> None:
        """Sign the chain as it stands now. Without ``force``, only when this trail wrote
        entries since its last seal; never without a signer."""
        if self._sign is None or (self._unsealed == 0 and not force):
            return
        sign = self._sign

        def signed(seq: int, prev: str, at: str) -> dict[str, Any]:
            return {"seal": sign(seal_document("seal", seq, prev, at, self.issuer)).decode()}

        with self._mutex:
            self._append([("seal", signed)], sync=True)
            self._unsealed = 0
            self._last_seal = time.monotonic()

    def prune(self, before: datetime) -> int:
        """Drop the leading entries older than ``before`` behind a signed checkpoint.

        Returns how many lines were dropped. The file is rewritten beside the old one
        and renamed over it, so a crash leaves either the old or the new trail.
        """
        if self._sign is None:
            raise AuditError("pruning needs the broker's signer for the checkpoint")
        cutoff = before.astimezone(UTC).isoformat()
        self._append(())  # an incomplete last line is cut off first
        with self._mutex, _Locked(self._lock):
            lines = self.path.read_bytes().splitlines(keepends=True) if self.path.exists() else []
            start = 1 if lines and json.loads(lines[0]).get("type") == "checkpoint" else 0
            cut = start
            while cut < len(lines) and json.loads(lines[cut])["at"] < cutoff:
                cut += 1
            if cut == start:
                return 0
            last = json.loads(lines[cut - 1])
            at = datetime.now(UTC).isoformat()
            checkpoint: dict[str, Any] = {
                "type": "checkpoint",
                "at": at,
                "pruned_before": cutoff,
                "through": last["seq"],
                "head": last["hash"],
                "seal": self._sign(
                    seal_document("checkpoint", last["seq"], last["hash"], at, self.issuer)
                ).decode(),
            }
            checkpoint["hash"] = entry_hash(checkpoint)
            tmp = self.path.with_name(f"{self.path.name}.prune")
            with tmp.open("wb") as out:
                out.write(canonical(checkpoint) + b"\n")
                out.writelines(lines[cut:])
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            self._head = None
        return cut - start

    def close(self) -> None:
        """Seal what is unsealed, then release the lock file.

        A seal that cannot be written now is left to the next start (see the module
        docstring); closing never fails for it.
        """
        try:
            self.seal()
        except (StoreError, AuditError) as exc:
            event(log, "audit.seal_deferred", logging.WARNING, error=str(exc))
        os.close(self._lock)

    def _open_tail(self) -> None:
        """At open: cut off an incomplete last line, and seal entries left unsealed."""
        try:
            head = self._append(())
        except (StoreError, AuditError) as exc:
            # The first append will meet the same problem and report it to its caller.
            event(log, "audit.open_deferred", logging.WARNING, error=str(exc))
            return
        if head is not None and head.kind not in ("seal", "checkpoint") and head.seq > 0:
            self._unsealed = 1  # a seal the last process could not write
            try:
                self.seal()
            except (StoreError, AuditError) as exc:
                self._last_seal = float("-inf")  # due at the next append
                event(log, "audit.seal_deferred", logging.WARNING, error=str(exc))

    def _append(
        self, entries: Sequence[tuple[str, _Fields]], *, sync: bool = False, wait: bool = True
    ) -> _Head | None:
        """Chain ``entries`` (type, fields) onto the head and write them in one write.

        All or nothing: a failed write is cut off again. Returns the new head, or None
        when there was nothing to write and no head to read. Without ``wait``,
        BlockingIOError (nothing written) when another process holds the lock.
        """
        with self._mutex, _Locked(self._lock, wait=wait):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(f"{self.path.name}: {exc.strerror}") from exc
            try:
                head, torn = self._current_head(fd)
                if torn:
                    entries = [("repair", {"repair": {"truncated_bytes": torn}}), *entries]
                if not entries:
                    return head
                seq, prev = head.seq, head.hash
                at = datetime.now(UTC).isoformat()
                lines = []
                kind = head.kind
                for kind, fields in entries:
                    seq += 1
                    extra = fields(seq, prev, at) if callable(fields) else fields
                    entry: dict[str, Any] = {"seq": seq, "prev": prev, "at": at, "type": kind}
                    entry.update(extra)
                    prev = entry["hash"] = entry_hash(entry)
                    lines.append(canonical(entry) + b"\n")
                start = head.size
                data = b"".join(lines)
                try:
                    _write_all(fd, data)
                    if sync:
                        os.fsync(fd)
                except OSError as exc:
                    _cut(fd, start)
                    raise StoreError(f"{self.path.name}: cannot append: {exc.strerror}") from exc
                self._head = _Head(seq, prev, start + len(data), head.inode, kind)
                return self._head
            finally:
                os.close(fd)

    def _current_head(self, fd: int) -> tuple[_Head, int]:
        """The last entry's seq and hash, and how many bytes of an incomplete last line
        were cut off to get there (0 when the file ended cleanly).

        Remembered, unless another process appended since.
        """
        stat = os.fstat(fd)
        cached = self._head
        if cached is not None and (cached.size, cached.inode) == (stat.st_size, stat.st_ino):
            return cached, 0
        last, torn = _tail(self.path)
        size = stat.st_size
        if torn:
            size -= torn
            _cut(fd, size)
            event(log, "audit.repaired", logging.WARNING, truncated_bytes=torn)
        if last is None:
            return _Head(0, GENESIS, size, stat.st_ino, "none"), torn
        try:
            entry = json.loads(last)
            kind = str(entry["type"])
            if kind == "checkpoint":
                return _Head(
                    int(entry["through"]), str(entry["head"]), size, stat.st_ino, kind
                ), torn
            return _Head(int(entry["seq"]), str(entry["hash"]), size, stat.st_ino, kind), torn
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{self.path}: the last line is not an entry; run `xbroker audit verify`"
            ) from exc


class _Locked:
    """An exclusive flock held for one append or prune; without ``wait``, BlockingIOError
    when another holds it."""

    def __init__(self, fd: int, *, wait: bool = True) -> None:
        self._fd = fd
        self._how = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB

    def __enter__(self) -> None:
        fcntl.flock(self._fd, self._how)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def _entries(events: Sequence[StatusEvent]) -> list[tuple[str, _Fields]]:
    return [("event", {"event": event_dict(e) | {"uuid": e.uuid}}) for e in events]


def _tail(path: Path) -> tuple[bytes | None, int]:
    """The last complete line of the file (None if there is none), and the length of an
    incomplete line after it (bytes after the last newline)."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        chunk = 64 * 1024
        while True:
            start = max(0, end - chunk)
            f.seek(start)
            data = f.read(end - start)
            cut = data.rfind(b"\n")
            if cut < 0 and start > 0:
                chunk *= 4
                continue
            torn = len(data) - cut - 1
            complete = data[: cut + 1].rstrip(b"\n")
            previous = complete.rfind(b"\n")
            if previous < 0 and start > 0:
                chunk *= 4
                continue
            return complete[previous + 1 :] or None, torn


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut(fd: int, size: int) -> None:
    """Cut the file back to ``size`` bytes (best effort: the caller reports the failure
    that led here, and the next append cuts an incomplete line off again)."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        log.warning("audit.cut_failed", exc_info=True)
