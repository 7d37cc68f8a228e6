"""Checking an audit trail: the chain, the seals, the checkpoint; naming what broke.

The check walks the lines in order and stops at the first break, because everything
after a break can no longer be vouched for. It says which line and which entry, and
what most likely happened there:

* a line whose bytes are not its canonical encoding, or whose hash does not match:
  *altered* (one flipped byte lands here);
* a sequence number ahead of the expected one: *swapped* when the next line carries the
  expected number, else *deleted* (the missing numbers are named);
* a sequence number behind: *inserted* (the line whose successor does not point to it);
* a seal or checkpoint whose signature fails, or that signs another head: *forged seal*.

A chain rewritten from some line on, with every hash recomputed, passes the chain check
but not the next seal: only the broker's key can sign one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from broker.stores.audit.trail import GENESIS, SEAL_NS, canonical, entry_hash
from signing import SigningError, Verifier, parse_untrusted

__all__ = ["AuditProblem", "AuditReport", "verify_trail"]

_S = f"{{{SEAL_NS}}}"
_SEQ = re.compile(rb'"seq":(\d+)')


@dataclass(frozen=True, slots=True)
class AuditProblem:
    line: int  # 1-based line number in the file
    seq: int | None  # the entry the line claims to be, when readable
    message: str

    def __str__(self) -> str:
        entry = f"entry {self.seq}" if self.seq is not None else "an unreadable entry"
        return f"line {self.line} ({entry}): {self.message}"


@dataclass(slots=True)
class AuditReport:
    entries: int = 0
    seals: int = 0
    unsealed: int = 0  # entries after the last valid seal
    pruned_through: int | None = None
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    raw: bytes
    entry: dict[str, Any] | None

    @property
    def seq(self) -> int | None:
        if self.entry is not None and isinstance(self.entry.get("seq"), int):
            return int(self.entry["seq"])
        found = _SEQ.search(self.raw)
        return int(found.group(1)) if found else None


def verify_trail(path: Path, verifier: Verifier | None, issuer: str) -> AuditReport:
    """Check the trail at ``path``. Without a verifier the seals are counted, not checked."""
    report = AuditReport()
    at = datetime.now(UTC)  # seals are checked as of now, by the trust store as it is now
    lines = [_read(n, raw) for n, raw in enumerate(path.read_bytes().splitlines(), 1) if raw]
    expected, prev = 1, GENESIS
    if lines and lines[0].entry is not None and lines[0].entry.get("type") == "checkpoint":
        checkpoint, lines = lines[0], lines[1:]
        assert checkpoint.entry is not None
        problem = _intact(checkpoint) or _seal_problem(checkpoint, verifier, issuer, at)
        if problem:
            report.problems.append(problem)
            return report
        expected = int(checkpoint.entry["through"]) + 1
        prev = str(checkpoint.entry["head"])
        report.pruned_through = expected - 1
    for index, line in enumerate(lines):
        problem = _intact(line) or _order(line, lines, index, expected, prev)
        if problem is None and line.entry is not None and line.entry["type"] == "seal":
            problem = _seal_problem(line, verifier, issuer, at)
            report.seals += 1
            report.unsealed = -1
        if problem is not None:
            report.problems.append(problem)
            return report
        assert line.entry is not None
        report.entries += 1
        report.unsealed += 1
        expected, prev = expected + 1, str(line.entry["hash"])
    return report


def _read(number: int, raw: bytes) -> _Line:
    try:
        entry = json.loads(raw)
    except ValueError:
        return _Line(number, raw, None)
    return _Line(number, raw, entry if isinstance(entry, dict) else None)


def _intact(line: _Line) -> AuditProblem | None:
    """The line is one well-formed entry, in canonical form, matching its own hash."""
    entry = line.entry
    if entry is None:
        return AuditProblem(line.number, line.seq, "altered: the line is not a JSON entry")
    if canonical(entry) != line.raw:
        return AuditProblem(line.number, line.seq, "altered: not the encoding it was written in")
    if entry.get("hash") != entry_hash(entry):
        return AuditProblem(line.number, line.seq, "altered: the content does not match its hash")
    return None


def _order(
    line: _Line, lines: list[_Line], index: int, expected: int, prev: str
) -> AuditProblem | None:
    """The line is the entry expected here and follows the one before it."""
    seq = line.seq
    after = lines[index + 1] if index + 1 < len(lines) else None
    if seq is None or line.entry is None:
        return AuditProblem(line.number, seq, "altered: no sequence number")
    if seq > expected:
        if after is not None and after.seq == expected:
            return AuditProblem(
                line.number,
                seq,
                f"reordered: entries {expected} and {seq} are swapped "
                f"(lines {line.number} and {after.number})",
            )
        missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}-{seq - 1}"
        return AuditProblem(line.number, seq, f"deleted: {missing} missing before this line")
    if seq < expected:
        successor = after.entry if after is not None else None
        if index > 0 and successor is not None and successor.get("prev") == line.entry["hash"]:
            before = lines[index - 1]
            return AuditProblem(
                before.number,
                before.seq,
                f"inserted: line {before.number} does not belong to the chain "
                f"(entry {seq} follows it again at line {line.number})",
            )
        return AuditProblem(
            line.number, seq, f"inserted: entry {seq} appears again after entry {expected - 1}"
        )
    if line.entry.get("prev") != prev:
        return AuditProblem(line.number, seq, "altered: does not follow the entry before it")
    return None


def _seal_problem(
    line: _Line, verifier: Verifier | None, issuer: str, at: datetime
) -> AuditProblem | None:
    """The seal's signature is the broker's and signs this position of the chain."""
    if verifier is None:
        return None
    entry = line.entry
    assert entry is not None
    if entry["type"] == "checkpoint":
        kind, seq, head = "checkpoint", entry["through"], entry["head"]
    else:
        kind, seq, head = "seal", entry["seq"], entry["prev"]
    try:
        verified = verifier.verify(parse_untrusted(str(entry["seal"]).encode()), at=at)
    except (SigningError, KeyError) as exc:
        return AuditProblem(line.number, line.seq, f"forged {kind}: {exc}")
    signed = verified.signed
    if isinstance(signed, etree._ElementTree):
        signed = signed.getroot()
    said = (
        signed.get("art"),
        signed.findtext(f"{_S}folge"),
        signed.findtext(f"{_S}kette"),
        signed.findtext(f"{_S}aussteller"),
    )
    if said != (kind, str(seq), head, issuer) or verified.subject_kennung != issuer:
        return AuditProblem(
            line.number, line.seq, f"forged {kind}: it signs another position or issuer"
        )
    return None
