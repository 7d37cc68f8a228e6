"""The audit trail: append-only, hash-chained, sealed by the broker's signature.

One JSON object per line (docs/audit.md says why a file of lines and not SQLite). Every
line is written in one canonical encoding and carries the SHA-256 of itself without
that field, and the hash of the line before (``prev``), so changing, deleting, inserting
or reordering a line breaks the chain exactly there, and `verify_trail` names the line.

Three kinds of line::

    event       a StatusEvent (metadata only: ids, codes, agencies, times, digests)
    seal        the broker's XML signature over (seq, prev): whoever rewrites the chain
                after the fact cannot forge it, and it vouches for every line before it
    checkpoint  first line after pruning: a signed statement of the seq and hash of the
                last pruned line, so the rest still verifies without the pruned part

Several processes on one host may append to the same file: each append holds an
exclusive ``flock`` on ``<file>.lock`` and reads the chain head from the file's tail.
`AuditTrail.record_many` appends a batch of events under one lock, with one open and
one write (the worker's `broker.stores.journal.JournalBatch` writes this way), so workers take
the lock once per batch rather than once per event. A seal that falls due is written
after the batch that reaches ``seal_every``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from broker.errors import XBrokerError
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
        self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._head: _Head | None = None
        self._unsealed = 0
        self._last_seal = time.monotonic()

    def record(self, event: StatusEvent) -> None:
        self.record_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        """Append ``events`` under one lock and one write, then seal if a seal is due."""
        if not events:
            return
        self._append([("event", {"event": event_dict(e) | {"uuid": e.uuid}}) for e in events])
        self._unsealed += len(events)
        due = time.monotonic() - self._last_seal >= self._seal_seconds
        if self._sign is None or not (self._unsealed >= self._seal_every or due):
            return
        try:
            self.seal()
        except Exception:
            # The events are written; raising would make the caller write them again.
            # The seal stays due and is tried after the next append.
            log.exception("audit.seal_failed")

    def seal(self, *, force: bool = False) -> None:
        """Sign the chain as it stands now. Without ``force``, only when this trail wrote
        entries since its last seal; never without a signer."""
        if self._sign is None or (self._unsealed == 0 and not force):
            return
        sign = self._sign

        def signed(seq: int, prev: str, at: str) -> dict[str, Any]:
            return {"seal": sign(seal_document("seal", seq, prev, at, self.issuer)).decode()}

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
        with _Locked(self._lock):
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
        """Seal what is unsealed, then release the lock file."""
        self.seal()
        os.close(self._lock)

    def _append(self, entries: Sequence[tuple[str, _Fields]], *, sync: bool = False) -> None:
        """Chain ``entries`` (type, fields) onto the head and write them in one write."""
        with _Locked(self._lock), self.path.open("ab") as out:
            head = self._current_head(out.fileno())
            seq, prev = head.seq, head.hash
            at = datetime.now(UTC).isoformat()
            lines = []
            for kind, fields in entries:
                seq += 1
                extra = fields(seq, prev, at) if callable(fields) else fields
                entry: dict[str, Any] = {"seq": seq, "prev": prev, "at": at, "type": kind}
                entry.update(extra)
                prev = entry["hash"] = entry_hash(entry)
                lines.append(canonical(entry) + b"\n")
            out.write(b"".join(lines))
            out.flush()
            if sync:
                os.fsync(out.fileno())
            stat = os.fstat(out.fileno())
            self._head = _Head(seq, prev, stat.st_size, stat.st_ino)

    def _current_head(self, fd: int) -> _Head:
        """The last entry's seq and hash: remembered, unless another process appended."""
        stat = os.fstat(fd)
        cached = self._head
        if cached is not None and (cached.size, cached.inode) == (stat.st_size, stat.st_ino):
            return cached
        last = _last_line(self.path)
        if last is None:
            return _Head(0, GENESIS, stat.st_size, stat.st_ino)
        try:
            entry = json.loads(last)
            if entry.get("type") == "checkpoint":
                return _Head(int(entry["through"]), str(entry["head"]), stat.st_size, stat.st_ino)
            return _Head(int(entry["seq"]), str(entry["hash"]), stat.st_size, stat.st_ino)
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{self.path}: the last line is not an entry; run `xbroker audit verify`"
            ) from exc


class _Locked:
    """An exclusive flock held for one append or prune."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of the file, read from its end."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        chunk = 64 * 1024
        while True:
            start = max(0, end - chunk)
            f.seek(start)
            data = f.read(end - start).rstrip(b"\n")
            cut = data.rfind(b"\n")
            if cut >= 0 or start == 0:
                return data[cut + 1 :] or None
            chunk *= 4
